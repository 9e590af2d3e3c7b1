"""Overlap-tile prediction of images of any size (Ronneberger et al., 2015, Fig. 2).

The image is cut into tiles that overlap by the network's context: each tile's
*input* includes a margin of ``context`` pixels around the part of the image whose
prediction it delivers, so every output pixel is predicted exactly once, with its
full surroundings, and no tile seams appear. Beyond the image border the missing
context is filled by mirroring the image (reflection without repeating the edge
pixel). Tiles are read one batch at a time from the image with mirrored indices,
so a 4096x4096 image needs memory for the image, the output and one batch of tiles,
never for the activations of the whole image. Nothing is resized.

* Valid padding (the paper's): a tile of input size ``T`` yields ``O =
  output_size(T, depth)`` pixels; ``context = (T - O) / 2`` (92 at depth 4).
* Same padding: the model returns as many pixels as it gets, but those within
  the receptive field of the tile border see zero padding, not image. We keep a
  margin anyway and deliver only each tile's centre. The default margin,
  ``6 * 2**depth`` (96 at depth 4), covers the receptive field (``6 * 2**depth - 2``
  pixels: the valid trim plus 2, since pooling and up-convolution are not centred),
  so the centre is computed exactly as if the image went on and tiles agree where
  they meet.

Tiles start on multiples of ``2**depth`` pixels (the pooling grid), so for a
translation-equivariant model (valid padding with ``skip="crop"``, or same
padding) the tiled result equals one forward pass over the whole mirror-padded
image, whatever the tile size.

Note: a valid-padding model with ``skip="resize"`` resizes its skip features by
a factor that depends on the input size, so its output depends on the tile size;
predict such a model with the tile size it was trained on (``tile=...``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import UsageError, as_pair, check_choice
from .image import PreparedImage
from .model import model_geometry
from .sizes import PADDINGS, default_context, input_size_for_output, output_size

#: Largest tile side (input pixels) the automatic planner chooses. Measured on a
#: 2-core CPU with the default spore model (depth 3, 16 filters, bf16;
#: ``benchmarks/tiling.py``, table in ``benchmarks/README.md``): the model's speed per
#: input pixel hardly depends on the tile size, so large tiles, which recompute the
#: least context, are fastest. For a 2048x2048 image, tiles of 196 px (20x20, work
#: ratio 3.66) gave 1.1-1.8 output megapixels/s, 300 (2.15) 2.1-2.9, and every size
#: from 604 (1.39) to 1116 (2x2, 1.19) 3.3-4.4 in two runs, within the noise of one
#: another.
#: Memory bounds it: activations grow with batch_size * tile**2 * filters (about 28 MB
#: per first-level filter for a 1212 tile in float32), so a 4096x4096 image took a
#: peak of 1.2 GB resident at batch size 1, 1.4 GB at 2 and 2.0 GB at 4 (4x4 tiles
#: of 1116). A depth-4 model gets 1212 tiles (work ratio 1.40 at 2048 and 4096).
#: Lower it (or ``batch_size``) on small GPUs.
MAX_TILE = 1280

TTA_MODES = ("flips", "d4")


# --------------------------------------------------------------------------------------
# Tile plans
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TilePlan:
    """How an image is cut into tiles (all sizes in pixels, ``(rows, cols)``).

    Attributes
    ----------
    image_shape : tuple
        ``(height, width)`` of the image.
    tile : tuple
        Model input size of every tile.
    output : tuple
        Model output size of every tile.
    stride : tuple
        Image pixels each tile delivers (and the step between tiles).
    grid : tuple
        Number of tiles along each axis.
    context : tuple
        Mirrored/neighbouring context above and left of the delivered part.
    offset : tuple
        Where the delivered part starts in the model output (0 for valid padding,
        ``context`` for same padding).
    work_ratio : float
        Input pixels computed / output pixels wanted
        (``grid_h * tile_h * grid_w * tile_w / (height * width)``).
    """

    image_shape: tuple
    tile: tuple
    output: tuple
    stride: tuple
    grid: tuple
    context: tuple
    offset: tuple
    work_ratio: float

    @property
    def n_tiles(self):
        """Total number of tiles."""
        return self.grid[0] * self.grid[1]

    def tile_origins(self):
        """Top-left corners of the tiles in image coordinates (may be negative)."""
        return [
            (i * self.stride[0] - self.context[0], j * self.stride[1] - self.context[1])
            for i in range(self.grid[0])
            for j in range(self.grid[1])
        ]


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def _tile_for(kept, depth, padding, context):
    """Smallest valid tile delivering ``kept`` pixels with ``context`` on both sides."""
    if padding == "valid":
        return input_size_for_output(kept, depth, "valid")
    return _round_up(kept + 2 * context, 2**depth)


def _axis_plan(length, depth, padding, context, tile, max_tile):
    """``(tile, output, stride, n)`` for one axis."""
    grid = 2**depth
    if tile is not None:
        if padding == "valid":
            out = output_size(tile, depth, "valid")  # raises with the nearest valid sizes
            deliverable = out
        else:
            if tile % grid:
                output_size(tile, depth, "same")  # raises with the nearest valid sizes
            out = tile
            deliverable = tile - 2 * context
            if deliverable < 1:
                raise UsageError(
                    f"Tile {tile} leaves nothing after a context margin of {context} pixels "
                    f"on each side; use a tile of at least {_tile_for(1, depth, padding, context)} "
                    "or a smaller margin."
                )
        if length <= deliverable:
            return tile, out, length, 1
        # Step on the pooling grid so that tiles see the image exactly as one pass would.
        stride = deliverable // grid * grid if deliverable >= grid else deliverable
        return tile, out, stride, math.ceil(length / stride)
    best = None
    n_min = max(1, math.ceil(length / max_tile))
    for n in range(n_min, n_min + 64):
        stride = length if n == 1 else _round_up(math.ceil(length / n), grid)
        if n > 1 and (n - 1) * stride >= length:
            continue  # n - 1 tiles of this stride cover it; more tiles may shrink the stride
        size = _tile_for(stride, depth, padding, context)
        if size > max_tile:
            continue
        out = output_size(size, depth, padding)
        candidate = (n * size / length, n, size, out, stride)
        if best is None or candidate[0] < best[0] - 1e-12:
            best = candidate
        elif best is not None and n > best[1] + 4:
            break
    if best is None:
        smallest = _tile_for(min(length, grid), depth, padding, context)
        raise UsageError(
            f"max_tile={max_tile} is smaller than the smallest usable tile ({smallest} pixels) "
            f"for a depth-{depth} model with {padding} padding; raise max_tile."
        )
    _, n, size, out, stride = best
    return size, out, stride, n


def plan_tiles(image_shape, depth=4, padding="valid", tile=None, max_tile=MAX_TILE, margin=None):
    """Choose the tiles for an image.

    Parameters
    ----------
    image_shape : tuple
        ``(height, width[, channels])`` of the image.
    depth : int
        Pooling steps of the model.
    padding : {"valid", "same"}
        Padding of the model's convolutions.
    tile : int or (int, int), optional
        Model input size of the tiles (a static-input model's own size). ``None``
        chooses it: per axis, the number of tiles and the smallest valid tile
        covering the axis such that the work ratio is lowest with tiles no larger
        than ``max_tile``. Tiles need not be square.
    max_tile : int
        Largest tile side the automatic choice may use (see :data:`MAX_TILE`).
    margin : int, optional
        Same padding only: context pixels kept around each tile's delivered part
        (default :func:`default_context`, or a quarter of a fixed tile if less).
        Valid padding has its context fixed by the architecture.

    Returns
    -------
    TilePlan
    """
    check_choice("padding", padding, PADDINGS)
    height, width = (int(v) for v in tuple(image_shape)[:2])
    if height < 1 or width < 1:
        raise UsageError(f"The image must have at least one pixel, got shape {tuple(image_shape)}.")
    tiles = as_pair(tile, "tile")
    axes = []
    for length, size in zip((height, width), tiles):
        if padding == "valid":
            if margin is not None:
                raise UsageError(
                    "margin applies to same-padding models only; a valid-padding model's "
                    "context is fixed by its architecture."
                )
            context = default_context(depth, padding)
        elif margin is not None:
            context = int(margin)
            if context < 0:
                raise UsageError(f"margin must be >= 0, got {margin!r}.")
        else:
            context = default_context(depth, padding)
            if size is not None:
                context = min(context, size // 4)
        t, out, stride, n = _axis_plan(length, depth, padding, context, size, max_tile)
        if padding == "valid":
            context = (t - out) // 2
        axes.append((t, out, stride, n, context, 0 if padding == "valid" else context))
    (th, oh, sh, nh, ch, fh), (tw, ow, sw, nw, cw, fw) = axes
    return TilePlan(
        image_shape=(height, width),
        tile=(th, tw),
        output=(oh, ow),
        stride=(sh, sw),
        grid=(nh, nw),
        context=(ch, cw),
        offset=(fh, fw),
        work_ratio=nh * th * nw * tw / (height * width),
    )


# --------------------------------------------------------------------------------------
# Mirroring and test-time augmentation
# --------------------------------------------------------------------------------------
def mirror_indices(indices, length):
    """Map any integer positions into ``[0, length)`` by mirroring at the borders.

    The same as ``numpy.pad(..., mode="reflect")`` (the edge pixel is not
    repeated), for any distance beyond the border.
    """
    indices = np.asarray(indices)
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    folded = np.mod(indices, period)
    return np.where(folded < length, folded, period - folded)


def _transforms(mode):
    """Pairs (forward, inverse) acting on arrays ``(batch, rows, cols, channels)``."""
    flips = [
        (lambda x: x, lambda y: y),
        (lambda x: x[:, ::-1], lambda y: y[:, ::-1]),
        (lambda x: x[:, :, ::-1], lambda y: y[:, :, ::-1]),
        (lambda x: x[:, ::-1, ::-1], lambda y: y[:, ::-1, ::-1]),
    ]
    if mode == "flips":
        return flips
    # The dihedral group D4: the flips above and their transposes.
    transposed = [
        (
            (lambda f: lambda x: np.swapaxes(f(x), 1, 2))(fwd),
            (lambda g: lambda y: g(np.swapaxes(y, 1, 2)))(inv),
        )
        for fwd, inv in flips
    ]
    return flips + transposed


def _tta_mode(tta, tile):
    if tta is False or tta is None:
        return None
    if tta is True:
        return "d4" if tile[0] == tile[1] else "flips"
    if tta not in TTA_MODES:
        raise UsageError(f"`tta` must be True, False or one of {TTA_MODES}, got {tta!r}.")
    if tta == "d4" and tile[0] != tile[1]:
        raise UsageError(f"`tta='d4'` needs square tiles, got {tile}; use `tta='flips'`.")
    return tta


# --------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------
def _as_model_input(image, channels):
    if isinstance(image, PreparedImage):  # normalised tile by tile when read
        if image.shape[2] != channels:
            raise UsageError(
                f"The image has {image.shape[2]} channel(s) but the model takes {channels}; "
                f"make it with PreparedImage(image, {channels}).")
        return image
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise UsageError(
            f"The image must be (height, width) or (height, width, channels), got shape "
            f"{image.shape}."
        )
    if image.shape[2] != channels:
        raise UsageError(
            f"The image has {image.shape[2]} channel(s) but the model takes {channels}; "
            "prepare it first with unet.prepare_image(image, channels)."
        )
    return image.astype(np.float32, copy=False)


def predict_tiled(
    model,
    image,
    tile=None,
    batch_size=2,
    tta=False,
    progress=False,
    max_tile=MAX_TILE,
    margin=None,
    all_classes=False,
):
    """Foreground probability map of an image of any size, by overlap-tiles.

    Parameters
    ----------
    model : keras.Model
        A U-Net; depth, padding, channels and input size are read from it. A
        model with a fixed input size uses that size as its tile.
    image : array_like or unet.image.PreparedImage
        ``(height, width)`` or ``(height, width, channels)``, prepared as for
        training (float, normalised per image, e.g. with ``unet.data``); any
        size, even 1x1. A :class:`unet.image.PreparedImage` is normalised tile by
        tile as the tiles are read (the same values, without a float copy of the
        whole image).
    tile : int or (int, int), optional
        Tile input size for a model with ``None`` input size (default: chosen by
        :func:`plan_tiles`).
    batch_size : int
        Tiles per model call. 2 by default: measured on a CPU, larger batches only
        help small tiles (4 tiles of 300 per call: 15 % faster than 1), not the large
        tiles the planner chooses for big images, and they cost memory.
    tta : bool or {"flips", "d4"}
        Test-time augmentation: average the predictions of the flipped (and, for
        square tiles, rotated/transposed) tiles, each mapped back. ``True`` means
        ``"d4"`` (8 transforms) for square tiles, else ``"flips"`` (4).
    progress : bool
        Show a tqdm bar over the rows of tiles.
    max_tile, margin
        See :func:`plan_tiles`.
    all_classes : bool
        Return every output channel ``(height, width, C)`` instead of the
        foreground probability.

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)``: the sigmoid output, or for a softmax model
        the class-1 probability; ``(height, width, C)`` with ``all_classes``.
    """
    image = _as_model_input(image, model_geometry(model).channels)
    result = None
    for top, block in predict_strips(model, image, tile, batch_size, tta, progress, max_tile,
                                     margin, all_classes=True):
        if result is None:
            result = np.empty((image.shape[0], *block.shape[1:]), np.float32)
        result[top : top + len(block)] = block
    return result if all_classes else _foreground(result)


def predict_strips(model, image, tile=None, batch_size=2, tta=False, progress=False,
                   max_tile=MAX_TILE, margin=None, all_classes=False):
    """:func:`predict_tiled`'s map one strip of rows at a time, top to bottom.

    Yields ``(top, strip)``: the probabilities of image rows ``top .. top +
    len(strip)``, each strip delivered by one row of tiles (``plan.stride[0]`` rows,
    fewer at the bottom). What is held is one row of tiles and its strip, so an image
    read lazily (:class:`unet.io.TiffRows` in a :class:`unet.image.PreparedImage`)
    is predicted in memory bounded by the tiles, not the image. Same parameters as
    :func:`predict_tiled`; the strips put together are its result.
    """
    geometry = model_geometry(model)
    image = _as_model_input(image, geometry.channels)
    height, width = image.shape[:2]
    static = geometry.input_size
    if None not in static:
        if tile is not None and as_pair(tile, "tile") != tuple(static):
            raise UsageError(
                f"Model {model.name!r} has the fixed input size {tuple(static)}, so it "
                f"cannot use tile={tile!r}; leave tile unset."
            )
        tile = static
    elif None in as_pair(tile, "tile") and tile is not None:
        raise UsageError(f"tile must be an int or (height, width) of ints, got {tile!r}.")
    elif tile is None and geometry.padding == "valid" and geometry.resize_skips:
        warnings.warn(
            f"Model {model.name!r} has valid padding and resizes its skip features, so its "
            "output depends on the tile size; pass tile= the size it was trained on (e.g. "
            "284), or build valid models with skip='crop'.",
            stacklevel=3,
        )
    if int(batch_size) < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size!r}.")
    plan = plan_tiles(
        (height, width), geometry.depth, geometry.padding, tile, max_tile, margin
    )
    mode = _tta_mode(tta, plan.tile)
    transforms = _transforms(mode) if mode else [(lambda x: x, lambda y: y)]
    (th, tw), (sh, sw), (fh, fw) = plan.tile, plan.stride, plan.offset
    tile_rows = range(plan.grid[0])
    if progress:
        from tqdm.auto import tqdm

        tile_rows = tqdm(tile_rows, desc="tiles", unit="row")
    for i in tile_rows:
        top = i * sh
        rows = min(sh, height - top)
        strip = np.empty((rows, width, geometry.num_classes), np.float32)
        origins = [(top - plan.context[0], j * sw - plan.context[1]) for j in range(plan.grid[1])]
        source, first = image, origins[0][0]
        if isinstance(image, PreparedImage):  # this row of tiles' rows, read once
            source = image.take_rows(mirror_indices(np.arange(first, first + th), height))
            first = 0
        for b in range(0, len(origins), int(batch_size)):
            batch = origins[b : b + int(batch_size)]
            x = np.stack([_tile_input(source, first, c, th, tw) for _, c in batch])
            y = None
            for forward, inverse in transforms:
                out = inverse(np.asarray(model.predict_on_batch(np.ascontiguousarray(forward(x)))))
                y = out.astype(np.float32) if y is None else y + out
            if len(transforms) > 1:
                y /= len(transforms)
            for k, (_, c) in enumerate(batch):
                left = c + plan.context[1]
                cols = min(sw, width - left)
                strip[:, left : left + cols] = y[k, fh : fh + rows, fw : fw + cols]
        yield top, (strip if all_classes else _foreground(strip))


def _tile_input(image, top, left, height, width):
    """The ``height x width`` window of ``image`` at ``(top, left)``, mirrored beyond it."""
    rows = mirror_indices(np.arange(top, top + height), image.shape[0])
    cols = mirror_indices(np.arange(left, left + width), image.shape[1])
    return image[np.ix_(rows, cols)]


def _foreground(probabilities):
    """The sigmoid output, or the class-1 probability of a softmax model."""
    return probabilities[..., 0] if probabilities.shape[-1] == 1 else probabilities[..., 1]


def predict_many(model, images, batch_size=8, max_tile=MAX_TILE):
    """Foreground probability maps of many images, each at its own size.

    The images that fit one tile share one tile size ``T`` (the smallest whose output
    covers the largest of them) and go through the model ``batch_size`` tiles at a
    time; larger images go through :func:`predict_tiled` one by one. Each map equals
    ``predict_tiled(model, image, tile=T)`` (the large ones ``predict_tiled(model,
    image)``); for models whose output does not depend on the tile (valid padding with
    crop skips, or same padding) that is the map of :func:`predict_tiled` with its own
    plan. Training validates with it on whole images at their own size.

    Parameters
    ----------
    model : keras.Model
    images : sequence of numpy.ndarray
        Prepared images ``(h, w, C)`` of any sizes.
    batch_size : int
        Tiles per model call.
    max_tile : int
        Largest shared tile; images that need a larger one are tiled on their own.

    Returns
    -------
    list of numpy.ndarray
        float32 ``(h, w)`` per image.
    """
    geometry = model_geometry(model)
    images = [_as_model_input(im, geometry.channels) for im in images]
    results = [None] * len(images)
    static = geometry.input_size
    if None not in static:
        tile = tuple(static)
    else:
        context = default_context(geometry.depth, geometry.padding)

        def tile_of(side):
            return _tile_for(side, geometry.depth, geometry.padding, context)

        fitting = [max(im.shape[:2]) for im in images if tile_of(max(im.shape[:2])) <= max_tile]
        shared = tile_of(max(fitting, default=1))
        tile = (shared, shared)
    small = []
    for k, image in enumerate(images):
        plan = plan_tiles(image.shape, geometry.depth, geometry.padding, tile)
        if plan.n_tiles == 1:
            small.append((k, plan))
        else:
            results[k] = predict_tiled(model, image, tile=None if None in static else tile)
    for i in range(0, len(small), int(batch_size)):
        chunk = small[i : i + int(batch_size)]
        x = np.stack([_tile_input(images[k], *plan.tile_origins()[0], *plan.tile)
                      for k, plan in chunk])
        y = np.asarray(model.predict_on_batch(x), np.float32)
        for j, (k, plan) in enumerate(chunk):
            (h, w), (fh, fw) = images[k].shape[:2], plan.offset
            results[k] = _foreground(y[j, fh : fh + h, fw : fw + w])
    return results
