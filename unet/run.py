"""Run folders: the documented :class:`Config`, its ``config.json``, resuming, loading.

A run directory holds everything a training run produced::

    RUN/model.keras    the best model (highest validation Dice)
    RUN/config.json    the Config it was trained with (with its schema version)
    RUN/history.csv    one row per epoch (loss and metrics, train and validation, seconds)
    RUN/curves.png     loss and Dice curves, train vs validation
    RUN/logs/          TensorBoard logs
    RUN/backup/        only while a run is unfinished: the state it resumes from

No Keras at import (the command line reads the defaults without starting TensorFlow).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError, check_choice
from .io import write_text
from .sizes import PADDINGS, SKIPS, input_size_for_output, output_size

#: Version of the ``config.json`` layout. A file without ``schema_version`` is version 1;
#: :meth:`Config.from_dict` upgrades older versions and refuses newer ones.
SCHEMA_VERSION = 1
#: Upgrades of a config dict from version ``v`` to ``v + 1``: ``{v: function}``.
_UPGRADES = {}

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
        :class:`unet.augment.Augmentation`).
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
        from .losses import LOSSES

        check_choice("padding", self.padding, PADDINGS)
        check_choice("skip", self.skip, SKIPS)
        check_choice("loss", self.loss, LOSSES)
        for name in ("channels", "num_classes", "filters", "depth", "crop_size", "epochs",
                     "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"`{name}` must be a positive integer, got {value!r}.")
        if not 0 < self.threshold < 1:
            raise UsageError(f"`threshold` must be between 0 and 1, got {self.threshold!r}.")
        if not self.learning_rate > 0:
            raise UsageError(f"`learning_rate` must be positive, got {self.learning_rate!r}.")

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
        """The settings as a dict (what :meth:`save` writes, beside ``schema_version``)."""
        return dataclasses.asdict(self)

    def architecture(self):
        """What :func:`unet.model.attach_architecture` checks a loaded model against."""
        return {k: getattr(self, k) for k in ("depth", "padding", "skip", "channels",
                                               "num_classes")}

    @classmethod
    def from_dict(cls, values):
        """Build a Config from a dict (``config.json``), upgrading older schema versions.

        Unknown keys are refused with the list of known ones.
        """
        values = dict(values)
        version = values.pop("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UsageError(f"`schema_version` must be a positive integer, got {version!r}.")
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"This config has schema version {version}, newer than this unet "
                f"(version {SCHEMA_VERSION}); upgrade the package to read it."
            )
        for v in range(version, SCHEMA_VERSION):
            values = _UPGRADES[v](values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(
                f"Unknown config key(s) {unknown}; known keys are {sorted(known)}."
            )
        return cls(**values)

    def save(self, path):
        """Write the config as JSON (atomically)."""
        values = {"schema_version": SCHEMA_VERSION, **self.to_dict()}
        write_text(path, json.dumps(values, indent=2) + "\n")

    @classmethod
    def load(cls, path):
        """Read a config written by :meth:`save` (or by hand)."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"Config file {path} does not exist.") from None
        except json.JSONDecodeError as error:
            raise UsageError(f"Config file {path} is not valid JSON ({error}).") from None
        if not isinstance(values, dict):
            raise UsageError(f"Config file {path} must hold a JSON object of settings.")
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
        from .model import unet_model

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


RUN_FILES = ("model.keras", "config.json", "history.csv", "curves.png")


def prepare_run_dir(out_dir, config, overwrite):
    """Create RUN, or resume an unfinished run there; never silently overwrite."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"`out_dir` {out_dir} is a file; give a directory for the run.")
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
                raise UsageError(
                    f"{out_dir} holds an unfinished run with a different config; resume it "
                    "with the same settings, or pass `overwrite=True` to start again."
                )
            return out_dir, True
        else:
            raise FileExistsError(
                f"{out_dir} already holds files; choose another `out_dir` or pass `overwrite=True`."
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


def load_run(path):
    """Load a trained model and its config.

    The model's geometry (depth, padding, skip, channels, classes) is then read from
    the config, after checking that the model computes what the config says
    (:func:`unet.model.attach_architecture`).

    Parameters
    ----------
    path : path
        A run directory (holding ``model.keras`` and ``config.json``) or a ``.keras``
        file (its ``config.json`` neighbour is read when present).

    Returns
    -------
    (keras.Model, Config or None)

    Raises
    ------
    FileNotFoundError
        If there is no model file.
    UsageError
        If the file is not a complete ``.keras`` archive, Keras cannot rebuild the
        model from it, or the model does not match its config.
    """
    import keras

    from .model import attach_architecture

    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.exists():
        where = f"{path} holds no model.keras" if path.is_dir() else f"{path} does not exist"
        raise FileNotFoundError(f"{where}; give a run directory or a .keras file.")
    if model_path.suffix != ".keras":
        raise UsageError(f"{model_path} is not a .keras model file.")
    if not zipfile.is_zipfile(model_path):
        raise UsageError(
            f"Cannot load the model {model_path}: the file exists but is not a complete "
            f".keras archive ({model_path.stat().st_size} bytes; empty, truncated or "
            "corrupt). Train again or restore it from a copy."
        )
    try:
        model = keras.models.load_model(model_path)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        # what Keras raises for archives it cannot rebuild (unknown classes, bad config)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"Cannot load the model {model_path}: {first}") from None
    config_path = model_path.parent / "config.json"
    config = Config.load(config_path) if config_path.exists() else None
    if config is not None:
        attach_architecture(model, config.architecture())
    return model, config
