"""Training: :func:`train` fits a U-Net of a :class:`unet.run.Config` and writes a run folder.

See :mod:`unet.run` for what the run folder holds and how a run resumes, and
:mod:`unet.devices` for the precision and distribution choices.
"""

from __future__ import annotations

import math
import time

import keras

from . import data, losses, metrics, plot
from .augment import Augmentation
from .devices import PRECISIONS, STRATEGIES, make_strategy, resolve_precision  # noqa: F401
from .errors import NaNLossError
from .io import check_data_dir
from .run import Config, load_run, prepare_run_dir, read_history  # noqa: F401  (public here too)


class _EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` (wall-clock time of the epoch, validation included) to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start


class _StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers it fired, so train() can say so clearly."""

    fired = False

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.fired = True
        super().on_batch_end(batch, logs)


def train(
    config=None,
    data_dir="data/spores",
    out_dir="runs/default",
    precision="auto",
    strategy="auto",
    quick=False,
    overwrite=False,
    verbose=1,
):
    """Train a U-Net on a data folder and write a run directory.

    Parameters
    ----------
    config : Config or dict, optional
        Settings (defaults: ``Config()``).
    data_dir : path
        Holds ``train/`` and ``val/``, each with ``images/`` and ``masks/`` (and
        optionally ``labels/`` for the border-weighted loss).
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

    Returns
    -------
    dict
        ``{"model": path, "history": {metric: array}, "epochs": n, "seconds": t,
        "precision": policy, "resumed": bool}``.
    """
    if config is None:
        config = Config()
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    if quick:
        config = config.quick()
    data_dir = check_data_dir(data_dir)
    out_dir, resumed = prepare_run_dir(out_dir, config, overwrite)
    policy = resolve_precision(precision)
    dist = make_strategy(strategy)

    train_set = data.load_folder(data_dir / "train", channels=config.channels,
                                 limit=config.train_limit)
    val_set = data.load_folder(data_dir / "val", channels=config.channels,
                               limit=config.val_limit)
    weights = "border" if config.loss == "weighted_bce" else "uniform"
    tile, out = config.tile_size, config.output_tile_size
    common = dict(tile=tile, out=out, batch_size=config.batch_size, weights=weights,
                  w0=config.border_w0, sigma=config.border_sigma)
    train_ds = data.make_dataset(
        train_set, augment=Augmentation() if config.augment else None,
        shuffle=True, seed=config.seed, **common
    )
    val_ds = data.make_dataset(val_set, augment=None, shuffle=False, **common)

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
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    history_path = out_dir / "history.csv"
    best = read_history(history_path).get("val_dice")
    nan_guard = _StopOnNaN()
    callbacks = [
        _EpochTimer(),  # first, so that the history and TensorBoard get the epoch's time
        nan_guard,
        keras.callbacks.ModelCheckpoint(
            out_dir / "model.keras", monitor="val_dice", mode="max", save_best_only=True,
            initial_value_threshold=float(best.max()) if best is not None and best.size else None,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience, min_lr=1e-5
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_dice", mode="max", patience=config.early_stopping_patience
        ),
        keras.callbacks.CSVLogger(history_path, append=True),
        keras.callbacks.TensorBoard(out_dir / "logs", write_graph=False),
        # Last, so an epoch is only marked done once everything above has run for it.
        keras.callbacks.BackupAndRestore(out_dir / "backup", double_checkpoint=True),
    ]
    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
              shuffle=False, verbose=verbose)  # the dataset shuffles itself, reproducibly
    seconds = time.perf_counter() - start
    if nan_guard.fired:
        raise NaNLossError(
            "Training stopped: the loss became NaN or infinite. Lower the learning rate "
            "(e.g. `learning_rate` / 10 in the config) or check the data for broken images; "
            f"the best model so far is in {out_dir / 'model.keras'}."
        )
    history = read_history(history_path)
    plot.save_figure(plot.training_curves(history), out_dir / "curves.png")
    return {
        "model": out_dir / "model.keras",
        "history": history,
        "epochs": len(history.get("epoch", [])),
        "seconds": seconds,
        "precision": policy,
        "resumed": resumed,
    }
