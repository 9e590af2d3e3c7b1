"""Regenerate every figure in `markdown images/` (run by `make figures`).

Each entry of FIGURES maps a file name to a function returning a matplotlib figure;
the drawing code lives in `unet.plot` so the notebooks draw the same figures.
The result figures (predictions.png, field_counts.png) need a trained model: they
take it from runs/demo (what `make demo` writes) and are skipped, with one line
saying so, when it is missing.

Usage: python scripts/make_figures.py [--run RUN] [NAME ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from unet import plot  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "markdown images"
DATA = ROOT / "data" / "spores"
#: Run directory the result figures take their model from (``--run`` changes it).
RUN = ROOT / "runs" / "demo"


class Skip(Exception):
    """A figure cannot be drawn here (no trained model or no data); the message says why."""


def _model():
    from unet.run import load_run

    if not (RUN / "model.keras").exists():
        raise Skip(f"no trained model in {RUN}; run `make demo` first")
    return load_run(RUN)


def _folder(name):
    folder = DATA / name
    if not (folder / "images").is_dir():
        raise Skip(f"no {folder}; run `make demo` (or `make data`) first")
    return folder


def test_predictions(worst=3, typical=3):
    """Test crops of the trained model: the worst by Dice, and some around the median."""
    from unet.evaluate import iter_predictions
    from unet.metrics import segmentation_scores

    model, config = _model()
    threshold = config.threshold if config else 0.5
    items = list(iter_predictions(model, _folder("test")))  # with the run's window (load_run)
    dice = np.array([segmentation_scores(i.truth, i.prob > threshold)["dice"] for i in items])
    order = np.argsort(dice, kind="stable")
    middle = len(order) // 2 - typical // 2
    rows = [items[k] for k in [*order[:worst], *order[middle : middle + typical]]]
    return plot.prediction_strip(
        [r.image for r in rows], [r.truth for r in rows], [r.prob for r in rows],
        names=[r.name for r in rows], threshold=threshold,
        title=f"Test crops: the {worst} worst by Dice (top) and {typical} typical ones",
    )


def field_counts(index=0):
    """A whole dish field with every counted spore outlined, and a zoom."""
    from unet.count import count_spores
    from unet.data import load_image
    from unet.io import read_counts, read_image
    from unet.predict import predict_tiled

    model, config = _model()
    folder = _folder("fields")
    path = sorted((folder / "images").glob("*.png"))[index]
    prob = predict_tiled(model, load_image(path, model.input_shape[-1],
                                           flatten=config.flatten if config else None),
                         tta=bool(config and config.tta))
    spores = count_spores(prob, **(config.postprocessing() if config else {}))  # as `predict`
    true = read_counts(folder).get(path.stem)
    return plot.counted_field(read_image(path), spores.labels, true_count=true,
                              region=(384, 384, 256))


def predict_outputs(window=(150, 150, 220)):
    """What `predict` writes, read back from its files: the overlay with ids, the labels
    TIFF (as napari colours it) and the ROIs (as Fiji's ROI Manager draws them). The
    shipped model on a synthetic field it was not trained on."""
    import tempfile

    import matplotlib.pyplot as plt
    import roifile
    import tifffile
    from PIL import Image

    from unet.batch import predict_images
    from unet.io import save_png
    from unet.render import display_image, label_colors
    from unet.run import load_run
    from unet.spores import render_field

    model, _ = load_run("spores")  # used with its run's calibrated post-processing
    folder = Path(tempfile.mkdtemp(prefix="predict-figure-"))
    image = render_field(2026, (512, 512))[0]
    save_png(image, folder / "dish.png")
    predict_images(model, [folder / "dish.png"], folder / "out", pixel_size=0.65)
    top, left, side = window
    view = (slice(top, top + side), slice(left, left + side))
    overlay = np.asarray(Image.open(folder / "out" / "dish_overlay.png"))[view]
    labels = tifffile.imread(folder / "out" / "dish_labels.tif")
    rois = roifile.roiread(folder / "out" / "dish_rois.zip")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    axes[0].imshow(overlay, interpolation="nearest")
    axes[0].set_title("dish_overlay.png: outlines and ids", fontsize=9)
    axes[1].imshow(label_colors(labels[view]), interpolation="nearest")
    axes[1].set_title(f"dish_labels.tif ({labels.dtype}, {labels.max()} spores)", fontsize=9)
    axes[2].imshow(display_image(image[view]), interpolation="nearest")
    for roi in rois:
        xy = roi.coordinates() - (left, top)
        if (xy.min(axis=0) >= 0).all() and (xy.max(axis=0) <= side).all():
            axes[2].fill(xy[:, 0] - 0.5, xy[:, 1] - 0.5, fill=False, ec="#ffd000", lw=1)
            axes[2].text(*xy.mean(axis=0), roi.name, color="w", fontsize=6, ha="center",
                         va="center")
    axes[2].set_title(f"dish_rois.zip ({len(rois)} ImageJ ROIs, read back)", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# file name -> zero-argument callable returning a matplotlib Figure
FIGURES = {
    "spore_samples.png": plot.spore_samples,
    "spore_field.png": plot.spore_field,
    # concept figures (notebooks 01-05)
    "convolution.png": plot.convolution_step,
    "pooling.png": plot.pooling_example,
    "transposed_convolution.png": plot.transposed_convolution_steps,
    "skip_connection.png": plot.skip_connection,
    "unet_architecture.png": plot.unet_architecture,
    # results of a trained model (runs/demo)
    "predictions.png": test_predictions,
    "field_counts.png": field_counts,
    # the shipped model (unet/models/spores)
    "predict_outputs.png": predict_outputs,
}


def main(argv=None):
    global RUN
    parser = argparse.ArgumentParser(description="Regenerate the figures in markdown images/.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="figures to draw (default: all)")
    parser.add_argument("--run", type=Path, default=RUN,
                        help="run directory of the result figures' model (default: runs/demo)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        sys.exit(f"error: unknown figure(s) {unknown}; choose from {sorted(FIGURES)}")
    RUN = args.run
    for name in args.names or FIGURES:
        try:
            fig = FIGURES[name]()
        except Skip as reason:
            print(f"skipped {name}: {reason}")
            continue
        path = plot.save_figure(fig, OUT / name)
        print(f"wrote {path.relative_to(OUT.parent)}")


if __name__ == "__main__":
    main()
