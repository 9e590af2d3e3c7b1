"""Training data in memory: samples, tiles for valid padding, loss weights, the tf.data pipeline.

Training crops are never resized: :func:`pad_to_tile` places a crop in the model's
output window and mirror-pads the input tile around it; mask and weight are given
for the output window, with weight 0 outside the real crop (a crop is centred in
the output window). :func:`make_dataset` turns crops into a ``tf.data`` pipeline
with the paper's augmentation (:mod:`unet.augment`: flips, rotations, elastic
deformation) and, optionally, its border weights (:func:`border_weight_map`).

Files and folders are read by :mod:`unet.io`; every image goes through
:func:`unet.image.prepare_image`, at training and at prediction time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment as augment_ops
from ._tf import quiet_retracing
from .augment import Augmentation
from .errors import UsageError
from .image import BACKGROUND_WINDOWS, prepare_image
from .io import JPEG_EXTENSIONS, find_pairs, listing, read_image, read_labels, read_mask


def load_image(path, channels=3, low=1.0, high=99.8, flatten=None):
    """Read an image file and prepare it for a model (:func:`unet.image.prepare_image`,
    whose arguments the others are).

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, channels)``.
    """
    return prepare_image(read_image(path), channels, low, high, flatten)


@dataclass
class Samples:
    """Decoded samples held in memory.

    Attributes
    ----------
    names : list of str
    images : list of numpy.ndarray
        float32 ``(H, W, C)``, normalised by :func:`normalize`; sizes may differ.
    masks : list of numpy.ndarray
        uint8 ``(H, W)`` of 0/1.
    labels : list of numpy.ndarray or None
        int32 ``(H, W)`` instance labels, when the folder has ``labels/``.
    """

    names: list
    images: list
    masks: list
    labels: list | None = None

    def __post_init__(self):
        n = len(self.names)
        if len(self.images) != n or len(self.masks) != n:
            raise UsageError(
                f"Samples need as many images and masks as names, got {n} names, "
                f"{len(self.images)} images and {len(self.masks)} masks."
            )
        if self.labels is not None and len(self.labels) != n:
            raise UsageError(f"Samples have {n} names but {len(self.labels)} label images.")

    def __len__(self):
        return len(self.names)


def load_folder(folder, channels=3, check_masks=True, limit=None, flatten=None):
    """Read a whole data folder into memory.

    Parameters
    ----------
    folder : str or Path
        A data folder (``images/``, ``masks/``, optional ``labels/``). Masks may be
        binary (any value > 0 is foreground) or instance ids (uint16 labels): without
        ``labels/``, a mask with more than one non-zero value is also the sample's
        label image. Images may have any size.
    channels : int
        The model's number of input channels (see :func:`unet.image.to_channels`).
    check_masks : bool
        Raise if every mask is a single value (all background or all foreground),
        which almost always means the masks are wrong. One empty mask is fine.
    limit : int, optional
        Read only the first ``limit`` pairs (by name).
    flatten : int, optional
        Divide out the brightfield background (window in pixels) before normalising
        (:func:`unet.image.prepare_image`).

    Returns
    -------
    Samples

    Raises
    ------
    UsageError
        For everything :func:`find_pairs` rejects, an unreadable file, a mask or
        label image whose size differs from its image, or constant masks.
    """
    pairs = find_pairs(folder)[:limit]
    names, images, masks, labels = [], [], [], []
    split_ids = []
    for pair in pairs:
        image = load_image(pair.image, channels, flatten=flatten)
        mask = read_mask(pair.mask)
        _check_size(pair.image, image, pair.mask, mask)
        label = None
        if pair.labels is not None:
            label = read_labels(pair.labels)
            _check_size(pair.image, image, pair.labels, label)
        elif pair.mask.suffix.lower() not in JPEG_EXTENSIONS:
            ids = read_labels(pair.mask)  # an instance-id mask is its own label image
            label = ids if np.unique(ids).size > 2 else None
        if label is not None:
            label, split = _separate_reused_ids(label)
            if split:
                split_ids.append(pair.name)
        names.append(pair.name)
        images.append(image)
        masks.append(mask)
        labels.append(label)
    if split_ids:
        warnings.warn(
            f"Label images of {listing(split_ids)} use one id for separate regions; each "
            "region is counted as an object of its own. Give every object its own id.",
            stacklevel=2,
        )
    check_mask_set(folder, zip([p.mask for p in pairs], masks), check_values=check_masks)
    if all(label is None for label in labels):
        labels = None
    elif any(label is None for label in labels):  # a few binary masks among id masks
        from scipy import ndimage as ndi

        labels = [ndi.label(m)[0].astype(np.int32) if lab is None else lab
                  for m, lab in zip(masks, labels)]
    return Samples(names, images, masks, labels)


#: A mask set looks inverted (white background) when every mask is foreground on at
#: least this share of its edge pixels and on more than half of all pixels.
INVERTED_EDGE = 0.9


def check_mask_set(folder, masks, check_values=True, allow_empty=False):
    """The checks every reader of a data folder's masks makes (``train``, ``evaluate``).

    Warns about JPEG masks. With ``check_values``, raises
    :class:`~unet.errors.UsageError` when every mask is a single value (all
    background or all foreground) or when the masks look inverted: foreground (any
    value > 0) on nearly every edge pixel (:data:`INVERTED_EDGE`) and on most pixels,
    as with masks drawn black on white.

    Parameters
    ----------
    folder : path
        The data folder (named in the messages).
    masks : iterable of (Path, array_like)
        Each mask file with its mask as read (:func:`unet.io.read_mask`); consumed
        once, so a generator that reads one mask at a time keeps memory small.
    check_values : bool
        Also check the values (``check_masks`` of :func:`load_folder`).
    allow_empty : bool
        Accept a set of empty masks (evaluating false positives on images without
        objects is fine; training on them is not).
    """
    jpeg, constant, empty, inverted, total, foreground = [], 0, 0, 0, 0, 0
    for path, mask in masks:
        if Path(path).suffix.lower() in JPEG_EXTENSIONS:
            jpeg.append(Path(path).name)
        mask = np.asarray(mask)
        low, high = (mask.min(), mask.max()) if mask.size else (0, 0)
        constant += bool(low == high)
        empty += bool(high == 0)
        inverted += _edge_share(mask) >= INVERTED_EDGE
        total, foreground = total + 1, foreground + np.count_nonzero(mask) / max(mask.size, 1)
    if jpeg:
        warnings.warn(
            f"Masks {listing(jpeg)} are JPEG: lossy compression leaves faint non-zero "
            "pixels that read as foreground; save masks as PNG.",
            stacklevel=3,
        )
    if not check_values or total == 0:
        return
    where = Path(folder) / "masks"
    if constant == total and not (allow_empty and empty == total):
        what = "empty (all background)" if empty == total else "a single value"
        raise UsageError(
            f"Every mask in {where} is {what}; the masks are probably wrong "
            "(foreground must be > 0), check them or pass `check_masks=False`."
        )
    if inverted == total and foreground / total > 0.5:
        raise UsageError(
            f"The masks in {where} look inverted: foreground (> 0) covers "
            f"{foreground / total:.0%} of a mask on average and nearly all of its edges. Objects "
            "must be > 0 and the background 0; invert the masks, or pass `check_masks=False` "
            "if they are right."
        )


def _edge_share(mask):
    """Share of a mask's edge pixels (first/last row and column) that are foreground."""
    m = np.asarray(mask) > 0
    if m.ndim != 2 or min(m.shape) < 3:
        return float(m.mean()) if m.size else 0.0
    edge = np.concatenate([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]])
    return float(edge.mean())


