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
import math
import numbers
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import Augmentation
from .errors import UsageError, check_choice
from .image import BACKGROUND_WINDOWS
from .io import LOCK_NAME, write_text
from .sizes import PADDINGS, SKIPS, input_size_for_output, output_size

#: Version of the ``config.json`` layout. A file without ``schema_version`` is version 1;
#: :meth:`Config.from_dict` upgrades older versions and refuses newer ones.
SCHEMA_VERSION = 2


def _upgrade_1_to_2(values):
    """Version 1 counted training in epochs (passes over the data); version 2 in steps.

    An old epoch becomes 100 steps (the new ``steps_per_epoch``); the patience settings
    follow. The post-processing fields are new (their defaults apply).
    """
    values = dict(values)
    per_epoch = 100
    if "epochs" in values:
        values["steps"] = int(values.pop("epochs")) * per_epoch
    if "early_stopping_patience" in values:
        values["early_stopping_steps"] = int(values.pop("early_stopping_patience")) * per_epoch
    if "reduce_lr_patience" in values:
        values["reduce_lr_steps"] = int(values.pop("reduce_lr_patience")) * per_epoch
    return values


#: Upgrades of a config dict from version ``v`` to ``v + 1``: ``{v: function}``.
_UPGRADES = {1: _upgrade_1_to_2}

#: Settings whose default changed, with the value a run saved before they existed had:
#: a run's ``config.json`` holds every setting of its day, so one it lacks predates the
#: setting (``Config.load(path, run=True)``). A hand-written config file that leaves a
#: setting out gets today's default.
_BEFORE_ADDED = {"flatten": None}

#: The augmentation fields whose default changed, with their former values. Training
#: saves every field of the augmentation it used (:meth:`Config.resolved_augmentation`), so a
#: run's ``config.json`` with ``augmentation`` null, partial or absent predates the
#: change, and the fields it lacks take these values (``Config.load(path, run=True)``).
_AUGMENTATION_BEFORE = {"contrast": 0.2}

#: Bounds of the numeric settings: ``name: (lowest, highest)``, both included (None: open).
#: The upper bounds stop a typo from hanging or exhausting the machine before any work
#: starts (depth 24 made the tile search scan ~10^8 sizes; depth 12 runs out of memory).
LIMITS = {
    "channels": (1, 16),
    "num_classes": (1, 256),
    "filters": (1, 512),
    "depth": (1, 6),
    "crop_size": (1, 4096),
    "flatten": BACKGROUND_WINDOWS,
    "steps": (1, 10_000_000),
    "steps_per_epoch": (1, 1_000_000),
    "batch_size": (1, 1024),
    "early_stopping_steps": (1, None),
    "reduce_lr_steps": (1, None),
    "min_area": (1, None),
    "train_limit": (1, None),
    "val_limit": (1, None),
    "seed": (0, None),
}

_KIND_TEXT = {"int": "a whole number", "float": "a number", "bool": "true or false",
              "str": "a string", "dict": "an object"}

#: Settings that also take the string ``"auto"``: chosen from the data when training starts.
AUTO = {"flatten", "steps"}

#: The default training budget, ``Config(steps="auto")``, in input-tile pixels (steps x
#: batch x tile side squared): 3000 steps of eight 220 px tiles, the tile of the largest
#: window that ``crop_size=None`` chooses (132 px at depth 3). A step costs about its
#: pixels (on 2 cores, 100 steps of 188 px tiles took 14-15 s, of 220 px tiles 20-23 s:
#: 1.37 times the pixels), so a smaller window gets more steps for about the same time:
#: 4100 for the 100 px spore crops.
TRAINING_PIXELS = 3000 * 8 * 220 ** 2

#: Most steps the budget gives, however small the tile: the longest default-sized run
#: measured (6000 steps of the 100 px spore crops, benchmarks/README.md). Small tiles cost
#: less per pixel, not more (0.21 us per tile pixel at 124 px, 0.28 at 220 px, 0.31 at
#: 284 px: benchmarks/model_speed.py), so a capped run is also a short one.
MAX_AUTO_STEPS = 6000


