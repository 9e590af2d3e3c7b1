"""Preparing an image for a model: channels, luminance, percentile normalisation.

Arrays only (no files, no TensorFlow). Every image a model sees, in training and
in prediction, goes through :func:`prepare_image`, so the two see identically
prepared images.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

#: ITU-R BT.601 luma weights of R, G and B: what Pillow's ``convert("L")`` uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(image):
    """Gray values of an RGB(A) image: ``0.299 R + 0.587 G + 0.114 B`` (alpha ignored).

    Parameters
    ----------
    image : array_like
        ``(H, W, 3)`` or ``(H, W, 4)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise UsageError(f"luminance needs an (H, W, 3) or (H, W, 4) image, got {image.shape}.")
    return image[..., :3].astype(np.float32) @ np.array(LUMA_WEIGHTS, np.float32)


def to_channels(image, channels):
    """Convert an image to ``channels`` channels (channels-last).

    Gray is replicated, an alpha channel is dropped (RGBA -> RGB, gray+alpha ->
    gray) and RGB becomes gray by :func:`luminance` when ``channels == 1``.

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
        raise UsageError(f"`channels` must be at least 1, got {channels}.")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise UsageError(f"Expected an (H, W) or (H, W, C) image, got shape {image.shape}.")
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
        return luminance(image)[..., None]
    raise UsageError(
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
        raise UsageError(f"Need 0 <= `low` < `high` <= 100, got low={low}, high={high}.")
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, [low, high])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    scale = hi - lo if hi > lo else 1.0
    x = (x - np.float32(lo)) / np.float32(scale)
    return np.clip(x, 0.0, 1.0) if clip else x




def prepare_image(image, channels=3, low=1.0, high=99.8):
    """What a model is given: :func:`to_channels` then :func:`normalize`.

    Training, evaluation and prediction all call this, so they see identically
    prepared images.

    Parameters
    ----------
    image : array_like
        The image as read (any dtype), ``(H, W)`` or ``(H, W, C)``.
    channels : int
        The model's input channels.
    low, high : float
        Normalisation percentiles.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, channels)``.
    """
    return normalize(to_channels(image, channels), low, high)
