"""Write RUN/report.md: what `make demo` trained, how well it segments and counts, in figures.

Reads what the demo's commands wrote (RUN/config.json, history.csv, curves.png,
test.json and fields.json from `python -m unet evaluate --json`, RUN/predict/ from
`python -m unet predict`), scores the classical baseline on the same images for
contrast, draws a test strip and a counted field, and prints where the report is.

Usage: python scripts/demo_report.py --run runs/demo --data data/spores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import unet  # noqa: E402,F401  (first: quiet TensorFlow start-up)
from unet import plot  # noqa: E402
from unet.baseline import baseline_mask  # noqa: E402
from unet.count import count_spores  # noqa: E402
from unet.data import load_image  # noqa: E402
from unet.io import read_counts, read_image, read_mask  # noqa: E402
from unet.evaluate import evaluate  # noqa: E402
from unet.predict import predict_tiled  # noqa: E402
from unet.run import load_run, read_history  # noqa: E402

STRIP_ROWS = 6  # test crops shown: the worst half and the best half by Dice


def _load_json(path):
    if not path.exists():
        sys.exit(f"error: {path} is missing; run `make demo` (it writes it) first.")
    return json.loads(path.read_text())


def _row(name, scores):
    count = (
        f"{scores['count_pred']} / {scores['count_true']} | {100 * scores['count_error']:.1f} %"
        if "count_true" in scores
        else "– | –"
    )
    return (f"| {name} | {scores['dice']:.3f} | {scores['iou']:.3f} | {scores['precision']:.3f} "
            f"| {scores['recall']:.3f} | {count} |")


def strip_figure(model, config, data_dir, test):
    """Image | truth | prediction for the worst and best test crops."""
    ranked = sorted(test["per_image"], key=lambda r: r["dice"])
    half = STRIP_ROWS // 2
    chosen = ranked[:half] + ranked[-half:]
    images, truths, probs, names = [], [], [], []
    for row in chosen:
        path = next((data_dir / "test" / "images").glob(f"{row['image']}.*"))
        image = load_image(path, config.channels, flatten=config.flatten)
        images.append(read_image(path))
        truths.append(read_mask(next((data_dir / "test" / "masks").glob(f"{row['image']}.*"))))
        probs.append(predict_tiled(model, image))
        names.append(row["image"])
    return plot.prediction_strip(images, truths, probs, names=names, threshold=config.threshold,
                                 title="test crops: the three worst and the three best")


def field_figure(model, config, data_dir, field_name):
    """The demo field with every counted spore outlined, beside its true count."""
    folder = data_dir / "fields"
    path = next((folder / "images").glob(f"{field_name}.*"))
    probability = predict_tiled(model, load_image(path, config.channels, flatten=config.flatten))
    spores = count_spores(probability, config.threshold, min_area=config.min_area,
                          h=config.split_h)
    true_count = read_counts(folder).get(field_name)
    return plot.counted_field(read_image(path), spores.labels, true_count=true_count)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="run directory")
    parser.add_argument("--data", type=Path, default=Path("data/spores"), help="data set root")
    args = parser.parse_args(argv)
    run, data_dir = args.run, args.data

    model, config = load_run(run)
    history = read_history(run / "history.csv")
    test = _load_json(run / "test.json")
    fields = _load_json(run / "fields.json")
    base_test = evaluate(baseline_mask, data_dir / "test")
    base_fields = evaluate(baseline_mask, data_dir / "fields")
    summary = (run / "predict" / "summary.csv").read_text().splitlines()[1:]
    field_name = summary[0].split(",")[0] if summary else fields["per_image"][0]["image"]

    figures = run / "figures"
    plot.save_figure(strip_figure(model, config, data_dir, test), figures / "test_strip.png")
    plot.save_figure(field_figure(model, config, data_dir, field_name), figures / "field.png")

    best = int(history["val_dice"].argmax())
    lines = [
        "# `make demo` report",
        "",
        f"A U-Net trained by `python -m unet train` on the synthetic spore crops in `{data_dir}`, "
        "evaluated at every image's own size (overlap-tile prediction, no resizing).",
        "",
        "## Training",
        "",
        f"- model: filters {config.filters}, depth {config.depth}, {config.padding} padding, "
        f"skip `{config.skip}`, {model.count_params():,} parameters; crops mirror-padded to "
        f"{config.tile_size} -> {config.output_tile_size} px tiles",
        f"- {int(history['step'][-1])} steps, loss `{config.loss}`, batch {config.batch_size}; "
        f"best validation Dice {history['val_dice'][best]:.4f} at step "
        f"{int(history['step'][best])} (the saved `model.keras`)",
        f"- post-processing: threshold {config.threshold}, split height {config.split_h}, "
        f"min area {config.min_area} px"
        + (f" (calibrated: {config.calibration['objective']} "
           f"{config.calibration['score']:.3f}, defaults {config.calibration['default_score']:.3f})"
           if config.calibration else ""),
        "",
        "![training curves](curves.png)",
        "",
        "## Scores",
        "",
        "Pixel scores pooled over all pixels of all images; spore counts per image "
        "(predicted / true, and the mean relative error over images).",
        "",
        "| method | Dice | IoU | precision | recall | spores | count error |",
        "|---|---|---|---|---|---|---|",
        _row(f"U-Net, test crops ({test['images']})", test),
        _row(f"classical baseline, test crops ({base_test['images']})", base_test),
        _row(f"U-Net, dish fields ({fields['images']})", fields),
        _row(f"classical baseline, dish fields ({base_fields['images']})", base_fields),
        "",
        "The classical baseline is `unet.baseline.baseline_mask`: background flattening, "
        "Otsu threshold, the same watershed splitting, a shape filter.",
        "",
        "![test crops](figures/test_strip.png)",
        "",
        f"## Counting a whole field: `{field_name}`",
        "",
        "![counted field](figures/field.png)",
        "",
        f"`python -m unet predict` wrote the mask, the overlay, `spores.csv` (one row per spore) "
        f"and `summary.csv` to `{run / 'predict'}`.",
        "",
    ]
    report = run / "report.md"
    report.write_text("\n".join(lines))
    print(f"U-Net test Dice {test['dice']:.4f}; field count error "
          f"{100 * fields['count_error']:.1f} % (baseline {100 * base_fields['count_error']:.1f} %)")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
