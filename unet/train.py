"""Training: :func:`train` fits a U-Net of a :class:`unet.run.Config` and writes a run folder.

See :mod:`unet.run` for what the run folder holds and how a run resumes, and
:mod:`unet.devices` for the precision and distribution choices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import secrets
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from . import data, losses, metrics, plot
from ._tf import quiet_retracing
from .augment import Augmentation
from .calibrate import FEW_OBJECTS, calibrate_postprocessing, true_objects
from .devices import (PRECISIONS, STRATEGIES, make_strategy,  # noqa: F401
                      multiworker_role, resolve_precision)
from .errors import NaNLossError, UsageError
from .io import (LOCK_NAME, atomic_path, check_data_dir, folder_lock, is_temporary_name, listing,
                 read_counts)
from .predict import predict_many, predict_tiled
from .run import (Config, choose_steps, load_run, prepare_run_dir,  # noqa: F401  (public here too)
                  read_history, resolve_model_path)


class _EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` (wall-clock time of the epoch's training steps; the validation
    after them is timed as ``val_seconds``) and ``step`` (optimiser steps done) to the
    logs."""

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start
            logs["step"] = (epoch + 1) * self.steps_per_epoch


class TimeLimit(keras.callbacks.Callback):
    """Ends training before ``minutes`` of training and validation have passed.

    At the end of each epoch (after its validation) the time spent so far, the
    ``seconds`` and ``val_seconds`` of this and earlier epochs (``spent``: those of a
    resumed run's earlier sessions, from its history.csv), plus what the next epoch
    will take (this epoch's training seconds and the mean validation seconds so far),
    is compared with the limit; where the next epoch would pass it, training stops
    after this one. The best validation network is kept as when early stopping ends a
    run. ``stopped_step`` is the step it stopped at, the ``step`` that
    :class:`_EpochTimer` (before it) logged (None while it has not stopped).
    """

    def __init__(self, minutes, spent=0.0):
        super().__init__()
        self.limit = 60.0 * float(minutes)
        self.spent = float(spent)
        self.stopped_step = None
        self._validations = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train_seconds = float(logs.get("seconds", 0.0))
        self._validations.append(float(logs.get("val_seconds", 0.0)))
        self.spent += train_seconds + self._validations[-1]
        upcoming = train_seconds + sum(self._validations) / len(self._validations)
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 2)
        if not last and self.spent + upcoming > self.limit:
            self.stopped_step = int(logs["step"])
            self.model.stop_training = True


def validation_interval(validation_pixels, epoch_pixels, max_share, max_interval=None):
    """Epochs between validations that keep their cost within ``max_share`` of training.

    A validation pixel (predicted whole, overlap-tiles included) and a pixel of a
    training tile (forward and backward) cost about the same here: 0.47 microseconds
    each, 60 fields of 1024^2 against 100 steps of eight 188^2 tiles on 2 CPU cores. So
    the interval is the smallest ``k >= 1`` with ``validation_pixels <= max_share * k *
    epoch_pixels``, at most ``max_interval``. It depends on the data and the config
    alone, never on timings, so a run is the same on any machine.

    Parameters
    ----------
    validation_pixels : int
        Pixels of all validation images.
    epoch_pixels : int
        Input-tile pixels of one epoch's training (``steps_per_epoch * batch_size *
        tile**2``).
    max_share : float or None
        None: every epoch.
    max_interval : int, optional
        Upper bound (``train`` passes the shorter patience of the learning-rate schedule
        and early stopping).
    """
    if max_share is None or not epoch_pixels > 0:
        return 1
    interval = max(1, math.ceil(validation_pixels / (max_share * epoch_pixels) - 1e-9))
    return interval if max_interval is None else max(1, min(interval, int(max_interval)))