def _separate_reused_ids(labels):
    """Give every connected region of a label image its own id (8-connected).

    Returns ``(labels, changed)``; ``changed`` is True when some id covered more than
    one separate region (then relabelled consecutively).
    """
    from skimage.measure import label

    labels = np.asarray(labels, np.int32)
    n_ids = np.unique(labels).size - (1 if (labels == 0).any() else 0)
    regions = label(labels, background=0, connectivity=2)
    if int(regions.max()) == n_ids:
        return labels, False
    return regions.astype(np.int32), True


#: Largest training window :func:`choose_crop_size` picks (pixels of output): a 220 px
#: tile at depth 3, whose default 3000 steps of 8 tiles took 10-11 minutes on 2 CPU
#: cores; larger objects would otherwise make the default run longer than 15 minutes
#: (a 316 px tile took 28, ``benchmarks/README.md``). Every output pixel sees the same
#: context in any window; a larger one only holds more pixels per step.
MAX_AUTO_CROP = 132


def choose_crop_size(samples, depth, padding="valid"):
    """The training window for a data set: what ``Config(crop_size=None)`` becomes.

    Room for the model's context on both sides and for three of the largest objects
    (the 95th percentile of their equivalent diameters, from the labels or the mask
    components): ``max(2 * context, 3 * d95)``, at most :data:`MAX_AUTO_CROP`, rounded
    up to a valid output size. Where every image is at most twice that size (crops
    around a few objects, say), the largest image side instead, so every crop is used
    whole: 100 for the spore crops (<= 100 px, spores <= 30 px, context 44 px at
    depth 3), which is the window their tile of 188 px was chosen for.

    Returns
    -------
    int
    """
    from .sizes import default_context, tile_size_for

    diameters = np.sqrt(4.0 * object_areas(samples) / np.pi)
    d95 = float(np.percentile(diameters, 95)) if diameters.size else 0.0
    context = default_context(depth, padding)
    window = int(math.ceil(max(2 * context, 3 * d95)))
    largest = max(max(im.shape[:2]) for im in samples.images)
    if largest <= 2 * window:
        window = largest
    window = min(window, MAX_AUTO_CROP)
    return tile_size_for(window, depth, padding)[1]


