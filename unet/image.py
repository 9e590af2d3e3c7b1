"""Preparing an image for a model: channels, luminance, background, percentile normalisation.

Arrays only (no files, no TensorFlow). Every image a model sees, in training and
in prediction, goes through :func:`prepare_image`, so the two see identically
prepared images.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

#: ITU-R BT.601 luma weights of R, G and B: what Pillow's ``convert("L")`` uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: The smallest and largest window of :func:`estimate_background` (pixels), both
#: included: what ``Config.flatten`` accepts and :func:`unet.data.choose_flatten` chooses.
BACKGROUND_WINDOWS = (3, 4096)


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
    # channel by channel: no float copy of all three channels at once
    gray = np.multiply(image[..., 0], LUMA_WEIGHTS[0], dtype=np.float32)
    for channel, weight in ((1, LUMA_WEIGHTS[1]), (2, LUMA_WEIGHTS[2])):
        gray += np.multiply(image[..., channel], weight, dtype=np.float32)
    return gray


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


#: Pixels the normalisation percentiles are computed from: images with more pixels are
#: sampled on a regular grid of about this many (every k-th row and column), so the
#: percentiles cost memory and time for 4 megapixels whatever the image's size. Smaller
#: images (all training crops and tiles) use every pixel, exactly as before.
PERCENTILE_SAMPLE = 1 << 22


def _is_lazy(image):
    """An array-like read from its file when indexed (:class:`unet.io.TiffRows`)."""
    return not isinstance(image, np.ndarray) and hasattr(image, "rows")


#: Rows of a lazily read image that are read at a time for its percentiles and extremes.
_BLOCK_ROWS = 512


def _blocks(image, step=1):
    """Every ``step``-th row and column of an image (lazily read or not), a block of
    rows at a time."""
    rows = max(step, _BLOCK_ROWS // step * step)
    for top in range(0, image.shape[0], rows):
        yield image[top : top + rows : step, ::step]


def percentile_sample(image, size=PERCENTILE_SAMPLE):
    """The pixels percentiles are computed from: ``image`` itself when it has at most
    ``size`` pixels, else every k-th row and column of it (k the smallest step that leaves
    at most ``size`` pixels; a view, no copy). An image read lazily from its file is read
    a block of rows at a time (its sample is a copy)."""
    lazy = _is_lazy(image)
    if not lazy:
        image = np.asarray(image)
    if image.ndim < 2:
        return image
    pixels = image.shape[0] * image.shape[1]
    step = 1
    if pixels > size:
        step = int(np.ceil(np.sqrt(pixels / size)))
        while -(-image.shape[0] // step) * -(-image.shape[1] // step) > size:
            step += 1
    if lazy:  # each block a copy, not a view holding every row read
        return np.concatenate([np.array(block) for block in _blocks(image, step)])
    return image if step == 1 else image[::step, ::step]


def normalization_range(image, low=1.0, high=99.8):
    """``(lo, hi)``: the values :func:`normalize` maps to 0 and 1 (see there).

    The percentiles come from :func:`percentile_sample` (every pixel of an image of at
    most :data:`PERCENTILE_SAMPLE` pixels); the minimum and maximum, used when the two
    percentiles are equal, from every pixel.
    """
    if not _is_lazy(image):
        image = np.asarray(image)
    return _range(percentile_sample(image), low, high, lambda: image_extremes(image))


def image_extremes(image, channels=None):
    """``(minimum, maximum)`` of an image's pixels; an image read lazily from its file
    (:class:`unet.io.TiffRows`) a block of rows at a time. With ``channels``, of the
    image as the model is given it (:func:`to_channels`)."""
    if not _is_lazy(image):
        image = np.asarray(image)
        if channels is not None:
            image = _channels_view(image, channels)
        return image.min(), image.max()
    blocks = _blocks(image)
    if channels is not None:
        blocks = (_channels_view(block, channels) for block in blocks)
    lows, highs = zip(*((block.min(), block.max()) for block in blocks))
    return min(lows), max(highs)


def _range(sample, low, high, extremes):
    """The percentiles of ``sample``, or (when equal) the ``(min, max)`` that
    ``extremes()`` gives: the image's own, of every pixel."""
    if not 0 <= low < high <= 100:
        raise UsageError(f"Need 0 <= `low` < `high` <= 100, got low={low}, high={high}.")
    sample = np.array(sample, dtype=np.float32)  # a copy, sorted in place
    lo, hi = (float(v) for v in np.percentile(sample, [low, high], overwrite_input=True))
    del sample
    if not hi > lo:
        # of the float32 values, as the result is computed (rounding keeps the order)
        lo, hi = (float(np.float32(v)) for v in extremes())
    return lo, hi


