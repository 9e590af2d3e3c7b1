"""Test-time augmentation on data the project did not make: is ``--tta`` worth its time?

    python benchmarks/tta.py DATA RUN [DATA RUN ...] [--modes off,flips,full]

``predict_tiled(..., tta=MODE)`` (``--tta`` of ``predict`` and ``evaluate``) averages
the network's maps of the flipped tiles (``"flips"``: 4 passes) or of the flipped and
turned tiles (``"d4"``: 8 passes), each mapped back; ``tta=True`` (what ``--tta`` asks for,
the mode ``full`` here) is ``"d4"`` where the tiles are square and ``"flips"`` where they
are not (a non-square crop gets a non-square tile). nnU-Net predicts with mirroring by
default; StarDist and Cellpose leave augmentation off by default. This script measures
what it buys on trained runs: for each mode the post-processing is chosen on DATA/val
from maps predicted the same way (the grid and plateau rule ``train`` uses, through
``separation.default_method``), then DATA/test and DATA/fields (where present) are scored
by ``separation.score`` (Dice of the labelled objects, object F1 at IoU 0.5, mean AP over
IoU 0.5:0.95, mean count error). One more row per run keeps the run's own
post-processing (calibrated without augmentation) and predicts with ``full``: what a user
gets from ``evaluate --tta`` on an existing run. The seconds are those of predicting the
test split and fields (one pass each, the machine's noise included: compare the modes of
one run, not runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import table, write_result
from separation import default_method, evaluate_method

from unet.count import label_spores
from unet.data import choose_min_area, load_folder, object_labels
from unet.predict import predict_many, predict_tiled
from unet.run import load_run

#: The modes measured: name -> ``predict_tiled``'s ``tta``.
MODES = {"off": False, "flips": "flips", "full": True}


def timed_predictor(model, mode, calls):
    """``images -> maps`` with ``mode`` ("off" = no augmentation); appends the seconds
    of each call to ``calls``."""
    def predict(images):
        start = time.perf_counter()
        if mode == "off":
            maps = predict_many(model, images)
        else:
            maps = [predict_tiled(model, image, tta=MODES[mode]) for image in images]
        calls.append(time.perf_counter() - start)
        return maps

    return predict


def measure(data, run_dir, modes):
    """Per mode: the chosen post-processing, validation F1, test/field scores, seconds."""
    model, config = load_run(run_dir)  # the images prepared as the run's were
    val = load_folder(data / "val", channels=config.channels, flatten=config.flatten)
    val_truth = list(object_labels(val))
    smallest = choose_min_area(load_folder(data / "train", channels=config.channels))
    rows = {}
    for mode in modes:
        calls = []  # validation first, then the test split and the fields
        result = default_method(model, config, data, val, val_truth,
                                predictor=timed_predictor(model, mode, calls),
                                default_min_area=smallest)
        rows[mode] = {**result, "predict_seconds": sum(calls[1:])}
        print(mode, json.dumps(rows[mode]), flush=True)
    post = {"threshold": config.threshold, "h": config.split_h, "min_area": config.min_area}
    calls = []
    rows["full, the run's post-processing"] = {
        "post": post, **evaluate_method(model, data, lambda p: label_spores(p, **post),
                                        timed_predictor(model, "full", calls)),
        "predict_seconds": sum(calls)}
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="DATA RUN [DATA RUN ...]")
    parser.add_argument("--modes", default="off,flips,full")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give DATA RUN pairs")
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    results, lines = {}, []
    for data, run_dir in zip(args.pairs[::2], args.pairs[1::2]):
        data, run_dir = Path(data).resolve(), Path(run_dir).resolve()
        rows = measure(data, run_dir, modes)
        results[str(data)] = {"run": str(run_dir), "modes": rows}
        for mode, r in rows.items():
            for split in ("test", "fields"):
                if split in r:
                    s = r[split]
                    lines.append([data.name, split, mode, f"{r.get('val_f1', float('nan')):.3f}",
                                  f"{s['dice']:.3f}", f"{s['object_f1']:.3f}",
                                  f"{s['ap_50_95']:.3f}", f"{100 * s['count_error']:.1f} %",
                                  f"{r['predict_seconds']:.0f}"])
    print(table(lines, ["data", "split", "tta", "val F1", "Dice", "object F1", "AP 0.5:0.95",
                        "count error", "predict s (test + fields)"]))
    write_result("tta", results)


if __name__ == "__main__":
    main()