def choose_flatten(samples):
    """The background window of a data set: what ``Config(flatten="auto")`` becomes.

    Three times the 95th percentile of the objects' widths, the diameter of the
    largest disk that fits inside each (twice its largest distance to the background).
    The grey closing of :func:`unet.image.divide_background` fills a dark object when
    the window is wider than the object, whatever its length, so the width decides:
    79 px for the other renderer's spores (61, 76 and 79 px trained alike there), 61 px
    for the E. coli rods (equivalent diameter 39 px; 61 px scored better than 144 px
    with both training seeds tried, ``benchmarks/README.md``). None (no flattening)
    where the objects are not darker than their background (:func:`objects_are_darker`:
    fluorescence, dark field) or there are none.

    Parameters
    ----------
    samples : Samples
        Training samples loaded without flattening.

    Returns
    -------
    int or None
    """
    if not objects_are_darker(samples):
        return None
    window = int(math.ceil(3 * float(np.percentile(object_widths(samples), 95))))
    low, high = BACKGROUND_WINDOWS
    return min(max(window, low), high)


def object_widths(samples):
    """The widths (pixels) of all objects of loaded samples (:func:`object_labels`): the
    diameter of the largest disk inside each, twice its largest Euclidean distance to
    the background."""
    from scipy import ndimage as ndi

    widths = []
    for objects in object_labels(samples):
        objects = np.asarray(objects)
        inside = objects > 0
        ids = np.unique(objects[inside])
        if ids.size:  # touching objects part where their ids meet
            rows = (objects[1:] != objects[:-1]) & inside[1:] & inside[:-1]
            cols = (objects[:, 1:] != objects[:, :-1]) & inside[:, 1:] & inside[:, :-1]
            inside[1:] &= ~rows
            inside[:, 1:] &= ~cols
            depth = ndi.distance_transform_edt(inside)
            widths.append(2 * np.asarray(ndi.maximum(depth, objects, ids), np.float64))
    return np.concatenate(widths) if widths else np.zeros(0)


def object_labels(samples):
    """The objects of loaded samples, one label image at a time (a generator): their
    labels, or the connected components of their masks where there are no labels."""
    from scipy import ndimage as ndi

    for k, mask in enumerate(samples.masks):
        yield (np.asarray(samples.labels[k]) if samples.labels is not None
               else ndi.label(np.asarray(mask) > 0)[0])


def object_areas(samples):
    """The areas (pixels) of all objects of loaded samples (:func:`object_labels`)."""
    areas = []
    for objects in object_labels(samples):
        counts = np.bincount(objects.ravel())[1:]
        areas.append(counts[counts > 0])
    return np.concatenate(areas) if areas else np.zeros(0, np.int64)


def objects_are_darker(samples):
    """Whether the objects are darker than the rest, over all samples (brightfield).

    Compares the mean of the prepared images' channels inside the masks with the mean
    outside, pooled over the samples.

    Returns
    -------
    bool
    """
    inside = outside = 0.0
    n_in = n_out = 0
    for image, mask in zip(samples.images, samples.masks):
        gray = np.asarray(image, np.float64).mean(axis=-1)
        fg = np.asarray(mask) > 0
        inside += gray[fg].sum()
        outside += gray[~fg].sum()
        n_in += int(fg.sum())
        n_out += int(fg.size - fg.sum())
    return n_in > 0 and n_out > 0 and inside / n_in < outside / n_out


def choose_min_area(samples):
    """The smallest object of a run trained on ``samples``: what ``Config(min_area=None)``
    becomes, :func:`unet.count.min_area_for_areas` of the training objects (a tenth of
    their median area, at least 16 px: 16 for the spore crops, 51 for HeLa nuclei).

    Returns
    -------
    int
    """
    from .count import min_area_for_areas

    return min_area_for_areas(object_areas(samples))


