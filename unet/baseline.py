"""The classical baseline: flatten the background, threshold, filter by shape.

No learning, for contrast with the U-Net:

1. Gray: RGB(A) images become luminance (Rec. 601, alpha dropped).
2. Flatten the illumination: brightfield vignetting is multiplicative, so the
   image is divided by a smooth background estimate: a grey closing with a
   window larger than any spore (which replaces the dark spores by the
   surrounding background), then smoothed (:func:`estimate_background`).
3. Threshold: Otsu's threshold on the flattened image. In brightfield spores
   absorb light and are *darker* than the background (``dark=True``); for
   fluorescence or dark-field images, where they are brighter, use ``dark=False``.
4. Clean and split: holes filled, specks dropped, touching spores split
   (:func:`unet.count.label_spores`).
5. Shape filter: keep the objects whose area lies in ``[min_area, max_area]``,
   whose solidity (area / convex area) is at least ``min_solidity`` (spores are
   convex; debris and unsplit clumps are not) and whose eccentricity is at most
   ``max_eccentricity`` (drops fibres and scratches).

The result is a binary mask; count it with :func:`unet.count.count_spores`.
"""

from __future__ import annotations

import numpy as np

from .count import MIN_AREA, SPLIT_H, label_spores
from .errors import check_choice
from .image import BACKGROUND_SIZE, estimate_background, to_gray  # noqa: F401 (public here too)

MIN_SOLIDITY = 0.8
MAX_ECCENTRICITY = 0.97


def flatten_background(image, size=BACKGROUND_SIZE, dark=True, method="divide"):
    """Remove uneven illumination.

    Parameters
    ----------
    image : array_like
        Gray or colour image.
    size : int
        Window of the background estimate (:func:`estimate_background`), pixels.
    dark : bool
        Objects darker than the background (brightfield).
    method : {"divide", "subtract"}
        ``"divide"`` (multiplicative illumination, brightfield: background -> ~1)
        or ``"subtract"`` (additive offset: background -> ~0).

    Returns
    -------
    numpy.ndarray of float64
        The flattened gray image.
    """
    check_choice("method", method, ("divide", "subtract"))
    gray = to_gray(image)
    background = estimate_background(gray, size, dark)
    if method == "subtract":
        return gray - background
    floor = 1e-6 * max(float(np.abs(background).max()), 1e-12)
    return gray / np.maximum(background, floor)


def _otsu_objects(flat, dark):
    from skimage.filters import threshold_otsu

    if np.ptp(flat) == 0:
        return np.zeros(flat.shape, bool)
    t = threshold_otsu(flat)
    return flat < t if dark else flat > t


def otsu_mask(image, dark=True):
    """The plainest method: one global Otsu threshold of the image's luminance.

    What one tries before anything else, kept as the floor every other method must
    beat (it fails on pale spores, halos, debris and uneven light).

    Parameters
    ----------
    image : array_like
        Gray ``(H, W)`` / ``(H, W, 1)``, RGB or RGBA, any dtype.
    dark : bool
        Objects darker than the background (brightfield spores).

    Returns
    -------
    numpy.ndarray
        bool ``(H, W)`` mask (all False for a constant image).
    """
    return _otsu_objects(to_gray(image), dark)


def baseline_mask(
    image,
    size=BACKGROUND_SIZE,
    dark=True,
    min_area=MIN_AREA,
    max_area=None,
    min_solidity=MIN_SOLIDITY,
    max_eccentricity=MAX_ECCENTRICITY,
    split=True,
    h=SPLIT_H,
):
    """Spore mask by background flattening, Otsu thresholding and a shape filter.

    Parameters
    ----------
    image : array_like
        Gray or colour microscope image of any size.
    size : int
        Background window (pixels), larger than any spore, see :data:`BACKGROUND_SIZE`.
    dark : bool
        Spores darker than the background (brightfield). False for bright spores.
    min_area, max_area : int
        Area range (pixels) of a spore; ``max_area=None`` means no upper limit.
    min_solidity : float
        Minimum area / convex-hull area.
    max_eccentricity : float
        Maximum eccentricity of the equivalent ellipse (0 circle, 1 line).
    split, h
        Separate touching spores before the shape filter (see
        :func:`unet.count.label_spores`).

    Returns
    -------
    numpy.ndarray of bool
        ``(height, width)`` mask of the accepted spores.
    """
    from skimage.measure import regionprops

    objects = _otsu_objects(flatten_background(image, size, dark), dark)
    labels = label_spores(objects, min_area=min_area, split=split, h=h)
    keep = np.zeros(labels.max() + 1, bool)
    for region in regionprops(labels):
        keep[region.label] = (
            region.area >= min_area
            and (max_area is None or region.area <= max_area)
            and region.solidity >= min_solidity
            and region.eccentricity <= max_eccentricity
        )
    return keep[labels]