class WholeImageValidation(keras.callbacks.Callback):
    """Validation on whole images at their own size, as ``evaluate`` scores them.

    At the end of an epoch each validation image is predicted by overlap-tiles
    (:func:`unet.predict.predict_many`, exact for the default crop-skip model) and the
    pixel counts are pooled over all of them: ``val_dice``, ``val_iou``,
    ``val_precision``, ``val_recall``, ``val_loss`` (the loss over all pixels of all
    validation images) and ``val_seconds`` (the time it took) go into the logs, for the
    checkpoint, early stopping, the learning-rate schedule and history.csv.

    With ``interval`` k > 1 (:func:`validation_interval`: a large validation split
    would otherwise take longer than the training) it validates only the epochs whose
    number is a multiple of k (0, k, 2k, ...), the last, and the first epoch after a
    resumption (there are no scores to carry yet), so a resumed run keeps the schedule
    of an uninterrupted one. Epochs in between carry the last validation's scores with
    ``val_seconds`` 0, so early stopping and the learning-rate schedule keep counting
    steps without a better validation Dice (k is at most the shorter of their
    patiences, so neither acts before a validation has shown no gain), and the
    checkpoint saves only validated weights.
    """

    def __init__(self, samples, loss, threshold=0.5, batch_size=8, local=False, interval=1):
        super().__init__()
        self.samples, self.loss, self.threshold = samples, loss, float(threshold)
        self.batch_size = int(batch_size)
        self.truth = [np.asarray(m) > 0 for m in samples.masks]
        self.local = bool(local)  # a multi-worker run: see _LocalPredictions
        self.interval = max(1, int(interval))  # validate every this many epochs
        self._predictor = None
        self._last = None  # the logs of the last validation

    def _due(self, epoch):
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        return self._last is None or last or epoch % self.interval == 0

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            if logs is not None:
                logs.update(self._last, val_seconds=0.0)
            return
        start = time.perf_counter()
        if self._predictor is None:
            self._predictor = _LocalPredictions(self.model) if self.local else self.model
        probs = predict_many(self._predictor, self.samples.images, self.batch_size)
        counts = np.zeros(4, np.int64)
        for prob, truth in zip(probs, self.truth):
            counts += metrics.confusion_counts(truth, prob > self.threshold)
        scores = {f"val_{key}": value
                  for key, value in metrics.scores_from_counts(*counts).items()}
        flat_true = np.concatenate([t.ravel() for t in self.truth]).astype(np.float32)
        flat_prob = np.concatenate([p.ravel() for p in probs])
        shape = (1, flat_true.size, 1, 1)
        scores["val_loss"] = float(self.loss.call(flat_true.reshape(shape),
                                                  flat_prob.reshape(shape)))
        self._last = scores
        if logs is not None:
            logs.update(scores, val_seconds=time.perf_counter() - start)


class _LocalPredictions:
    """A model whose ``predict_on_batch`` computes on this process alone.

    Under ``MultiWorkerMirroredStrategy`` Keras' ``predict_on_batch`` gathers the
    outputs of every worker (each worker's batch is one shard of a global batch), so a
    batch that every worker predicts in full comes back once per worker. Every worker
    validates on all validation images with the same weights, so each computes the
    whole map itself; everything else (the geometry the predictor reads) is the model's.
    """

    def __init__(self, model):
        import tensorflow as tf

        self._model = model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_on_batch(self, x):
        return np.asarray(self._call(np.ascontiguousarray(x)))


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


@contextlib.contextmanager
def _run_folder(out_dir, role, overwrite):
    """The folder this process writes its run files to, held while it trains.

    A single process, or the chief of a multi-worker run, owns ``out_dir`` and holds its
    lock (:func:`unet.io.folder_lock`). Every other worker of a multi-worker run writes
    what Keras writes (checkpoints, history, logs) to a private temporary folder that
    is removed at the end (TensorFlow's pattern for ``MultiWorkerMirroredStrategy``) and
    never takes ``out_dir``'s lock. When the chief's folder holds an unfinished run
    (``out_dir/backup``, readable where the workers share a file system) a worker starts
    from a copy of it, so that all of them resume from the same epoch and weights.
    """
    if role is None or role.is_chief:
        with folder_lock(out_dir, "out_dir"):
            yield Path(out_dir)
        return
    private = Path(tempfile.mkdtemp(prefix=f"unet-{role.task_type}{role.task_id}-"))
    try:
        chief = Path(out_dir)
        if not overwrite and (chief / "backup").is_dir():
            shutil.copytree(chief / "backup", private / "backup")
            if (chief / "config.json").is_file():
                shutil.copy2(chief / "config.json", private / "config.json")
        yield private
    finally:
        shutil.rmtree(private, ignore_errors=True)


#: In ``RUN/backup/``: training ended (all epochs, or early stopping); what is left is
#: the curves and the calibration, redone by a rerun after a kill.
FINISHED = "FINISHED"
#: ``RUN/backup`` is renamed to this before it is deleted (a kill leaves no half backup).
_REMOVED_BACKUP = ".backup-removed"


