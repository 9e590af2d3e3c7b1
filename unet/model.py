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

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers, ops

from .errors import UsageError, check_choice
from .sizes import PADDINGS, SKIPS, check_arch, check_input_shape, input_size_for_output, output_size



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
    :func:`unet_model` now builds the crop as a constant ``keras.layers.Cropping2D``
    (see :func:`decoder_block`'s ``crop``); this layer stays registered so that
    models saved before that still load, and it serves :func:`decoder_block` used
    on its own with unknown sizes.
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
    check_choice("padding", padding, PADDINGS)
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
    crop=None,
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
    crop : int, optional
        For ``skip="crop"`` when the sizes are not known (``None`` input size):
        the pixels to cut from each side of the skip features. With valid padding
        this is a constant of the level (the skip is always the same number of
        pixels larger than the upsampled map), so a plain ``keras.layers.Cropping2D``
        does it and the saved model needs no custom layer; :func:`unet_model`
        passes it. Without it the crop is measured at run time by
        :class:`CenterCropToMatch`.
    """
    check_choice("skip", skip, SKIPS)
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
                raise UsageError(
                    f"Cannot centre-crop skip features of size {skip_size} to the larger "
                    f"upsampled size {up_size}; use skip='resize' or a valid input size."
                )
            crop_name = f"{name}_crop" if name else None
            if None not in skip_size + up_size:  # known sizes: a constant crop
                (dh, dw) = (skip_size[0] - up_size[0], skip_size[1] - up_size[1])
                match = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)),
                                          name=crop_name)
            elif crop is not None:
                match = layers.Cropping2D(int(crop), name=crop_name)
            else:
                match = CenterCropToMatch(name=crop_name)
        else:
            match = ResizeToMatch(name=f"{name}_resize" if name else None)
        skip_features = (match(skip_features) if isinstance(match, layers.Cropping2D)
                         else match([skip_features, up]))
    x = layers.Concatenate(name=f"{name}_concat" if name else None)([skip_features, up])
    return conv_block(x, num_filters, padding, batch_norm, kernel_initializer, name=name)


# --------------------------------------------------------------------------------------
# Size arithmetic
# --------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
def _skip_crops(depth):
    """Pixels cut from each side of the skip features at each level (valid padding).

    With valid 3x3 convolutions the skip features of a level are larger than the
    upsampled map they join by the same number of pixels for every valid input
    size (every step is affine in the size with the same slope on both paths), so
    the paper's centre crop is a constant :class:`keras.layers.Cropping2D`: a model
    built with it loads in plain Keras, without this package's custom layers.
    Measured here on the smallest valid input.
    """
    size = input_size_for_output(1, depth, "valid")
    skips = []
    for _ in range(depth):
        size -= 4
        skips.append(size)
        size //= 2
    size -= 4
    crops = {}
    for level in range(depth, 0, -1):
        size *= 2
        crops[level] = (skips[level - 1] - size) // 2
        size -= 4
    return crops


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
    UsageError
        For an invalid option or an input size that does not fit the network.
    """
    check_arch(depth, padding)
    check_choice("skip", skip, SKIPS)
    if int(num_classes) < 1:
        raise UsageError(f"`num_classes` must be at least 1, got {num_classes!r}.")
    if int(filters) < 1:
        raise UsageError(f"`filters` must be at least 1, got {filters!r}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise UsageError(f"`dropout` must be in [0, 1), got {dropout!r}.")
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
    crops = _skip_crops(depth) if padding == "valid" else {}
    for level in range(depth, 0, -1):
        x = decoder_block(
            x, skips[level - 1], filters * 2 ** (level - 1), skip=skip, name=f"dec{level}",
            crop=crops.get(level), **common
        )
    logits = layers.Conv2D(num_classes, 1, name="head")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Activation(activation, dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------
# Geometry: what tiling needs to know about a model
# --------------------------------------------------------------------------------------
def _walk_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # nested models
            yield from _walk_layers(layer)


@dataclass(frozen=True)
class ModelGeometry:
    """What tiling needs to know about a model.

    Attributes
    ----------
    depth : int
        Number of pooling steps.
    padding : {"valid", "same"}
        Padding of the 3x3 convolutions.
    channels : int
        Input channels.
    num_classes : int
        Output channels (1: sigmoid foreground probability; >= 2: softmax).
    input_size : tuple
        ``(height, width)`` of the model input; ``(None, None)`` when any valid
        size is accepted.
    resize_skips : bool
        Whether the skip features are resized (``skip="resize"``): with valid
        padding the model's output then depends on the tile size.
    """

    depth: int
    padding: str
    channels: int
    num_classes: int
    input_size: tuple
    resize_skips: bool


def _shapes(model):
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or len(out_shape) != 4:
        raise UsageError(
            f"Model {model.name!r} must take and return images (batch, height, width, "
            f"channels), got input {in_shape} and output {out_shape}."
        )
    return in_shape, out_shape


def _geometry_from_layers(model):
    layers_ = list(_walk_layers(model))
    kinds = [type(layer).__name__ for layer in layers_]
    depth = kinds.count("MaxPooling2D")
    paddings = {
        layer.get_config()["padding"]
        for layer, kind in zip(layers_, kinds)
        if kind == "Conv2D" and tuple(layer.get_config()["kernel_size"]) == (3, 3)
    }
    if depth < 1 or len(paddings) != 1:
        raise UsageError(
            f"Model {model.name!r} does not look like a U-Net (found {depth} max-pooling "
            f"layers and 3x3 convolution paddings {sorted(paddings)}); build it with "
            "unet.unet_model."
        )
    in_shape, out_shape = _shapes(model)
    return ModelGeometry(depth, paddings.pop(), int(in_shape[3]), int(out_shape[3]),
                         (in_shape[1], in_shape[2]), "ResizeToMatch" in kinds)


def _geometry_from_architecture(model, architecture):
    """The geometry a run's config records, checked against what the model computes."""
    in_shape, out_shape = _shapes(model)
    try:
        depth, padding = int(architecture["depth"]), str(architecture["padding"])
        skip = str(architecture.get("skip", "resize"))
        channels, classes = int(architecture["channels"]), int(architecture["num_classes"])
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"The model's config lacks its architecture ({error}).") from None
    geometry = ModelGeometry(depth, padding, channels, classes, (in_shape[1], in_shape[2]),
                             skip == "resize")
    problems = []
    if (int(in_shape[3]), int(out_shape[3])) != (channels, classes):
        problems.append(f"{in_shape[3]} input / {out_shape[3]} output channels, "
                        f"not {channels} / {classes}")
    else:
        probe = next((s for s in (in_shape[1], in_shape[2]) if s is not None), None)
        if probe is None:
            probe = input_size_for_output(1, depth, padding)
        expected = output_size(probe, depth, padding)
        try:
            got = model.compute_output_shape((1, probe, probe, channels))[1]
        except ValueError:  # the size does not even pass through this model
            got = "nothing"
        if got != expected:
            problems.append(f"{probe} px in gives {got} px out, not {expected} as a depth-"
                            f"{depth} U-Net with {padding} padding would")
    if problems:
        raise UsageError(
            f"The model {model.name!r} does not match its config: {problems[0]}. The run "
            "folder mixes files of two runs; train again or keep model.keras and "
            "config.json together."
        )
    return geometry


def attach_architecture(model, architecture):
    """Record a run's architecture on a loaded model, after checking that it fits.

    :func:`model_geometry` then reads depth, padding and skip from it instead of
    inferring them from the layers.

    Parameters
    ----------
    model : keras.Model
    architecture : dict
        ``depth``, ``padding``, ``skip``, ``channels`` and ``num_classes``, as a run's
        ``config.json`` holds them.

    Returns
    -------
    ModelGeometry

    Raises
    ------
    UsageError
        If the model does not compute what the architecture says.
    """
    geometry = _geometry_from_architecture(model, architecture)
    model._unet_geometry = geometry
    return geometry


#: The default of the prediction settings of the functions that use a model
#: (:func:`unet.evaluate.evaluate`, :func:`unet.batch.predict_images`, ...): the value its
#: run chose (:func:`prediction_settings`).
FROM_MODEL = "model"

#: The prediction settings, and what a model that carries none (built by
#: :func:`unet_model`, loaded by ``keras.models.load_model``) is used with: the images as
#: they are, threshold 0.5, the split height and smallest area of
#: :func:`unet.count.label_spores` (None: its own), no test-time augmentation.
PREDICTION_DEFAULTS = {"flatten": None, "threshold": 0.5, "split_h": None, "min_area": None,
                       "tta": False}


def attach_prediction_settings(model, settings):
    """Record on a loaded model how its run predicts: background window and post-processing.

    :func:`prediction_settings` then gives them to every function that uses the model, so
    a flattened run is never fed unflattened images and a calibrated run never counts
    with another threshold by mistake.

    Parameters
    ----------
    model : keras.Model
    settings : dict
        Some of the keys of :data:`PREDICTION_DEFAULTS`, as the run's ``config.json``
        holds them (:meth:`unet.run.Config.prediction_settings`).

    Raises
    ------
    ValueError
        For a key that is not a prediction setting.
    """
    _check_setting_names(settings)
    model._unet_prediction = dict(settings)


def prediction_settings(model, **given):
    """The prediction settings to use with a model: those given, else its run's.

    Parameters
    ----------
    model : keras.Model or callable
    **given
        ``flatten``, ``threshold``, ``split_h``, ``min_area`` and/or ``tta``. A value of
        ``"model"`` (:data:`FROM_MODEL`) is replaced by the one the model's run chose, as
        :func:`unet.run.load_run` records it (:func:`attach_prediction_settings`), or by
        :data:`PREDICTION_DEFAULTS` for a model that carries none; any other value is
        kept (None included: no flattening, the labelling's own split height or area).

    Returns
    -------
    dict
        The names given, resolved.

    Examples
    --------
    >>> prediction_settings(unet_model(depth=1, filters=2), threshold="model", tta=True)
    {'threshold': 0.5, 'tta': True}
    """
    _check_setting_names(given)
    carried = getattr(model, "_unet_prediction", {})
    return {name: carried.get(name, PREDICTION_DEFAULTS[name])
            if isinstance(value, str) and value == FROM_MODEL else value
            for name, value in given.items()}


def _check_setting_names(settings):
    unknown = sorted(set(settings) - set(PREDICTION_DEFAULTS))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not a prediction setting; they are "
                         f"{', '.join(PREDICTION_DEFAULTS)}.")


def model_geometry(model):
    """The :class:`ModelGeometry` of a U-Net.

    Read from the run's config when the model was loaded with
    :func:`unet.run.load_run` (see :func:`attach_architecture`); otherwise inferred
    from the layers: the number of max-pooling layers and the padding of the 3x3
    convolutions (any model built by :func:`unet_model`).

    Raises
    ------
    UsageError
        If the model has no pooling or no 3x3 convolution, mixes paddings, or does
        not take images ``(batch, height, width, channels)``.
    """
    geometry = getattr(model, "_unet_geometry", None)
    return geometry if geometry is not None else _geometry_from_layers(model)


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
    UsageError
        If the size is missing, contradicts the model's fixed input size, or does not
        fit the network.
    """
    shape = tuple(model.input_shape)
    if input_size is None:
        size = shape[1:3]
        if None in size:
            raise UsageError(
                f"Model {model.name!r} accepts any input size; pass input_size, e.g. "
                "count_flops(model, 284)."
            )
    else:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        fixed = shape[1:3]
        if any(f is not None and f != s for f, s in zip(fixed, size)):
            raise UsageError(
                f"Model {model.name!r} has the fixed input size {fixed}, not {size}; "
                "leave input_size unset."
            )
    try:  # U-Nets: check the size, with the helpful error
        geometry = model_geometry(model)
    except UsageError:  # not a U-Net: the graph's own shapes decide
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
    except ValueError as error:  # Keras' shape inference refused the size
        raise UsageError(f"Input size {size} does not fit model {model.name!r}: {error}") from None
    total = 0
    for layer, inputs, outputs in zip(convs, specs[0::2], specs[1::2]):
        kh, kw = layer.kernel_size
        c_in, c_out = inputs.shape[-1], outputs.shape[-1]
        where = outputs if isinstance(layer, layers.Conv2D) else inputs
        if min(where.shape[1], where.shape[2]) < 1:
            raise UsageError(
                f"Input size {size} is too small for model {model.name!r}: layer "
                f"{layer.name} would have an empty output."
            )
        groups = getattr(layer, "groups", 1)
        total += where.shape[1] * where.shape[2] * kh * kw * c_in * c_out // groups
    return 2 * int(total)
