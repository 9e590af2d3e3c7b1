"""Training: :func:`train` fits a U-Net of a :class:`unet.run.Config` and writes a run folder.

See :mod:`unet.run` for what the run folder holds and how a run resumes, and
:mod:`unet.devices` for the precision and distribution choices.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from . import data, losses, metrics, plot
from .augment import Augmentation
from .calibrate import calibrate_postprocessing
from .devices import PRECISIONS, STRATEGIES, make_strategy, resolve_precision  # noqa: F401
from .errors import NaNLossError, UsageError
from .io import atomic_path, check_data_dir, folder_lock, listing, read_counts
from .predict import predict_many
from .run import Config, load_run, prepare_run_dir, read_history  # noqa: F401  (public here too)


class _EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` (wall-clock time of the epoch, validation included) and ``step``
    (optimiser steps done) to the logs."""

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start
            logs["step"] = (epoch + 1) * self.steps_per_epoch


class WholeImageValidation(keras.callbacks.Callback):
    """Validation on whole images at their own size, as ``evaluate`` scores them.

    At the end of every epoch each validation image is predicted by overlap-tiles
    (:func:`unet.predict.predict_many`, exact for the default crop-skip model) and the
    pixel counts are pooled over all of them: ``val_dice``, ``val_iou``,
    ``val_precision``, ``val_recall``, ``val_loss`` (the loss over all pixels of all
    validation images) and ``val_seconds`` (the time it took) go into the logs, for the checkpoint, early stopping, the
    learning-rate schedule and history.csv.
    """

    def __init__(self, samples, loss, threshold=0.5, batch_size=8):
        super().__init__()
        self.samples, self.loss, self.threshold = samples, loss, float(threshold)
        self.batch_size = int(batch_size)
        self.truth = [np.asarray(m) > 0 for m in samples.masks]

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        probs = predict_many(self.model, self.samples.images, self.batch_size)
        counts = np.zeros(4, np.int64)
        for prob, truth in zip(probs, self.truth):
            counts += metrics.confusion_counts(truth, prob > self.threshold)
        if logs is not None:
            for key, value in metrics.scores_from_counts(*counts).items():
                logs[f"val_{key}"] = value
            flat_true = np.concatenate([t.ravel() for t in self.truth]).astype(np.float32)
            flat_prob = np.concatenate([p.ravel() for p in probs])
            shape = (1, flat_true.size, 1, 1)
            logs["val_loss"] = float(self.loss.call(flat_true.reshape(shape),
                                                    flat_prob.reshape(shape)))
            logs["val_seconds"] = time.perf_counter() - start


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model whenever ``val_dice`` beats the best so far, atomically.

    Keras' ``ModelCheckpoint`` writes ``model.keras`` in place, so a kill during the
    save leaves a truncated file, and a resumed run rewrites it only when an epoch
    beats the best. Here the model is written to a temporary name in the same folder
    and renamed into place (:func:`unet.io.atomic_path`): a crash leaves the previous
    complete file. ``best`` is the score of the file already there (``None``: none).
    """

    def __init__(self, path, best=None):
        super().__init__()
        self.path = Path(path)
        self.best = -math.inf if best is None else float(best)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_dice")
        if value is None or not float(value) > self.best:
            return
        self.best = float(value)
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)


class _StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers it fired, so train() can say so clearly."""

    fired = False

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.fired = True
        super().on_batch_end(batch, logs)


def _initial_weights(config, init):
    """The weights of the model ``init`` names, checked to fit ``config``'s architecture."""
    source, _ = load_run(init)
    model = config.build_model()
    have = [tuple(w.shape) for w in model.weights]
    got = [tuple(w.shape) for w in source.weights]
    if have != got:
        raise UsageError(
            f"`init` {init} has another architecture than this config ({len(got)} weight "
            f"arrays, {source.count_params():,} parameters, vs {len(have)} and "
            f"{model.count_params():,}); use the same depth, filters, channels, classes and "
            "batch_norm as the model it was trained with (its config.json).")
    return source.get_weights()


