"""Overlap-tile prediction: exactness against one forward pass, sizes, plans, TTA."""

import numpy as np
import pytest

import unet
from unet.model import model_geometry
from unet.predict import MAX_TILE, mirror_indices, plan_tiles, predict_tiled
from unet.sizes import default_context

RNG = np.random.default_rng(7)


def full_forward(model, image, context, depth, padding):
    """One forward pass over the whole image, mirror-padded with np.pad (independent code)."""
    h, w = image.shape[:2]

    def padded(n):
        if padding == "same":
            return -(-(n + 2 * context) // 2**depth) * 2**depth
        return unet.input_size_for_output(n, depth, "valid")

    ph, pw = padded(h), padded(w)
    if image.ndim == 2:
        image = image[..., None]
    x = np.pad(image, ((context, ph - context - h), (context, pw - context - w), (0, 0)), "reflect")
    y = model.predict_on_batch(x[None])[0]
    start = context if padding == "same" else 0
    return y[start : start + h, start : start + w]


@pytest.mark.parametrize("length", [1, 2, 3, 7, 40])
def test_mirror_indices_equal_numpy_reflect(length):
    values = np.arange(length) * 10
    idx = np.arange(-95, length + 95)
    expected = np.pad(values, 95, "reflect")
    np.testing.assert_array_equal(values[mirror_indices(idx, length)], expected)


def test_geometry_is_read_from_the_model():
    m = unet.unet_model((None, None, 3), num_classes=2, filters=2, depth=3, padding="same")
    g = model_geometry(m)
    assert (g.depth, g.padding, g.channels, g.num_classes) == (3, "same", 3, 2)
    assert g.input_size == (None, None) and g.resize_skips
    m = unet.unet_model((188, 188, 1), num_classes=1, filters=2, skip="crop")
    g = model_geometry(m)
    assert (g.depth, g.padding, g.input_size, g.resize_skips) == (4, "valid", (188, 188), False)


@pytest.mark.parametrize("shape", [(2048, 2048), (4096, 4096)])
def test_plan_work_ratio_is_low_for_big_images(shape):
    plan = plan_tiles(shape)  # valid padding, depth 4, defaults
    assert plan.work_ratio <= 1.6
    assert max(plan.tile) <= MAX_TILE
    # Hand check: 2x2 (or 4x4) tiles of 1212 -> 1028, each delivering 1024 pixels.
    assert plan.tile == (1212, 1212) and plan.output == (1028, 1028) and plan.stride == (1024, 1024)
    assert plan.grid == (shape[0] // 1024,) * 2
    assert plan.work_ratio == pytest.approx((1212 / 1024) ** 2)


def test_plan_covers_every_pixel_once_and_respects_max_tile():
    for shape in [(1, 1), (37, 201), (300, 29), (1500, 777), (2049, 3000)]:
        for padding in ("valid", "same"):
            plan = plan_tiles(shape, depth=4, padding=padding, max_tile=700)
            for axis in (0, 1):
                n, stride, length = plan.grid[axis], plan.stride[axis], shape[axis]
                assert (n - 1) * stride < length <= n * stride
                assert plan.tile[axis] <= 700
                # Valid: delivered part fits in the output; same: margin on both sides.
                if padding == "valid":
                    assert stride <= plan.output[axis]
                    assert plan.tile[axis] - plan.output[axis] == 184
                else:
                    assert plan.tile[axis] - plan.context[axis] - stride >= plan.context[axis]
                if n > 1:
                    assert stride % 16 == 0  # tiles start on the pooling grid


def test_plan_finds_small_tiles_past_a_plateau_of_the_rounded_stride():
    # depth 3 (grid 8), tiles <= 188 deliver <= 100 pixels, so strides of 96: 22 tiles
    # per 2048 pixels. 20 and 21 tiles both round up to a stride of 104 (a 192 tile);
    # the search must go on to 22 instead of giving up.
    plan = plan_tiles((2048, 2048), depth=3, padding="valid", max_tile=188)
    assert plan.tile == (188, 188) and plan.stride == (96, 96) and plan.grid == (22, 22)
    assert (plan.grid[0] - 1) * plan.stride[0] < 2048 <= plan.grid[0] * plan.stride[0]


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Nearest valid input sizes"):
        plan_tiles((500, 500), tile=301)
    with pytest.raises(ValueError, match="raise max_tile"):
        plan_tiles((500, 500), max_tile=150)
    with pytest.raises(ValueError, match="margin applies to same-padding"):
        plan_tiles((500, 500), margin=10)


@pytest.mark.parametrize("shape", [(70, 53), (37, 100, 2)])
def test_valid_tiling_equals_one_forward_pass(shape):
    model = unet.unet_model((None, None, 2 if len(shape) == 3 else 1), num_classes=1, filters=2,
                            depth=2, skip="crop")
    image = RNG.random(shape, dtype=np.float32)
    tiled = predict_tiled(model, image, tile=60, batch_size=3)  # 60 -> 20: many tiles
    assert plan_tiles(shape, 2, tile=60).n_tiles > 4
    expected = full_forward(model, image, default_context(2), 2, "valid")[..., 0]
    assert tiled.shape == shape[:2] and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, expected, atol=1e-5)
    # The automatic plan (one tile here) agrees too.
    np.testing.assert_allclose(predict_tiled(model, image), expected, atol=1e-5)


@pytest.mark.parametrize("raw, channels", [
    (RNG.integers(0, 256, (70, 53, 3), dtype=np.uint8), 3),   # 8-bit RGB
    (RNG.integers(0, 65536, (61, 45), dtype=np.uint16), 3),    # 16-bit gray, 3-channel model
    (RNG.integers(0, 256, (40, 33, 4), dtype=np.uint8), 3),    # RGBA: alpha dropped
    (RNG.integers(0, 256, (40, 33, 3), dtype=np.uint8), 1),    # RGB to a gray model
    (np.full((30, 31), 7, np.uint16), 1),                      # constant
])
def test_an_image_prepared_tile_by_tile_predicts_the_same(raw, channels):
    from unet.image import PreparedImage, prepare_image

    whole = prepare_image(raw, channels)
    lazy = PreparedImage(raw, channels)
    assert lazy.shape == whole.shape
    rows, cols = np.array([3, 2, 1, 0, 1, 2]), np.arange(5, 25)
    np.testing.assert_array_equal(lazy[np.ix_(rows, cols)], whole[np.ix_(rows, cols)])
    np.testing.assert_array_equal(np.asarray(lazy), whole)
    model = unet.unet_model((None, None, channels), num_classes=1, filters=2, depth=2,
                            skip="crop")
    np.testing.assert_array_equal(predict_tiled(model, lazy, tile=60),
                                  predict_tiled(model, whole, tile=60))
    with pytest.raises(unet.UsageError, match="channel"):
        predict_tiled(unet.unet_model((None, None, channels + 1), num_classes=1, filters=2,
                                      depth=2), PreparedImage(raw, channels))


@pytest.mark.parametrize("depth", [2, 3])
def test_same_tiling_with_the_default_margin_equals_one_forward_pass(depth):
    model = unet.unet_model((None, None, 1), num_classes=3, filters=2, depth=depth, padding="same")
    image = RNG.random((83, 61), dtype=np.float32)
    context = default_context(depth, "same")
    tile = 2 * context + 2 * 2**depth  # several tiles, each delivering 2 * 2**depth pixels
    tiled = predict_tiled(model, image, tile=tile, margin=context, all_classes=True)
    expected = full_forward(model, image, context, depth, "same")
    assert tiled.shape == (83, 61, 3)
    np.testing.assert_allclose(tiled, expected, atol=1e-5)
    # A margin smaller than the receptive field leaves seams: the default is needed.
    short = predict_tiled(model, image, tile=tile, margin=context - 2 * 2**depth, all_classes=True)
    assert np.abs(short - expected).max() > 1e-4


@pytest.mark.parametrize("shape", [(1, 1), (37, 201), (300, 29), (5, 4, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_any_image_size_gives_exactly_that_size(shape, padding):
    model = unet.unet_model((None, None, 1), num_classes=1, filters=2, depth=2, padding=padding,
                            skip="crop")
    out = predict_tiled(model, RNG.random(shape, dtype=np.float32))
    assert out.shape == shape[:2] and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))


def test_static_input_model_uses_its_own_size_and_matches_the_none_model():
    size = unet.input_size_for_output(24, depth=2)
    static = unet.unet_model((size, size, 1), num_classes=2, filters=2, depth=2, skip="crop")
    free = unet.unet_model((None, None, 1), num_classes=2, filters=2, depth=2, skip="crop")
    free.set_weights(static.get_weights())
    image = RNG.random((50, 71), dtype=np.float32)
    out = predict_tiled(static, image)
    np.testing.assert_allclose(out, predict_tiled(free, image, tile=size), atol=1e-6)
    np.testing.assert_allclose(out, full_forward(free, image, 20, 2, "valid")[..., 1], atol=1e-5)
    with pytest.raises(ValueError, match="fixed input size"):
        predict_tiled(static, image, tile=size + 4)


def test_valid_resize_skip_model_warns_without_a_tile(recwarn):
    model = unet.unet_model((None, None, 1), num_classes=1, filters=2, depth=2)  # skip="resize"
    image = RNG.random((30, 30), dtype=np.float32)
    with pytest.warns(UserWarning, match="depends on the tile size"):
        auto = predict_tiled(model, image)
    fixed = predict_tiled(model, image, tile=60)
    assert not [w for w in recwarn if "tile size" in str(w.message)]
    # The warning is real: the same model gives other numbers with another tile.
    assert np.abs(auto - fixed).max() > 1e-4


def test_softmax_returns_class_one_and_all_classes_on_request():
    model = unet.unet_model((None, None, 1), num_classes=3, filters=2, depth=2, padding="same")
    image = RNG.random((30, 41), dtype=np.float32)
    everything = predict_tiled(model, image, all_classes=True)
    assert everything.shape == (30, 41, 3)
    np.testing.assert_allclose(everything.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(predict_tiled(model, image), everything[..., 1])


def test_tiles_are_batched_and_bounded(monkeypatch):
    model = unet.unet_model((None, None, 1), num_classes=1, filters=2, depth=2, skip="crop")
    calls = []
    original = model.predict_on_batch

    def spy(x):
        calls.append(x.shape)
        return original(x)

    monkeypatch.setattr(model, "predict_on_batch", spy)
    plan = plan_tiles((400, 333), depth=2, max_tile=100)
    out = predict_tiled(model, np.zeros((400, 333), np.float32), batch_size=3, max_tile=100)
    assert out.shape == (400, 333)
    assert len(calls) == -(-plan.n_tiles // 3) and plan.n_tiles > 9
    assert all(c[0] <= 3 and c[1:3] == plan.tile and max(c[1:3]) <= 100 for c in calls)


def _symmetrize(model):
    """Make every kernel invariant under flips and transposition: a D4-equivariant net."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D" and layer.kernel.shape[0] == 3:
            k = layer.kernel.numpy()
            group = [np.rot90(k, r, axes=(0, 1)) for r in range(4)]
            group += [g[::-1] for g in group]
            layer.kernel.assign(np.mean(group, axis=0))
        elif kind == "Conv2DTranspose":
            k = layer.kernel.numpy()
            layer.kernel.assign(np.broadcast_to(k.mean(axis=(0, 1), keepdims=True), k.shape))


def test_tta_equals_plain_prediction_for_a_symmetric_model():
    model = unet.unet_model((None, None, 1), num_classes=1, filters=3, depth=2, skip="crop")
    _symmetrize(model)
    x = RNG.random((1, 60, 60, 1), dtype=np.float32)
    y = model.predict_on_batch(x)
    np.testing.assert_allclose(model.predict_on_batch(x[:, ::-1].copy()), y[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(
        model.predict_on_batch(np.swapaxes(x, 1, 2).copy()), np.swapaxes(y, 1, 2), atol=1e-5
    )
    image = RNG.random((45, 52), dtype=np.float32)
    plain = predict_tiled(model, image, tile=60)
    for mode in (True, "flips", "d4"):
        np.testing.assert_allclose(predict_tiled(model, image, tile=60, tta=mode), plain, atol=1e-5)


def test_tta_averages_transformed_predictions():
    model = unet.unet_model((None, None, 1), num_classes=1, filters=2, depth=2, padding="same")
    image = RNG.random((16, 16), dtype=np.float32)
    plain = predict_tiled(model, image, tile=16, margin=0)
    flipped = predict_tiled(model, image[::-1].copy(), tile=16, margin=0)[::-1]
    mirrored = predict_tiled(model, image[:, ::-1].copy(), tile=16, margin=0)[:, ::-1]
    both = predict_tiled(model, image[::-1, ::-1].copy(), tile=16, margin=0)[::-1, ::-1]
    tta = predict_tiled(model, image, tile=16, margin=0, tta="flips")
    np.testing.assert_allclose(tta, (plain + flipped + mirrored + both) / 4, atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-4  # an asymmetric model: TTA does change it
    with pytest.raises(ValueError, match="square tiles"):
        predict_tiled(model, np.zeros((16, 40), np.float32), tile=(16, 32), margin=0, tta="d4")


def test_progress_bar_and_bad_inputs(capsys):
    model = unet.unet_model((None, None, 3), num_classes=1, filters=2, depth=2, skip="crop")
    out = predict_tiled(model, np.zeros((20, 20, 3), np.float32), progress=True)
    assert out.shape == (20, 20)
    assert "tiles" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"1 channel\(s\) but the model takes 3"):
        predict_tiled(model, np.zeros((20, 20), np.float32))
    with pytest.raises(ValueError, match=r"\(height, width\) or \(height, width, channels\)"):
        predict_tiled(model, np.zeros((2, 20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        predict_tiled(model, np.zeros((20, 20, 3), np.float32), batch_size=0)


def test_public_names_are_exported_lazily():
    import subprocess
    import sys

    names = ["predict_tiled", "plan_tiles", "count_spores", "label_spores", "measure_spores",
             "count_errors", "baseline_mask", "flatten_background", "get_loss", "Dice"]
    code = (
        "import sys, unet;"
        "assert 'unet.predict' not in sys.modules and 'skimage' not in sys.modules;"
        f"[getattr(unet, n) for n in {names!r}]; assert set({names!r}) <= set(unet.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_predict_many_equals_predict_tiled_image_by_image():
    model = unet.unet_model((None, None, 2), num_classes=1, filters=2, depth=2, skip="crop")
    sizes = [(10, 13), (30, 7), (1, 1), (44, 44), (300, 90)]  # the last needs tiles of its own
    images = [RNG.random(s + (2,)).astype(np.float32) for s in sizes]
    many = unet.predict.predict_many(model, images, batch_size=2, max_tile=120)
    for image, got in zip(images, many):
        assert got.shape == image.shape[:2]
        np.testing.assert_allclose(got, predict_tiled(model, image), atol=1e-5)


def test_strips_of_rows_put_together_are_the_tiled_prediction(tmp_path):
    import tifffile

    from unet.image import PreparedImage
    from unet.io import TiffRows
    from unet.predict import predict_strips

    raw = RNG.integers(0, 65536, (150, 83), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raw, rowsperstrip=11, compression="zlib")
    model = unet.unet_model((None, None, 1), num_classes=1, filters=2, depth=2, skip="crop")
    expected = predict_tiled(model, PreparedImage(raw, 1), tile=60)
    tops, strips = zip(*predict_strips(model, PreparedImage(TiffRows.open(tmp_path / "a.tif"), 1),
                                       tile=60))
    plan = plan_tiles(raw.shape, 2, "valid", 60)
    assert list(tops) == list(range(0, 150, plan.stride[0])) and len(tops) > 2
    np.testing.assert_array_equal(np.concatenate(strips), expected)
