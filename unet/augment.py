"""Training augmentation as TensorFlow ops: flips, rotations, elastic deformation, intensity.

:class:`Augmentation` holds the settings; :func:`augment_tensors` pads (and augments)
one crop into a training tile with TensorFlow ops, so that in the ``tf.data``
pipeline it runs beside the training step without holding Python's global
interpreter lock (see :func:`unet.data.make_dataset`; :func:`unet.data.make_tile`
runs the same ops eagerly).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np

from .errors import UsageError

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
        0.5 since 0.2.0 (0.2 before): the wider range found the grey inner cells
        of a phase-contrast colony that 0.2 missed, scored within a training seed's
        spread on four other sets and cost a little Dice on a fifth (benchmarks/README.md,
        *The intensity augmentation's ranges*).
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
    (:func:`noise_bank_values`), scaled by the tile's standard deviation: per tile as
    Gaussian and independent from pixel to pixel as fresh draws, at a fraction of
    their cost (tiles whose windows overlap share part of their noise; a 768-pixel
    bank offers 485 x 485 windows of 284 pixels).

    The work is done by TensorFlow ops (:func:`augment_tensors`), so that in the
    ``tf.data`` pipeline it runs beside the training step without holding Python's
    global interpreter lock; :func:`unet.data.make_tile` runs the same ops eagerly on
    NumPy arrays.
    """

    flip: bool = True
    rotate90: bool = True
    rotation: float = 45.0
    elastic: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    brightness: float = 0.1
    contrast: float = 0.5
    gamma: float = 0.2
    noise: float = 0.03

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool) and value < 0:
                raise UsageError(f"Augmentation.{f.name} must be >= 0, got {value}.")
        if self.elastic and self.elastic_grid < 2:
            raise UsageError(f"Augmentation.elastic_grid must be >= 2, got {self.elastic_grid}.")

    @classmethod
    def from_overrides(cls, values=None):
        """The defaults with some fields changed: ``Config.augmentation`` (a JSON object).

        ``values``: a dict of field names and values, or None (the defaults). Unknown
        names, and values of the wrong type (flags must be ``true``/``false``, ranges
        numbers), raise :class:`unet.UsageError` naming the fields.
        """
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"Unknown augmentation field(s) {unknown}; known: {sorted(known)}.")
        for name, value in values.items():
            flag = isinstance(known[name].default, bool)
            whole = isinstance(known[name].default, int) and not flag
            if (isinstance(value, bool) != flag or not isinstance(value, (int, float))
                    or (whole and not float(value).is_integer())):
                kind = "true or false" if flag else "an integer" if whole else "a number"
                raise UsageError(f"Augmentation.{name} must be {kind}, got {value!r}.")
            if whole:
                values[name] = int(value)
        return cls(**values)

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
#: twice the tile); see :func:`noise_bank_values`.
NOISE_BANK = 768


@functools.lru_cache(maxsize=4)
def noise_bank_values(side, channels):
    """A fixed ``(side, side, channels)`` field of i.i.d. standard normal float32 values.

    Each augmented tile adds a window of it at a random offset, scaled by its own
    random standard deviation: the noise of a tile is i.i.d. Gaussian, as if drawn
    afresh, but costs a slice instead of ``tile**2 * C`` normal draws (which took as
    long as all the rest of the augmentation).
    """
    bank = np.random.default_rng(0x5EED).standard_normal((side, side, channels), np.float32)
    bank.setflags(write=False)
    return bank


def augment_tensors(augment, image, mask, weight, height, width, gray, seed, tile, out,
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
        :func:`noise_bank_values` of side >= 2 * tile (made here when not given).

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
            noise_bank = tf.constant(noise_bank_values(max(NOISE_BANK, 2 * tile), channels))
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
    """XLA-compiled contrast, brightness and gamma of a crop buffer (fixed shapes; each
    buffer size compiles once).

    Separate from :func:`_resampler`, so that XLA does not recompute them for each of
    the four neighbours the resampling reads.
    """
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def intensity(image, pixels, factor, shift, power):
        if contrast:
            inside = (tf.range(tf.shape(image)[0]) < pixels)[:, None]
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
    """The XLA-compiled resampling of a crop into a tile (see :func:`augment_tensors`).

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