def _check_size(image_path, image, other_path, other):
    if image.shape[:2] != other.shape[:2]:
        raise UsageError(
            f"{other_path} is {other.shape[1]}x{other.shape[0]} pixels but its image "
            f"{image_path} is {image.shape[1]}x{image.shape[0]}; they must be the same size."
        )


# --------------------------------------------------------------------------------------
# Tiles: crops placed in the output window, mirror-padded input
# --------------------------------------------------------------------------------------
def _check_tile(tile, out):
    if not 1 <= out <= tile or (tile - out) % 2:
        raise UsageError(
            f"Output window {out} must fit centred in tile {tile} (tile - out even and >= 0); "
            "get both from tile_size_for()."
        )


def _prepare(image, mask, weight, tile, out):
    """Check a crop and its mask and weight; returns them as float32 arrays and the
    crop's top-left corner in the tile (centred in the output window)."""
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    h, w = image.shape[:2]
    if h > out or w > out:
        raise UsageError(
            f"A {h}x{w} crop does not fit the {out}x{out} output window of a {tile} tile; "
            "use a bigger tile (tile_size_for(crop_size)) or cut the image into smaller crops."
        )
    mask = np.zeros((h, w), np.float32) if mask is None else np.asarray(mask, np.float32)
    weight = np.ones((h, w), np.float32) if weight is None else np.asarray(weight, np.float32)
    for name, array in (("mask", mask), ("weight", weight)):
        if array.shape[:2] != (h, w) or array.size != h * w:
            raise UsageError(f"The {name} is {array.shape} but its image is {(h, w)}.")
    margin = (tile - out) // 2
    top = margin + (out - h) // 2
    left = margin + (out - w) // 2
    return image, mask.reshape(h, w), weight.reshape(h, w), top, left


def pad_to_tile(image, mask=None, weight=None, tile=284, out=100):
    """Place a crop in the output window and mirror-pad the input to a tile.

    The crop (never resized) is centred in the ``out x out`` output window, which
    is centred in the ``tile x tile`` input; the input is filled around it by
    mirror reflection (repeatedly, when the padding is wider than the crop).

    Parameters
    ----------
    image : numpy.ndarray
        ``(h, w, C)`` or ``(h, w)`` crop with ``h, w <= out``.
    mask : numpy.ndarray, optional
        ``(h, w)`` 0/1 mask; zeros if not given.
    weight : numpy.ndarray, optional
        ``(h, w)`` per-pixel loss weight; ones if not given.
    tile, out : int
        Input tile and output window sizes (see :func:`tile_size_for`);
        equal for same padding.

    Returns
    -------
    image : numpy.ndarray
        float32 ``(tile, tile, C)``.
    mask, weight : numpy.ndarray
        float32 ``(out, out)``; both 0 outside the crop.

    Raises
    ------
    UsageError
        If the crop is larger than ``out``.
    """
    _check_tile(tile, out)
    image, mask, weight, top, left = _prepare(image, mask, weight, tile, out)
    h, w = mask.shape
    image_tile = np.pad(image, ((top, tile - top - h), (left, tile - left - w), (0, 0)), "reflect")
    m = (tile - out) // 2
    mask_out = np.zeros((out, out), np.float32)
    weight_out = np.zeros((out, out), np.float32)
    mask_out[top - m : top - m + h, left - m : left - m + w] = mask
    weight_out[top - m : top - m + h, left - m : left - m + w] = weight
    return image_tile, mask_out, weight_out


# --------------------------------------------------------------------------------------
# The paper's border weights
# --------------------------------------------------------------------------------------
def class_balance(masks):
    """Class-balancing weights pooled over masks: ``N / (2 N_class)`` per class.

    Both classes then contribute equally to a weighted loss and the mean weight is 1.

    Parameters
    ----------
    masks : sequence of numpy.ndarray
        Masks or label images (> 0 is foreground).

    Returns
    -------
    (float, float)
        ``(w_background, w_foreground)``; ``(1.0, 1.0)`` if only one class occurs.
    """
    n = n_fg = 0
    for mask in masks:
        mask = np.asarray(mask)
        n += mask.size
        n_fg += int(np.count_nonzero(mask))
    if n_fg in (0, n):
        return 1.0, 1.0
    return n / (2.0 * (n - n_fg)), n / (2.0 * n_fg)


