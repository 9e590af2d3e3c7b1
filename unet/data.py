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

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment as augment_ops
from ._tf import quiet_retracing
from .augment import Augmentation
from .errors import UsageError
from .image import prepare_image
from .io import JPEG_EXTENSIONS, find_pairs, listing, read_image, read_labels, read_mask


def load_image(path, channels=3, low=1.0, high=99.8):
    """Read an image file and prepare it for a model (:func:`unet.image.prepare_image`).

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, channels)``.
    """
    return prepare_image(read_image(path), channels, low, high)


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


def load_folder(folder, channels=3, check_masks=True, limit=None):
    """Read a whole data folder into memory.

    Parameters
    ----------
    folder : str or Path
        A data folder (``images/``, ``masks/``, optional ``labels/``).
    channels : int
        The model's number of input channels (see :func:`to_channels`).
    check_masks : bool
        Raise if every mask is a single value (all background or all foreground),
        which almost always means the masks are wrong. One empty mask is fine.
    limit : int, optional
        Read only the first ``limit`` pairs (by name).

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
    jpeg_masks = []
    for pair in pairs:
        image = load_image(pair.image, channels)
        mask = read_mask(pair.mask)
        _check_size(pair.image, image, pair.mask, mask)
        if pair.mask.suffix.lower() in JPEG_EXTENSIONS:
            jpeg_masks.append(pair.mask.name)
        if pair.labels is not None:
            label = read_labels(pair.labels)
            _check_size(pair.image, image, pair.labels, label)
            labels.append(label)
        names.append(pair.name)
        images.append(image)
        masks.append(mask)
    if jpeg_masks:
        warnings.warn(
            f"Masks {listing(jpeg_masks)} are JPEG: lossy compression leaves faint non-zero "
            "pixels that read as foreground; save masks as PNG.",
            stacklevel=2,
        )
    if check_masks and all(m.min() == m.max() for m in masks):
        what = "empty (all background)" if all(m.max() == 0 for m in masks) else "a single value"
        raise UsageError(
            f"Every mask in {Path(folder) / 'masks'} is {what}; the masks are probably wrong "
            "(foreground must be > 0), check them or pass check_masks=False."
        )
    return Samples(names, images, masks, labels if pairs[0].labels is not None else None)


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
):
    """A ``tf.data`` pipeline of padded (and augmented) training tiles.

    The decoded crops stay in memory; padding and augmentation run per element
    and per epoch in a parallel map of TensorFlow ops (:func:`unet.augment.augment_tensors`: no
    Python, so no GIL, in the loop; about 2.5 CPU ms per augmented 284 x 284 RGB
    tile on one core, see ``benchmarks/data_pipeline.py``).
    The order and the augmentation are fixed by ``seed`` and differ from epoch to
    epoch: each new iteration over the dataset (a Keras epoch) draws new ones.

    Parameters
    ----------
    samples : Samples
        Crops no larger than ``out`` (see :func:`load_folder`).
    tile, out : int
        Input tile and output window sizes (see :func:`tile_size_for`).
    batch_size : int
    augment : Augmentation, bool or None
        ``True`` for the default :class:`Augmentation`; None/False for none
        (validation).
    shuffle : bool
        Shuffle the samples every epoch (False for validation).
    weights : {"uniform", "border"}
        Loss weights inside the crop (see :func:`sample_weights`); always 0 outside.
    seed : int
        Seed of the order and the augmentation.
    repeat : bool
        Repeat forever (each pass reshuffled and re-augmented).
    drop_remainder : bool
        Drop the last incomplete batch.
    w0, sigma : float
        Parameters of the border weights.

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
    augment = Augmentation() if augment is True else (augment or None)
    too_big = [
        (n, im.shape[:2]) for n, im in zip(samples.names, samples.images) if max(im.shape[:2]) > out
    ]
    if too_big:
        name, (h, w) = too_big[0]
        raise UsageError(
            f"{len(too_big)} sample(s) are larger than the {out}x{out} output window "
            f"(e.g. {name}: {h}x{w}); use a bigger tile (tile_size_for({max(h, w)})) "
            "or cut the images into smaller crops."
        )
    images = [np.asarray(im, np.float32) for im in samples.images]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    channels = {im.shape[-1] for im in images}
    if len(channels) != 1:
        raise UsageError(f"All images must have the same number of channels, got {channels}.")
    channels = channels.pop()
    masks = [(np.asarray(m) > 0).astype(np.float32) for m in samples.masks]
    pixel_weights = sample_weights(samples, weights, w0, sigma)

    # All crops in three flat tensors (pixels row by row, crop after crop) and a
    # table (offset, height, width, gray) per crop: the map below slices one crop out.
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

    noise_bank = None
    if augment is not None and augment.noise:
        noise_bank = tf.constant(
            augment_ops.noise_bank_values(max(augment_ops.NOISE_BANK, 2 * tile), channels)
        )

    n, epochs = len(images), iter(range(2**62))

    def epochs_of_indices():
        """One element per pass: the order and the element seeds of a whole epoch."""
        epoch = next(epochs)  # each new iteration (Keras epoch) gets its own draws
        while True:
            rng = np.random.default_rng([int(seed), epoch])
            order = rng.permutation(n) if shuffle else np.arange(n)
            yield order, rng.integers(0, 2**63 - 1, size=n)
            if not repeat:
                return
            epoch = next(epochs)

    def to_tensors(index, element_seed):
        offset, height, width, gray = tf.unstack(table[index])
        # a fixed-size buffer of out * out pixels (the crop's first, then repeats of
        # its last pixel), so the compiled resampling always sees the same shapes
        pixels = offset + tf.minimum(tf.range(out * out, dtype=tf.int64), height * width - 1)
        return augment_ops.augment_tensors(
            augment,
            tf.gather(flat_images, pixels),
            tf.gather(flat_masks, pixels),
            tf.gather(flat_weights, pixels),
            height,
            width,
            gray > 0,
            element_seed,
            tile,
            out,
            noise_bank,
        )

    # Python runs once per epoch (not per element), so it hardly ever holds the GIL.
    dataset = tf.data.Dataset.from_generator(
        epochs_of_indices,
        output_signature=(tf.TensorSpec((n,), tf.int64), tf.TensorSpec((n,), tf.int64)),
    ).unbatch()
    # Tell Keras the epoch length up front (no "ran out of data" on the first epoch).
    cardinality = tf.data.INFINITE_CARDINALITY if repeat else n
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(cardinality))
    dataset = dataset.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)

