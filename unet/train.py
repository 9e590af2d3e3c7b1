"""Training: a documented configuration, precision and distribution choices, and `train()`.

A run directory holds everything a training run produced::

    RUN/model.keras    the best model (highest validation Dice)
    RUN/config.json    the Config it was trained with
    RUN/history.csv    one row per epoch (loss and metrics, train and validation, seconds)
    RUN/curves.png     loss and Dice curves, train vs validation
    RUN/logs/          TensorBoard logs
    RUN/backup/        only while a run is unfinished: the state it resumes from
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import losses as losses_module
from . import metrics as metrics_module
from .model import PADDINGS, SKIPS, input_size_for_output, output_size, unet_model

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclass
class Config:
    """Everything that defines a training run; saved as ``config.json`` beside the model.

    The defaults were chosen for the spore crops (≤100×100 px, spores 14–30 px long)
    on a 2-core CPU; see the README's performance section for the measurements.

    Model
    -----
    channels : int
        Input channels; images are converted to this (gray replicated, RGBA -> RGB).
    num_classes : int
        1 = foreground probability with a sigmoid head; ≥2 = softmax over classes.
    filters, depth, padding, skip, batch_norm, dropout
        Passed to :func:`unet.unet_model`. ``depth=3`` (not the paper's 4) is the
        default here: every output pixel still sees 44 pixels of context on each side,
        more than the largest spore (30 px), and a 100-pixel crop needs a 188 input
        tile instead of 284, so a training step costs 2.3x fewer FLOPs. Trained for the
        same 240 s on the spore data, 16 filters at depth 3 reached test Dice 0.988 and
        field count error 2.2 %, at depth 4 0.984 and 2.5 % (``benchmarks/README.md``,
        quality table). Use depth 4 for objects larger than about 40 pixels.
        ``skip="crop"`` (the paper's) is the default here, unlike ``unet_model``'s
        documented ``"resize"``: with valid padding a resized skip is stretched by a
        ratio that depends on the input size (0.71 at the deepest level of a 284 tile,
        0.94 for a 1212 tile, at depth 4), so a model trained on small tiles would
        compute a different function on the large tiles prediction uses; a cropped
        skip does not depend on the tile, so tiled prediction equals one pass over
        the whole image.
    crop_size : int
        Largest training crop (pixels). The training tile is the smallest valid input
        whose output covers it (188 -> 100 for valid padding at depth 3, 284 -> 100 at
        depth 4); crops are mirror-padded to that tile, never resized.

    Training
    --------
    epochs : int
        Maximum number of epochs (early stopping may end sooner).
    batch_size : int
        Tiles per step (global, summed over devices).
    learning_rate : float
        Initial Adam learning rate; ReduceLROnPlateau lowers it.
    loss : str
        "bce", "dice", "bce_dice" or "weighted_bce" (BCE with the paper's border
        weight map, w0 = ``border_w0``, sigma = ``border_sigma``).
    augment : bool
        Flips, rotations, elastic deformation and intensity changes (see
        :class:`unet.data.Augmentation`).
    early_stopping_patience, reduce_lr_patience : int
        Epochs without improvement of validation Dice / loss before stopping /
        halving the learning rate.
    threshold : float
        Probability above which a pixel is foreground (metrics, masks, counts).
    seed : int
        Seed for weights, shuffling and augmentation.
    train_limit, val_limit : int or None
        Use at most this many training / validation crops (None: all).
    """

    # model
    channels: int = 3
    num_classes: int = 1
    filters: int = 16
    depth: int = 3
    padding: str = "valid"
    skip: str = "crop"
    batch_norm: bool = False
    dropout: float = 0.0
    crop_size: int = 100
    # training
    epochs: int = 12
    batch_size: int = 8
    learning_rate: float = 1e-3
    loss: str = "bce_dice"
    border_w0: float = 10.0
    border_sigma: float = 5.0
    augment: bool = True
    early_stopping_patience: int = 8
    reduce_lr_patience: int = 3
    threshold: float = 0.5
    seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}.")
        if self.skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {self.skip!r}.")
        if self.loss not in losses_module.LOSSES:
            raise ValueError(
                f"loss must be one of {tuple(losses_module.LOSSES)}, got {self.loss!r}."
            )
        for name in ("channels", "num_classes", "filters", "depth", "crop_size", "epochs",
                     "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")

    # -- derived sizes -------------------------------------------------------------
    @property
    def tile_size(self):
        """Input tile used for training (pixels)."""
        return input_size_for_output(self.crop_size, self.depth, self.padding)

    @property
    def output_tile_size(self):
        """Output window of a training tile (pixels, ≥ crop_size)."""
        return output_size(self.tile_size, self.depth, self.padding)

    # -- (de)serialisation ---------------------------------------------------------
    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build a Config, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown config key(s) {unknown}; known keys are {sorted(known)}."
            )
        return cls(**values)

    def save(self, path):
        """Write the config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        """Read a config written by :meth:`save` (or by hand)."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"Config file {path} does not exist.") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"Config file {path} is not valid JSON ({error}).") from None
        if not isinstance(values, dict):
            raise ValueError(f"Config file {path} must hold a JSON object of settings.")
        return cls.from_dict(values)

    def quick(self):
        """A copy that trains for about a minute on a few crops (tests, demos, CI)."""
        return dataclasses.replace(
            self,
            epochs=min(self.epochs, 4),
            train_limit=min(self.train_limit or 64, 64),
            val_limit=min(self.val_limit or 16, 16),
        )

    def build_model(self):
        """The (untrained, uncompiled) fully convolutional model of this config."""
        return unet_model(
            (None, None, self.channels),
            num_classes=self.num_classes,
            filters=self.filters,
            depth=self.depth,
            padding=self.padding,
            skip=self.skip,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
        )


# --------------------------------------------------------------------------------------
# Precision and distribution
# --------------------------------------------------------------------------------------
def _cpu_has_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision="auto"):
    """Map a precision choice to a Keras dtype policy name.

    ``"auto"`` picks the fastest safe policy for the hardware: bfloat16 mixed
    precision on GPUs of compute capability ≥ 8.0 (A100, H100) and on CPUs with
    native bf16 instructions (AVX512_BF16 or AMX), float16 mixed precision on older
    GPUs (≥ 7.0, with loss scaling, which Keras adds), else float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return _POLICIES[precision]
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major = (details.get("compute_capability") or (0, 0))[0]
        return "mixed_bfloat16" if major >= 8 else "mixed_float16" if major >= 7 else "float32"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def make_strategy(strategy="auto"):
    """A ``tf.distribute`` strategy.

    ``"auto"``: a TPU if one is reachable, MirroredStrategy over all GPUs when there
    is more than one, else the default (single-device) strategy. ``"multiworker"``
    reads the cluster from the ``TF_CONFIG`` environment variable.
    """
    import tensorflow as tf

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError):
            if strategy == "tpu":
                raise ValueError("No TPU was found; use --strategy auto or default.") from None
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (one unless the CPU was split
        # with tf.config.set_logical_device_configuration, as the tests do).
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                "describing the cluster."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
RUN_FILES = ("model.keras", "config.json", "history.csv", "curves.png")


def _check_data_dir(data_dir):
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NotADirectoryError(f"Data directory {data_dir} does not exist.")
    missing = [s for s in ("train", "val") if not (data_dir / s).is_dir()]
    if missing:
        raise ValueError(
            f"Data directory {data_dir} has no {' or '.join(m + '/' for m in missing)} folder; "
            "it must hold "
            "train/ and val/, each with images/ and masks/ (see data/README.md)."
        )
    return data_dir


def _prepare_run_dir(out_dir, config, overwrite):
    """Create RUN, or resume an unfinished run there; never silently overwrite."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; give a directory for the run.")
    backup = out_dir / "backup"
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if overwrite:
            for name in (*RUN_FILES, "backup", "logs"):
                target = out_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif backup.is_dir():
            saved = out_dir / "config.json"
            if saved.exists() and Config.load(saved) != config:
                raise ValueError(
                    f"{out_dir} holds an unfinished run with a different config; resume it "
                    "with the same settings, or pass --overwrite to start again."
                )
            return out_dir, True
        else:
            raise FileExistsError(
                f"{out_dir} already holds files; choose another --out or pass --overwrite."
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"Cannot write to {out_dir} ({error.strerror}).") from None
    return out_dir, False


def read_history(path):
    """Rows of a history.csv as a dict of float arrays (a resumed epoch keeps its last row)."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open() as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
    if not rows:
        return {}
    keys = next(iter(rows.values())).keys()
    ordered = [rows[e] for e in sorted(rows)]
    return {k: np.array([float(r[k]) for r in ordered]) for k in keys}


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
    from . import data, plot

    if config is None:
        config = Config()
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    if quick:
        config = config.quick()
    data_dir = _check_data_dir(data_dir)
    out_dir, resumed = _prepare_run_dir(out_dir, config, overwrite)
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
        train_set, augment=data.Augmentation() if config.augment else None,
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
                loss=losses_module.get_loss(config.loss),
                weighted_metrics=metrics_module.segmentation_metrics(config.threshold),
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
        raise FloatingPointError(
            "Training stopped: the loss became NaN or infinite. Lower the learning rate "
            "(e.g. learning_rate / 10 in the config) or check the data for broken images; "
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


def load_run(path):
    """Load a trained model and its config.

    Parameters
    ----------
    path : path
        A run directory (holding ``model.keras`` and ``config.json``) or a ``.keras``
        file (its ``config.json`` neighbour is read when present).

    Returns
    -------
    (keras.Model, Config or None)
    """
    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.exists():
        where = f"{path} holds no model.keras" if path.is_dir() else f"{path} does not exist"
        raise FileNotFoundError(f"{where}; give a run directory or a .keras file.")
    if model_path.suffix != ".keras":
        raise ValueError(f"{model_path} is not a .keras model file.")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:  # a corrupt or foreign file: say so in one line
        raise ValueError(f"Cannot load the model {model_path}: {error}") from None
    config_path = model_path.parent / "config.json"
    config = Config.load(config_path) if config_path.exists() else None
    return model, config