def class_weights(mask, balance=None):
    """Per-pixel class-balancing weights ``w_c`` of one mask.

    Parameters
    ----------
    mask : numpy.ndarray
        Mask or label image (> 0 is foreground).
    balance : (float, float), optional
        ``(w_background, w_foreground)``; by default :func:`class_balance` of
        this mask alone.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``mask``.
    """
    fg = np.asarray(mask) > 0
    w_bg, w_fg = class_balance([fg]) if balance is None else balance
    return np.where(fg, np.float32(w_fg), np.float32(w_bg)).astype(np.float32)


def border_weight_map(labels, w0=10.0, sigma=5.0, balance=True):
    """The weight map of Ronneberger et al. (2015), eq. 2.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` on background
    pixels, where d1 and d2 are the distances to the nearest and second-nearest
    object; object pixels get ``w_c``. The thin background gaps between touching
    objects thus weigh up to ``w_c + w0``, teaching the network to separate them.

    Each object's distance map is computed only within its bounding box grown by
    ``6 sigma`` (further away the term is below ``w0 * exp(-18)``), so the cost
    grows with the number of objects, not with their product with the image size.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 = background. (A binary mask works too, but
        then touching objects count as one.)
    w0 : float
        Height of the border term (10 in the paper).
    sigma : float
        Width of the border term in pixels (about 5 in the paper).
    balance : bool or (float, float)
        ``w_c``: True balances the classes of this image (:func:`class_weights`),
        a pair gives ``(w_background, w_foreground)`` (e.g. :func:`class_balance`
        of a whole data set), False gives ``w_c = 1``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)``.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UsageError(f"labels must be a 2-D array, got shape {labels.shape}.")
    if balance is True:
        wc = class_weights(labels)
    elif balance is False or balance is None:
        wc = np.ones(labels.shape, np.float32)
    else:
        wc = class_weights(labels, tuple(balance))
    reach = int(np.ceil(6 * sigma))
    d1 = np.full(labels.shape, np.inf, np.float32)
    d2 = np.full(labels.shape, np.inf, np.float32)
    objects = ndi.find_objects(labels.astype(np.int64, copy=False))
    for index, box in enumerate(objects, start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - reach, 0), min(s.stop + reach, size))
            for s, size in zip(box, labels.shape)
        )
        dist = ndi.distance_transform_edt(labels[grown] != index).astype(np.float32)
        a, b = d1[grown], d2[grown]
        d2[grown] = np.where(dist < a, a, np.minimum(b, dist))
        d1[grown] = np.minimum(a, dist)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return (wc + np.where(labels == 0, border, 0.0)).astype(np.float32)


def _is_gray(image):
    """Whether all channels of an ``(h, w, C)`` image are equal (C > 1)."""
    return image.shape[-1] > 1 and bool(np.all(image == image[..., :1]))


def _crop_buffers(image, mask, weight, out):
    """A crop's image, mask and weight as ``out * out``-pixel buffers, row by row."""
    h, w, channels = image.shape
    buffers = (np.zeros((out * out, channels), np.float32), np.zeros(out * out, np.float32),
               np.zeros(out * out, np.float32))
    for buffer, array in zip(buffers, (image, mask, weight)):
        buffer[: h * w] = array.reshape(h * w, -1).reshape(buffer[: h * w].shape)
    return buffers


def _augment_numpy(augment, image, mask, weight, tile, out, rng):
    """:func:`unet.augment.augment_tensors` on one NumPy crop (eagerly); NumPy results."""
    import tensorflow as tf

    image, mask, weight, _, _ = _prepare(image, mask, weight, tile, out)
    h, w, _ = image.shape
    seed = np.random.default_rng(rng).integers(0, 2**63 - 1)
    with quiet_retracing():  # each augmentation setting compiles its own resampler
        image_tile, mask_out, weight_out = augment_ops.augment_tensors(
            augment,
            *(tf.constant(b) for b in _crop_buffers(image, mask, weight, out)),
            tf.constant(h),
            tf.constant(w),
            tf.constant(_is_gray(image)),
            tf.constant(seed, tf.int64),
            tile,
            out,
        )
    return image_tile.numpy(), mask_out.numpy()[..., 0], weight_out.numpy()[..., 0]


