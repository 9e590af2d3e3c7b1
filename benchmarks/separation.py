"""Teaching the network to separate touching objects: object interiors against masks.

    python benchmarks/separation.py DATA BASELINE_RUN --work DIR [--rings 1,2] [--border-weights]

Issue 11 asks, where instance labels exist, to teach the network the separation if that
measurably counts better. The default learns the binary mask and separates touching
objects afterwards (distance transform, h-maxima, watershed; threshold, split height
and smallest object calibrated on the validation split). The paper's border weight map
was measured at an earlier stop and did not count better. This script measures the
simplest way to put the separation into the target itself, the one the binary training
pipeline can learn unchanged: each object's *interior*, its label minus an inner ring
of ``r`` pixels, so touching objects are 2r pixels apart in the target. At prediction
the connected components of ``probability > threshold`` are the objects' seeds, kept
from ``min_area`` pixels up and grown back by ``r`` pixels
(``skimage.segmentation.expand_labels``); no watershed. With ``--border-weights`` the
interiors are learnt as the paper learnt its separated masks: binary cross-entropy
weighted by the border weight map (``loss="weighted_bce"``: w0 = 10, sigma = 5 px, of the
interiors' components, so the gaps between touching objects weigh most).

DATA is a data folder with ``train/``, ``val/``, ``test/`` (and optionally ``fields/``)
whose training and validation splits carry instance labels; BASELINE_RUN is the run the
command line's defaults trained on DATA (``benchmarks/foreign.py``). For each ring the
interior data is written under ``DIR`` (images linked, not copied) and trained with
``python -m unet train --data D --out R --config C``, C holding only
``{"calibrate": false}`` (the library's calibration knows the watershed, not the
seeds) and the loss; both methods then choose their post-processing on the same validation split by
object F1 at IoU 0.5 with :func:`unet.calibrate.plateau_choice` (the baseline exactly
as ``train`` calibrates it) and are scored on the test split and fields with the same
code: Dice of the labelled objects against the mask, object F1 at IoU 0.5, mean AP over
IoU 0.5:0.95 and mean count error. Training takes the default budget (minutes on 2
cores) per ring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, table, write_result

from unet.calibrate import THRESHOLDS, calibrate_postprocessing, plateau_choice
from unet.count import (count_labels, label_spores, object_scores, object_scores_from_counts,
                        relative_count_error, remove_small_regions)
from unet.data import choose_min_area, load_folder, object_labels
from unet.metrics import confusion_counts, scores_from_counts
from unet.model import FROM_MODEL, prediction_settings
from unet.predict import predict_many
from unet.run import load_run

#: Smallest seeds tried by the interiors' calibration, in pixels.
SEED_AREAS = (0, 4, 8, 16, 32)


def interiors(labels, ring):
    """Each object of a label image without its inner ring of ``ring`` pixels (binary)."""
    from skimage.segmentation import find_boundaries

    labels = np.array(labels, copy=True)
    for _ in range(ring):
        labels[find_boundaries(labels, mode="inner")] = 0
    return labels > 0


def write_interior_data(data, out, ring):
    """``out/train`` and ``out/val`` with interior masks (images linked); test linked."""
    for split in ("train", "val"):
        samples = load_folder(data / split)
        if samples.labels is None:
            raise SystemExit(f"error: {data / split} has no instance labels (labels/ or id masks)")
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        if not (out / split / "images").exists():
            os.symlink((data / split / "images").resolve(), out / split / "images")
        for name, labels in zip(samples.names, object_labels(samples)):
            mask = (interiors(labels, ring) * 255).astype(np.uint8)
            Image.fromarray(mask).save(out / split / "masks" / f"{name}.png")
    for split in ("test", "fields"):
        if (data / split).is_dir() and not (out / split).exists():
            os.symlink((data / split).resolve(), out / split)


def train(data, run_dir, loss=None):
    """The command line's training with calibration off; returns the seconds it took."""
    seconds = run_dir / "seconds.txt"
    if not (run_dir / "model.keras").exists():
        config = run_dir.with_name(run_dir.name + ".json")
        # unflattened, as the figures in benchmarks/README.md were measured (the images
        # are read unflattened here); flattening is measured by other_renderer.py
        config.write_text(json.dumps({"calibrate": False, "flatten": None,
                                      **({"loss": loss} if loss else {})}) + "\n")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", data, "--out",
                               run_dir, "--config", config], cwd=ROOT, capture_output=True,
                              text=True)
        if done.returncode:
            raise SystemExit(f"error: training {run_dir} failed:\n{done.stderr[-3000:]}")
        seconds.write_text(f"{time.perf_counter() - start:.1f}\n")
    return float(seconds.read_text())


