"""Data: image/mask folders, normalisation, mirror-padded tiles, border weights, augmentation.

A *data folder* holds ``images/NAME.ext`` and ``masks/NAME.ext`` matched by file
stem, and optionally ``labels/NAME.ext`` (instance label images, 0 = background).
Images may be PNG, JPEG, TIFF (or BMP), 8- or 16-bit (or float TIFF), grayscale,
RGB or RGBA, of any size. Masks are read as binary: any value > 0 is foreground,
so 0/1, 0/255 and label images all work.

Every image given to a model goes through :func:`load_image` (read, convert to the
model's channel count, percentile-normalise), at training and at prediction time.
Training crops are never resized: :func:`pad_to_tile` places a crop in the model's
output window and mirror-pads the input tile around it; mask and weight are given
for the output window, with weight 0 outside the real crop. :func:`make_dataset`
turns crops into a ``tf.data`` pipeline with the paper's augmentation
(flips, rotations, elastic deformation) and, optionally, its border weights.

Decisions worth knowing:

* Hidden files (``.DS_Store``, ``._x.png``) and sub-folders are ignored silently;
  other files whose extension is not an image extension are skipped with one
  warning per folder, so a stray ``README.txt`` does not stop training.
* A file that has an image extension but cannot be decoded is an error.
* A crop is centred in the output window; pixels of the window outside the crop
  get mask 0 and weight 0.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ._quiet import quiet_retracing

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")
_SHOW = 5  # how many file names an error message lists


# --------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------
def _stem(path):
    """File name without its extension (``a.ome.tif`` -> ``a``)."""
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def _unreadable(path, error):
    return ValueError(
        f"Cannot read {path} as an image ({error.__class__.__name__}: {error}); "
        "replace it with a valid PNG, JPEG or TIFF file or remove it."
    )


def _check_exists(path):
    if not path.exists():
        raise FileNotFoundError(f"Image file {path} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file.")


def check_image_file(path):
    """Check that a file exists and opens as an image, reading only its header.

    Cheap enough to run over every input before any output is written; a file that
    is corrupt beyond its header is still caught later by :func:`read_image`.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, ValueError
        As :func:`read_image` would.
    """
    path = Path(path)
    _check_exists(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tif.pages[0].shape  # noqa: B018  (parses the first page's header)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.size  # noqa: B018
    except Exception as error:
        raise _unreadable(path, error) from None


def _read_raw(path, palette_as_index=False):
    path = Path(path)
    _check_exists(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            array = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode == "P" and not palette_as_index:
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                elif im.mode == "PA":
                    im = im.convert("RGBA")
                array = np.asarray(im)
    except Exception as error:  # corrupt, truncated or not an image at all
        raise _unreadable(path, error) from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    while array.ndim > 3 and array.shape[0] == 1:  # leading singleton axes of TIFFs
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[0] == 1 and array.shape[-1] not in (2, 3, 4):
        array = array[0]
    if array.ndim == 3 and array.shape[-1] not in (2, 3, 4) and array.shape[0] in (2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first TIFF
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise ValueError(
            f"{path} holds an array of shape {array.shape}, not a 2-D grayscale, RGB or RGBA "
            "image; save one 2-D image per file (no stacks or multi-page TIFFs)."
        )
    return array


def read_image(path):
    """Read an image file as it is stored.

    Parameters
    ----------
    path : str or Path
        A PNG, JPEG, BMP or TIFF file (TIFF through tifffile).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` with C in 2 (gray + alpha), 3 or 4, in the file's
        own dtype (uint8, uint16, float32, ...). Palette images become RGB(A);
        channels-first TIFFs are moved to channels-last.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it cannot be decoded or is not a single 2-D image.
    """
    return _read_raw(path)


def to_channels(image, channels):
    """Convert an image to ``channels`` channels (channels-last).

    Gray is replicated, an alpha channel is dropped (RGBA -> RGB, gray+alpha ->
    gray) and RGB becomes gray by luminance (0.299 R + 0.587 G + 0.114 B, as
    Pillow does) when ``channels == 1``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``.
    channels : int
        The model's number of input channels.

    Returns
    -------
    numpy.ndarray
        ``(H, W, channels)``; the input dtype, except float32 after a luminance
        conversion.
    """
    image = np.asarray(image)
    channels = int(channels)
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}.")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {image.shape}.")
    have = image.shape[-1]
    if have == channels:
        return image
    if have in (2, 4):  # drop alpha
        image, have = image[..., :-1], have - 1
        if have == channels:
            return image
    if have == 1:
        return np.repeat(image, channels, axis=-1)
    if have == 3 and channels == 1:
        luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return luma[..., None]
    raise ValueError(
        f"Cannot convert an image with {image.shape[-1]} channels to {channels} channels; "
        "use a model with 1 or 3 input channels or convert the images first."
    )


def normalize(image, low=1.0, high=99.8, clip=False):
    """Percentile normalisation of one image over all its channels.

    ``(x - p_low) / (p_high - p_low)`` in float32, as in CSBDeep/StarDist, so 8-bit,
    16-bit and float images all land on roughly [0, 1]. If the two percentiles are
    equal (a nearly constant image) the minimum and maximum are used instead; a
    constant image becomes all zeros.

    Parameters
    ----------
    image : numpy.ndarray
        Any numeric array.
    low, high : float
        Percentiles mapped to 0 and 1.
    clip : bool
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"Need 0 <= low < high <= 100, got low={low}, high={high}.")
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, [low, high])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    scale = hi - lo if hi > lo else 1.0
    x = (x - np.float32(lo)) / np.float32(scale)
    return np.clip(x, 0.0, 1.0) if clip else x


def load_image(path, channels=3, low=1.0, high=99.8):
    """Read, convert to ``channels`` and normalise: what a model is given.

    Training (:func:`load_folder`) and prediction both call this, so the two see
    identically prepared images.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, channels)``.
    """
    return normalize(to_channels(read_image(path), channels), low, high)


def read_mask(path):
    """Read a mask file as binary: any value > 0 is foreground.

    0/1, 0/255 and label images all work; for a colour mask any colour channel
    > 0 is foreground (an alpha channel is ignored). Palette images are read by
    their palette index.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W)`` of 0 and 1.
    """
    raw = _read_raw(path, palette_as_index=True)
    if raw.ndim == 3:
        raw = raw[..., :-1] if raw.shape[-1] in (2, 4) else raw
        return (raw > 0).any(axis=-1).astype(np.uint8)
    return (raw > 0).astype(np.uint8)


def read_labels(path):
    """Read an instance label image (0 = background, one integer per object).

    A colour label image (one colour per object, black background) is turned
    into integer labels.

    Returns
    -------
    numpy.ndarray
        int32 ``(H, W)``.
    """
    raw = _read_raw(path, palette_as_index=True)
    if raw.ndim == 3:
        raw = raw[..., :-1] if raw.shape[-1] in (2, 4) else raw
        colours, inverse = np.unique(raw.reshape(-1, raw.shape[-1]), axis=0, return_inverse=True)
        foreground = colours.any(axis=1)
        # black stays 0, the other colours become 1, 2, ...
        ids = (np.cumsum(foreground) * foreground).astype(np.int32)
        return ids[inverse.reshape(raw.shape[:2])]
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(raw == np.round(raw)):
            raise ValueError(
                f"Label image {path} holds fractional values; labels must be integers."
            )
    if raw.min() < 0:
        raise ValueError(f"Label image {path} holds negative values; labels must be >= 0.")
    return raw.astype(np.int32)


# --------------------------------------------------------------------------------------
# Data folders
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One sample of a data folder: its name (file stem) and file paths."""

    name: str
    image: Path
    mask: Path
    labels: Path | None = None


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
            raise ValueError(
                f"Samples need as many images and masks as names, got {n} names, "
                f"{len(self.images)} images and {len(self.masks)} masks."
            )
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"Samples have {n} names but {len(self.labels)} label images.")

    def __len__(self):
        return len(self.names)


def _listing(names):
    names = sorted(names)
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def list_images(folder):
    """Image files of one folder, sorted by name.

    Hidden files and sub-folders are ignored silently; files with a non-image
    extension are skipped with one warning.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``folder`` does not exist or is a file.
    ValueError
        If two files share a stem (``a.png`` and ``a.tif``).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"Folder {folder} does not exist.")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder of images.")
    images, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        (images if entry.suffix.lower() in IMAGE_EXTENSIONS else others).append(entry)
    if others:
        warnings.warn(
            f"Skipping {len(others)} non-image file(s) in {folder}: "
            f"{_listing(p.name for p in others)} (images must be {', '.join(IMAGE_EXTENSIONS)}).",
            stacklevel=2,
        )
    by_stem = {}
    for path in images:
        by_stem.setdefault(_stem(path), []).append(path)
    duplicates = [paths for paths in by_stem.values() if len(paths) > 1]
    if duplicates:
        example = " and ".join(p.name for p in duplicates[0])
        raise ValueError(
            f"{folder} holds files with the same name but different extensions ({example}); "
            "keep one file per name."
        )
    return images


def find_pairs(folder):
    """Match ``images/`` with ``masks/`` (and optional ``labels/``) by file stem.

    Parameters
    ----------
    folder : str or Path
        A data folder with ``images/`` and ``masks/`` sub-folders.

    Returns
    -------
    list of Pair
        Sorted by name.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If the folder or its ``images/`` or ``masks/`` is missing.
    ValueError
        If there are no images, an image has no mask or a mask no image (or the
        same for ``labels/``), or two files share a stem.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"Data folder {folder} does not exist.")
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is a file; give a data folder holding images/ and masks/."
        )
    for sub in ("images", "masks"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(
                f"Data folder {folder} has no {sub}/ sub-folder; it must hold images/ and "
                "masks/ with matching file names."
            )
    images = {_stem(p): p for p in list_images(folder / "images")}
    if not images:
        raise ValueError(
            f"{folder / 'images'} holds no image files; add PNG, JPEG or TIFF images."
        )
    masks = {_stem(p): p for p in list_images(folder / "masks")}
    _check_matching(images, masks, folder / "images", folder / "masks")
    labels = None
    if (folder / "labels").is_dir():
        labels = {_stem(p): p for p in list_images(folder / "labels")}
        _check_matching(images, labels, folder / "images", folder / "labels")
    return [
        Pair(name, images[name], masks[name], labels[name] if labels else None)
        for name in sorted(images)
    ]


def _check_matching(images, others, image_dir, other_dir):
    missing = set(images) - set(others)
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) in {image_dir} have no file of the same name in "
            f"{other_dir}: {_listing(missing)}; add them or remove those images."
        )
    orphans = set(others) - set(images)
    if orphans:
        raise ValueError(
            f"{len(orphans)} file(s) in {other_dir} have no image of the same name in "
            f"{image_dir}: {_listing(orphans)}; add the images or remove those files."
        )


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
    ValueError
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
        if pair.mask.suffix.lower() in _JPEG:
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
            f"Masks {_listing(jpeg_masks)} are JPEG: lossy compression leaves faint non-zero "
            "pixels that read as foreground; save masks as PNG.",
            stacklevel=2,
        )
    if check_masks and all(m.min() == m.max() for m in masks):
        what = "empty (all background)" if all(m.max() == 0 for m in masks) else "a single value"
        raise ValueError(
            f"Every mask in {Path(folder) / 'masks'} is {what}; the masks are probably wrong "
            "(foreground must be > 0), check them or pass check_masks=False."
        )
    return Samples(names, images, masks, labels if pairs[0].labels is not None else None)


def _check_size(image_path, image, other_path, other):
    if image.shape[:2] != other.shape[:2]:
        raise ValueError(
            f"{other_path} is {other.shape[1]}x{other.shape[0]} pixels but its image "
            f"{image_path} is {image.shape[1]}x{image.shape[0]}; they must be the same size."
        )


# --------------------------------------------------------------------------------------
# Tiles: crops placed in the output window, mirror-padded input
# --------------------------------------------------------------------------------------
def tile_size_for(crop_size, depth=4, padding="valid"):
    """The smallest model tile whose output window covers a crop.

    Parameters
    ----------
    crop_size : int
        Largest height or width of the training crops.
    depth, padding
        The model's (see :func:`unet.model.unet_model`).

    Returns
    -------
    (int, int)
        ``(tile, out)``: input tile size and its output size, e.g. ``(284, 100)``
        for 100-pixel crops with valid padding at depth 4, ``(112, 112)`` with
        same padding.
    """
    from .model import input_size_for_output, output_size

    tile = input_size_for_output(int(crop_size), depth, padding)
    return tile, output_size(tile, depth, padding)


def _check_tile(tile, out):
    if not 1 <= out <= tile or (tile - out) % 2:
        raise ValueError(
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
        raise ValueError(
            f"A {h}x{w} crop does not fit the {out}x{out} output window of a {tile} tile; "
            "use a bigger tile (tile_size_for(crop_size)) or cut the image into smaller crops."
        )
    mask = np.zeros((h, w), np.float32) if mask is None else np.asarray(mask, np.float32)
    weight = np.ones((h, w), np.float32) if weight is None else np.asarray(weight, np.float32)
    for name, array in (("mask", mask), ("weight", weight)):
        if array.shape[:2] != (h, w) or array.size != h * w:
            raise ValueError(f"The {name} is {array.shape} but its image is {(h, w)}.")
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
    ValueError
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
        raise ValueError(f"labels must be a 2-D array, got shape {labels.shape}.")
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


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------
@dataclass
class Augmentation:
    """Random augmentation of a training tile; each part can be switched off.

    Geometric transforms move image, mask and weight together over the whole
    input tile, whose mirror padding extends as far as a rotation or deformation
    reaches, so they never leave holes; pixels that come from outside the real
    crop get mask 0 and weight 0. Intensity changes touch the image only. Images
    are normalised to about [0, 1], which the intensity ranges refer to.

    Attributes
    ----------
    flip : bool
        Random horizontal and vertical flips.
    rotate90 : bool
        Random multiples of 90 degrees.
    rotation : float
        Free rotation by an angle uniform in ``[-rotation, rotation]`` degrees
        (with flips and 90-degree turns, 45 covers every angle); 0 disables.
    elastic : bool
        The paper's elastic deformation: random displacement vectors on a coarse
        ``elastic_grid x elastic_grid`` grid over the input tile, drawn with
        standard deviation ``elastic_sigma`` pixels and interpolated bicubically
        to every pixel.
    elastic_sigma : float
        Standard deviation of the coarse displacements, in pixels (10 in the paper).
    elastic_grid : int
        Points per side of the coarse displacement grid (3 in the paper).
    brightness : float
        Add a value uniform in ``[-brightness, brightness]``; 0 disables.
    contrast : float
        Scale around the mean by a factor uniform in ``[1 - contrast, 1 + contrast]``.
    gamma : float
        Raise to a power ``exp(u)``, u uniform in ``[-gamma, gamma]`` (sign kept).
    noise : float
        Add Gaussian noise whose standard deviation is uniform in ``[0, noise]``.

    Notes
    -----
    Contrast, brightness and gamma are applied to the crop before resampling
    (they act pixel by pixel, and the crop is smaller than the tile); the noise
    is added to the final tile. The image is resampled bilinearly, the mask
    bilinearly and thresholded at 0.5 (so it stays exactly 0/1), the weight by
    nearest neighbour (so it keeps its values). A gray crop replicated to C
    channels stays gray (the same noise in every channel). The noise of a tile is a
    window, at a random offset, of a fixed field of i.i.d. standard normal values
    (:func:`_noise_bank`), scaled by the tile's standard deviation: per tile as
    Gaussian and independent from pixel to pixel as fresh draws, at a fraction of
    their cost (tiles whose windows overlap share part of their noise; a 768-pixel
    bank offers 485 x 485 windows of 284 pixels).

    The work is done by TensorFlow ops (:func:`_augment_tensors`), so that in the
    ``tf.data`` pipeline it runs beside the training step without holding Python's
    global interpreter lock; :func:`make_tile` (and calling an Augmentation) runs the
    same ops eagerly on NumPy arrays.
    """

    flip: bool = True
    rotate90: bool = True
    rotation: float = 45.0
    elastic: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    noise: float = 0.03

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool) and value < 0:
                raise ValueError(f"Augmentation.{f.name} must be >= 0, got {value}.")
        if self.elastic and self.elastic_grid < 2:
            raise ValueError(f"Augmentation.elastic_grid must be >= 2, got {self.elastic_grid}.")

    @classmethod
    def none(cls):
        """An augmentation that changes nothing."""
        return cls(
            flip=False, rotate90=False, rotation=0.0, elastic=False,
            brightness=0.0, contrast=0.0, gamma=0.0, noise=0.0,
        )

    @property
    def warps(self):
        """Whether a resampling transform (free rotation or elastic) is on."""
        return bool(self.rotation) or (self.elastic and self.elastic_sigma > 0)

    def __call__(self, image, mask, weight, tile, out, rng):
        """Augment one crop into a tile; see :func:`make_tile` for the arguments."""
        return _augment_numpy(self, image, mask, weight, tile, out, rng)


@functools.lru_cache(maxsize=8)
def _centred_grid(size):
    """Row and column coordinates of a size x size grid relative to its centre."""
    line = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2.0)
    yy, xx = np.meshgrid(line, line, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@functools.lru_cache(maxsize=16)
def _bicubic_matrix(points, size):
    """``(size, points)`` matrix interpolating ``points`` grid values to ``size`` pixels.

    Column j is the cubic-spline interpolation of the j-th unit vector, so
    ``M @ coarse @ M.T`` upsamples a coarse grid bicubically; the grid's first
    and last points sit on the first and last pixel.
    """
    from scipy import ndimage as ndi

    positions = np.linspace(0, points - 1, size)[None]
    eye = np.eye(points)
    matrix = np.stack(
        [ndi.map_coordinates(eye[j], positions, order=3, mode="mirror") for j in range(points)],
        axis=1,
    ).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


# The quarter turns Q**k, Q = [[0, 1], [-1, 0]]: the same rotation as np.rot90(a, k).
_QUARTER_TURNS = np.array(
    [[[1, 0], [0, 1]], [[0, 1], [-1, 0]], [[-1, 0], [0, -1]], [[0, -1], [1, 0]]], np.float32
)


def _mirror(coords, length):
    """Fold (float) positions into ``[0, length - 1]`` by mirroring at the borders.

    For whole numbers this is numpy's 'reflect' padding (the edge pixel is not
    repeated), for any distance; mirroring is piecewise an isometry, so bilinear
    interpolation at the folded position equals interpolation between the folded
    neighbours.
    """
    import tensorflow as tf

    last = tf.cast(length - 1, tf.float32)
    period = tf.maximum(2.0 * last, 1.0)
    folded = coords - period * tf.floor(coords / period)  # floormod, without slow fmod
    folded = tf.where(folded > last, period - folded, folded)
    return tf.where(length > 1, folded, 0.0)


#: Side of the bank of Gaussian noise that tiles take their noise from (at least
#: twice the tile); see :func:`_noise_bank`.
NOISE_BANK = 768


@functools.lru_cache(maxsize=4)
def _noise_bank(side, channels):
    """A fixed ``(side, side, channels)`` field of i.i.d. standard normal float32 values.

    Each augmented tile adds a window of it at a random offset, scaled by its own
    random standard deviation: the noise of a tile is i.i.d. Gaussian, as if drawn
    afresh, but costs a slice instead of ``tile**2 * C`` normal draws (which took as
    long as all the rest of the augmentation).
    """
    bank = np.random.default_rng(0x5EED).standard_normal((side, side, channels), np.float32)
    bank.setflags(write=False)
    return bank


def _augment_tensors(augment, image, mask, weight, height, width, gray, seed, tile, out,
                     noise_bank=None):
    """Pad (and augment) one crop into a training tile with TensorFlow ops.

    This is what :func:`make_dataset` maps over the samples (and :func:`make_tile`
    runs eagerly): TensorFlow ops, so the work runs in TensorFlow's thread pool beside
    the training step, without Python's global interpreter lock. The random draws and
    the pixel-by-pixel intensity changes of the crop run as graph ops; the resampling
    into the tile is one XLA-compiled function of fixed shapes (:func:`_resampler`),
    which fuses it into a few loops (about 4x faster than the same ops one by one).

    Every tile pixel ``p`` is read from the crop at ``c + F Q R (p - c) + d(p)``:
    c the tile centre, F the flips, Q the quarter turns, R the free rotation and d
    the elastic displacement field (all in tile coordinates), by one bilinear
    resampling of the image at mirrored crop positions (the mirror padding, as far
    as a transform reaches). The mask is resampled bilinearly with the crop's edge
    repeated outside it and thresholded at 0.5, the weight by nearest neighbour; both
    are 0 where the nearest crop pixel is outside the crop (no loss there).
    Without a free rotation or elastic deformation every source position is a whole
    pixel and the tile is an exact copy (the flipped/turned mirror padding).

    Parameters
    ----------
    augment : Augmentation or None
    image : tf.Tensor
        float32 ``(out * out, C)``: the crop's pixels row by row in the first
        ``height * width`` rows (the rest is ignored).
    mask, weight : tf.Tensor
        float32 ``(out * out,)``, laid out like ``image``.
    height, width : tf.Tensor
        int32 scalars, the crop size (at most ``out``).
    gray : tf.Tensor
        bool scalar: all channels are equal (the same noise for all of them).
    seed : tf.Tensor
        int64 scalar; the same seed gives the same tile.
    tile, out : int
    noise_bank : tf.Tensor, optional
        :func:`_noise_bank` of side >= 2 * tile (made here when not given).

    Returns
    -------
    (tf.Tensor, tf.Tensor, tf.Tensor)
        image ``(tile, tile, C)``, mask and weight ``(out, out, 1)``, float32.
    """
    import tensorflow as tf

    aug = augment or Augmentation.none()
    channels = image.shape[-1]
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), tf.constant(0x5EED, tf.int64)]), 9
    )

    def uniform(k, low, high, shape=(), dtype=tf.float32):
        return tf.random.stateless_uniform(shape, seeds[k], low, high, dtype=dtype)

    # pixel by pixel, on the crop (smaller than the tile)
    if aug.contrast or aug.brightness or aug.gamma:
        factor = uniform(0, 1 - aug.contrast, 1 + aug.contrast) if aug.contrast else 1.0
        shift = uniform(1, -aug.brightness, aug.brightness) if aug.brightness else 0.0
        power = tf.exp(uniform(2, -aug.gamma, aug.gamma)) if aug.gamma else 1.0
        image = _intensity(bool(aug.contrast), bool(aug.gamma), out, channels)(
            image, height * width, factor, shift, power
        )

    # the transform: crop position = linear @ (p - c) + shift + elastic(p)
    linear = tf.eye(2)
    if aug.flip:
        linear = tf.linalg.diag(tf.where(uniform(3, 0.0, 1.0, [2]) < 0.5, -1.0, 1.0))
    if aug.rotate90:
        linear = linear @ tf.gather(_QUARTER_TURNS, uniform(4, 0, 4, dtype=tf.int32))
    if aug.rotation:
        angle = uniform(5, -aug.rotation, aug.rotation) * (np.pi / 180.0)
        cos, sin = tf.cos(angle), tf.sin(angle)
        linear = linear @ tf.reshape(tf.stack([cos, -sin, sin, cos]), (2, 2))
    g = int(aug.elastic_grid)
    elastic = aug.elastic and aug.elastic_sigma > 0
    coarse = (
        tf.random.stateless_normal((2, g, g), seeds[6], stddev=aug.elastic_sigma)
        if elastic else tf.zeros((2, g, g))
    )
    if aug.noise:
        if noise_bank is None:
            noise_bank = tf.constant(_noise_bank(max(NOISE_BANK, 2 * tile), channels))
        corner = uniform(8, 0, noise_bank.shape[0] - tile + 1, [2], dtype=tf.int32)
        noise_sd = uniform(7, 0.0, aug.noise)
    else:
        noise_bank = tf.zeros((tile, tile, channels))
        corner, noise_sd = tf.zeros(2, tf.int32), tf.constant(0.0)
    resample = _resampler(aug.warps, elastic, bool(aug.noise), g, tile, out, channels)
    return resample(image, mask, weight, height, width, linear, coarse, gray,
                    noise_bank, corner, noise_sd)


@functools.lru_cache(maxsize=8)
def _intensity(contrast, gamma, out, channels):
    """XLA-compiled contrast, brightness and gamma of a crop buffer (fixed shapes).

    Separate from :func:`_resampler`, so that XLA does not recompute them for each of
    the four neighbours the resampling reads.
    """
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def intensity(image, pixels, factor, shift, power):
        if contrast:
            inside = (tf.range(out * out) < pixels)[:, None]
            mean = tf.reduce_sum(tf.where(inside, image, 0.0)) / tf.cast(
                pixels * channels, tf.float32
            )
            image = (image - mean) * factor + mean
        image += shift
        if gamma:  # sign(x) |x|**power; exp(power log|x|) is much faster than pow here
            image = tf.sign(image) * tf.exp(power * tf.math.log(tf.abs(image)))
        return image

    return intensity


@functools.lru_cache(maxsize=32)
def _resampler(warps, elastic, noise, grid, tile, out, channels):
    """The XLA-compiled resampling of a crop into a tile (see :func:`_augment_tensors`).

    Fixed shapes (crop buffers of ``out * out`` pixels, the tile), so it compiles once
    per configuration (a second or two).
    """
    import tensorflow as tf

    margin = (tile - out) // 2
    centre = (tile - 1) / 2.0
    yy, xx = _centred_grid(tile)
    up = _bicubic_matrix(grid, tile)  # (tile, grid): separable bicubic upsampling

    @tf.function(jit_compile=True, autograph=False)
    def resample(image, mask, weight, height, width, linear, coarse, gray, bank, corner, sd):
        top = margin + (out - height) // 2  # the crop's corner in the tile
        left = margin + (out - width) // 2
        src_y = linear[0, 0] * yy + linear[0, 1] * xx + (centre - tf.cast(top, tf.float32))
        src_x = linear[1, 0] * yy + linear[1, 1] * xx + (centre - tf.cast(left, tf.float32))
        if elastic:
            src_y += up @ coarse[0] @ up.T
            src_x += up @ coarse[1] @ up.T
        window = slice(margin, margin + out)
        win_y, win_x = src_y[window, window], src_x[window, window]

        def inside_or_zero(values, rows, cols):
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            rows = tf.clip_by_value(rows, 0, height - 1)
            cols = tf.clip_by_value(cols, 0, width - 1)
            return tf.where(inside, tf.gather(values, rows * width + cols), 0.0)

        def clamped(values, rows, cols):  # the edge pixel repeated outside the crop
            rows = tf.clip_by_value(rows, 0, height - 1)
            cols = tf.clip_by_value(cols, 0, width - 1)
            return tf.gather(values, rows * width + cols)

        def whole(coords):
            return tf.cast(tf.round(coords), tf.int32)

        if warps:
            fold_y, fold_x = _mirror(src_y, height), _mirror(src_x, width)
            y0, x0 = tf.floor(fold_y), tf.floor(fold_x)
            fy, fx = (fold_y - y0)[..., None], (fold_x - x0)[..., None]
            y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
            # the next row/column, repeated at the last one (where its weight is 0)
            y1, x1 = tf.minimum(y0 + 1, height - 1) * width, tf.minimum(x0 + 1, width - 1)
            y0 = y0 * width
            upper = tf.gather(image, y0 + x0)
            upper += fx * (tf.gather(image, y0 + x1) - upper)
            lower = tf.gather(image, y1 + x0)
            lower += fx * (tf.gather(image, y1 + x1) - lower)
            image_tile = upper + fy * (lower - upper)
            wy0, wx0 = tf.floor(win_y), tf.floor(win_x)
            wfy, wfx = win_y - wy0, win_x - wx0
            wy0, wx0 = tf.cast(wy0, tf.int32), tf.cast(wx0, tf.int32)
            # edge-clamped, so that a pixel the weight keeps (the nearest crop pixel is
            # inside) is never pulled towards background by zeros beyond the crop
            upper = clamped(mask, wy0, wx0)
            upper += wfx * (clamped(mask, wy0, wx0 + 1) - upper)
            lower = clamped(mask, wy0 + 1, wx0)
            lower += wfx * (clamped(mask, wy0 + 1, wx0 + 1) - lower)
            near_y, near_x = whole(tf.floor(win_y + 0.5)), whole(tf.floor(win_x + 0.5))
            inside = (near_y >= 0) & (near_y < height) & (near_x >= 0) & (near_x < width)
            mask_out = tf.where(inside & (upper + wfy * (lower - upper) >= 0.5), 1.0, 0.0)
            weight_out = inside_or_zero(weight, near_y, near_x)
        else:  # whole-pixel moves: an exact copy
            rows = whole(_mirror(tf.round(src_y), height))
            cols = whole(_mirror(tf.round(src_x), width))
            image_tile = tf.gather(image, rows * width + cols)
            rows, cols = whole(win_y), whole(win_x)
            mask_out = inside_or_zero(mask, rows, cols)
            weight_out = inside_or_zero(weight, rows, cols)
        if noise:
            # the tile's window of the noise bank (a gather: XLA would compile a slice
            # once per corner)
            side = bank.shape[1]
            rows, cols = corner[0] + tf.range(tile), corner[1] + tf.range(tile)
            field = tf.gather(tf.reshape(bank, (-1, channels)), rows[:, None] * side + cols)
            # a gray crop replicated to C channels gets the same noise in every channel
            field = tf.where(gray, field[..., :1], field)
            image_tile += field * sd
        return image_tile, mask_out[..., None], weight_out[..., None]

    return resample


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
    """:func:`_augment_tensors` on one NumPy crop (eagerly); NumPy results."""
    import tensorflow as tf

    image, mask, weight, _, _ = _prepare(image, mask, weight, tile, out)
    h, w, _ = image.shape
    seed = np.random.default_rng(rng).integers(0, 2**63 - 1)
    with quiet_retracing():  # each augmentation setting compiles its own resampler
        image_tile, mask_out, weight_out = _augment_tensors(
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
    return augment(image, mask, weight, tile, out, rng)


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
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
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
    and per epoch in a parallel map of TensorFlow ops (:func:`_augment_tensors`: no
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
        raise ValueError("make_dataset got no samples; load a data folder with images first.")
    _check_tile(tile, out)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    augment = Augmentation() if augment is True else (augment or None)
    too_big = [
        (n, im.shape[:2]) for n, im in zip(samples.names, samples.images) if max(im.shape[:2]) > out
    ]
    if too_big:
        name, (h, w) = too_big[0]
        raise ValueError(
            f"{len(too_big)} sample(s) are larger than the {out}x{out} output window "
            f"(e.g. {name}: {h}x{w}); use a bigger tile (tile_size_for({max(h, w)})) "
            "or cut the images into smaller crops."
        )
    images = [np.asarray(im, np.float32) for im in samples.images]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    channels = {im.shape[-1] for im in images}
    if len(channels) != 1:
        raise ValueError(f"All images must have the same number of channels, got {channels}.")
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
        noise_bank = tf.constant(_noise_bank(max(NOISE_BANK, 2 * tile), channels))

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
        return _augment_tensors(
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