def make_tile(image, mask=None, weight=None, tile=284, out=100, augment=None, rng=None):
    """One training example: a crop placed in a tile, optionally augmented.

    Without augmentation this is :func:`pad_to_tile`. With it, the geometric
    transform is applied to the whole mirror-padded input tile together with the
    mask and weight placed in tile coordinates (0 outside the crop), and the
    mask and weight are then cut to the output window. (The implementation
    samples the crop directly with mirrored indices, which supply the mirror
    padding however far a transform reaches, and zeros around mask and weight;
    it is the TensorFlow code :func:`make_dataset` runs, here run eagerly.)

    Parameters
    ----------
    image, mask, weight
        As in :func:`pad_to_tile`.
    tile, out : int
        Input tile and output window sizes.
    augment : Augmentation, optional
        None for no augmentation.
    rng : numpy.random.Generator or int, optional
        Source of randomness (a seed gives a reproducible result).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        float32 image ``(tile, tile, C)``, mask and weight ``(out, out)``; the mask
        stays exactly 0/1.
    """
    if augment is None:
        return pad_to_tile(image, mask, weight, tile, out)
    _check_tile(tile, out)
    return _augment_numpy(augment, image, mask, weight, tile, out, rng)


# --------------------------------------------------------------------------------------
# tf.data pipeline
# --------------------------------------------------------------------------------------
WEIGHTS = ("uniform", "border")


def sample_weights(samples, weights="uniform", w0=10.0, sigma=5.0):
    """Per-pixel loss weights of every sample, computed once.

    Parameters
    ----------
    samples : Samples
    weights : {"uniform", "border"}
        ``"uniform"``: 1 everywhere. ``"border"``: :func:`border_weight_map` of the
        sample's instance labels, or of the connected components of its mask when
        the samples have no labels (touching objects then count as one), with
        class-balancing weights pooled over all samples (:func:`class_balance`).
    w0, sigma : float
        Parameters of the border weights.

    Returns
    -------
    list of numpy.ndarray
        float32 ``(H, W)`` per sample.
    """
    if weights not in WEIGHTS:
        raise UsageError(f"`weights` must be one of {WEIGHTS}, got {weights!r}.")
    if weights == "uniform":
        return [np.ones(m.shape[:2], np.float32) for m in samples.masks]
    balance = class_balance(samples.masks)  # pooled: stable even for crops with little foreground
    if samples.labels is not None:
        return [border_weight_map(lab, w0, sigma, balance) for lab in samples.labels]
    from skimage.measure import label

    return [border_weight_map(label(m > 0), w0, sigma, balance) for m in samples.masks]


def region_side(tile, augment=None):
    """Side of the image region a training tile is resampled from, for large images.

    The tile itself, grown so that a free rotation (up to 45 degrees: the tile's
    corners reach ``tile / sqrt(2)`` from its centre) and the elastic displacements
    (3 standard deviations) still read real image, not mirrored patch.
    """
    augment = augment or Augmentation.none()
    side = float(tile)
    if augment.rotation:
        side *= math.sqrt(2.0)
    if augment.elastic and augment.elastic_sigma > 0:
        side += 6.0 * augment.elastic_sigma
    side = int(math.ceil(side))
    return side + side % 2


def _windows(length, out, count, rng):
    """Tops of ``count`` output windows along one axis of ``length`` pixels.

    Random (``rng``): uniform over ``[-o, length - out + o]`` with an overhang
    ``o = 3 out / 4``, so a pixel at the border lies in a window at least 3/4 as often
    as one in the middle (a corner pixel 9/16 as often), while windows reach past the
    image, where the loss weight is 0, by at most 3/4 of their size. Ordered
    (``rng=None``): a grid of windows ``out`` apart covering the axis.
    """
    if rng is None:
        return np.arange(count, dtype=np.int64) * out
    lowest, highest = _top_range(length, out)
    return rng.integers(lowest, highest + 1, size=count)


def _top_range(length, out):
    """Lowest and highest top of a random window along an axis of ``length`` pixels
    (an overhang of ``3 out / 4`` at both ends, see :func:`_windows`)."""
    overhang = 3 * out // 4
    return -overhang, length - out + overhang


#: Most foreground pixels per image that foreground windows are placed over (a random
#: subset where the foreground is larger, to bound the memory of the list).
FOREGROUND_PIXELS = 1 << 16


def _foreground_pixels(masks, out, seed):
    """Flat indices of (at most :data:`FOREGROUND_PIXELS`) foreground pixels per mask
    larger than the ``out x out`` window (none for the others: they are used whole)."""
    rng = np.random.default_rng([int(seed), 1 << 20])
    candidates = []
    for mask in masks:
        if max(mask.shape) <= out:
            candidates.append(np.zeros(0, np.int64))
            continue
        found = np.flatnonzero(mask.ravel() > 0)
        if found.size > FOREGROUND_PIXELS:
            found = np.sort(rng.choice(found, FOREGROUND_PIXELS, replace=False))
        candidates.append(found)
    return candidates