def choose_steps(tile_size, batch_size, steps_per_epoch=100):
    """The training length of ``Config(steps="auto")`` for a training tile.

    :data:`TRAINING_PIXELS` divided by the pixels of a step (``batch_size`` tiles of
    ``tile_size`` squared), rounded to whole epochs of ``steps_per_epoch``, at least
    one epoch and at most :data:`MAX_AUTO_STEPS`: 3000 steps for 220 px tiles (132 px
    windows), 4100 for 188 px tiles (100 px windows), whatever the number of images.

    Returns
    -------
    int
    """
    steps = TRAINING_PIXELS / (batch_size * tile_size ** 2)
    epochs = max(1, round(steps / steps_per_epoch))
    return min(epochs * steps_per_epoch, max(MAX_AUTO_STEPS, steps_per_epoch))


def _describe(name, kind, optional):
    low = LIMITS.get(name, (None, None))[0]
    text = "a positive integer" if kind == "int" and low == 1 else _KIND_TEXT[kind]
    if name in AUTO:
        text += ', "auto"' if optional else ' or "auto"'
    return text + (" or null" if optional else "")


def _check_type(name, kind, optional, value):
    """``value`` as ``kind`` ("int", "float", "bool", "str" or "dict"), else UsageError.

    Strings are never numbers or booleans here: ``"false"`` is truthy in Python and
    ``"0.5"`` cannot be compared with a number, so a config must hold JSON numbers and
    ``true``/``false``. Whole floats pass as integers (``3000.0``); integers as floats.
    """
    if value is None and optional:
        return None
    ok = False
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "dict":
        ok = isinstance(value, dict)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        if kind == "float" and math.isfinite(float(value)):
            value, ok = float(value), True
        elif kind == "int" and math.isfinite(float(value)) and float(value).is_integer():
            value, ok = int(value), True
    if not ok:
        raise UsageError(f"`{name}` must be {_describe(name, kind, optional)}, got {value!r}.")
    return value


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
    crop_size : int or None
        Side of the output window of a training sample (pixels); the training tile is
        the smallest valid input whose output covers it (188 -> 100 for valid padding at
        depth 3). Images no larger than the window are used whole, mirror-padded with
        loss weight 0 (never resized); larger images are sampled as random windows with
        their real surroundings. ``None`` (default) chooses it from the data when
        training starts (:func:`unet.data.choose_crop_size`: room for the model's context
        and three of the largest objects, or the largest image where all images are
        small) and writes the choice into ``config.json``.
    foreground_fraction : float
        Share of the random training windows of large images placed over a random
        foreground pixel instead of anywhere, so that objects covering a small part of
        large images are seen at all; 0 = uniform windows. Crops no larger than the
        window are unaffected. nnU-Net oversamples a third, StarDist 0.9; on real E. coli
        frames (cells under 1 % of a frame) 0 found no cell, 0.33 and 0.66 test Dice 0.39
        and 0.43 (``benchmarks/README.md``).
    flatten : int, "auto" or None
        For brightfield images with uneven light: divide every image (training,
        validation, prediction) by its background, a grey closing of this many pixels
        (more than the largest object) of its luminance, smoothed, before the
        normalisation (:func:`unet.image.divide_background`). A training crop is
        normalised on its own, so its light is even; a whole image's is not. ``"auto"``
        (default): chosen when training starts (:func:`unet.data.choose_flatten`: three
        times the 95th percentile of the training objects' widths, or off where they are
        not darker than their background: fluorescence, dark field) and written into
        ``config.json``. On every data set measured it helped or changed nothing beyond
        the spread of two training seeds: the other renderer's ten fields scored Dice
        0.897 / 0.893 and object F1 0.875 / 0.861 (seeds 0 / 1), against 0.869 / 0.852
        and 0.837 / 0.824 unflattened, the test crops alike; E. coli phase contrast
        (61 px) 0.687 / 0.434 against 0.642 / 0.324 (``benchmarks/README.md``). An
        explicit window is refused where the objects are brighter than their background.
        None: off, which a run must be to be exported for bioimage.io (whose
        pre-processing cannot divide out a background) and which lets ``predict`` read
        large TIFFs strip by strip.

    Training
    --------
    steps : int or "auto"
        Optimiser steps over an endless augmented stream, whatever the data size
        (early stopping may end sooner). ``"auto"`` (default): chosen when training
        starts from the training tile (:func:`choose_steps`), a budget of tile pixels
        that gives every default run about the time of 3000 steps of the largest
        window's 220 px tiles (10-11 min on 2 cores): 4100 steps of the 188 px tiles of
        100 px crops, 4500 of 180 px tiles; written into ``config.json``. On the other
        renderer's spores 4100 steps instead of 3000 (11 min instead of 7.5) lifted the
        ten fields' Dice from 0.897 / 0.893 to 0.907 / 0.902 and cut their count error
        from 6.6 / 5.5 % to 2.8 / 4.1 % (training seeds 0 / 1; ``benchmarks/README.md``).
    max_minutes : float or None
        Most minutes of training and validation (``seconds`` and ``val_seconds`` in
        history.csv, summed over a resumed run's sessions): training stops after the
        last epoch that ends within them, before ``steps``, and keeps its best
        validation network, as early stopping does (:class:`unet.train.TimeLimit`).
        None (default): every step, whatever the time, so a run is the same on any
        machine. A default run takes 10-11 min on 2 cores with bf16 units (AVX512-BF16
        or AMX) and about an hour on 2 AVX2 cores in fp32; there a 15 min limit cost
        the other renderer's spores 0.063 of test Dice and HeLa nuclei nothing
        (``benchmarks/README.md``, *Training time on a CPU without bf16 units*).
        Multi-worker runs train without it.
    steps_per_epoch : int
        Steps per epoch: one row of history.csv, one validation and checkpoint (fewer
        with ``validation_share``).
    validation_share : float or None
        Most of the training that validating on the whole validation images may cost:
        where the validation split holds more pixels than this share of an epoch's
        training tiles (a pixel of either cost about the same), it is validated every
        few epochs instead (:func:`unet.train.validation_interval`), at most every
        ``reduce_lr_steps`` (so the learning-rate schedule and early stopping still act
        on a validation); the last epoch always, epochs between carry the last scores.
        Decided from the data and config alone, so a run is the same on any machine.
        None validates every epoch. The default 0.1 leaves every measured set's
        validation every epoch (0.1-4 % of the training time).
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
    augmentation : dict or None
        Fields of :class:`unet.augment.Augmentation` to change from its defaults, e.g.
        ``{"contrast": 0.2}``, the narrower contrast range of the defaults before 0.2.0
        (benchmarks/README.md, *The intensity augmentation's ranges*). None: the
        defaults. Training saves every field it used in the run's ``config.json``.
    early_stopping_steps, reduce_lr_steps : int
        Steps without a better validation Dice before stopping / halving the learning
        rate (rounded up to whole epochs).
    threshold, split_h, min_area
        Post-processing: the probability above which a pixel is foreground (metrics,
        masks, counts), the split height of touching objects in pixels (None: 5 % of
        the median object radius, :func:`unet.count.split_height`) and the smallest
        object in pixels (see :func:`unet.count.label_spores`; None: chosen when training
        starts, a tenth of the median area of the training objects and at least 16,
        :func:`unet.data.choose_min_area`, written into ``config.json``). With
        ``calibrate`` they are chosen on the validation split after training (threshold
        0.5, the relative split height and this ``min_area`` kept where they score as
        well). A model loaded by :func:`load_run` is used with them unless given others.
    calibrate : bool
        Choose ``threshold``, ``split_h`` and ``min_area`` on the validation split when
        it has instance labels or counts (:func:`unet.calibrate.calibrate_postprocessing`;
        at most 8 megapixels of it, :data:`unet.train.CALIBRATION_PIXELS`), joined by
        training images with the same kind of truth where the validation split holds
        fewer than :data:`unet.calibrate.FEW_OBJECTS` objects.
    calibration : dict or None
        Written by training: what the calibration chose and the scores it compared.
    tta : bool
        The run predicts with test-time augmentation (``tta`` of
        :func:`unet.predict.predict_tiled`: the maps of the flipped and turned tiles
        averaged, 3-6 times the prediction time): the calibration chooses the
        post-processing on augmented maps of the validation split, and ``predict`` and
        ``evaluate`` of the run augment unless given ``--no-tta`` (from Python: unless
        given ``tta=False``, like the other settings a model loaded by :func:`load_run`
        carries, :meth:`prediction_settings`). Off by default:
        on the other renderer's ten fields it raised object F1 from 0.875 to 0.893 and
        0.861 to 0.877 and cut the count error from 6.6 % to 3.2 % and 5.5 % to 5.3 %
        (training seeds 0 and 1), but on real cells it cost a little and on nuclei it
        moved object F1 and count error both ways (``benchmarks/README.md``), for the
        prediction time.
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
    crop_size: int | None = None
    foreground_fraction: float = 0.66
    flatten: int | str | None = "auto"
    # training
    steps: int | str = "auto"
    max_minutes: float | None = None
    steps_per_epoch: int = 100
    validation_share: float | None = 0.1
    batch_size: int = 8
    learning_rate: float = 1e-3
    loss: str = "bce_dice"
    border_w0: float = 10.0
    border_sigma: float = 5.0
    augment: bool = True
    augmentation: dict | None = None
    early_stopping_steps: int = 1500
    reduce_lr_steps: int = 500
    seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None
    # post-processing
    threshold: float = 0.5
    split_h: float | None = None
    min_area: int | None = None
    calibrate: bool = True
    calibration: dict | None = None
    tta: bool = False

    def __post_init__(self):
        from .losses import LOSSES

        for field in dataclasses.fields(self):
            annotation = str(field.type)
            optional = "None" in annotation
            kind = annotation.replace("| None", "").strip()
            if field.name in AUTO:
                if getattr(self, field.name) == "auto":
                    continue
                kind = kind.replace("| str", "").strip()
            setattr(self, field.name,
                    _check_type(field.name, kind, optional, getattr(self, field.name)))
        Augmentation.from_overrides(self.augmentation)  # refuses unknown fields
        check_choice("padding", self.padding, PADDINGS)
        check_choice("skip", self.skip, SKIPS)
        check_choice("loss", self.loss, LOSSES)
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None or value == "auto" or (
                    value >= low and (high is None or value <= high)):
                continue
            kind = "a positive integer" if low == 1 else f"at least {low}"
            if high is not None:
                kind += f"{'' if low == 1 else ' and'} no larger than {high}"
            raise UsageError(f"`{name}` must be {kind}, got {value!r}.")
        if self.split_h is not None and not self.split_h > 0:
            raise UsageError(f"`split_h` must be positive or null, got {self.split_h!r}.")
        if not 0 < self.threshold < 1:
            raise UsageError(f"`threshold` must be between 0 and 1, got {self.threshold!r}.")
        if not 0 < self.learning_rate <= 1:
            raise UsageError(
                f"`learning_rate` must be positive (at most 1), got {self.learning_rate!r}.")
        if not 0 <= self.foreground_fraction <= 1:
            raise UsageError("`foreground_fraction` must be between 0 and 1, got "
                             f"{self.foreground_fraction!r}.")
        if self.validation_share is not None and not 0 < self.validation_share <= 1:
            raise UsageError("`validation_share` must be above 0 and at most 1, or null, got "
                             f"{self.validation_share!r}.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UsageError("`max_minutes` must be above 0, or null for no time limit, got "
                             f"{self.max_minutes!r}.")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"`dropout` must be at least 0 and below 1, got {self.dropout!r}.")
        if not self.border_w0 >= 0 or not self.border_sigma > 0:
            raise UsageError(
                f"`border_w0` must be at least 0 and `border_sigma` positive, got "
                f"{self.border_w0!r} and {self.border_sigma!r}.")

    # -- derived sizes -------------------------------------------------------------
    @property
    def tile_size(self):
        """Input tile used for training (pixels)."""
        if self.crop_size is None:
            raise UsageError(
                "`crop_size` is chosen from the data when training starts; set it, or read "
                "the tile from a trained run's config."
            )
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
            try:
                values = _UPGRADES[v](values)
            except (TypeError, ValueError) as error:
                raise UsageError(
                    f"Cannot upgrade this version-{v} config ({error}); fix its values."
                ) from None
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
    def load(cls, path, run=False):
        """Read a config written by :meth:`save` (or by hand).

        ``run=True``: the ``config.json`` of a run folder, written by training with every
        setting of its day; a setting it lacks predates that run and takes the value
        the run was trained with (``flatten``: off; augmentation fields: contrast 0.2),
        not today's default.
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"Config file {path} does not exist.") from None
        except json.JSONDecodeError as error:
            raise UsageError(f"Config file {path} is not valid JSON ({error}).") from None
        if not isinstance(values, dict):
            raise UsageError(f"Config file {path} must hold a JSON object of settings.")
        if run:
            values = {**_BEFORE_ADDED, **values}
            if values.get("augment", True) and isinstance(values.get("augmentation"),
                                                          (dict, type(None))):
                augmentation = dict(values.get("augmentation") or {})
                for name, value in _AUGMENTATION_BEFORE.items():
                    augmentation.setdefault(name, value)
                values["augmentation"] = augmentation
        return cls.from_dict(values)

    def resolved_augmentation(self):
        """A copy whose ``augmentation`` names every field of the one training uses.

        What a run saves: its ``config.json`` then says what the model was trained
        with, whatever later versions choose as defaults (unchanged without ``augment``).
        """
        if not self.augment:
            return self
        return dataclasses.replace(self, augmentation=dataclasses.asdict(
            Augmentation.from_overrides(self.augmentation)))

    def quick(self):
        """A copy that trains for about a minute on a few crops (tests, demos, CI)."""
        return dataclasses.replace(
            self,
            steps=40 if self.steps == "auto" else min(self.steps, 40),
            steps_per_epoch=min(self.steps_per_epoch, 10),
            train_limit=min(self.train_limit or 64, 64),
            val_limit=min(self.val_limit or 16, 16),
        )

    @property
    def epochs(self):
        """Keras epochs of ``steps_per_epoch`` steps that make up ``steps``."""
        if self.steps == "auto":
            raise UsageError(
                '`steps` "auto" is chosen when training starts; set it, or read the steps '
                "from a trained run's config.")
        return -(-self.steps // self.steps_per_epoch)

    def patience(self, steps):
        """A number of steps as whole epochs (at least 1)."""
        return max(1, -(-steps // self.steps_per_epoch))

    def prediction_settings(self):
        """What a model loaded by :func:`load_run` carries: ``flatten``, ``threshold``,
        ``split_h``, ``min_area`` and ``tta`` (see
        :func:`unet.model.attach_prediction_settings`)."""
        from .model import PREDICTION_DEFAULTS

        return {name: getattr(self, name) for name in PREDICTION_DEFAULTS}

    def postprocessing(self):
        """``threshold``, ``h`` and ``min_area`` as :func:`unet.count.label_spores` takes them."""
        from .count import resolve_min_area

        return {"threshold": self.threshold, "h": self.split_h,
                "min_area": resolve_min_area(self.min_area)}

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

#: Models that ship inside the package: ``unet/models/NAME/`` (model.keras, config.json,
#: MODEL_CARD.md), loaded by name with :func:`load_run` (``load_run("spores")``).
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: The model ``predict`` and ``evaluate`` use when none is given.
DEFAULT_MODEL = "spores"


def shipped_models():
    """Names of the models that ship inside the package (``unet/models/NAME/``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model.keras").is_file())


def resolve_model_path(path):
    """A run directory, a ``.keras`` file, or the name of a shipped model -> a path.

    A name (no folder separator, no suffix) that is not an existing path is looked up
    among :func:`shipped_models`; an existing file or folder always wins.
    """
    path = Path(path)
    if path.exists() or len(path.parts) != 1 or path.suffix:
        return path
    shipped = MODELS_DIR / path.name
    if (shipped / "model.keras").is_file():
        return shipped
    return path


def prepare_run_dir(out_dir, config, overwrite):
    """Create RUN, or resume an unfinished run there; never silently overwrite.

    A run that was stopped before its first epoch ended (only ``config.json`` and
    ``logs/`` written, no backup yet) starts again from step 0 with the same config;
    ``history.csv`` is repaired before a resumed run appends to it
    (:func:`repair_history`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"`out_dir` {out_dir} is a file; give a directory for the run.")
    backup = out_dir / "backup"
    if out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir()):
        saved = out_dir / "config.json"
        if overwrite:
            if _saved_config(out_dir) is None:
                raise UsageError(
                    f"{out_dir} holds files but is not a run folder of this package (it has "
                    "no readable config.json), so `overwrite=True` will not delete anything "
                    "there; choose another `out_dir`.")
            for name in (*RUN_FILES, "backup", "logs"):
                target = out_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif backup.is_dir():
            if saved.exists() and Config.load(saved, run=True) != config:
                raise UsageError(
                    f"{out_dir} holds an unfinished run with a different config; resume it "
                    "with the same settings, or pass `overwrite=True` to start again."
                )
            repair_history(out_dir / "history.csv")
            return out_dir, True
        elif _never_finished_an_epoch(out_dir, config):
            shutil.rmtree(out_dir / "logs", ignore_errors=True)
            (out_dir / "history.csv").unlink(missing_ok=True)
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


def _saved_config(out_dir):
    """The Config in RUN's ``config.json``, or None where there is no readable one.

    A readable one marks a folder written by :func:`unet.train.train`: ``overwrite``
    removes a run's own files (model, config, history, curves, logs, backup) only in
    such a folder, never in a folder of other files that happen to hold a ``logs/`` or
    a ``config.json``; files of other names are never removed.
    """
    try:
        return Config.load(out_dir / "config.json", run=True)
    except (UsageError, OSError):
        return None


def _never_finished_an_epoch(out_dir, config):
    """Whether RUN holds only what a run of ``config`` writes before its first epoch ends."""
    names = {p.name for p in out_dir.iterdir()} - {LOCK_NAME}
    if "config.json" not in names or not names <= {"config.json", "logs", "history.csv"}:
        return False
    return _saved_config(out_dir) == config and not read_history(out_dir / "history.csv")


def _history_rows(path):
    """``(header line, {epoch: (line, {column: value})})`` of a history.csv's usable rows.

    A last line without its line end (cut short by a kill or a full disk), rows with
    missing or non-numeric values, and earlier copies of an epoch's row (an epoch run
    again after a resume) are left out. ``(None, {})`` for a missing or empty file.
    """
    path = Path(path)
    if not path.exists():
        return None, {}
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    if not lines:
        return None, {}
    header = next(csv.reader([lines[0]]))
    rows = {}
    for line in lines[1:]:
        values = next(csv.reader([line]), [])
        try:
            if len(values) != len(header):
                raise ValueError(line)
            row = {k: float(v) for k, v in zip(header, values)}
        except ValueError:
            continue
        rows[int(row["epoch"])] = (line, row)
    return lines[0], rows


def repair_history(path):
    """Make ``history.csv`` safe to append to after a kill or a full disk.

    Keeps the header and the usable rows (see :func:`_history_rows`) in epoch order;
    rewrites the file atomically only when that changes it.
    """
    path = Path(path)
    header, rows = _history_rows(path)
    if header is None:
        path.unlink(missing_ok=True)
        return
    kept = header + "".join(rows[e][0] for e in sorted(rows))
    if kept != path.read_text():
        write_text(path, kept)


def read_history(path):
    """Rows of a history.csv as a dict of float arrays.

    A resumed epoch keeps its last row; a row cut short or holding a value that is
    not a number (a kill or a full disk during the write) is left out.
    """
    _, rows = _history_rows(path)
    if not rows:
        return {}
    ordered = [rows[e][1] for e in sorted(rows)]
    return {k: np.array([r[k] for r in ordered]) for k in ordered[0]}


def load_run(path):
    """Load a trained model and its config.

    The model's geometry (depth, padding, skip, channels, classes) is then read from
    the config, after checking that the model computes what the config says
    (:func:`unet.model.attach_architecture`), and the model carries how its run predicts
    (:meth:`Config.prediction_settings`: the background window, the calibrated threshold,
    split height and smallest area, test-time augmentation): the functions that use it
    (:func:`unet.evaluate.evaluate`, :func:`unet.batch.predict_images`, ...) follow them
    unless given other values (:func:`unet.model.prediction_settings`).

    Parameters
    ----------
    path : path or str
        A run directory (holding ``model.keras`` and ``config.json``), a ``.keras``
        file (its ``config.json`` neighbour is read when present), or the name of a
        model that ships with the package (``"spores"``: see :func:`shipped_models`
        and its ``MODEL_CARD.md``); an existing path of that name wins.

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

    from .model import attach_architecture, attach_prediction_settings

    path = resolve_model_path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.exists():
        where = f"{path} holds no model.keras" if path.is_dir() else f"{path} does not exist"
        names = ", ".join(shipped_models()) or "none installed"
        raise FileNotFoundError(f"{where}; give a run directory, a .keras file or the name "
                                f"of a shipped model ({names}).")
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
    config = Config.load(config_path, run=True) if config_path.exists() else None
    if config is not None:
        attach_architecture(model, config.architecture())
        attach_prediction_settings(model, config.prediction_settings())
    return model, config