def _is_temporary(name):
    """A file an atomic write left behind when it was killed (see :func:`unet.io.atomic_path`)."""
    return is_temporary_name(name) or name == _REMOVED_BACKUP


def _same_run(saved, config):
    """Whether ``saved`` is ``config`` but for the post-processing the calibration chose."""
    return saved is not None and dataclasses.replace(
        saved, threshold=config.threshold, split_h=config.split_h, min_area=config.min_area,
        calibration=config.calibration) == config


def _saved(out_dir):
    try:
        return Config.load(Path(out_dir) / "config.json", run=True)
    except (UsageError, OSError):
        return None


def _tidy_after_a_kill(out_dir, config):
    """Make a run folder that a kill left behind one that :func:`prepare_run_dir` takes.

    Called with the folder's lock held, so no other process writes there: temporary
    files of atomic writes cut short are removed. A run killed at the end of its first
    epoch, after the checkpoint or the history row but before the backup that marks
    the epoch done (same config, no ``backup/``, no ``curves.png``, at most one row),
    loses those files so that it starts again from step 0, like a run killed earlier.
    """
    out = Path(out_dir)
    if not out.is_dir():
        return
    names = {p.name for p in out.iterdir()} - {LOCK_NAME}
    for name in {n for n in names if _is_temporary(n)}:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        names.discard(name)
    if ("backup" in names or "curves.png" in names or "config.json" not in names
            or not names <= {"config.json", "logs", "history.csv", "model.keras"}
            or len(read_history(out / "history.csv").get("epoch", [])) > 1
            or _saved(out) != config):
        return
    (out / "model.keras").unlink(missing_ok=True)
    (out / "history.csv").unlink(missing_ok=True)
    shutil.rmtree(out / "logs", ignore_errors=True)


def _remove_backup(out_dir):
    """Delete RUN/backup: renamed first, so that a kill never leaves half of one."""
    backup, removed = Path(out_dir) / "backup", Path(out_dir) / _REMOVED_BACKUP
    if backup.is_dir():
        shutil.rmtree(removed, ignore_errors=True)
        backup.rename(removed)
    shutil.rmtree(removed, ignore_errors=True)


def _work_around_keras_multiworker(model, dist, dataset):
    """Let ``model.fit`` run under ``MultiWorkerMirroredStrategy`` with several workers.

    Keras 3's TensorFlow trainer (3.15) fails there twice, and both are mended on this
    model alone:

    - Before training it builds the model from the first batch, averaged over the
      replicas with one ``strategy.reduce`` of the whole ``(x, y, weights)`` structure,
      which fails ("Attempt to convert a value (PerReplica ...)"; keras-team/keras#20329
      is the same bug for dict inputs). The build needs only shapes and dtypes: it is
      done from the dataset's element spec instead.
    - It averages each step's logs over the workers with ``strategy.reduce("MEAN", v,
      axis=0)``, which fails for the scalar loss and metrics ("Invalid reduction
      dimension 0 for input with 0 dimensions"). The train step returns them as
      vectors of one value, whose mean over axis 0 is the same scalar.
    """
    import tensorflow as tf

    spec = dataset.element_spec

    def build(iterator=None, data_batch=None):
        with dist.scope():
            model._symbolic_build(data_batch=spec)

    train_step = model.train_step

    def train_step_with_vector_logs(data):
        logs = train_step(data)
        return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v
                for k, v in logs.items()}

    model._maybe_symbolic_build = build
    model.train_step = train_step_with_vector_logs


