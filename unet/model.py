"""U-Net building blocks, the model factory and the input/output size arithmetic.

The architecture is the one of Ronneberger et al. (2015): a contracting path of
(3x3 conv + ReLU) x 2 then 2x2 max-pool, a bottleneck, and an expanding path of
2x2 stride-2 transposed conv, concatenation with the skip features saved *before*
pooling, and (3x3 conv + ReLU) x 2. With ``padding="valid"`` every 3x3 conv
trims one pixel per side, so the output is smaller than the input
(572 -> 388 at depth 4) and the skip features are larger than the upsampled
maps they join; they are matched either by resizing (``skip="resize"``) or by
the paper's centre crop (``skip="crop"``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers, ops

PADDINGS = ("valid", "same")
SKIPS = ("resize", "crop")


# --------------------------------------------------------------------------------------
# Skip matching layers (registered so that `keras.models.load_model` finds them)
# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="unet")
class ResizeToMatch(layers.Layer):
    """Resize the first input to the height and width of the second.

    Works on symbolic (``None``) sizes, so fully convolutional models can use it.
    ``inputs`` is ``[features, reference]``; only the reference's shape is read.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        features, reference = inputs
        # tf.image.resize takes a symbolic size, which keras.ops.image.resize does not.
        size = tf.shape(reference)[1:3]
        resized = tf.image.resize(features, size, method=self.interpolation)
        return ops.cast(resized, features.dtype)

    def compute_output_shape(self, input_shape):
        features, reference = input_shape
        return (features[0], reference[1], reference[2], features[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="unet")
class CenterCropToMatch(layers.Layer):
    """Crop the centre of the first input to the height and width of the second.

    This is the skip connection of the original paper ("copy and crop"). The
    features must be at least as large as the reference in both directions.
    """

    def call(self, inputs):
        features, reference = inputs
        shape, target = ops.shape(features), ops.shape(reference)
        top = (shape[1] - target[1]) // 2
        left = (shape[2] - target[2]) // 2
        return features[:, top : top + target[1], left : left + target[2], :]

    def compute_output_shape(self, input_shape):
        features, reference = input_shape
        return (features[0], reference[1], reference[2], features[3])


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------
def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def conv_block(
    inputs,
    num_filters,
    padding="valid",
    batch_norm=False,
    kernel_initializer="he_normal",
    name=None,
):
    """Two 3x3 convolutions, each followed by (optional BatchNorm and) ReLU.

    Parameters
    ----------
    inputs : KerasTensor
        Feature map of shape ``(batch, height, width, channels)``.
    num_filters : int
        Output channels of both convolutions.
    padding : {"valid", "same"}
        ``"valid"`` trims 2 pixels in each direction; ``"same"`` keeps the size.
    batch_norm : bool
        Insert BatchNormalization between each convolution and its ReLU (the
        convolutions then have no bias, which BatchNorm would cancel).
    kernel_initializer : str
        Initializer of the convolution kernels; ``"he_normal"`` is the paper's
        Gaussian with standard deviation sqrt(2 / fan_in).
    name : str, optional
        Prefix for the layer names.
    """
    _check_choice("padding", padding, PADDINGS)
    x = inputs
    for i in (1, 2):
        prefix = f"{name}_conv{i}" if name else None
        x = layers.Conv2D(
            num_filters,
            3,
            padding=padding,
            use_bias=not batch_norm,
            kernel_initializer=kernel_initializer,
            name=prefix,
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{prefix}_bn" if name else None)(x)
        x = layers.Activation("relu", name=f"{prefix}_relu" if name else None)(x)
    return x


def encoder_block(
    inputs,
    num_filters,
    padding="valid",
    batch_norm=False,
    kernel_initializer="he_normal",
    name=None,
):
    """One step of the contracting path: two 3x3 conv + ReLU, then 2x2 max-pool.

    Parameters
    ----------
    inputs : KerasTensor
        Feature map ``(batch, height, width, channels)``.
    num_filters : int
        Channels of the two convolutions.
    padding, batch_norm, kernel_initializer, name
        As in :func:`conv_block`.

    Returns
    -------
    features : KerasTensor
        The convolved features *before* pooling: these are the skip connection
        that the expanding path concatenates (full resolution detail).
    pooled : KerasTensor
        ``features`` after 2x2 max-pooling with stride 2, the input of the next
        encoder block.
    """
    features = conv_block(
        inputs, num_filters, padding, batch_norm, kernel_initializer, name=name
    )
    pooled = layers.MaxPooling2D(2, strides=2, name=f"{name}_pool" if name else None)(
        features
    )
    return features, pooled


def decoder_block(
    inputs,
    skip_features,
    num_filters,
    padding="valid",
    skip="resize",
    batch_norm=False,
    kernel_initializer="he_normal",
    name=None,
):
    """One step of the expanding path.

    A 2x2 stride-2 transposed convolution doubles the size of ``inputs``; the
    skip features are matched to that size, concatenated (skip first, as in the
    paper) and passed through two 3x3 conv + ReLU.

    Parameters
    ----------
    inputs : KerasTensor
        Feature map from the level below.
    skip_features : KerasTensor
        The encoder features of the same level (taken before pooling).
    num_filters : int
        Channels of the transposed convolution and of both 3x3 convolutions.
    padding : {"valid", "same"}
        Padding of the 3x3 convolutions.
    skip : {"resize", "crop"}
        How the skip features are brought to the upsampled size: bilinear
        resizing (``"resize"``) or the paper's centre crop (``"crop"``). When
        both sizes are known and equal, no matching layer is added.
    batch_norm, kernel_initializer, name
        As in :func:`conv_block`.
    """
    _check_choice("skip", skip, SKIPS)
    up = layers.Conv2DTranspose(
        num_filters,
        2,
        strides=2,
        padding="valid",
        kernel_initializer=kernel_initializer,
        name=f"{name}_up" if name else None,
    )(inputs)
    skip_size, up_size = tuple(skip_features.shape[1:3]), tuple(up.shape[1:3])
    if None in skip_size or None in up_size or skip_size != up_size:
        if skip == "crop":
            if None not in skip_size + up_size and (
                skip_size[0] < up_size[0] or skip_size[1] < up_size[1]
            ):
                raise ValueError(
                    f"Cannot centre-crop skip features of size {skip_size} to the larger "
                    f"upsampled size {up_size}; use skip='resize' or a valid input size."
                )
            match = CenterCropToMatch(name=f"{name}_crop" if name else None)
        else:
            match = ResizeToMatch(name=f"{name}_resize" if name else None)
        skip_features = match([skip_features, up])
    x = layers.Concatenate(name=f"{name}_concat" if name else None)([skip_features, up])
    return conv_block(x, num_filters, padding, batch_norm, kernel_initializer, name=name)


# --------------------------------------------------------------------------------------
# Size arithmetic
# --------------------------------------------------------------------------------------
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


def _check_arch(depth, padding):
    _check_choice("padding", padding, PADDINGS)
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}.")


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
    _check_arch(depth, padding)
    return int(size) == size and size > 0 and _walk_sizes(int(size), depth, padding)[1] is None


def nearest_valid_sizes(size, depth=4, padding="valid"):
    """The closest valid input sizes at or below and at or above ``size``.

    Returns
    -------
    (int or None, int)
        ``(below, above)``; ``below`` is ``None`` when no valid size is smaller.
        A valid ``size`` is returned twice.
    """
    _check_arch(depth, padding)
    size = max(int(size), 1)
    below = next((s for s in range(size, 0, -1) if is_valid_input_size(s, depth, padding)), None)
    above = next(s for s in itertools.count(size) if is_valid_input_size(s, depth, padding))
    return below, above


def _size_error(size, depth, padding, problem):
    below, above = nearest_valid_sizes(size, depth, padding)
    if below is None:
        return ValueError(
            f"Input size {size} is too small for a depth-{depth} U-Net with {padding} padding: "
            f"the smallest valid input size is {above} (output "
            f"{output_size(above, depth, padding)}); pad the image or use a smaller depth."
        )
    options = [s for s in (below, above) if s is not None]
    listed = " and ".join(f"{s} (output {output_size(s, depth, padding)})" for s in options)
    return ValueError(
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
    ValueError
        If the size is not valid; the message names the nearest valid sizes.
    """
    _check_arch(depth, padding)
    rows, problem = _walk_sizes(int(input_size), depth, padding)
    if problem:
        raise _size_error(input_size, depth, padding, problem)
    return rows[-1].size


def input_size_for_output(min_output, depth=4, padding="valid"):
    """Smallest valid input size whose output is at least ``min_output`` pixels.

    Use it to choose a tile: ``input_size_for_output(100) == 284`` covers a
    100-pixel crop with a valid-padding depth-4 U-Net.
    """
    _check_arch(depth, padding)
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
    ValueError
        For a malformed shape or an invalid size, naming the nearest valid sizes.
    """
    _check_arch(depth, padding)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {tuple(input_shape)!r}."
        )
    if input_shape[2] is None or int(input_shape[2]) < 1:
        raise ValueError(f"The number of input channels must be known, got {input_shape!r}.")
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
    ValueError
        If ``input_size`` is not valid for ``depth`` and ``padding``.
    """
    output_size(input_size, depth, padding)  # raises the helpful error
    rows, _ = _walk_sizes(int(input_size), depth, padding, filters)
    return [TraceRow("input", "image", int(input_size), in_channels), *rows]


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
def unet_model(
    input_shape=(572, 572, 3),
    num_classes=2,
    filters=64,
    depth=4,
    padding="valid",
    skip="resize",
    batch_norm=False,
    dropout=0.0,
    kernel_initializer="he_normal",
    name="unet",
):
    """Build a U-Net as a Keras Functional model.

    The defaults reproduce the documented network: input (572, 572, 3), output
    (388, 388, 2), 31,031,810 parameters.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)``. Height and width may be ``None`` for a
        fully convolutional model that accepts any valid size.
    num_classes : int
        Output channels. 1 gives a sigmoid head (foreground probability);
        2 or more give a softmax over classes.
    filters : int
        Channels of the first level; each deeper level doubles them.
    depth : int
        Number of pooling steps (4 in the paper).
    padding : {"valid", "same"}
        ``"valid"`` is the paper's: the output is smaller than the input and
        every output pixel has full context. ``"same"`` keeps the input size,
        which must then be divisible by ``2 ** depth``.
    skip : {"resize", "crop"}
        How skip features are matched to the upsampled size (see
        :func:`decoder_block`).
    batch_norm : bool
        BatchNormalization after every 3x3 convolution.
    dropout : float
        Dropout rate at the end of the contracting path (after the bottleneck
        convolutions), as in the paper; 0 disables it.
    kernel_initializer : str
        Initializer of all convolution kernels.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Output probabilities of shape ``(batch, out_h, out_w, num_classes)``,
        computed in float32 even under a mixed-precision policy.

    Raises
    ------
    ValueError
        For an invalid option or an input size that does not fit the network.
    """
    _check_arch(depth, padding)
    _check_choice("skip", skip, SKIPS)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes!r}.")
    if int(filters) < 1:
        raise ValueError(f"filters must be at least 1, got {filters!r}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    input_shape = tuple(input_shape)
    check_input_shape(input_shape, depth, padding)

    common = dict(padding=padding, batch_norm=batch_norm, kernel_initializer=kernel_initializer)
    inputs = keras.Input(shape=input_shape, name="image")
    x, skips = inputs, []
    for level in range(1, depth + 1):
        features, x = encoder_block(x, filters * 2 ** (level - 1), name=f"enc{level}", **common)
        skips.append(features)
    x = conv_block(x, filters * 2**depth, name="bottleneck", **common)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in range(depth, 0, -1):
        x = decoder_block(
            x, skips[level - 1], filters * 2 ** (level - 1), skip=skip, name=f"dec{level}", **common
        )
    logits = layers.Conv2D(num_classes, 1, name="head")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Activation(activation, dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------
def _conv_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _conv_layers(layer)
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            yield layer


def count_flops(model, input_size=None):
    """Floating-point operations of one forward pass of one image, from the layer shapes.

    Counts the multiply-adds of every ``Conv2D`` (``out_h * out_w * k_h * k_w * c_in *
    c_out``) and ``Conv2DTranspose`` (``in_h * in_w * k_h * k_w * c_in * c_out``) at
    the sizes an input of ``input_size`` gives them, two FLOPs each. Biases,
    activations, pooling, copying and cropping are left out (well under 1 % of a
    U-Net's work). A training step costs about three forward passes (the backward
    pass computes the gradients of both the activations and the weights).

    Parameters
    ----------
    model : keras.Model
        A Functional model built of Keras layers (e.g. by :func:`unet_model`).
    input_size : int or (int, int), optional
        Input height and width; required when the model's are ``None``.

    Returns
    -------
    int
        FLOPs per image.

    Raises
    ------
    ValueError
        If the size is missing, contradicts the model's fixed input size, or does not
        fit the network.
    """
    shape = tuple(model.input_shape)
    if input_size is None:
        size = shape[1:3]
        if None in size:
            raise ValueError(
                f"Model {model.name!r} accepts any input size; pass input_size, e.g. "
                "count_flops(model, 284)."
            )
    else:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        fixed = shape[1:3]
        if any(f is not None and f != s for f, s in zip(fixed, size)):
            raise ValueError(
                f"Model {model.name!r} has the fixed input size {fixed}, not {size}; "
                "leave input_size unset."
            )
    from .predict import model_geometry  # U-Nets: check the size, with the helpful error

    try:
        geometry = model_geometry(model)
    except ValueError:  # not a U-Net: the graph's own shapes decide
        geometry = None
    if geometry is not None:
        for s in size:
            output_size(s, geometry.depth, geometry.padding)
    convs = list(_conv_layers(model))
    if not convs:
        return 0
    # The shapes every convolution sees for this input size, read from the graph.
    probe = keras.Model(model.inputs, [t for c in convs for t in (c.input, c.output)])
    try:
        specs = probe.compute_output_spec(keras.KerasTensor((1, *size, shape[3])))
    except ValueError as error:
        raise ValueError(f"Input size {size} does not fit model {model.name!r}: {error}") from None
    total = 0
    for layer, inputs, outputs in zip(convs, specs[0::2], specs[1::2]):
        kh, kw = layer.kernel_size
        c_in, c_out = inputs.shape[-1], outputs.shape[-1]
        where = outputs if isinstance(layer, layers.Conv2D) else inputs
        if min(where.shape[1], where.shape[2]) < 1:
            raise ValueError(
                f"Input size {size} is too small for model {model.name!r}: layer "
                f"{layer.name} would have an empty output."
            )
        groups = getattr(layer, "groups", 1)
        total += where.shape[1] * where.shape[2] * kh * kw * c_in * c_out // groups
    return 2 * int(total)