def seeds_grown(prob, threshold, min_area, ring):
    """Objects from an interior probability map: seed components, grown by ``ring``."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    seeds = remove_small_regions(ndi.label(prob > threshold)[0].astype(np.int32), min_area)
    return expand_labels(seeds, ring)


def score(labelled, samples):
    """Dice of the labelled objects, object F1 at IoU 0.5, mean AP, mean count error."""
    pixels = np.zeros(4, np.int64)
    tp = fp = fn = 0
    aps, errors = [], []
    for pred, truth, mask in zip(labelled, object_labels(samples), samples.masks):
        pixels += np.asarray(confusion_counts(np.asarray(mask) > 0, pred > 0), np.int64)
        s = object_scores(truth, pred)
        tp, fp, fn = tp + s["tp"][0], fp + s["fp"][0], fn + s["fn"][0]
        aps.append(float(s["ap"].mean()))
        n_true = count_labels(truth)
        errors.append(float(relative_count_error([n_true], [count_labels(pred)])[0]))
    return {"dice": scores_from_counts(*pixels)["dice"],
            "object_f1": object_scores_from_counts(tp, fp, fn)["f1"],
            "ap_50_95": float(np.mean(aps)), "count_error": float(np.mean(errors))}


def calibrate_seeds(probs, truth, labeller):
    """(threshold, min_area, val F1) of ``labeller(prob, threshold, min_area) -> labels`` by
    pooled validation object F1 (then count error), plateau rule over the seed grid."""
    tally = {}
    for prob, labels in zip(probs, truth):
        n_true = count_labels(labels)
        for threshold in THRESHOLDS:
            for area in SEED_AREAS:
                pred = labeller(prob, threshold, area)
                s = object_scores(labels, pred, thresholds=(0.5,))
                t = tally.setdefault((threshold, area), [0, 0, 0, 0.0])
                t[0], t[1], t[2] = t[0] + s["tp"][0], t[1] + s["fp"][0], t[2] + s["fn"][0]
                t[3] += float(relative_count_error([n_true], [count_labels(pred)])[0])
    scores = {k: (-object_scores_from_counts(tp, fp, fn)["f1"], err / len(probs))
              for k, (tp, fp, fn, err) in tally.items()}
    threshold, area = plateau_choice(scores, (THRESHOLDS, SEED_AREAS))
    return threshold, area, -scores[threshold, area][0]


def evaluate_method(model, data, labeller, predictor=None, flatten=FROM_MODEL):
    """``labeller(prediction) -> labels`` scored on the test split and fields;
    ``predictor(images)`` gives the predictions (default: the foreground maps); the
    images are prepared with ``flatten`` (default: the run's, which a model loaded by
    ``load_run`` carries; give it for a network trained here)."""
    predictor = predictor or (lambda images: predict_many(model, images))
    flatten = prediction_settings(model, flatten=flatten)["flatten"]
    out = {}
    for split in ("test", "fields"):
        if (data / split).is_dir():
            samples = load_folder(data / split, channels=model.input_shape[-1], flatten=flatten)
            out[split] = score([labeller(p) for p in predictor(samples.images)], samples)
    return out


def default_method(model, config, data, val, val_truth, predictor=None, default_min_area=None):
    """The baseline run calibrated as ``train`` calibrates it, scored (a results entry);
    ``predictor(images)`` gives the foreground maps (default: :func:`predict_many`);
    ``default_min_area``: the training split's :func:`choose_min_area` (read when None)."""
    predictor = predictor or (lambda images: predict_many(model, images))
    if default_min_area is None:
        default_min_area = choose_min_area(load_folder(data / "train", channels=config.channels))
    chosen = calibrate_postprocessing(
        predictor(val.images), labels=val_truth, masks=val.masks,
        default_min_area=default_min_area)
    post = {"threshold": chosen["threshold"], "h": chosen["split_h"],
            "min_area": chosen["min_area"]}
    return {"post": post, "val_f1": chosen["score"],
            **evaluate_method(model, data, lambda p: label_spores(p, **post), predictor)}


def print_table(results):
    """One row per method and split: validation F1 and the test scores."""
    rows = []
    for method, r in results["methods"].items():
        for split in ("test", "fields"):
            if split in r:
                s = r[split]
                rows.append([method, split, f"{r['val_f1']:.3f}", f"{s['dice']:.3f}",
                             f"{s['object_f1']:.3f}", f"{s['ap_50_95']:.3f}",
                             f"{100 * s['count_error']:.1f} %"])
    print(table(rows, ["method", "split", "val F1", "Dice", "object F1", "AP 0.5:0.95",
                       "count error"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("baseline", type=Path, help="the default run on DATA")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rings", default="1,2", help="inner rings to remove, in pixels")
    parser.add_argument("--border-weights", action="store_true",
                        help="learn the interiors with the border-weighted BCE")
    args = parser.parse_args(argv)
    data, work = args.data.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = {"data": str(data), "methods": {}}

    model, config = load_run(args.baseline)  # prepared as the baseline was trained
    val = load_folder(data / "val", channels=config.channels, flatten=config.flatten)
    val_truth = list(object_labels(val))
    results["methods"]["masks + watershed (default)"] = default_method(model, config, data, val,
                                                                       val_truth)

    for ring in (int(r) for r in args.rings.split(",")):
        suffix = "_border" if args.border_weights else ""
        interior_data, run_dir = work / f"interior_r{ring}", work / f"run_r{ring}{suffix}"
        write_interior_data(data, interior_data, ring)
        seconds = train(interior_data, run_dir,
                        "weighted_bce" if args.border_weights else None)
        model, run_config = load_run(run_dir)  # unflattened (train(), above)
        run_val = val if run_config.flatten == config.flatten else load_folder(
            data / "val", channels=run_config.channels, flatten=run_config.flatten)
        threshold, area, val_f1 = calibrate_seeds(
            predict_many(model, run_val.images), val_truth,
            lambda p, t, a: seeds_grown(p, t, a, ring))
        method = f"interiors{' + border weights' if suffix else ''}, ring {ring} px"
        results["methods"][method] = {
            "post": {"threshold": threshold, "min_area": area, "ring": ring},
            "val_f1": val_f1, "train_seconds": seconds,
            **evaluate_method(model, data, lambda p: seeds_grown(p, threshold, area, ring))}
        print(method, json.dumps(results["methods"][method]), flush=True)

    print_table(results)
    write_result(f"separation_{data.name}{'_border' if args.border_weights else ''}", results)


if __name__ == "__main__":
    main()
