"""The concept figures of notebooks 01-05 show correct numbers (checked independently)."""

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.signal  # noqa: E402

import unet  # noqa: E402
from unet import plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def numbers(fig):
    """Every text that is a plain number, in drawing order."""
    return [float(t) for t in texts(fig) if re.fullmatch(r"-?\d+(\.\d+)?", t)]


def test_convolution_step_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, size=(6, 5))
    w = rng.integers(-2, 3, size=(3, 3))
    fig = plot.convolution_step(x, w, position=(2, 1))
    expected = scipy.signal.correlate2d(x, w, mode="valid")
    # drawing order: input grid, kernel, output grid
    assert numbers(fig)[x.size + w.size :] == expected.ravel().tolist()
    formula = next(t for t in texts(fig) if t.startswith("output[2, 1] ="))
    assert formula.endswith(f"= {expected[2, 1]}")


def test_pooling_example_values():
    x = np.array([[1, 3, 2, 0], [4, 6, 1, 1], [0, 2, 5, 7], [1, 1, 3, 2]])
    values = numbers(plot.pooling_example(x))
    assert values[16:20] == [6, 2, 2, 7]
    assert values[20:24] == [3.5, 1.0, 1.0, 4.25]


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_transposed_convolution_steps_is_a_full_convolution_of_the_dilated_input(stride):
    x = np.array([[1, 2], [3, -1]])
    w = np.array([[1, 0, 2], [0, 3, 0], [1, -1, 1]])
    fig = plot.transposed_convolution_steps(x, w, stride=stride)
    dilated = np.zeros(((x.shape[0] - 1) * stride + 1,) * 2, int)
    dilated[::stride, ::stride] = x
    expected = scipy.signal.convolve2d(dilated, w, mode="full")  # scatter-add, written differently
    assert numbers(fig)[-expected.size :] == expected.ravel().tolist()


def test_unet_architecture_labels_every_size_and_channel_of_the_trace():
    fig = plot.unet_architecture()
    labels = texts(fig)
    trace = unet.shape_trace(572)
    sizes = {int(t[:-1]) for t in labels if re.fullmatch(r"\d+²", t)}
    assert sizes == {r.size for r in trace}
    channels = {int(c) for t in labels if re.fullmatch(r"\d+(\+\d+)?", t) for c in t.split("+")}
    assert channels == {r.channels for r in trace} | {2}
    assert "572×572×3 → output 388×388×2" in fig.axes[0].get_title()


def test_skip_connection_uses_the_trace_sizes():
    joined = " ".join(texts(plot.skip_connection()))
    for label in ("568×568×64", "392×392×64", "196×196×128", "388×388×64", "284×284×64",
                  "64 + 64 = 128"):
        assert label in joined
