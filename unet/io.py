"""Files and folders: reading images, masks and labels; data folders; safe writing.

No TensorFlow here. A *data folder* holds ``images/NAME.ext`` and ``masks/NAME.ext``
matched by file stem, and optionally ``labels/NAME.ext`` (instance label images,
0 = background) and ``counts.csv`` (``name,count``). Images may be PNG, JPEG, TIFF
(or BMP), 8- or 16-bit (or float TIFF), grayscale, RGB or RGBA, of any size. Masks
are read as binary: any value > 0 is foreground, so 0/1, 0/255 and label images
all work.

Decisions worth knowing:

* Hidden files (``.DS_Store``, ``._x.png``) and sub-folders are ignored silently;
  other files whose extension is not an image extension are skipped with one
  warning per folder, so a stray ``README.txt`` does not stop training.
* A file that has an image extension but cannot be decoded is an error.
* Nothing is guessed about a file that holds more than one image: a TIFF with several
  images (pages written one by one, a stack of planes not marked as colour channels)
  is refused with a message that says so, never read as its first page or as RGB.
  Planes marked as colour samples (RGB, also stored plane by plane) are colour.
* JPEG and PNG files are turned upright by their EXIF orientation, as viewers show
  them, so masks, labels and centroids refer to the image a person sees.
* Pixels that are NaN or infinite (float TIFFs) are refused with their number: one of
  them would otherwise turn every percentile, and so the whole image, into NaN.
* Size alone is judged by memory, not by Pillow's decompression-bomb guard: Pillow's
  pixel limit (``Image.MAX_IMAGE_PIXELS``, about 179 megapixels before it refuses) is
  lifted while this module opens a file, and instead an image whose decoded pixels would
  not fit in the memory available now (:func:`available_memory`) is refused, from its
  header and before decoding, with one line saying how much it would need
  (:func:`check_decoded_size`). ``predict`` checks its whole path the same way
  (:func:`unet.batch.predict_memory`).
* Every file the package writes goes to a temporary name in the same folder first
  and is renamed into place (:func:`atomic_path`), so a crash never leaves a
  half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import secrets
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_TIFF = (".tif", ".tiff")
JPEG_EXTENSIONS = (".jpg", ".jpeg")
_SHOW = 5  # how many file names an error message lists


# --------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------
def _stem(path):
    """File name without its extension (``a.ome.tif`` -> ``a``)."""
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def _unreadable(path, error):
    return UsageError(
        f"Cannot read {path} as an image ({error.__class__.__name__}: {error}); "
        "replace it with a valid PNG, JPEG or TIFF file or remove it."
    )


def _check_exists(path):
    if not path.exists():
        raise FileNotFoundError(f"Image file {path} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file.")


# --------------------------------------------------------------------------------------
# Image size against memory
# --------------------------------------------------------------------------------------
_PIL_LIMIT = threading.Lock()
#: Bytes per sample of the PIL modes that are not 8-bit.
_PIL_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}


@contextlib.contextmanager
def open_pil(path):
    """``PIL.Image.open`` without Pillow's pixel limit (see the module notes).

    The limit is a process-wide setting, so it is lifted only while the header is parsed
    (Pillow checks it there) and under a lock, then restored.
    """
    from PIL import Image

    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with im:
        yield im


def _series_header(series):
    """``((height, width), samples per pixel, bytes per sample)`` of a tifffile series."""
    shape, axes = series.shape, series.axes
    height = shape[axes.index("Y")] if "Y" in axes else shape[-2]
    width = shape[axes.index("X")] if "X" in axes else shape[-1]
    samples = max(1, math.prod(int(n) for n in shape) // max(1, height * width))
    return (int(height), int(width)), samples, series.dtype.itemsize


def _pil_header(im):
    """The same for an opened PIL image (palette images as the RGB(A) they become)."""
    width, height = im.size
    bands = len(im.getbands())
    if im.mode == "P":
        bands = 4 if "transparency" in im.info else 3
    return (int(height), int(width)), bands, _PIL_MODE_BYTES.get(im.mode, 1)


def image_header(path):
    """What an image file's header says, without decoding its pixels.

    Returns
    -------
    ((int, int), int, int)
        ``((height, width), samples per pixel, bytes per sample)`` as read: palette images
        count as the RGB(A) they become, a TIFF's planes as samples. Height and width are
        as stored (an EXIF rotation may swap them; the pixel count stays).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        For a missing file or a folder.
    UsageError
        For a file whose header does not open as an image.
    """
    path = Path(path)
    _check_exists(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _series_header(tif.series[0])
        with open_pil(path) as im:
            return _pil_header(im)
    except Exception as error:
        raise _unreadable(path, error) from None


def available_memory():
    """Bytes of memory this process may still use, or ``None`` when unknown.

    Linux's ``MemAvailable`` (free memory plus what the kernel can reclaim, e.g. file
    caches), lowered to the room left under a cgroup (container) limit when there is
    one; elsewhere the free physical pages (``os.sysconf``).
    """
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: the container's limit minus what it uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = max(0, int(limit) - used)
            found = room if found is None else min(found, room)
    except (OSError, ValueError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    return found


def format_bytes(n):
    """``1.2 GB``-style size (powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover  (unreachable)


def check_memory(path, shape, need, what, advice, available=None):
    """Refuse with one line when ``need`` bytes exceed the memory available now.

    Parameters
    ----------
    path : path
        The image, named in the message.
    shape : (int, int)
        Its height and width, named in the message.
    need : int
        Bytes the work would take.
    what : str
        The work, e.g. ``"decoding it"``.
    advice : str
        What to do instead, ends the message.
    available : int, optional
        Bytes available (default :func:`available_memory`); when unknown nothing is
        refused.
    """
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise UsageError(
            f"{path} is {shape[1]} x {shape[0]} pixels; {what} would need about "
            f"{format_bytes(need)} of memory but only {format_bytes(available)} is available; "
            f"{advice}")


#: Decoded images smaller than this are not checked against the available memory.
_SMALL_IMAGE_BYTES = 256 << 20


def check_decoded_size(path, header):
    """Refuse an image whose decoded pixels alone would not fit in memory.

    Parameters
    ----------
    path : path
    header : ((int, int), int, int)
        Its :func:`image_header` (read before the pixels are decoded). Images of less
        than 256 MB are not checked (reading the available memory costs more than they
        risk).
    """
    (height, width), samples, nbytes = header
    need = height * width * samples * nbytes
    if need >= _SMALL_IMAGE_BYTES:
        check_memory(path, (height, width), need, "decoding it",
                     "free memory, or cut the image into smaller files.")


def check_image_file(path):
    """Check that a file exists and opens as an image, reading only its header.

    Cheap enough to run over every input before any output is written; a file that
    is corrupt beyond its header is still caught later by :func:`read_image`. (It is
    :func:`image_header` without the answer.)

    Raises
    ------
    FileNotFoundError, IsADirectoryError, UsageError
        As :func:`read_image` would.
    """
    image_header(path)


def read_tiff_series(path, header_only=False):
    """The one image of a TIFF: ``(array, axes, extrasamples)``, as tifffile names them.

    A TIFF of several images is refused (:func:`check_single_image`), and one whose
    pixels would not fit in memory before they are decoded (:func:`check_decoded_size`).
    ``header_only``: the array is a stand-in of the right shape and dtype that reads no
    pixels (and nothing is checked against memory). ``axes`` is tifffile's (``Y``, ``X``,
    ``S`` samples, ``C`` channels, ``Q`` unknown, ...); ``extrasamples`` the first page's
    ``ExtraSamples`` values (1 or 2: the last sample is alpha).

    Raises
    ------
    UsageError
        For the refusals above and a file tifffile cannot read.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            check_single_image(path, tif)
            series = tif.series[0]
            if header_only:
                array = np.broadcast_to(np.zeros((), series.dtype), series.shape)
            else:
                check_decoded_size(path, _series_header(series))  # before decoding
                array = np.asarray(series.asarray())
            extra = tuple(int(e) for e in (tif.pages[0].extrasamples or ()))
            return array, series.axes, extra
    except UsageError:
        raise
    except Exception as error:  # corrupt, truncated or not a TIFF at all
        raise _unreadable(path, error) from None


def _read_raw(path, palette_as_index=False):
    path = Path(path)
    _check_exists(path)
    axes = ""  # TIFF axes as tifffile names them (Y, X, S = samples, C = channels, ...)
    try:
        if path.suffix.lower() in _TIFF:
            array, axes, _ = read_tiff_series(path)
        else:
            from PIL import ImageOps

            with open_pil(path) as im:
                check_decoded_size(path, _pil_header(im))  # before decoding
                im.load()
                im = ImageOps.exif_transpose(im)
                if im.mode == "P" and not palette_as_index:
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                elif im.mode == "PA":
                    im = im.convert("RGBA")
                array = np.asarray(im)
    except UsageError:
        raise
    except Exception as error:  # corrupt, truncated or not an image at all
        raise _unreadable(path, error) from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    check_finite(path, array)
    planes = [a for a, n in zip(axes, array.shape) if n > 1 and a not in "YXSC"]
    if planes:
        shape = ", ".join(f"{a}={n}" for a, n in zip(axes, array.shape) if a not in "YX")
        raise UsageError(
            f"{path} holds a stack of 2-D images ({shape}) that are not marked as colour "
            "channels; save one image per file, or save colour channels as an RGB TIFF."
        )
    while array.ndim > 3 and array.shape[0] == 1:  # leading singleton axes of TIFFs
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[0] == 1 and array.shape[-1] not in (2, 3, 4):
        array = array[0]
    if array.ndim == 3 and array.shape[-1] not in (2, 3, 4) and array.shape[0] in (2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first TIFF
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise UsageError(
            f"{path} holds an array of shape {array.shape}, not a 2-D grayscale, RGB or RGBA "
            "image; save one 2-D image per file (no stacks or multi-page TIFFs)."
        )
    return array


def check_single_image(path, tif):
    """Refuse a TIFF (an open ``tifffile.TiffFile``) that holds several separate images.

    Pages written one by one (``imwrite(..., append=True)``, scanners, some cameras)
    form several series; tifffile reads only the first, so the rest would be lost
    without a word.
    """
    if len(tif.series) > 1:
        raise UsageError(
            f"{path} holds {len(tif.series)} separate images (pages); only one image per "
            "file is read here: save each page as its own file."
        )


def check_finite(path, array):
    """Refuse an image with NaN or infinite pixels, naming how many there are (an image
    read lazily, :class:`TiffRows`, is read a block of rows at a time)."""
    if isinstance(array, TiffRows):
        if array.dtype.kind in "fc":
            bad = sum(int(block.size - np.count_nonzero(np.isfinite(block)))
                      for block in array.blocks())
            _refuse_nonfinite(path, bad)
        return
    array = np.asarray(array)
    if array.dtype.kind in "fc":
        _refuse_nonfinite(path, int(array.size - np.count_nonzero(np.isfinite(array))))


def _refuse_nonfinite(path, bad):
    if bad:
        raise UsageError(
            f"{path} has {bad} pixel(s) that are NaN or infinite; replace them (e.g. by "
            "0 or the image's median) before segmenting it."
        )


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
    UsageError
        If it cannot be decoded or is not a single 2-D image.
    """
    return _read_raw(path)

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
            raise UsageError(
                f"Label image {path} holds fractional values; labels must be integers."
            )
    if raw.min() < 0:
        raise UsageError(f"Label image {path} holds negative values; labels must be >= 0.")
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


def listing(names):
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
    UsageError
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
            f"{listing(p.name for p in others)} (images must be {', '.join(IMAGE_EXTENSIONS)}).",
            stacklevel=2,
        )
    by_stem = {}
    for path in images:
        by_stem.setdefault(_stem(path), []).append(path)
    duplicates = [paths for paths in by_stem.values() if len(paths) > 1]
    if duplicates:
        example = " and ".join(p.name for p in duplicates[0])
        raise UsageError(
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
    UsageError
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
        raise UsageError(
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
        raise UsageError(
            f"{len(missing)} image(s) in {image_dir} have no file of the same name in "
            f"{other_dir}: {listing(missing)}; add them or remove those images."
        )
    orphans = set(others) - set(images)
    if orphans:
        raise UsageError(
            f"{len(orphans)} file(s) in {other_dir} have no image of the same name in "
            f"{image_dir}: {listing(orphans)}; add the images or remove those files."
        )




def check_data_dir(data_dir, splits=("train", "val")):
    """Check that a data set root holds the given split folders.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    NotADirectoryError, UsageError
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NotADirectoryError(f"Data directory {data_dir} does not exist.")
    missing = [s for s in splits if not (data_dir / s).is_dir()]
    if missing:
        raise UsageError(
            f"Data directory {data_dir} has no {' or '.join(m + '/' for m in missing)} folder; "
            f"it must hold {' and '.join(s + '/' for s in splits)}, each with images/ and "
            "masks/ (see data/README.md)."
        )
    return data_dir


def read_counts(folder, names=None):
    """True object counts of a data folder: ``counts.csv`` (name,count), else ``labels/``.

    Parameters
    ----------
    folder : path
        The data folder.
    names : list of str, optional
        The folder's image names: ``counts.csv`` rows that name no image, and images
        without a row, are then reported in one warning each (they are not scored).

    Returns
    -------
    dict
        image name -> count; empty when the folder has neither.
    """
    from .count import count_labels

    folder = Path(folder)
    table = folder / "counts.csv"
    if table.exists():
        with table.open() as f:
            try:
                counts = {row["name"]: int(row["count"]) for row in csv.DictReader(f)}
            except (KeyError, ValueError, TypeError):
                raise UsageError(
                    f"{table} must have the columns name,count with integer counts."
                ) from None
        if names is not None:
            _warn_unmatched_counts(table, counts, names)
        return counts
    labels_dir = folder / "labels"
    if labels_dir.is_dir():
        return {_stem(p): count_labels(read_labels(p)) for p in list_images(labels_dir)}
    return {}


def _warn_unmatched_counts(table, counts, names):
    names = set(names)
    stray = sorted(set(counts) - names)
    if stray:
        warnings.warn(
            f"{table} names {listing(stray)}, which match no image (names are file names "
            "without the extension); those rows are ignored.", stacklevel=3)
    missing = sorted(names - set(counts))
    if missing:
        warnings.warn(
            f"{table} has no count for {listing(missing)}; their counts are not scored.",
            stacklevel=3)


def collect_images(inputs):
    """Image files named directly or found (not recursively) in folders.

    Returns
    -------
    list of pathlib.Path
        In the given order, folders sorted by name, duplicates removed.

    Raises
    ------
    FileNotFoundError, UsageError
        For a missing input, an unsupported file, a folder without images, or two
        images with the same name (their outputs would collide).
    """
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise UsageError(f"Folder {item} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
            paths.extend(found)
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_EXTENSIONS:
                raise UsageError(
                    f"{item} is not an image; give files ending in {', '.join(IMAGE_EXTENSIONS)}."
                )
            paths.append(item)
        else:
            raise FileNotFoundError(f"Input {item} does not exist.")
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    seen = {}
    for path in paths:
        if path.stem in seen:
            raise UsageError(
                f"Two inputs are named {path.stem!r} ({seen[path.stem]} and {path}); their "
                "outputs would collide, so predict them into separate `out_dir` folders."
            )
        seen[path.stem] = path
    return paths


# --------------------------------------------------------------------------------------
# Writing files: a temporary name in the same folder, then a rename
# --------------------------------------------------------------------------------------
#: The lock file a process holds in a folder it writes into (see :func:`folder_lock`).
LOCK_NAME = ".unet.lock"


@contextlib.contextmanager
def folder_lock(folder, name="out_dir"):
    """Hold ``FOLDER/.unet.lock`` while this process writes into FOLDER.

    A second process that asks for the same folder is refused at once with a
    :class:`UsageError` naming the holder (process id, command, start time), instead
    of mixing its files with the first one's (two ``predict`` runs into one folder used
    to lose one run's table rows). The lock is the operating system's (``flock``): it
    ends with the process, after a kill -9 too, so no stale lock is left behind; the
    file itself stays, hidden. The folder is created if needed. Where there is no
    ``flock`` (Windows) no lock is taken.

    Parameters
    ----------
    folder : path
    name : str
        The caller's parameter that named the folder, for the messages.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"`{name}` {folder} is a file; give a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"Cannot create {folder} ({error.strerror}).") from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield None
        return
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise PermissionError(f"Cannot write to {folder} ({error.strerror}).") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(50):  # the holder writes its name just after taking the lock
                holder = os.pread(fd, 1000, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.02)
            holder = holder or "another process"
            raise UsageError(f"{folder} is in use by {holder}; wait until it has finished or "
                             f"choose another `{name}`.") from None
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"process {os.getpid()} ({command[:200]}), since "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path``, renamed onto ``path`` when the block succeeds.

    Write the file to the yielded path (with any library: Pillow, tifffile, Keras).
    On success it replaces ``path`` in one ``os.replace`` (atomic on POSIX and
    Windows within one file system), so readers and crashes see either the old file
    or the complete new one, never a half-written one. On an error the temporary
    file is removed and ``path`` is left as it was.

    The temporary name keeps ``path``'s extension (``.NAME.tmp-PID-XXXX.png``), since
    some writers choose the format by it.
    """
    path = Path(path)
    # Not mkstemp: its 0600 mode would survive the rename; the writer creates the file
    # with the usual permissions instead.
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temporary_name(path):
    """``.NAME.tmp-PID-XXXXXXXX.ext`` beside ``path``: the name of a temporary file."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


#: Names :func:`atomic_path` gives its temporary files (``.NAME.tmp-PID-XXXXXXXX.ext``).
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}(\.[^.]*)?$")


def is_temporary_name(name):
    """Whether a file name is one :func:`atomic_path` writes to before the rename."""
    return bool(_TEMPORARY.match(name))


def remove_temporaries(folder):
    """Delete the temporary files that atomic writes killed midway left in ``folder``.

    Call it only while holding the folder's lock (:func:`folder_lock`): then no live
    process is writing them. Not recursive. Returns the number removed.
    """
    removed = 0
    for path in Path(folder).iterdir():
        if is_temporary_name(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_text(path, text):
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path, header, rows):
    """Write a CSV file (one header row, then ``rows``) atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def save_png(array, path, compress_level=6):
    """Write an array as a PNG atomically (Pillow; no time or other metadata).

    ``compress_level`` is zlib's, 0-9 (Pillow's default 6); 1 writes a 1024² RGB
    micrograph in about 60 % of the time for a 5 % larger file.
    """
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array)).save(tmp, format="PNG",
                                                compress_level=int(compress_level))


class PngRows:
    """A PNG written one block of rows at a time (8-bit gray or RGB).

    Pillow encodes a PNG from a whole image in memory; this writes the rows as they
    come (zlib-compressed as the PNG format stores them, filter type 0), so a
    20000 x 20000 mask or overlay costs one block of rows, not 400 MB-1.2 GB. Used as
    a context manager inside :func:`atomic_path`; :func:`save_png` writes the same
    pixels from a whole array.

    Parameters
    ----------
    path : path
        The file to write (the caller's temporary name).
    shape : (int, int)
        ``(height, width)``.
    channels : {1, 3}
        Gray or RGB.
    compress_level : int
        zlib's level, 0-9.
    """

    def __init__(self, path, shape, channels=1, compress_level=6):
        import zlib

        self.height, self.width = (int(v) for v in shape)
        self.channels = int(channels)
        if self.channels not in (1, 3):
            raise UsageError(f"PngRows writes gray or RGB, not {channels} channels.")
        self._file = open(path, "wb")
        self._zip = zlib.compressobj(int(compress_level))
        self._rows = 0
        self._file.write(b"\x89PNG\r\n\x1a\n")
        self._chunk(b"IHDR", np.array([self.width, self.height], ">u4").tobytes()
                    + bytes([8, 0 if self.channels == 1 else 2, 0, 0, 0]))

    def _chunk(self, kind, data):
        import zlib

        self._file.write(len(data).to_bytes(4, "big") + kind + data)
        self._file.write(zlib.crc32(data, zlib.crc32(kind)).to_bytes(4, "big"))

    def write(self, rows):
        """Append ``(n, width)`` (gray) or ``(n, width, 3)`` (RGB) uint8 rows."""
        rows = np.asarray(rows, np.uint8).reshape(-1, self.width * self.channels)
        if self._rows + len(rows) > self.height:
            raise UsageError(f"PngRows: {self._rows + len(rows)} rows for a PNG of {self.height}.")
        lines = np.zeros((len(rows), rows.shape[1] + 1), np.uint8)  # filter byte 0: none
        lines[:, 1:] = rows
        data = self._zip.compress(lines.tobytes())
        if data:
            self._chunk(b"IDAT", data)
        self._rows += len(rows)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                if self._rows != self.height:
                    raise UsageError(f"PngRows: {self._rows} rows written of {self.height}.")
                self._chunk(b"IDAT", self._zip.flush())
                self._chunk(b"IEND", b"")
        finally:
            self._file.close()


class TiffRows:
    """The pixels of a one-image TIFF, read from the file block by block when indexed.

    An array-like (``shape``, ``dtype``, ``ndim``, indexing by rows and columns) that
    decodes only the strips or tiles a window needs (tifffile's own decoders: any
    compression it reads), so a large TIFF is never held whole: what
    :func:`unet.batch.predict_images` reads a huge image through. Indexing reads the
    bounding rows of the key and indexes them; the result is what
    :func:`unet.imagefile.read_image_channels` gives for the same pixels.

    Only TIFFs whose one page holds ``(height, width)`` or ``(height, width,
    samples)`` interleaved pixels are read this way (:meth:`open` returns None for
    others, which are read whole).

    Parameters
    ----------
    path : path
    channel : sequence of int, optional
        Samples to keep (a single one gives a 2-D image).
    """

    def __init__(self, path, page_info, channel=None):
        self.path = Path(path)
        (self._offsets, self._counts, self._rows_per, self._tile_w, self._contiguous,
         self._dtype, height, width, self._samples) = page_info
        self._channel = None if channel is None else list(channel)
        n = self._samples if self._channel is None else len(self._channel)
        self.shape = (height, width) if n == 1 else (height, width, n)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(self._dtype).newbyteorder("=")
        self._lock = threading.Lock()
        self._tif = None  # the open file, parsed once (opened when first read)

    @classmethod
    def open(cls, path, channel=None):
        """A :class:`TiffRows` of ``path``, or None when it is not a TIFF or its layout
        is not one it reads (several pages or series, planes stored apart, an unusual
        sample layout)."""
        import tifffile

        if Path(path).suffix.lower() not in _TIFF:
            return None
        with tifffile.TiffFile(path) as tif:
            if len(tif.series) != 1 or len(tif.pages) != 1:
                return None
            page = tif.pages[0]
            _, depth, height, width, samples = page.shaped
            if (page.shaped[0] != 1 or depth != 1 or page.planarconfig not in (1, None)
                    and samples > 1 or page.dtype is None or page.dtype.kind == "b"):
                return None
            if samples > 1 and tif.series[0].axes not in ("YXS",):
                return None
            if samples == 1 and tif.series[0].axes not in ("YX",):
                return None
            rows_per = page.tilelength if page.is_tiled else page.rowsperstrip
            info = (tuple(int(o) for o in page.dataoffsets),
                    tuple(int(c) for c in page.databytecounts), int(rows_per or height),
                    int(page.tilewidth) if page.is_tiled else 0,
                    page.is_contiguous is not None and page.compression == 1
                    and not page.is_tiled and page.fillorder == 1 and page.predictor == 1,
                    page.dtype.newbyteorder(tif.byteorder), height, width, samples)
        return cls(path, info, channel)

    def close(self):
        """Close the file (reopened when read again)."""
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def _read(self, offset, count):
        if self._tif is None:
            import tifffile

            self._tif = tifffile.TiffFile(self.path)
        handle = self._tif.filehandle
        handle.seek(offset)
        data = handle.read(count)
        if len(data) != count:
            raise UsageError(f"{self.path} is truncated: a block of pixels ends early.")
        return data

    def rows(self, top, bottom):
        """Image rows ``top .. bottom`` (clipped to the image), all columns."""
        height, width = self.shape[:2]
        top, bottom = max(0, int(top)), min(height, int(bottom))
        samples, dtype = self._samples, np.dtype(self._dtype)
        out = np.empty((max(0, bottom - top), width, samples), dtype.newbyteorder("="))
        if bottom <= top:
            return self._pick(out)
        with self._lock:
            if self._contiguous:
                line = width * samples * dtype.itemsize
                data = self._read(self._offsets[0] + top * line, (bottom - top) * line)
                out[:] = np.frombuffer(data, dtype).reshape(out.shape)
                return self._pick(out)
            across = -(-width // self._tile_w) if self._tile_w else 1
            for band in range(top // self._rows_per, -(-bottom // self._rows_per)):
                for k in range(band * across, (band + 1) * across):
                    data = self._read(self._offsets[k], self._counts[k])
                    block, (_, _, y, x, _), _ = self._tif.pages[0].decode(data, k)
                    block = block.reshape(block.shape[-3:])
                    y0, y1 = max(y, top), min(y + block.shape[0], bottom, height)
                    x1 = min(x + block.shape[1], width)
                    out[y0 - top : y1 - top, x:x1] = block[y0 - y : y1 - y, : x1 - x]
        if out.dtype == bool:
            out = out.astype(np.uint8)
        return self._pick(out)

    def blocks(self, rows=512):
        """The image ``rows`` rows at a time, top to bottom."""
        for top in range(0, self.shape[0], rows):
            yield self.rows(top, top + rows)

    def _pick(self, block):
        if self._channel is not None:
            block = block[..., self._channel]
        return block[..., 0] if block.shape[2] == 1 else block

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        if isinstance(rows, slice):
            top, bottom, step = rows.indices(self.shape[0])
            if step < 0:
                raise IndexError("TiffRows reads rows top to bottom (no negative steps).")
            block = self.rows(top, bottom)
            return block[(slice(None, None, step), *key[1:])]
        index = np.asarray(rows)
        if index.dtype == bool or index.size == 0:
            raise IndexError("TiffRows takes a slice or integer positions of rows.")
        top = int(index.min())
        block = self.rows(top, int(index.max()) + 1)
        return block[(index - top, *key[1:])]

    def __array__(self, dtype=None, copy=None):
        block = self.rows(0, self.shape[0])
        return block if dtype is None else block.astype(dtype, copy=False)


class RawRows:
    """A 2-D array kept in a raw binary file, written and read a block of rows at a time.

    What a huge image's label or probability map is kept in until it can be written
    as a TIFF (the labels' type is known only when every spore is counted). Reading
    uses plain file reads, not a memory map, so the rows read are not held. Index with
    a slice of rows (``raw[top:bottom]``).

    Parameters
    ----------
    path : path
        The file (created empty; a temporary name from :func:`scratch_path`).
    width : int
    dtype : numpy dtype
    """

    ndim = 2

    def __init__(self, path, width, dtype):
        self.path, self.width, self.dtype = Path(path), int(width), np.dtype(dtype)
        self.height = 0
        self._file = open(self.path, "w+b")

    @property
    def shape(self):
        return (self.height, self.width)

    def append(self, rows):
        """Write rows below those written so far."""
        rows = np.ascontiguousarray(rows, self.dtype)
        self._file.seek(0, os.SEEK_END)
        self._file.write(rows.tobytes())
        self.height += len(rows)

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise IndexError("RawRows reads a slice of rows (step 1).")
        top, bottom, _ = key.indices(self.height)
        line = self.width * self.dtype.itemsize
        self._file.seek(top * line)
        data = self._file.read(max(0, bottom - top) * line)
        return np.frombuffer(data, self.dtype).reshape(-1, self.width).copy()

    def close(self):
        self._file.close()


@contextlib.contextmanager
def scratch_path(folder, name):
    """A temporary file name in ``folder`` (named as :func:`atomic_path` names its
    temporaries, so :func:`remove_temporaries` clears it after a crash), removed when
    the block ends."""
    tmp = _temporary_name(Path(folder) / name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
