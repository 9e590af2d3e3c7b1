"""The U-Net factory, its building blocks and the size arithmetic."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import unet
from unet import decoder_block, encoder_block, unet_model
from unet.model import CenterCropToMatch, ResizeToMatch


def expected_params(in_ch, classes, filters, depth, batch_norm=False):
    """Parameter count from the architecture, written independently of the model code."""

    def conv(cin, cout, k=3):
        # BatchNorm replaces the bias and adds gamma, beta, moving mean and variance.
        return k * k * cin * cout + (4 * cout if batch_norm else cout)

    total, cin = 0, in_ch
    for level in range(depth):
        f = filters * 2**level
        total += conv(cin, f) + conv(f, f)
        cin = f
    f = filters * 2**depth
    total += conv(cin, f) + conv(f, f)
    cin = f
    for level in reversed(range(depth)):
        f = filters * 2**level
        total += 2 * 2 * cin * f + f  # transposed conv always keeps its bias
        total += conv(2 * f, f) + conv(f, f)
        cin = f
    return total + cin * classes + classes


def test_default_model_is_the_documented_one():
    model = unet_model()
    assert model.input_shape == (None, 572, 572, 3)
    assert model.output_shape == (None, 388, 388, 2)
    assert model.count_params() == 31_031_810
    assert expected_params(3, 2, 64, 4) == 31_031_810


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_depth_and_padding_variants(depth, padding):
    size = unet.input_size_for_output(64, depth, padding)
    model = unet_model((size, size, 1), num_classes=1, filters=8, depth=depth, padding=padding)
    out = unet.output_size(size, depth, padding)
    assert model.output_shape == (None, out, out, 1)
    assert model.count_params() == expected_params(1, 1, 8, depth)
    if padding == "same":
        assert out == size


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=16),
        dict(filters=16, batch_norm=True),
        dict(filters=16, dropout=0.3),
        dict(filters=16, skip="crop"),
        dict(filters=16, num_classes=1),
        dict(filters=16, num_classes=3),
        dict(filters=16, padding="same", batch_norm=True, num_classes=3),
    ],
)
def test_option_variants_have_the_right_size(kwargs):
    padding = kwargs.get("padding", "valid")
    size = 284 if padding == "valid" else 96
    model = unet_model((size, size, 3), **kwargs)
    classes = kwargs.get("num_classes", 2)
    out = 100 if padding == "valid" else 96
    assert model.output_shape == (None, out, out, classes)
    assert model.count_params() == expected_params(
        3, classes, kwargs["filters"], 4, kwargs.get("batch_norm", False)
    )
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert ("BatchNormalization" in layer_types) == kwargs.get("batch_norm", False)
    assert ("Dropout" in layer_types) == bool(kwargs.get("dropout"))
    if padding == "valid":
        matcher = "Cropping2D" if kwargs.get("skip") == "crop" else "ResizeToMatch"
        assert matcher in layer_types


def test_heads_sigmoid_for_one_class_softmax_for_more():
    x = np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32)
    one = unet_model((96, 96, 3), num_classes=1, filters=4, padding="same")
    three = unet_model((96, 96, 3), num_classes=3, filters=4, padding="same")
    assert one.layers[-1].get_config()["activation"] == "sigmoid"
    assert three.layers[-1].get_config()["activation"] == "softmax"
    p1, p3 = one.predict(x, verbose=0), three.predict(x, verbose=0)
    assert p1.min() >= 0 and p1.max() <= 1
    np.testing.assert_allclose(p3.sum(-1), 1.0, atol=1e-5)


def test_output_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = unet_model((96, 96, 3), num_classes=1, filters=4, padding="same")
        assert model.layers[1].compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("skip", ["resize", "crop"])
def test_fully_convolutional_model_runs_on_any_valid_size(skip):
    model = unet_model((None, None, 3), num_classes=1, filters=4, skip=skip)
    assert model.output_shape == (None, None, None, 1)
    for h, w in [(188, 188), (284, 220), (572, 188)]:
        out = model.predict(np.zeros((1, h, w, 3), np.float32), verbose=0)
        assert out.shape == (1, unet.output_size(h), unet.output_size(w), 1)


@pytest.mark.parametrize("skip", ["resize", "crop"])
def test_crop_and_resize_build_at_572_and_at_none(skip):
    assert unet_model(skip=skip).output_shape == (None, 388, 388, 2)
    assert unet_model((None, None, 3), skip=skip).output_shape == (None, None, None, 2)


# ----------------------------------------------------------------------------- blocks
def test_encoder_block_returns_features_before_pooling():
    inputs = keras.Input((68, 68, 5))
    features, pooled = encoder_block(inputs, 7)
    assert features.shape == (None, 64, 64, 7)
    assert pooled.shape == (None, 32, 32, 7)
    probe = keras.Model(inputs, [features, pooled])
    f, p = probe.predict(np.random.default_rng(1).random((2, 68, 68, 5)), verbose=0)
    # The pooled map is exactly the 2x2 max of the skip features.
    np.testing.assert_allclose(p, f.reshape(2, 32, 2, 32, 2, 7).max(axis=(2, 4)), rtol=1e-6)
    assert f.min() >= 0  # ReLU


def test_encoder_block_same_padding_keeps_size():
    features, pooled = encoder_block(keras.Input((64, 48, 3)), 4, padding="same")
    assert features.shape == (None, 64, 48, 4) and pooled.shape == (None, 32, 24, 4)


@pytest.mark.parametrize("skip", ["resize", "crop"])
def test_decoder_block_contract(skip):
    low, skip_in = keras.Input((16, 16, 32)), keras.Input((40, 40, 16))
    out = decoder_block(low, skip_in, 16, skip=skip)
    # up-conv: 16 -> 32; skip 40 matched to 32; two valid convs: 32 -> 28
    assert out.shape == (None, 28, 28, 16)
    same = decoder_block(keras.Input((16, 16, 32)), keras.Input((32, 32, 16)), 16, padding="same")
    assert same.shape == (None, 32, 32, 16)


def test_decoder_crop_refuses_a_smaller_skip():
    with pytest.raises(ValueError, match="centre-crop"):
        decoder_block(keras.Input((16, 16, 8)), keras.Input((20, 20, 8)), 8, skip="crop")


def test_center_crop_takes_the_middle():
    x = np.arange(2 * 9 * 8 * 3, dtype=np.float32).reshape(2, 9, 8, 3)
    ref = np.zeros((2, 5, 4, 1), np.float32)
    out = np.asarray(CenterCropToMatch()([x, ref]))
    np.testing.assert_array_equal(out, x[:, 2:7, 2:6, :])


def test_resize_to_match_reaches_the_reference_size_and_keeps_constants():
    x = np.full((1, 10, 12, 2), 3.5, np.float32)
    out = np.asarray(ResizeToMatch()([x, np.zeros((1, 6, 5, 1), np.float32)]))
    assert out.shape == (1, 6, 5, 2)
    np.testing.assert_allclose(out, 3.5)


# ----------------------------------------------------------------------------- sizes
def test_size_arithmetic_matches_the_documented_formula():
    for b in range(4, 30):
        size = 16 * b + 124
        assert unet.is_valid_input_size(size)
        assert unet.output_size(size) == size - 184
    valid = [s for s in range(100, 700) if unet.is_valid_input_size(s)]
    assert valid == [16 * b + 124 for b in range(4, 36)]
    assert unet.output_size(284) == 100
    assert unet.input_size_for_output(100) == 284
    assert unet.input_size_for_output(100, depth=3) == 188
    assert unet.nearest_valid_sizes(570) == (556, 572)
    assert unet.nearest_valid_sizes(100, padding="same") == (96, 112)
    assert unet.output_size(96, padding="same") == 96


def test_shape_trace_is_the_572_table_and_matches_the_model():
    rows = unet.shape_trace(572)
    assert rows[0].size == 572 and rows[-1].size == 388
    sizes = [r.size for r in rows if "conv" in r.layer and "up" not in r.layer]
    assert sizes[:4] == [570, 568, 282, 280]
    assert [r.size for r in rows if r.stage == "bottleneck"] == [30, 28]
    model = unet_model()
    model_convs = [
        (layer.output.shape[1], layer.output.shape[3])
        for layer in model.layers
        if type(layer).__name__ in ("Conv2D", "Conv2DTranspose") and layer.name != "head"
    ]
    trace_convs = [(r.size, r.channels) for r in rows if "conv" in r.layer]
    assert model_convs == trace_convs


@pytest.mark.parametrize(
    "shape, padding, expected",
    [
        ((570, 570, 3), "valid", r"570 .*Nearest valid input sizes: 556 \(output 372\) and 572"),
        ((572, 571, 3), "valid", r"571 .*556 .* and 572"),
        ((100, 100, 3), "valid", r"too small.*smallest valid input size is 188"),
        ((100, 100, 3), "same", r"100 .*96 \(output 96\) and 112 \(output 112\)"),
    ],
)
def test_invalid_sizes_raise_a_clear_error(shape, padding, expected):
    with pytest.raises(ValueError, match=expected):
        unet_model(shape, padding=padding)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(padding="full"), "padding`? must be one of"),
        (dict(skip="add"), "skip`? must be one of"),
        (dict(depth=0), "depth`? must be a whole number from 1 to 8"),
        (dict(num_classes=0), "num_classes`? must be at least 1"),
        (dict(dropout=1.0), "dropout`? must be in"),
        (dict(input_shape=(572, 572)), r"input_shape`? must be \(height, width, channels\)"),
    ],
)
def test_invalid_options_raise_a_clear_error(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        unet_model(**kwargs)


# ----------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((188, 188, 3), dict(skip="resize")),
        ((None, None, 3), dict(skip="crop", batch_norm=True, dropout=0.2)),
        ((None, None, 1), dict(skip="resize", num_classes=1)),
    ],
)
def test_keras_round_trip_gives_identical_predictions(tmp_path, shape, kwargs):
    model = unet_model(shape, filters=4, **kwargs)
    x = np.random.default_rng(2).random((2, 188, 188, shape[2])).astype(np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_a_fresh_process_loads_a_saved_model_after_import_unet(tmp_path):
    path = tmp_path / "model.keras"
    unet_model((None, None, 3), filters=4, skip="crop").save(path)
    code = (
        "import unet, keras, numpy as np\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        "print(m.predict(np.zeros((1, 188, 188, 3)), verbose=0).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(1, 4, 4, 2)" in result.stdout


def expected_flops(size, in_ch, classes, filters, depth, padding="valid"):
    """Forward FLOPs (2 per multiply-add) walked by hand through the architecture."""
    trim = 2 if padding == "valid" else 0
    macs, s, cin, skips = 0, size, in_ch, []
    for level in range(depth + 1):
        f = filters * 2**level
        for c in (cin, f):
            s -= trim
            macs += s * s * 9 * c * f
        cin = f
        if level < depth:
            skips.append(s)
            s //= 2
    for level in reversed(range(depth)):
        f = filters * 2**level
        macs += s * s * 4 * cin * f  # transposed 2x2 stride 2: every input pixel, once
        s *= 2
        for c in (2 * f, f):
            s -= trim
            macs += s * s * 9 * c * f
        cin = f
    return 2 * (macs + s * s * cin * classes)


def test_count_flops_by_hand_and_for_the_paper_model():
    # same padding, depth 1, 8x8, 1 -> 2 -> 4 channels: every layer written out
    tiny = unet_model((None, None, 1), num_classes=1, filters=2, depth=1, padding="same")
    macs = (64 * 9 * 1 * 2 + 64 * 9 * 2 * 2  # encoder, 8x8
            + 16 * 9 * 2 * 4 + 16 * 9 * 4 * 4  # bottleneck, 4x4
            + 16 * 4 * 4 * 2  # transposed conv from 4x4
            + 64 * 9 * 4 * 2 + 64 * 9 * 2 * 2  # decoder, 8x8
            + 64 * 2 * 1)  # 1x1 head
    assert unet.count_flops(tiny, 8) == 2 * macs == 28_928
    paper = unet_model()
    assert unet.count_flops(paper) == expected_flops(572, 3, 2, 64, 4) == 301_605_418_496
    spore = unet_model((None, None, 3), num_classes=1, filters=16, depth=4, skip="crop")
    assert unet.count_flops(spore, 284) == expected_flops(284, 3, 1, 16, 4)
    assert unet.count_flops(spore, (284, 300)) > unet.count_flops(spore, 284)


def test_count_flops_needs_a_valid_size():
    model = unet_model((None, None, 3), num_classes=1, filters=4, depth=2)
    with pytest.raises(ValueError, match="input_size"):
        unet.count_flops(model)
    with pytest.raises(ValueError, match="Nearest valid input sizes"):
        unet.count_flops(model, 101)
    with pytest.raises(ValueError, match="fixed input size"):
        unet.count_flops(unet_model(), 284)