def _lost_worker(error, role, out_dir):
    """The error a multi-worker run ends with when another worker is gone."""
    text = re.sub(r"\{\{[^}]*\}\}", "", str(getattr(error, "message", error))).strip()
    first = text.splitlines()[0][:200] if text else ""
    return ConnectionError(
        f"multi-worker training stopped: {role.name} of {role.workers} lost contact with the "
        f"other workers ({error.__class__.__name__}: {first}). The "
        f"last finished epoch is saved in {Path(out_dir) / 'backup'}: start every worker again "
        "with the same command to resume, or resume on one machine with `strategy='default'`.")


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
        Distribution strategy (see :func:`make_strategy`). With ``"multiworker"`` start
        the same call in every process of the ``TF_CONFIG`` cluster: the chief (task
        ``chief``, else ``worker`` 0) writes ``out_dir``; the others write to private
        temporary folders, removed at the end, and return the same history. A lost
        worker ends the others with a ``ConnectionError`` after
        ``UNET_COLLECTIVE_TIMEOUT`` seconds at most (see :func:`unet.devices.make_strategy`);
        the run then resumes from ``out_dir``.
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
        ``precision`` (policy), ``resumed``, ``time_limited`` (``Config.max_minutes``
        ended the run before its steps), ``config`` (as saved: the chosen
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
                                 limit=config.train_limit,
                                 flatten=None if config.flatten == "auto" else config.flatten)
    if config.flatten == "auto":  # the window from the objects, then the images flattened
        config = dataclasses.replace(config, flatten=data.choose_flatten(train_set))
        if config.flatten:
            train_set = data.load_folder(data_dir / "train", channels=config.channels,
                                         limit=config.train_limit, flatten=config.flatten)
    elif config.flatten and not data.objects_are_darker(train_set):
        raise UsageError(
            "`flatten` divides out a brightfield background, which the objects are darker "
            "than; the training objects are brighter than their background (fluorescence "
            "or dark field?): leave `flatten` at \"auto\", which switches it off here, or "
            "set it off.")
    val_set = data.load_folder(data_dir / "val", channels=config.channels,
                               limit=config.val_limit, flatten=config.flatten)
    if config.crop_size is None:
        config = dataclasses.replace(
            config, crop_size=data.choose_crop_size(train_set, config.depth, config.padding))
    if config.min_area is None:
        config = dataclasses.replace(config, min_area=data.choose_min_area(train_set))
    if config.steps == "auto":
        config = dataclasses.replace(config, steps=choose_steps(
            config.tile_size, config.batch_size, config.steps_per_epoch))
    config = config.resolved_augmentation()
    role = multiworker_role() if strategy == "multiworker" else None
    chief_dir = Path(out_dir)
    # one process per run folder: the chief's (or the only) process owns it
    with _run_folder(out_dir, role, overwrite) as run_dir:
        finishing = False  # training ended before a kill; the curves and calibration are left
        if not overwrite:
            _tidy_after_a_kill(run_dir, config)
            finishing = (run_dir / "backup" / FINISHED).exists()
        if finishing:
            if not _same_run(_saved(run_dir), config):
                raise UsageError(
                    f"{run_dir} holds an unfinished run with a different config; resume it "
                    "with the same settings, or pass `overwrite=True` to start again.")
            out_dir, resumed = run_dir, True
        else:
            out_dir, resumed = prepare_run_dir(run_dir, config, overwrite)
        policy = resolve_precision(precision)
        dist = make_strategy(strategy)

        weights = "border" if config.loss == "weighted_bce" else "uniform"
        train_ds = data.make_dataset(
            train_set, config.tile_size, config.output_tile_size, batch_size=config.batch_size,
            augment=Augmentation.from_overrides(config.augmentation) if config.augment else None,
            shuffle=True, seed=config.seed,
            repeat=True, weights=weights, w0=config.border_w0, sigma=config.border_sigma,
            foreground_fraction=config.foreground_fraction,
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
        earlier = read_history(history_path)  # a resumed run's earlier epochs
        best = earlier.get("val_dice")
        if not zipfile.is_zipfile(out_dir / "model.keras"):
            best = None  # no complete model yet (or one cut short by an older version): save the next
        nan_guard = _StopOnNaN()
        # the workers of a multi-worker run would each time themselves and could stop
        # at different epochs: they train the whole budget
        time_limit = TimeLimit(config.max_minutes,
                               spent=sum(float(np.sum(earlier.get(k, 0.0)))
                                         for k in ("seconds", "val_seconds"))) \
            if config.max_minutes and role is None else None
        callbacks = [
            # first: it times the training steps alone; then validation, whose scores
            # the others read
            _EpochTimer(config.steps_per_epoch),
            WholeImageValidation(val_set, losses.get_loss(config.loss), config.threshold,
                                 config.batch_size, local=role is not None,
                                 interval=validation_interval(
                                     sum(_pixels(val_set.images)),
                                     config.steps_per_epoch * config.batch_size
                                     * config.tile_size**2,
                                     config.validation_share,
                                     min(config.patience(config.reduce_lr_steps),
                                         config.patience(config.early_stopping_steps)))),
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
            *([time_limit] if time_limit else []),
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(out_dir / "logs", write_graph=False),
            # Last, so an epoch is only marked done once everything above has run for it.
            # Kept until the curves and the calibration are written (then removed here).
            keras.callbacks.BackupAndRestore(out_dir / "backup", double_checkpoint=True,
                                             delete_checkpoint=False),
        ]
        if role is not None:
            _work_around_keras_multiworker(model, dist, train_ds)
        start = time.perf_counter()
        try:
            if not finishing:  # (shuffle=False: the stream shuffles itself)
                model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                          callbacks=callbacks, shuffle=False, verbose=verbose)
        except Exception as error:
            import tensorflow as tf

            if role is not None and isinstance(error, tf.errors.OpError):
                raise _lost_worker(error, role, chief_dir) from None
            raise
        seconds = time.perf_counter() - start
        if nan_guard.fired:
            _remove_backup(out_dir)  # it holds the weights that gave NaN
            raise NaNLossError(
                "Training stopped: the loss became NaN or infinite. Lower the learning rate "
                "(e.g. `learning_rate` / 10 in the config) or check the data for broken images; "
                f"the best model so far is in {chief_dir / 'model.keras'}."
            )
        (out_dir / "backup").mkdir(exist_ok=True)
        (out_dir / "backup" / FINISHED).touch()
        history = read_history(history_path)
        if role is not None and not role.is_chief:
            note = f"{role.name} of {role.workers}: the chief writes {chief_dir}"
        else:
            plot.save_figure(plot.training_curves(history), out_dir / "curves.png")
            config, note = _calibrate(config, out_dir, val_set, data_dir / "val",
                                      train_set, data_dir / "train")
        _remove_backup(out_dir)  # the run is complete
        return {
            "model": chief_dir / "model.keras",
            "history": history,
            "epochs": len(history.get("epoch", [])),
            "steps": int(history["step"][-1]) if "step" in history else 0,
            "seconds": seconds,
            "precision": policy,
            "resumed": resumed,
            "time_limited": bool(time_limit and time_limit.stopped_step),
            "config": config,
            "calibration": config.calibration,
            "calibration_note": note,
        }