def train(
    config=None,
    data_dir="data/spores",
    out_dir="runs/default",
    precision="auto",
    strategy="auto",
    quick=False,
    overwrite=False,
    verbose=1,
    init=None,
):
    """Train a U-Net on a data folder and write a run directory.

    Parameters
    ----------
    config : Config or dict, optional
        Settings (defaults: ``Config()``).
    data_dir : path
        Holds ``train/`` and ``val/``, each with ``images/`` and ``masks/`` (and
        optionally ``labels/``: instance labels for the border-weighted loss and the
        calibration; masks holding instance ids serve as well). Images of any size
        and number.
    out_dir : path
        The run directory (see the module docstring). Starting again with the same
        ``out_dir`` after an interruption resumes from the last finished epoch.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Mixed precision policy (see :func:`resolve_precision`).
    strategy : {"auto", "default", "mirrored", "multiworker", "tpu"}
        Distribution strategy (see :func:`make_strategy`).
    quick : bool
        Train for about a minute on a few crops (:meth:`Config.quick`).
    overwrite : bool
        Replace the run files already in ``out_dir``.
    verbose : int
        Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    init : path or str, optional
        Start from the weights of a trained model instead of random ones (fine-tuning):
        a run directory, a ``.keras`` file or a shipped model's name (``"spores"``, see
        :func:`unet.run.load_run`). Its architecture must be the config's. A resumed run
        continues from its own backup instead.

    Returns
    -------
    dict
        ``model`` (path), ``history`` ({column: array}, one row per epoch of
        ``steps_per_epoch`` steps), ``epochs``, ``steps`` (done), ``seconds``,
        ``precision`` (policy), ``resumed``, ``config`` (as saved: the chosen
        ``crop_size`` and the calibrated post-processing), ``calibration`` (what it
        chose and compared, or None) and ``calibration_note`` (one line saying so).
    """
    if config is None:
        config = Config()
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    if quick:
        config = config.quick()
    data_dir = check_data_dir(data_dir)
    init_weights = _initial_weights(config, init) if init is not None else None
    # the data first: a broken input is refused before anything is written
    train_set = data.load_folder(data_dir / "train", channels=config.channels,
                                 limit=config.train_limit)
    val_set = data.load_folder(data_dir / "val", channels=config.channels,
                               limit=config.val_limit)
    if config.crop_size is None:
        config = dataclasses.replace(
            config, crop_size=data.choose_crop_size(train_set, config.depth, config.padding))
    with folder_lock(out_dir, "out_dir"):  # one process per run folder
        out_dir, resumed = prepare_run_dir(out_dir, config, overwrite)
        policy = resolve_precision(precision)
        dist = make_strategy(strategy)

        weights = "border" if config.loss == "weighted_bce" else "uniform"
        train_ds = data.make_dataset(
            train_set, config.tile_size, config.output_tile_size, batch_size=config.batch_size,
            augment=Augmentation() if config.augment else None, shuffle=True, seed=config.seed,
            repeat=True, weights=weights, w0=config.border_w0, sigma=config.border_sigma,
        )

        config.save(out_dir / "config.json")
        keras.utils.set_random_seed(config.seed)
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            with dist.scope():
                model = config.build_model()
                model.compile(
                    optimizer=keras.optimizers.Adam(config.learning_rate),
                    loss=losses.get_loss(config.loss),
                    weighted_metrics=metrics.segmentation_metrics(config.threshold),
                )
            if init_weights is not None and not resumed:
                model.set_weights(init_weights)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)

        history_path = out_dir / "history.csv"
        best = read_history(history_path).get("val_dice")
        if not zipfile.is_zipfile(out_dir / "model.keras"):
            best = None  # no complete model yet (or one cut short by an older version): save the next
        nan_guard = _StopOnNaN()
        callbacks = [
            # first: the epoch's time includes validation, whose scores the others read
            _EpochTimer(config.steps_per_epoch),
            WholeImageValidation(val_set, losses.get_loss(config.loss), config.threshold,
                                 config.batch_size),
            nan_guard,
            BestModelCheckpoint(out_dir / "model.keras",
                                float(best.max()) if best is not None and best.size else None),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_dice", mode="max", factor=0.5,
                patience=config.patience(config.reduce_lr_steps), min_lr=1e-5,
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_dice", mode="max", patience=config.patience(config.early_stopping_steps)
            ),
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(out_dir / "logs", write_graph=False),
            # Last, so an epoch is only marked done once everything above has run for it.
            keras.callbacks.BackupAndRestore(out_dir / "backup", double_checkpoint=True),
        ]
        start = time.perf_counter()
        model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)  # the stream shuffles itself
        seconds = time.perf_counter() - start
        if nan_guard.fired:
            raise NaNLossError(
                "Training stopped: the loss became NaN or infinite. Lower the learning rate "
                "(e.g. `learning_rate` / 10 in the config) or check the data for broken images; "
                f"the best model so far is in {out_dir / 'model.keras'}."
            )
        history = read_history(history_path)
        plot.save_figure(plot.training_curves(history), out_dir / "curves.png")
        config, note = _calibrate(config, out_dir, val_set, data_dir / "val")
        return {
            "model": out_dir / "model.keras",
            "history": history,
            "epochs": len(history.get("epoch", [])),
            "steps": int(history["step"][-1]) if "step" in history else 0,
            "seconds": seconds,
            "precision": policy,
            "resumed": resumed,
            "config": config,
            "calibration": config.calibration,
            "calibration_note": note,
        }


def _calibrate(config, out_dir, val_set, val_dir):
    """Choose the post-processing on the validation split; save it in config.json.

    Returns the (updated) config and a one-line note of what happened.
    """
    kept = (f"threshold {config.threshold}, split_h {config.split_h}, "
            f"min_area {config.min_area}")
    if not config.calibrate:
        return config, f"post-processing as configured: {kept}"
    counts = None
    if val_set.labels is None:
        found = read_counts(val_dir)
        if found and all(name in found for name in val_set.names):
            counts = [found[name] for name in val_set.names]
        elif found:
            missing = [name for name in val_set.names if name not in found]
            return config, (f"calibration skipped: counts.csv of the validation split has "
                            f"no count for {listing(missing)}; kept {kept}")
        else:
            return config, (f"calibration skipped: the validation split has no instance "
                            f"labels or counts; kept {kept}")
    model, _ = load_run(out_dir)
    probs = predict_many(model, val_set.images)
    result = calibrate_postprocessing(probs, labels=val_set.labels, counts=counts,
                                      masks=val_set.masks)
    config = dataclasses.replace(config, threshold=result["threshold"],
                                 split_h=result["split_h"], min_area=result["min_area"],
                                 calibration=result)
    config.save(out_dir / "config.json")
    better = "higher" if "F1" in result["objective"] else "lower"
    return config, (
        f"calibrated on {result['objective']} ({better} is better): threshold "
        f"{result['threshold']}, split_h {result['split_h']}, min_area {result['min_area']} "
        f"give {result['score']:.4f} (defaults: {result['default_score']:.4f})"
    )