def _rescale(image, lo, hi):
    """``(image - lo) / (hi - lo)`` in one new float32 array (``/ 1`` when ``hi <= lo``):
    the arithmetic of :func:`normalize` and :class:`PreparedImage`."""
    x = np.subtract(image, np.float32(lo), dtype=np.float32)
    x /= np.float32(hi - lo if hi > lo else 1.0)
    return x


def normalize(image, low=1.0, high=99.8, clip=False):
    """Percentile normalisation of one image over all its channels.

    ``(x - p_low) / (p_high - p_low)`` in float32, as in CSBDeep/StarDist, so 8-bit,
    16-bit and float images all land on roughly [0, 1]. If the two percentiles are
    equal (a nearly constant image) the minimum and maximum are used instead; a
    constant image becomes all zeros. Images of more than :data:`PERCENTILE_SAMPLE`
    pixels take their percentiles from a regular grid of that many pixels
    (:func:`normalization_range`); the result is computed in place in one float32 array
    (the input is never changed).

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
    image = np.asarray(image)
    x = _rescale(image, *normalization_range(image, low, high))
    if clip:
        np.clip(x, 0.0, 1.0, out=x)
    return x


#: Side (pixels) of the square window of the classical baseline's background estimate
#: (:mod:`unet.baseline`): larger than any spore (~10-30 px across) so that spores do
#: not survive in it, small against the illumination gradient across a field.
BACKGROUND_SIZE = 41


def to_gray(image):
    """A float64 gray image: :func:`unet.image.luminance` for RGB/RGBA, the only channel
    otherwise."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = luminance(image)
    image = image.astype(np.float64)
    if image.ndim != 2:
        raise UsageError(
            f"Expected a gray (H, W), (H, W, 1), RGB or RGBA image, got shape {image.shape}."
        )
    return image


def estimate_background(image, size=BACKGROUND_SIZE, dark=True):
    """Smooth illumination under the objects.

    A grey closing (dilation then erosion, ``size`` x ``size``) fills dark objects
    smaller than the window with the surrounding background (an opening removes
    bright ones, ``dark=False``); a Gaussian of ``size / 4`` then smooths the
    blocky result. The image is first extended by point reflection at its
    borders (``2 * edge - mirror``), which continues an illumination gradient
    linearly, so the estimate is not biased at the edges where vignetting is
    strongest.
    """
    gray = to_gray(image)
    size = int(size)
    if size < BACKGROUND_WINDOWS[0]:
        raise UsageError(f"size must be at least {BACKGROUND_WINDOWS[0]} pixels, got {size!r}.")
    from scipy import ndimage as ndi

    sigma = size / 4
    pad = size + int(np.ceil(4 * sigma))
    extended = np.pad(gray, pad, mode="reflect", reflect_type="odd")
    morph = ndi.grey_closing if dark else ndi.grey_opening
    envelope = morph(extended, size=(size, size))
    smooth = ndi.gaussian_filter(envelope, sigma)
    return smooth[pad:-pad, pad:-pad]


def divide_background(image, size):
    """An image with its brightfield background divided out, every channel alike.

    Each channel is divided by :func:`estimate_background` of the image's luminance
    (a grey closing of ``size`` pixels, which fills the dark objects smaller than it,
    then smoothed) scaled to its median, so uneven light (vignetting, a lamp off
    centre) is taken out and the colours are kept. For brightfield images, whose
    objects are darker than the background; ``size`` should exceed the largest object.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` or ``(H, W, C)``, any dtype.
    size : int
        Window of the background estimate, pixels (at least 3).

    Returns
    -------
    numpy.ndarray
        float32, the image's shape.
    """
    if isinstance(size, str):  # Config(flatten="auto") before training chose the window
        raise UsageError(
            f"`flatten` {size!r} is not a window in pixels: \"auto\" is chosen when training "
            "starts; pass the window of a trained run (its config.json).")
    image = np.asarray(image)
    background = estimate_background(image, size, dark=True)
    background /= max(float(np.median(background)), 1e-12)
    np.maximum(background, 1e-6, out=background)
    if image.ndim == 3:
        background = background[..., None]
    return (image / background).astype(np.float32)