#: The calibration scores its grid on at most this many validation pixels: scoring
#: every setting labels and matches each image some 200 times, which on 60 fields of
#: 1024^2 took longer than the training itself.
CALIBRATION_PIXELS = 8_000_000


def calibration_subset(sizes, budget=CALIBRATION_PIXELS, seed=0, at_least_one=True):
    """Which validation images the calibration scores: all while they fit ``budget``.

    Parameters
    ----------
    sizes : sequence of int
        Pixels of each validation image.
    budget : int
        Most pixels to score.
    seed : int
        Seed of the random order in which images are taken once they do not all fit.
    at_least_one : bool
        Take one image even where none fits.

    Returns
    -------
    list of int
        Sorted indices: every image when their pixels fit, else images in a random
        (seeded) order for as long as they fit, and at least one if ``at_least_one``.
    """
    sizes = [int(s) for s in sizes]
    if sum(sizes) <= budget:
        return list(range(len(sizes)))
    chosen, total = [], 0
    for i in np.random.default_rng(seed).permutation(len(sizes)):
        if (chosen or not at_least_one) and total + sizes[i] > budget:
            continue
        chosen.append(int(i))
        total += sizes[i]
    return sorted(chosen)


def _calibration_counts(samples, folder, what):
    """The truth a calibration on ``samples`` (read from ``folder``) scores against.

    Returns ``(counts, None)``: None where the samples hold instance labels, else the
    counts of ``folder/counts.csv``; or ``(None, reason)`` where there is neither
    (``what`` names the samples: "the validation split").
    """
    if samples.labels is not None:
        return None, None
    found = read_counts(folder)
    if found and all(name in found for name in samples.names):
        return [found[name] for name in samples.names], None
    if found:
        missing = [name for name in samples.names if name not in found]
        return None, f"counts.csv of {what} has no count for {listing(missing)}"
    return None, f"{what} has no instance labels or counts"


def _pixels(images):
    """Pixels of each image (its height times its width)."""
    return [image.shape[0] * image.shape[1] for image in images]


