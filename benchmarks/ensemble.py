"""Averaging the maps of runs trained with different seeds: is an ensemble worth its time?

    python benchmarks/ensemble.py DATA RUN RUN [RUN ...] [--tta]

nnU-Net predicts with the average of the networks of its five folds. This script measures
what averaging buys here: the runs (same data, architecture, channels and background
window; e.g. ``python -m unet train`` with ``--config`` files that set only ``seed``) are
joined into one Functional model whose output is the mean of their maps, so it is
predicted exactly like one run (overlap tiles, the run's background window). Its
post-processing is chosen on DATA/val by :func:`unet.calibrate.calibrate_postprocessing`
(the grid and plateau rule ``train`` uses; with ``--tta`` on augmented maps, and the
ensemble then predicts with ``tta=True`` as a run trained with ``--tta`` does). Each run
alone is scored with its own calibrated post-processing (what ``evaluate`` gives). Scores
of :func:`unet.evaluate.evaluate` on DATA/test and DATA/fields (where present): Dice,
object F1 at IoU 0.5, mean AP over IoU 0.5:0.95, mean count error. An ensemble of N runs
costs N times the training and the prediction time of one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import table, write_result

from unet.calibrate import calibrate_postprocessing
from unet.data import load_folder, object_labels
from unet.evaluate import evaluate
from unet.model import attach_architecture, attach_prediction_settings
from unet.predict import predict_many, predict_tiled
from unet.run import load_run


def average_model(runs, loaded):
    """One Functional model whose output is the mean of the maps of the runs' models
    (``loaded``: what :func:`load_run` gave for each run); and the first run's config."""
    import keras

    first = loaded[0][1]
    for run, (_, config) in zip(runs, loaded):
        if config is None or (config.architecture(), config.flatten) != (
                first.architecture(), first.flatten):
            raise SystemExit(f"error: {run} differs from {runs[0]} in architecture or "
                             "background window (or has no config.json)")
    inputs = keras.Input(shape=loaded[0][0].input_shape[1:])
    maps = []
    for k, (model, _) in enumerate(loaded):
        model.name = f"member_{k}"  # unique names inside the ensemble
        maps.append(model(inputs))
    ensemble = keras.Model(inputs, keras.layers.Average()(maps), name="ensemble")
    attach_architecture(ensemble, first.architecture())
    return ensemble, first


def calibrated(ensemble, config, data, tta):
    """The ensemble's post-processing, chosen on DATA/val as ``train`` chooses a run's."""
    val = load_folder(data / "val", channels=config.channels, flatten=config.flatten)
    probs = ([predict_tiled(ensemble, image, tta=True) for image in val.images] if tta
             else predict_many(ensemble, val.images))
    chosen = calibrate_postprocessing(probs, labels=list(object_labels(val)), masks=val.masks,
                                      default_min_area=config.min_area)
    settings = {"flatten": config.flatten, "tta": tta,
                **{k: chosen[k] for k in ("threshold", "split_h", "min_area")}}
    attach_prediction_settings(ensemble, settings)
    return settings


def scores(model, data):
    """evaluate's scores on DATA/test and DATA/fields, with the model's own settings."""
    found = {}
    for split in ("test", "fields"):
        if (data / split / "images").is_dir():
            r = evaluate(model, data / split)
            found[split] = {k: r[k] for k in ("dice", "object_f1", "ap_50_95", "count_error")}
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tta", action="store_true",
                        help="also the ensemble with test-time augmentation, calibrated with it")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs")
    data = args.data.resolve()
    results = {}
    loaded = [load_run(run) for run in args.runs]  # each with its own post-processing
    for run, (model, config) in zip(args.runs, loaded):
        results[f"{run.name} alone"] = {"post": config.prediction_settings(),
                                        **scores(model, data)}
        print(run.name, results[f"{run.name} alone"], flush=True)
    ensemble, config = average_model(args.runs, loaded)
    for tta in (False, True) if args.tta else (False,):
        post = calibrated(ensemble, config, data, tta)  # replaces the settings it carries
        name = f"mean of {len(args.runs)}{', tta' if tta else ''}"
        results[name] = {"post": post, **scores(ensemble, data)}
        print(name, results[name], flush=True)
    lines = [[name, split, f"{s['dice']:.3f}", f"{s['object_f1']:.3f}", f"{s['ap_50_95']:.3f}",
              f"{100 * s['count_error']:.1f} %"]
             for name, r in results.items() for split, s in r.items() if split != "post"]
    print(table(lines, ["model", "split", "Dice", "object F1", "AP 0.5:0.95", "count error"]))
    write_result("ensemble", {"data": str(data), "runs": [str(r) for r in args.runs],
                              "results": results})


if __name__ == "__main__":
    main()
