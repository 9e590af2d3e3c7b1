"""Size arithmetic of a U-Net: which input sizes fit, what comes out, the tile for a crop.

No Keras here (the command line and the config read these without starting
TensorFlow). With ``padding="valid"`` every 3x3 convolution trims one pixel per
side and every 2x2 pooling needs an even size, so only some input sizes pass
through the network without rounding: at depth 4 they are ``16 k + 124``, and the
output is ``input - 184`` (572 -> 388, 284 -> 100). With ``padding="same"`` the
output keeps the input size, which must be divisible by ``2 ** depth``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .errors import UsageError, check_choice

PADDINGS = ("valid", "same")
SKIPS = ("resize", "crop")
#: Deepest U-Net the size arithmetic accepts. Each level doubles the smallest valid
#: input (depth 8 with valid padding needs inputs of at least 3068 px) and the channels
#: of the bottleneck (filters * 2**depth); the paper uses 4, the spore model 3.
MAX_DEPTH = 8


@dataclass(frozen=True)
class TraceRow:
    """One row of :func:`shape_trace`: a layer's output size and channels."""

    stage: str
    layer: str
    size: int
    channels: int


def _walk_sizes(size, depth, padding, filters=64):
    """Follow one spatial size through the network.

    Returns ``(rows, problem)``: the trace rows and ``None`` if the size is
    valid, or the rows so far and a sentence explaining why it is not.
    """
    shrink = 2 if padding == "valid" else 0
    rows, skips, s = [], [], size
    for level in range(1, depth + 1):
        ch = filters * 2 ** (level - 1)
        for i in (1, 2):
            s -= shrink
            if s < 1:
                return rows, "it is too small to survive the contracting path"
            rows.append(TraceRow(f"encoder {level}", f"conv{i} 3x3", s, ch))
        if s % 2:
            return rows, (
                f"the feature map before pooling {level} would be {s} pixels, and 2x2 "
                "pooling needs an even size"
            )
        skips.append(s)
        s //= 2
        rows.append(TraceRow(f"encoder {level}", "max-pool 2x2", s, ch))
    ch = filters * 2**depth
    for i in (1, 2):
        s -= shrink
        if s < 1:
            return rows, "it is too small to survive the contracting path"
        rows.append(TraceRow("bottleneck", f"conv{i} 3x3", s, ch))
    for level in range(depth, 0, -1):
        ch = filters * 2 ** (level - 1)
        s *= 2
        rows.append(TraceRow(f"decoder {level}", "up-conv 2x2", s, ch))
        rows.append(
            TraceRow(f"decoder {level}", f"concat skip {skips[level - 1]}->{s}", s, 2 * ch)
        )
        for i in (1, 2):
            s -= shrink
            if s < 1:
                return rows, "it is too small: the expanding path runs out of pixels"
            rows.append(TraceRow(f"decoder {level}", f"conv{i} 3x3", s, ch))
    return rows, None


def check_arch(depth, padding):
    """Raise :class:`UsageError` for an unknown padding or a depth outside 1..MAX_DEPTH."""
    check_choice("padding", padding, PADDINGS)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise UsageError(
            f"`depth` must be a whole number from 1 to {MAX_DEPTH}, got {depth!r} (the paper "
            "uses 4; each level doubles the smallest input and the bottleneck's channels)."
        )


def is_valid_input_size(size, depth=4, padding="valid"):
    """Whether a spatial size passes through the network without rounding.

    Parameters
    ----------
    size : int
        Height or width of the input.
    depth : int
        Number of pooling steps.
    padding : {"valid", "same"}

    Returns
    -------
    bool
    """
    check_arch(depth, padding)
    return int(size) == size and size > 0 and _walk_sizes(int(size), depth, padding)[1] is None


def nearest_valid_sizes(size, depth=4, padding="valid"):
    """The closest valid input sizes at or below and at or above ``size``.

    Returns
    -------
    (int or None, int)
        ``(below, above)``; ``below`` is ``None`` when no valid size is smaller.
        A valid ``size`` is returned twice.
    """
    check_arch(depth, padding)
    size = max(int(size), 1)
    below = next((s for s in range(size, 0, -1) if is_valid_input_size(s, depth, padding)), None)
    above = next(s for s in itertools.count(size) if is_valid_input_size(s, depth, padding))
    return below, above