def _foreground_tops(candidates, shape, out, count, rng):
    """Corners (top, left) of ``count`` output windows that hold a foreground pixel.

    A foreground pixel is drawn from ``candidates`` (flat indices into ``shape``); the
    window's top (left) is uniform over the places that keep the pixel inside it, within
    the range :func:`_windows` draws from, so the pixel is not always in the middle.
    """
    picked = candidates[rng.integers(0, candidates.size, size=count)]
    corners = np.stack(np.unravel_index(picked, shape), axis=1).astype(np.int64)
    for axis in (0, 1):
        lowest, highest = _top_range(shape[axis], out)
        low = np.maximum(corners[:, axis] - out + 1, lowest)
        high = np.minimum(corners[:, axis], highest)
        corners[:, axis] = low + (rng.random(count) * (high - low + 1)).astype(np.int64)
    return corners


def make_dataset(
    samples,
    tile,
    out,
    batch_size=8,
    augment=None,
    shuffle=True,
    weights="uniform",
    seed=0,
    repeat=False,
    drop_remainder=False,
    w0=10.0,
    sigma=5.0,
    foreground_fraction=0.0,
):
    """A ``tf.data`` pipeline of training tiles from images of any size.

    An image no larger than the ``out x out`` output window is one sample: centred in
    the window, mirror-padded to the tile, loss weight 0 outside it (never resized). A
    larger image gives ``ceil(h / out) * ceil(w / out)`` samples per pass, each an
    ``out x out`` window at a random place (every pixel about equally likely to be
    seen, see :func:`_windows`) with its real surroundings as the tile's context
    (mirrored beyond the image border, weight 0 there). With ``foreground_fraction > 0``
    that share of the windows is placed over a random foreground pixel instead (as
    nnU-Net oversamples foreground), so that sparse objects are seen at all. The decoded
    images stay in memory; cutting, padding and augmentation run per element in a
    parallel map of TensorFlow ops (:func:`unet.augment.augment_tensors`: no Python, so
    no GIL, in the loop; see ``benchmarks/data_pipeline.py``). The order, the windows
    and the augmentation are fixed by ``seed`` and differ from pass to pass.

    Parameters
    ----------
    samples : Samples
        Images of any sizes (see :func:`load_folder`).
    tile, out : int
        Input tile and output window sizes (see :func:`unet.sizes.tile_size_for`).
    batch_size : int
    augment : Augmentation, bool or None
        ``True`` for the default :class:`Augmentation`; None/False for none.
    shuffle : bool
        Shuffle the samples and place the windows of large images at random every
        pass; False: the images in order, large ones as a grid of windows covering them.
    weights : {"uniform", "border"}
        Loss weights inside the image (see :func:`sample_weights`); always 0 outside.
    seed : int
        Seed of the order, the windows and the augmentation.
    repeat : bool
        Repeat forever (each pass reshuffled and re-augmented): the endless stream
        that training draws a fixed number of steps from.
    drop_remainder : bool
        Drop the last incomplete batch.
    w0, sigma : float
        Parameters of the border weights.
    foreground_fraction : float
        Share (0 to 1) of the random windows of large images placed over a random
        foreground pixel of the mask instead of anywhere; images without foreground
        keep uniform windows. Only with ``shuffle``.

    Returns
    -------
    tf.data.Dataset
        Batches of ``(image[B, tile, tile, C], mask[B, out, out, 1],
        weight[B, out, out, 1])``, float32; Keras uses the third as
        ``sample_weight``.
    """
    import tensorflow as tf

    if len(samples) == 0:
        raise UsageError("make_dataset got no samples; load a data folder with images first.")
    _check_tile(tile, out)
    if int(batch_size) < 1:
        raise UsageError(f"`batch_size` must be at least 1, got {batch_size}.")
    if not 0 <= foreground_fraction <= 1:
        raise UsageError(
            f"`foreground_fraction` must be between 0 and 1, got {foreground_fraction!r}.")
    augment = Augmentation() if augment is True else (augment or None)
    images = [np.asarray(im, np.float32) for im in samples.images]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    channels = {im.shape[-1] for im in images}
    if len(channels) != 1:
        raise UsageError(f"All images must have the same number of channels, got {channels}.")
    channels = channels.pop()
    masks = [(np.asarray(m) > 0).astype(np.float32) for m in samples.masks]
    pixel_weights = sample_weights(samples, weights, w0, sigma)

    # All images in three flat tensors (pixels row by row, image after image) and a
    # table (offset, height, width, gray) per image: the map below cuts a region out.
    sizes = np.array([im.shape[:2] for im in images], np.int64)
    pixels = sizes.prod(axis=1)
    table = tf.constant(
        np.stack(
            [np.cumsum(pixels) - pixels, sizes[:, 0], sizes[:, 1],
             [_is_gray(im) for im in images]],
            axis=1,
        ).astype(np.int64)
    )
    flat_images = tf.constant(np.concatenate([im.reshape(-1, channels) for im in images]))
    flat_masks = tf.constant(np.concatenate([m.ravel() for m in masks]))
    flat_weights = tf.constant(
        np.concatenate([np.asarray(w, np.float32).ravel() for w in pixel_weights])
    )
    # Axes longer than the window are cut into regions of this side (crops use themselves).
    large = bool((sizes > out).any())
    region = region_side(tile, augment) if large else out
    windows = np.ceil(np.maximum(sizes, out) / out).astype(np.int64)  # per axis
    per_pass = np.repeat(np.arange(len(images)), windows.prod(axis=1))
    candidates = (_foreground_pixels(masks, out, seed)
                  if shuffle and foreground_fraction > 0 else None)

    noise_bank = None
    if augment is not None and augment.noise:
        noise_bank = tf.constant(
            augment_ops.noise_bank_values(max(augment_ops.NOISE_BANK, 2 * tile), channels)
        )

    passes = iter(range(2**62))

    def elements_of_passes():
        """One element per pass: image indices, region corners and seeds of a whole pass."""
        pass_number = next(passes)  # each new iteration (Keras epoch) gets its own draws
        while True:
            rng = np.random.default_rng([int(seed), pass_number])
            order = rng.permutation(per_pass) if shuffle else per_pass
            corners = np.zeros((len(order), 2), np.int64)
            for i in np.flatnonzero((sizes > out).any(axis=1)):
                where = np.flatnonzero(order == i)
                if shuffle:
                    tops = np.stack([_windows(sizes[i, axis], out, where.size, rng)
                                     for axis in (0, 1)], axis=1)
                    if candidates is not None and candidates[i].size:
                        chosen = np.flatnonzero(rng.random(where.size) < foreground_fraction)
                        tops[chosen] = _foreground_tops(
                            candidates[i], tuple(sizes[i]), out, chosen.size, rng)
                else:  # the grid of windows, in row-major order
                    k = np.arange(where.size)
                    tops = np.stack([k // windows[i, 1], k % windows[i, 1]], axis=1) * out
                # the region's corner; an axis that fits the window is used whole
                corners[where] = np.where(sizes[i] > out, tops - (region - out) // 2, 0)
            yield order, corners, rng.integers(0, 2**63 - 1, size=len(order))
            if not repeat:
                return
            pass_number = next(passes)

    def mirror(index, length):
        period = tf.maximum(2 * (length - 1), 1)
        folded = tf.math.floormod(index, period)
        return tf.where(length > 1, tf.where(folded < length, folded, period - folded), 0)

    def to_tensors(index, corner, element_seed):
        offset, height, width, gray = tf.unstack(table[index])
        # a region of the image, or the whole axis where it fits the window
        eff_h = tf.where(height > out, tf.constant(region, tf.int64), height)
        eff_w = tf.where(width > out, tf.constant(region, tf.int64), width)
        k = tf.range(region * region, dtype=tf.int64)  # a fixed-size buffer, row-major
        r = tf.minimum(k // eff_w, eff_h - 1)
        c = k % eff_w
        rows = r + tf.where(height > out, corner[0], 0)
        cols = c + tf.where(width > out, corner[1], 0)
        inside = tf.cast((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width),
                         tf.float32)
        pixels = offset + mirror(rows, height) * width + mirror(cols, width)
        return augment_ops.augment_tensors(
            augment,
            tf.gather(flat_images, pixels),
            tf.gather(flat_masks, pixels) * inside,
            tf.gather(flat_weights, pixels) * inside,
            eff_h,
            eff_w,
            gray > 0,
            element_seed,
            tile,
            out,
            noise_bank,
        )

    # Python runs once per pass (not per element), so it hardly ever holds the GIL.
    n = len(per_pass)
    dataset = tf.data.Dataset.from_generator(
        elements_of_passes,
        output_signature=(tf.TensorSpec((n,), tf.int64), tf.TensorSpec((n, 2), tf.int64),
                          tf.TensorSpec((n,), tf.int64)),
    ).unbatch()
    # Tell Keras the pass length up front (no "ran out of data" on the first epoch).
    cardinality = tf.data.INFINITE_CARDINALITY if repeat else n
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(cardinality))
    dataset = dataset.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
