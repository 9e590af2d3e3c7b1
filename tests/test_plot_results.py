"""Figures of results and image panels: they show the numbers they claim."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from unet import plot  # noqa: E402
from unet.predict import plan_tiles  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def titles(fig):
    return [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center") if ax.get_title(loc)]


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_error_map_colours_each_case():
    truth = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    out = plot.error_map(truth, pred)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    c = plot.ERROR_COLORS
    assert [tuple(v) for v in out[0]] == [c["tp"], c["fn"], c["fp"], (0, 0, 0)]
    with pytest.raises(ValueError, match="shape"):
        plot.error_map(truth, pred[:, :3])


def test_prediction_strip_titles_give_each_rows_dice():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 px
    prob = np.zeros((10, 10), np.float32)
    prob[2:6, 2:4] = 0.9  # 8 px found
    prob[8, 8] = 0.7      # 1 false positive
    prob[0, 0] = 0.4      # below the threshold
    # Dice = 2 * 8 / (2 * 8 + 1 + 8) = 16 / 25
    image = np.random.default_rng(0).random((10, 10, 3))
    fig = plot.prediction_strip([image, image], [truth, truth], [prob, truth.astype(np.uint8)],
                                names=["a", "b"])
    assert "a: Dice 0.640" in titles(fig) and "b: Dice 1.000" in titles(fig)
    assert len(fig.axes) == 8
    errors = fig.axes[3].images[0].get_array()
    assert tuple(errors[8, 8]) == plot.ERROR_COLORS["fp"]
    assert tuple(errors[5, 5]) == plot.ERROR_COLORS["fn"]
    assert len(plot.prediction_strip([image], [truth], [prob], errors=False).axes) == 3
    with pytest.raises(ValueError, match="as many"):
        plot.prediction_strip([image], [truth, truth], [prob])


def test_label_colors_are_stable_and_distinct():
    labels = np.array([[0, 1, 2], [3, 1, 0]])
    rgb = plot.label_colors(labels)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert (rgb[0, 0] == 0).all() and (rgb[1, 2] == 0).all()
    assert (rgb[0, 1] == rgb[1, 1]).all()
    colours = {tuple(rgb[0, 1]), tuple(rgb[0, 2]), tuple(rgb[1, 0])}
    assert len(colours) == 3 and (0, 0, 0) not in colours


def test_image_grid_draws_each_kind():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = rng.random((8, 8)) > 0.5
    labels = rng.integers(0, 4, (8, 8))
    weights = rng.random((8, 8)).astype(np.float32)
    fig = plot.image_grid([image, mask, labels, weights], titles=list("abcd"),
                          outlines=[mask, None, None, None], columns=2)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == list("abcd")
    np.testing.assert_array_equal(axes[0].images[0].get_array(), image)
    assert len(axes[0].images) == 2  # the image and its outline layer
    np.testing.assert_array_equal(axes[1].images[0].get_array(), mask)
    np.testing.assert_array_equal(axes[2].images[0].get_array(), plot.label_colors(labels))
    np.testing.assert_allclose(axes[3].images[0].get_array(), weights)
    assert len(fig.axes) == 5  # four panels and the colour bar of the float map
    gray = plot.image_grid([weights], kinds=["image"])
    assert gray.axes[0].images[0].get_array().shape == (8, 8, 3)
    with pytest.raises(ValueError, match="one per panel"):
        plot.image_grid([image, mask], titles=["only one"])
    with pytest.raises(ValueError, match="kind"):
        plot.image_grid([image], kinds=["photo"])


def test_counted_field_counts_and_zooms():
    labels = np.zeros((300, 300), np.int32)
    for k, (r, c) in enumerate([(20, 20), (150, 150), (200, 60), (280, 280)], start=1):
        labels[r - 5 : r + 5, c - 5 : c + 5] = k
    image = np.full((300, 300, 3), 128, np.uint8)
    fig = plot.counted_field(image, labels, true_count=5, region=(100, 120, 64))
    assert "4 spores counted (true 5)" in titles(fig)
    assert fig.axes[1].images[0].get_array().shape == (64, 64, 3)
    (frame,) = rectangles(fig.axes[0])
    assert (frame.get_x(), frame.get_y(), frame.get_width()) == (119.5, 99.5, 64)
    centre = plot.counted_field(image, labels)  # default: 256 px in the centre
    assert "zoom 256×256 px at (22, 22)" in titles(centre)


def test_size_histogram_counts_every_spore():
    sizes = {"truth": [10, 12, 12, 20], "U-Net": [11, 13]}
    fig = plot.size_histogram(sizes, bins=5)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["truth: 4, median 12.0", "U-Net: 2, median 12.0"]
    heights = [p.get_path().vertices[:, 1].max() for p in fig.axes[0].patches]
    assert max(heights) == 2  # the two 12s share a bin
    with pytest.raises(ValueError):
        plot.size_histogram({})


def test_method_comparison_titles_count_the_whole_image():
    a = np.zeros((40, 40), int)
    a[2:6, 2:6], a[30:35, 30:35] = 1, 7
    b = (a > 0).astype(np.uint8)
    b[10:14, 10:14] = 1  # a mask: one more object, counted as one label value
    fig = plot.method_comparison(np.zeros((40, 40)), {"truth": a, "mask": b}, region=(0, 0, 20))
    assert titles(fig) == ["truth: 2 spores in all", "mask: 1 spores in all"]
    assert fig.axes[0].images[0].get_array().shape == (20, 20, 3)


def test_tile_plan_draws_every_tile():
    plan = plan_tiles((500, 400), tile=284)
    fig = plot.tile_plan(plan, image=np.zeros((500, 400)), highlight=0)
    ax = fig.axes[0]
    yellow = matplotlib.colors.to_rgb("#ffd000")
    delivered = [r for r in rectangles(ax) if r.get_edgecolor()[:3] == yellow]
    assert len(delivered) == plan.n_tiles == plan.grid[0] * plan.grid[1]
    assert sum(r.get_width() * r.get_height() for r in delivered) == 500 * 400
    dashed = [r for r in rectangles(ax) if r.get_linestyle() == "--"]
    assert dashed[0].get_width() == 284 and dashed[0].get_x() == -92.5  # mirrored context
    assert ax.get_title().endswith(f"work ratio {6 * 284 * 5 * 284 / (500 * 400):.2f}")


def test_training_tile_marks_window_and_crop():
    from unet.data import pad_to_tile

    crop = np.random.default_rng(0).random((30, 50, 3)).astype(np.float32)
    mask = np.zeros((30, 50))
    mask[5:10, 5:10] = 1
    fig = plot.training_tile(*pad_to_tile(crop, mask, None, 284, 100), crop_shape=(30, 50))
    window, crop_box = rectangles(fig.axes[0])
    assert (window.get_x(), window.get_width()) == (91.5, 100)
    assert (crop_box.get_y(), crop_box.get_x(), crop_box.get_height(), crop_box.get_width()) == (
        92 + 35 - 0.5, 92 + 25 - 0.5, 30, 50)
    assert fig.axes[2].images[0].get_array().sum() == 30 * 50