def _size_error(size, depth, padding, problem):
    below, above = nearest_valid_sizes(size, depth, padding)
    if below is None:
        return UsageError(
            f"Input size {size} is too small for a depth-{depth} U-Net with {padding} padding: "
            f"the smallest valid input size is {above} (output "
            f"{output_size(above, depth, padding)}); pad the image or use a smaller depth."
        )
    options = [s for s in (below, above) if s is not None]
    listed = " and ".join(f"{s} (output {output_size(s, depth, padding)})" for s in options)
    return UsageError(
        f"Input size {size} does not fit a depth-{depth} U-Net with {padding} padding: "
        f"{problem}. Nearest valid input sizes: {listed}."
    )


def output_size(input_size, depth=4, padding="valid"):
    """Spatial output size of the network for one input size.

    With valid padding at depth 4, ``output = input - 184`` for the valid inputs
    ``16 * k + 124`` (572 -> 388, 284 -> 100); with same padding the output is
    the input size, which must be divisible by ``2 ** depth``.

    Raises
    ------
    UsageError
        If the size is not valid; the message names the nearest valid sizes.
    """
    check_arch(depth, padding)
    rows, problem = _walk_sizes(int(input_size), depth, padding)
    if problem:
        raise _size_error(input_size, depth, padding, problem)
    return rows[-1].size


def input_size_for_output(min_output, depth=4, padding="valid"):
    """Smallest valid input size whose output is at least ``min_output`` pixels.

    Use it to choose a tile: ``input_size_for_output(100) == 284`` covers a
    100-pixel crop with a valid-padding depth-4 U-Net.
    """
    check_arch(depth, padding)
    return next(
        s
        for s in itertools.count(max(int(min_output), 1))
        if is_valid_input_size(s, depth, padding) and output_size(s, depth, padding) >= min_output
    )


def check_input_shape(input_shape, depth=4, padding="valid"):
    """Validate the height and width of ``input_shape = (height, width, channels)``.

    ``None`` sizes (a fully convolutional model) are accepted.

    Raises
    ------
    UsageError
        For a malformed shape or an invalid size, naming the nearest valid sizes.
    """
    check_arch(depth, padding)
    if len(input_shape) != 3:
        raise UsageError(
            f"`input_shape` must be (height, width, channels), got {tuple(input_shape)!r}."
        )
    if input_shape[2] is None or int(input_shape[2]) < 1:
        raise UsageError(f"The number of input channels must be known, got {input_shape!r}.")
    for size in input_shape[:2]:
        if size is not None:
            output_size(size, depth, padding)


def shape_trace(input_size=572, depth=4, padding="valid", filters=64, in_channels=3):
    """The per-layer output sizes of a square input: the 572 -> 388 table.

    Returns
    -------
    list of TraceRow
        ``(stage, layer, size, channels)`` for the input, every convolution,
        pooling, up-convolution and concatenation; the last row is the final 3x3
        convolution (the 1x1 head keeps its size and has ``num_classes`` channels).

    Raises
    ------
    UsageError
        If ``input_size`` is not valid for ``depth`` and ``padding``.
    """
    output_size(input_size, depth, padding)  # raises the helpful error
    rows, _ = _walk_sizes(int(input_size), depth, padding, filters)
    return [TraceRow("input", "image", int(input_size), in_channels), *rows]



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
    tile = input_size_for_output(int(crop_size), depth, padding)
    return tile, output_size(tile, depth, padding)


def default_context(depth, padding="valid"):
    """Context margin around the pixels an overlap-tile delivers.

    Valid padding: what the model trims on each side, ``(input - output) / 2 =
    6 * 2**depth - 4`` (92 at depth 4). Same padding: ``6 * 2**depth`` (96 at
    depth 4), the receptive-field radius ``6 * 2**depth - 2`` rounded up to the
    pooling grid, so that a delivered pixel is computed exactly as in a larger
    image (checked by the tests).
    """
    check_arch(depth, padding)
    return 6 * 2**depth - (4 if padding == "valid" else 0)