def _with_training_images(val_set, counts, train_set, train_dir, seed=0):
    """The validation samples, joined by training images where they hold few objects.

    Where the validation truth holds fewer than :data:`unet.calibrate.FEW_OBJECTS`
    objects, the training images that carry the same kind of truth (labels, or counts in
    ``train_dir/counts.csv``) are added after the validation images, in a seeded random
    order, as far as the pixels the calibration scores (:data:`CALIBRATION_PIXELS`) leave
    room. The network has learnt those images, so its maps of them are cleaner than of new
    ones (the calibration then tries no smallest object below the run's own); on five runs
    of the three real sets with fewer than 50 validation objects (DSB2018, HeLa tiles,
    E. coli) the choice made with them matched as many test objects as the validation
    images' alone or more (``benchmarks/README.md``).

    Returns
    -------
    (Samples, list or None, int)
        The samples to calibrate on, their counts (None where they hold labels) and how
        many training images were added (0: ``val_set`` and ``counts`` as given).
    """
    if train_set is None or true_objects(val_set.labels, counts) >= FEW_OBJECTS:
        return val_set, counts, 0
    train_counts, reason = _calibration_counts(train_set, train_dir, "the training split")
    if reason or (train_counts is None) != (counts is None):  # not the same kind of truth
        return val_set, counts, 0
    room = CALIBRATION_PIXELS - sum(_pixels(val_set.images))
    chosen = calibration_subset(_pixels(train_set.images), budget=room, seed=seed,
                                at_least_one=False)
    if not chosen:
        return val_set, counts, 0

    def join(a, b):
        return None if a is None else list(a) + [b[i] for i in chosen]

    joined = data.Samples(names=join(val_set.names, train_set.names),
                          images=join(val_set.images, train_set.images),
                          masks=join(val_set.masks, train_set.masks),
                          labels=join(val_set.labels, train_set.labels))
    return joined, join(counts, train_counts), len(chosen)


def _choose_postprocessing(model, config, samples, counts, default_min_area,
                           source="validation images", min_area_floor=None):
    """Predict ``samples`` as the run predicts and choose its post-processing on their
    labels, else ``counts`` (:func:`unet.calibrate.calibrate_postprocessing`'s dict;
    ``source`` says what the images are)."""
    chosen = calibration_subset(_pixels(samples.images), seed=config.seed)
    pick = (lambda values: None if values is None else [values[i] for i in chosen])
    if config.tta:  # the maps predict and evaluate of this run will threshold and split
        with quiet_retracing():
            probs = [predict_tiled(model, image, tta=True) for image in pick(samples.images)]
    else:
        probs = predict_many(model, pick(samples.images))
    result = calibrate_postprocessing(probs, labels=pick(samples.labels), counts=pick(counts),
                                      masks=pick(samples.masks), default_min_area=default_min_area,
                                      source=source, min_area_floor=min_area_floor)
    if len(chosen) < len(samples.images):
        result["objective"] += (f" (a random {len(chosen)} of {len(samples.images)}: at most "
                                f"{CALIBRATION_PIXELS / 1e6:g} megapixels)")
    return result


def _calibrated(config, result):
    """``config`` with the post-processing ``result`` chose, and a line saying what it chose."""
    config = dataclasses.replace(config, threshold=result["threshold"],
                                 split_h=result["split_h"], min_area=result["min_area"],
                                 calibration=result)
    better = "higher" if "F1" in result["objective"] else "lower"
    few = result.get("objects", FEW_OBJECTS) < FEW_OBJECTS
    return config, (
        f"calibrated on {result['objective']}{', predicted with tta' if config.tta else ''} "
        f"({better} is better): threshold "
        f"{result['threshold']}, split_h {result['split_h']}, min_area {result['min_area']} "
        f"give {result['score']:.4f} (defaults: {result['default_score']:.4f})"
        + (f"; only {result['objects']} objects to choose on, too few for a reliable choice: "
           "annotate more (data/README.md)" if few else "")
    )


