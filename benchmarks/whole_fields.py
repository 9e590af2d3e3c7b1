"""Whole fields against crops: which spores are missed, and how uneven each field's light is.

    python benchmarks/whole_fields.py DATA RUN [RUN ...] [--stardist MODEL_DIR]

DATA is a folder written by ``other_renderer.py`` (``test/`` crops and ``fields/``, each
with ``kinds.csv``: the optical kind of every label, pale, normal or dark); each RUN is a
run trained on its training split (``benchmarks/foreign.py`` trains one with the command
line's defaults). Every image is prepared as the run prepares it (``Config.flatten``
included), predicted at its own size and labelled with the run's post-processing, as
``unet.evaluate`` does. Printed, per run (and for StarDist, ``--stardist``: the folder of
a model ``peer_stardist.py`` trained, normalised as it normalises):

1. per kind, on the test crops and on the fields: the share of spores matched at IoU 0.5
   and the share of their pixels inside the predicted foreground;
2. per field: Dice, object F1 at IoU 0.5 and the signed count error, beside how uneven
   its light is after the normalisation a model is given (the background, a 41 px grey
   closing of the normalised luminance: its median and the log ratio of its 95th to its
   5th percentile), and the same background figures of the test crops.

Writes ``benchmarks/results/whole_fields.json``. Minutes on 2 cores (no training).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import machine, table, write_result

KINDS = ("pale", "normal", "dark")


def read_kinds(folder):
    """``{image name: [kind of label 1, kind of label 2, ...]}`` from ``kinds.csv``."""
    path = Path(folder) / "kinds.csv"
    if not path.exists():
        raise SystemExit(f"error: {path} not found; write DATA with benchmarks/other_renderer.py")
    kinds = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            kinds[row["name"]].append(row["kind"])
    return kinds


def light(image):
    """Median and log(p95 / p5) of the background of the normalised luminance."""
    from unet.image import estimate_background, normalize, to_gray

    background = estimate_background(to_gray(normalize(np.asarray(image, np.float32))), 41)
    p5, p50, p95 = np.percentile(background, [5, 50, 95])
    return float(p50), float(np.log(p95 / max(p5, 1e-6)))


def unet_labeller(run):
    import unet

    model, config = unet.load_run(run)

    def label(raw):
        image = unet.prepare_image(raw, config.channels, flatten=config.flatten)
        prob = unet.predict_tiled(model, image)
        return unet.label_spores(prob, threshold=config.threshold, min_area=config.min_area,
                                 h=config.split_h)

    return label


def stardist_labeller(model_dir):
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    import peer_stardist

    path = Path(model_dir)
    model = StarDist2D(None, name=path.name, basedir=str(path.parent))

    def label(raw):
        from unet.image import to_channels

        gray = to_channels(raw, 1)[..., 0].astype(np.float32)
        return peer_stardist.predict_split(model, [normalize(gray, 1, 99.8)], 512)[0][0]

    return label


def score(label, data):
    """Per-kind tallies of the crops and the fields, and per-field rows."""
    import tifffile

    import unet

    result = {"per_kind": {}, "fields": []}
    for split in ("test", "fields"):
        folder = Path(data) / split
        kinds = read_kinds(folder)
        tally = {k: np.zeros(4) for k in KINDS}  # spores, matched, pixels, found
        for name in sorted(kinds):
            raw = unet.read_image(next((folder / "images").glob(f"{name}.*")))
            truth = tifffile.imread(folder / "labels" / f"{name}.tif").astype(np.int64)
            pred = np.asarray(label(raw)).astype(np.int64)
            match = unet.match_spores(truth, pred)
            missed = set(np.asarray(match["missed"]).tolist())
            areas = np.bincount(truth.ravel(), minlength=truth.max() + 1)
            found = np.bincount(truth.ravel(), weights=(pred > 0).ravel(),
                                minlength=truth.max() + 1)
            for k, kind in enumerate(kinds[name], 1):
                tally[kind] += [1, k not in missed, areas[k], found[k]]
            if split == "fields":
                median, spread = light(raw)
                result["fields"].append({
                    "field": name, "dice": unet.segmentation_scores(truth > 0, pred > 0)["dice"],
                    "object_f1": match["f1"],
                    "count_true": unet.count_labels(truth), "count_pred": unet.count_labels(pred),
                    "background_median": median, "background_log_spread": spread})
        result["per_kind"][split] = {
            kind: {"spores": int(t[0]), "matched": t[1] / max(t[0], 1),
                   "pixels_found": t[3] / max(t[2], 1)} for kind, t in tally.items()}
    return result


def crop_light(data, limit=100):
    import unet

    folder = Path(data) / "test" / "images"
    values = np.array([light(unet.read_image(p)) for p in sorted(folder.iterdir())[:limit]])
    return {"background_median_p5_p50_p95": np.percentile(values[:, 0], [5, 50, 95]).tolist(),
            "background_log_spread_p5_p50_p95": np.percentile(values[:, 1], [5, 50, 95]).tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder written by other_renderer.py")
    parser.add_argument("runs", nargs="+", type=Path, help="runs trained on DATA/train")
    parser.add_argument("--stardist", type=Path, metavar="MODEL_DIR",
                        help="a StarDist model folder written by peer_stardist.py")
    args = parser.parse_args(argv)
    methods = {str(run): unet_labeller(run) for run in args.runs}
    if args.stardist:
        methods[f"StarDist {args.stardist}"] = stardist_labeller(args.stardist)
    results = {"machine": machine(), "data": str(args.data), "crops": crop_light(args.data),
               "methods": {}}
    for name, label in methods.items():
        r = score(label, args.data)
        results["methods"][name] = r
        print(f"\n{name}")
        print(table([(split, kind, v["spores"], f"{v['matched']:.2f}", f"{v['pixels_found']:.2f}")
                     for split, kinds in r["per_kind"].items() for kind, v in kinds.items()],
                    ("split", "kind", "spores", "matched at IoU 0.5", "pixels found")))
        print(table([(f["field"], f"{f['dice']:.3f}", f"{f['object_f1']:.3f}",
                      f"{(f['count_pred'] - f['count_true']) / f['count_true']:+.1%}",
                      f"{f['background_median']:.2f}", f"{f['background_log_spread']:.2f}")
                     for f in r["fields"]],
                    ("field", "Dice", "object F1", "count error", "background median",
                     "log(p95/p5)")))
    c = results["crops"]
    print("\ntest crops' background, 5th / 50th / 95th percentile over crops: median "
          + " / ".join(f"{v:.2f}" for v in c["background_median_p5_p50_p95"])
          + ", log(p95/p5) " + " / ".join(f"{v:.2f}" for v in c["background_log_spread_p5_p50_p95"]))
    write_result("whole_fields", results)


if __name__ == "__main__":
    main()
