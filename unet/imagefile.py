"""What a microscope image file says beyond its pixels: its channels and its pixel size.

No TensorFlow. :func:`unet.io.read_image` reads what an image *is* (gray, RGB, RGBA);
microscopes also write multichannel TIFFs (ImageJ hyperstacks ``CYX``, OME-TIFF,
interleaved samples) whose channels are not colours, and a physical pixel size.

Decisions worth knowing:

* A channel is *alpha* only when the file says so: a PNG in mode ``LA``/``RGBA``, or a
  TIFF whose last sample is marked as alpha (``ExtraSamples`` 1 or 2). A TIFF with 2
  (or 4 or more) channels that are not marked so is refused without ``channel``: it is
  never silently read as gray + alpha. Three unmarked channels are read as RGB, as
  before. Planes that the file does not mark as channels at all (a plain multi-page
  TIFF: a z-stack? channels?) are refused without ``channel`` too.
* ``channel`` counts from 0 (numpy's, napari's and tifffile's order; Fiji's "c:1" is
  channel 0).
* The pixel size is read, in this order, from OME-XML (``PhysicalSizeX``), ImageJ
  metadata (``unit`` + resolution) and the TIFF resolution tags (inch or centimetre).
  Resolution unit "none" and the 72/96 dpi that image editors write by default are not
  a pixel size; nor are unequal x and y sizes (a warning says so). Other formats carry
  none that is trusted here.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError
from .io import _TIFF, check_finite, read_image, read_tiff_series

#: Micrometres per unit, for the unit names ImageJ and OME write.
_MICRONS = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3,
    "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
    "inch": 25400.0, "in": 25400.0,
}
#: Resolutions (pixels per inch) that image editors write when they know none.
_DEFAULT_DPI = (72.0, 96.0)


@dataclass(frozen=True)
class PixelSize:
    """Micrometres per pixel and where the number came from.

    Attributes
    ----------
    um : float or None
        Side of a pixel in µm; ``None`` when unknown.
    source : str
        ``"given"`` (by the caller, ``--pixel-size``), ``"ome"``, ``"imagej"``,
        ``"tiff"`` (resolution tags) or ``"none"``.
    """

    um: float | None
    source: str


NO_PIXEL_SIZE = PixelSize(None, "none")


def _square(path, x, y, source):
    if x is None or not np.isfinite(x) or x <= 0:
        return None
    if y is not None and np.isfinite(y) and y > 0 and abs(x - y) > 0.01 * x:
        warnings.warn(
            f"{path} has unequal pixel sizes ({x:g} x {y:g} µm, {source}); areas and lengths "
            "stay in pixels. Give `pixel_size` to use one size.", stacklevel=3)
        return None
    return PixelSize(float(x), source)


def _ome_size(tif, path):
    xml = tif.ome_metadata
    if not xml:
        return None
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if not pixels:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(0)))
    if "PhysicalSizeX" not in attrs:
        return None
    scale = [_MICRONS.get(attrs.get(f"PhysicalSize{a}Unit", "µm").strip().lower())
             for a in "XY"]
    try:
        x = float(attrs["PhysicalSizeX"]) * scale[0]
        y = float(attrs.get("PhysicalSizeY", attrs["PhysicalSizeX"])) * (scale[1] or scale[0])
    except (TypeError, ValueError):
        return None
    return _square(path, x, y, "ome")


def _resolution(page):
    """Pixels per unit along x and y from the resolution tags (None where missing)."""
    values = []
    for name in ("XResolution", "YResolution"):
        tag = page.tags.get(name)
        if tag is None:
            values.append(None)
            continue
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        values.append(num / den if den else None)
    return values


def read_pixel_size(path):
    """The pixel size a TIFF file records (OME-XML, ImageJ metadata, resolution tags).

    Parameters
    ----------
    path : path
        An image file; only TIFFs carry a size this reads.

    Returns
    -------
    PixelSize
        :data:`NO_PIXEL_SIZE` when the file has none (or not a trusted one, see the
        module notes).
    """
    path = Path(path)
    if path.suffix.lower() not in _TIFF:
        return NO_PIXEL_SIZE
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            found = _ome_size(tif, path)
            if found:
                return found
            page = tif.pages[0]
            xres, yres = _resolution(page)
            if not xres:
                return NO_PIXEL_SIZE
            ij = tif.imagej_metadata or {}
            unit = str(ij.get("unit", "")).strip().lower()
            if unit in _MICRONS:
                return _square(path, _MICRONS[unit] / xres,
                               _MICRONS[unit] / yres if yres else None, "imagej") or NO_PIXEL_SIZE
            resunit = int(getattr(page, "resolutionunit", 1) or 1)
            per = {2: 25400.0, 3: 10000.0}.get(resunit)  # inch, centimetre
            if per is None or (resunit == 2 and round(xres, 3) in _DEFAULT_DPI):
                return NO_PIXEL_SIZE
            return _square(path, per / xres, per / yres if yres else None, "tiff") or NO_PIXEL_SIZE
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return NO_PIXEL_SIZE


def pixel_size_for(path, given=None):
    """``given`` (µm per pixel) when set, else :func:`read_pixel_size` of the file."""
    if given is not None:
        return PixelSize(float(given), "given")
    return read_pixel_size(path)


def check_pixel_size(value):
    """``None`` or a positive finite number of µm per pixel."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"`pixel_size` must be a number of µm per pixel, got {value!r}.") from None
    if not np.isfinite(value) or value <= 0:
        raise UsageError(f"`pixel_size` must be a positive number of µm per pixel, got {value!r}.")
    return value