def prepare_image(image, channels=3, low=1.0, high=99.8, flatten=None):
    """What a model is given: :func:`to_channels`, :func:`divide_background` if
    ``flatten``, then :func:`normalize`.

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
    flatten : int, optional
        Window (pixels) of the brightfield background divided out before the
        normalisation (a run's ``Config.flatten``); None: none.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, channels)``.
    """
    image = to_channels(image, channels)
    if flatten:
        image = divide_background(image, flatten)
    return normalize(image, low, high)


class PreparedImage:
    """:func:`prepare_image` computed window by window, without a float32 copy of the
    whole image.

    What :func:`unet.predict.predict_tiled` accepts in place of a prepared array: it
    reads the image tile by tile, and each tile is normalised when it is read, with the
    percentiles of the whole image. Indexing gives exactly
    ``prepare_image(image, channels, low, high)[key]`` (float32; tested), so predictions
    are the same; what is held is the image as read (a gray image given to a
    3-channel model is a view of its one channel). For an 8-bit RGB image that is 3
    bytes per pixel instead of 12 more. Given an image read lazily from its file
    (:class:`unet.io.TiffRows`), nothing of it is held: the percentiles come from a
    sample read a block of rows at a time, and each window is read when indexed.

    With ``flatten`` the background is divided out of the whole image first, so the
    flattened image is held in float32 (a lazily read image is read whole).

    Parameters
    ----------
    image : array_like
        The image as read (any dtype), ``(H, W)`` or ``(H, W, C)``.
    channels, low, high, flatten
        As for :func:`prepare_image`.

    Attributes
    ----------
    shape : tuple of int
        ``(H, W, channels)``.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, image, channels=3, low=1.0, high=99.8, flatten=None):
        self._channels = int(channels)
        if flatten:  # the background needs the whole image
            image = divide_background(to_channels(np.asarray(image[:, :]) if _is_lazy(image)
                                                  else image, self._channels), flatten)
        if _is_lazy(image):  # read from the file window by window
            self._lazy = image
            self._range = _range(
                _channels_view(percentile_sample(image), self._channels), low, high,
                lambda: image_extremes(image, self._channels))
            self.shape = (*image.shape[:2], self._channels)
            return
        self._lazy = None
        self._image = _channels_view(np.asarray(image), self._channels)
        self._range = normalization_range(self._image, low, high)
        self.shape = self._image.shape

    @classmethod
    def _of(cls, image, value_range):
        """A prepared image over ``image`` (channels already the model's) and a range."""
        prepared = cls.__new__(cls)
        prepared._lazy, prepared._image, prepared._range = None, image, value_range
        prepared._channels, prepared.shape = image.shape[2], image.shape
        return prepared

    def take_rows(self, rows):
        """The image's rows ``rows`` (integer positions or a slice) as a prepared image
        with this image's normalisation: what a row of tiles reads, held as read."""
        if self._lazy is not None:
            band = _channels_view(self._lazy[rows], self._channels)
        else:
            band = self._image[rows]
        return PreparedImage._of(band, self._range)

    def __getitem__(self, key):
        if self._lazy is not None:
            return _rescale(to_channels(self._lazy[key], self._channels), *self._range)
        return _rescale(self._image[key], *self._range)

    def __array__(self, dtype=None, copy=None):
        x = self[:, :]
        return x if dtype is None else x.astype(dtype, copy=False)


def _channels_view(image, channels):
    """:func:`to_channels`, with gray given to a several-channel model as a view."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim == 3 and image.shape[2] == 1 and channels > 1:
        return np.broadcast_to(image, (*image.shape[:2], channels))  # no copies
    return to_channels(image, channels)