def _calibrate(config, out_dir, val_set, val_dir, train_set=None, train_dir=None):
    """Choose the post-processing on the validation split (joined by training images
    where it holds few objects: :func:`_with_training_images`); save it in config.json.

    Returns the (updated) config and a one-line note of what happened.
    """
    kept = (f"threshold {config.threshold}, split_h {config.split_h}, "
            f"min_area {config.min_area}")
    if not config.calibrate:
        return config, f"post-processing as configured: {kept}"
    counts, reason = _calibration_counts(val_set, val_dir, "the validation split")
    if reason:
        return config, f"calibration skipped: {reason}; kept {kept}"
    samples, joined_counts, added = _with_training_images(val_set, counts, train_set,
                                                          train_dir, seed=config.seed)
    source = "validation images" if not added else (
        f"images ({len(val_set)} validation, {added} training: the validation split holds "
        f"only {true_objects(val_set.labels, counts)} objects)")
    model, _ = load_run(out_dir)
    # learnt images show none of the fragments of new ones: no smaller min_area from them
    result = _choose_postprocessing(model, config, samples, joined_counts, config.min_area,
                                    source, min_area_floor=config.min_area if added else None)
    result["training_images"] = added
    config, note = _calibrated(config, result)
    config.save(out_dir / "config.json")
    return config, note


def calibrate_run(run, data_dir, out_dir):
    """Choose a trained run's post-processing on annotated images; save it as a new run.

    The run's network predicts every image of ``data_dir`` as the run predicts (its
    background window, its test-time augmentation) and the threshold, split height and
    smallest object are chosen on their truth exactly as :func:`train` chooses them on
    its validation split (which it joins by training images where it holds few objects;
    the images given here are all new to the network, so no smallest object of the grid
    is left out): object F1 at IoU 0.5 against ``labels/`` (or masks that hold
    instance ids), else the count error against ``counts.csv``; the defaults (threshold
    0.5, the relative split height, a tenth of the median area of these images' objects)
    are kept where they score as well. Calibrate on images like those the run will
    count: for the other renderer's whole fields, two annotated fields chose better than
    40 validation crops in two runs of three, and about as well in the third
    (``benchmarks/README.md``).

    Parameters
    ----------
    run : path or str
        A run directory written by :func:`train`, or the name of a shipped model
        (``"spores"``).
    data_dir : path
        A data folder (``images/``, ``masks/``, and ``labels/``, instance-id masks or
        ``counts.csv``).
    out_dir : path
        A new folder (absent or empty): the run's ``model.keras`` (and its
        ``history.csv`` and ``curves.png``) copied, with a ``config.json`` holding the
        new post-processing. The run itself is left as it is.

    Returns
    -------
    dict
        ``out_dir``, ``config`` (the new run's :class:`unet.run.Config`),
        ``calibration`` (what was chosen and compared) and ``note`` (one line saying it).

    Raises
    ------
    UsageError
        Where ``run`` has no ``config.json``, ``data_dir`` holds no instance truth or
        counts, or ``out_dir`` is the run's own folder.
    FileExistsError
        Where ``out_dir`` already holds files.
    """
    source = resolve_model_path(run)
    out_dir = Path(out_dir)
    model, config = load_run(source)
    if config is None:
        raise UsageError(f"{source} has no config.json beside its model; calibrate needs a run "
                         "folder written by `train` or a shipped model.")
    source_dir = source if source.is_dir() else source.parent
    if out_dir.exists() and out_dir.resolve() == source_dir.resolve():
        raise UsageError(f"`out_dir` {out_dir} is the run itself; give a new folder (the run "
                         "is kept as it is).")
    _check_new_folder(out_dir)
    samples = data.load_folder(data_dir, channels=config.channels, flatten=config.flatten)
    counts, reason = _calibration_counts(samples, data_dir, str(data_dir))
    if reason:
        raise UsageError(f"Cannot calibrate: {reason}. Give a data folder with labels/ (one id "
                         "per object), masks holding instance ids, or counts.csv.")
    result = _choose_postprocessing(model, config, samples, counts, data.choose_min_area(samples))
    result["data"] = str(Path(data_dir).resolve())
    config, note = _calibrated(config, result)
    _check_new_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # written whole beside it, then renamed into place: never a half-written run
    staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        shutil.copyfile(source / "model.keras" if source.is_dir() else source,
                        staging / "model.keras")
        for name in ("history.csv", "curves.png"):  # what the network's training left
            if (source_dir / name).is_file():
                shutil.copyfile(source_dir / name, staging / name)
        config.save(staging / "config.json")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked); a file written there since stops it here
        os.rename(staging, out_dir)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} was written by another process meanwhile; "
                                  "choose another `out_dir`.") from None
        raise
    return {"out_dir": out_dir, "config": config, "calibration": result, "note": note}


def _check_new_folder(out_dir):
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"`out_dir` {out_dir} is a file; give a new folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already holds files; give a new or empty folder "
                              "for the calibrated run.")