# --------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------
def check_channels(channel):
    """``None``, or the channel indices as a tuple of non-negative ints."""
    if channel is None:
        return None
    values = [channel] if isinstance(channel, (int, np.integer)) else list(channel)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0
                         for v in values):
        raise UsageError(
            f"`channel` must be a channel index (0 = the first) or a list of them, got "
            f"{channel!r}.")
    if len(set(values)) != len(values):
        raise UsageError(f"`channel` names a channel twice: {channel!r}.")
    return tuple(int(v) for v in values)


def _tiff_channels(path, header_only=False, channel=None):
    """``(array (H, W, C) or (H, W), alpha)`` of a TIFF, the channel axis found by name.

    ``header_only``: the array is a stand-in of the right shape that reads no pixels.
    Planes whose axis has no meaning in the file (plain multi-page TIFFs) are taken as
    channels only when ``channel`` selects some; without it they are refused.
    """
    array, axes, extra = read_tiff_series(path, header_only)
    keep = [i for i, (a, n) in enumerate(zip(axes, array.shape)) if n > 1 or a in "YX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "Y" not in axes or "X" not in axes or len(axes) > 3:
        others = ", ".join(f"{a}={n}" for a, n in zip(axes, array.shape) if a not in "YX")
        raise UsageError(
            f"{path} holds more than one 2-D image ({others}); save one plane per file "
            "(no z-stacks or time series).")
    if len(axes) == 3:
        other = next(a for a in axes if a not in "YX")
        if other in "ZT":
            raise UsageError(
                f"{path} is a {'z-stack' if other == 'Z' else 'time series'} of "
                f"{array.shape[axes.index(other)]} planes; save one plane per file.")
        if other not in "CS" and channel is None:  # planes of unknown meaning
            raise UsageError(
                f"{path} holds {array.shape[axes.index(other)]} planes that the file does "
                "not mark as channels or colours (a plain multi-page TIFF); if they are "
                "channels, choose them with `channel`; if they are a z-stack or a time "
                "series, save one plane per file.")
        array = np.moveaxis(array, axes.index(other), -1)
        axes = "YX" + (other if other in "CS" else "C")  # with `channel`: the caller's channels
    elif axes.startswith("X"):
        array = np.swapaxes(array, 0, 1)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not header_only:
        check_finite(path, array)
    # ExtraSamples 1/2: associated/unassociated alpha in the last sample
    alpha = array.ndim == 3 and "S" in axes and bool(extra) and extra[-1] in (1, 2)
    return array, alpha


def check_image_channels(path, channel=None):
    """Check, from the file's header, what :func:`read_image_channels` would refuse.

    Cheap enough to run over every input before anything is written (TIFFs: the
    channel layout and ``channel``; other formats are checked when read).
    """
    path = Path(path)
    if path.suffix.lower() in _TIFF:
        channel = check_channels(channel)
        _select(path, *_tiff_channels(path, header_only=True, channel=channel), channel)


def read_image_channels(path, channel=None):
    """Read an image file, with the chosen channels of a multichannel image.

    Parameters
    ----------
    path : path
        PNG, JPEG, BMP or TIFF (also ImageJ hyperstacks and OME-TIFFs of one plane
        with any number of channels).
    channel : int or sequence of int, optional
        Channels to keep (0 = the first). Without it the image is read as
        :func:`unet.io.read_image` reads it, except that a TIFF with 2, or 4 and
        more, channels none of which is marked as alpha is refused.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` for one channel, ``(H, W, C)`` otherwise, in the file's dtype.

    Raises
    ------
    UsageError
        For an unreadable file, a stack, a channel the file does not have, or an
        unmarked multichannel TIFF without ``channel``.
    """
    path = Path(path)
    channel = check_channels(channel)
    if path.suffix.lower() in _TIFF:
        if not path.exists():
            raise FileNotFoundError(f"Image file {path} does not exist.")
        array, alpha = _tiff_channels(path, channel=channel)
    else:
        array, alpha = read_image(path), None
    return _select(path, array, alpha, channel)


def _select(path, array, alpha, channel):
    n = 1 if array.ndim == 2 else array.shape[2]
    if channel is None:
        if alpha is False and (n == 2 or n >= 4):
            raise UsageError(
                f"{path} has {n} channels and none is marked as alpha; choose the channel(s) "
                f"to segment with `channel` (0 to {n - 1}; one channel, or as many as the "
                "model takes).")
        if n > 4:
            raise UsageError(
                f"{path} has {n} channels; choose the channel(s) to segment with `channel`.")
        return array
    missing = [c for c in channel if c >= n]
    if missing:
        raise UsageError(
            f"{path} has {n} channel(s) (0 to {n - 1}), so `channel` {missing[0]} does not "
            "exist.")
    if array.ndim == 2:
        return array
    picked = array[..., list(channel)]
    return picked[..., 0] if len(channel) == 1 else picked
