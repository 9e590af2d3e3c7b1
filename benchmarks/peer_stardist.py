#!/usr/bin/env python
"""Peer method for the spore benchmark: StarDist 2D trained from scratch for a wall-clock budget.

    python peer_stardist.py --data /tmp/sd_data --seconds 120 --out /tmp/sd_run --json

Data layout (that of ``python -m unet generate-data``)::

    DATA/{train,val,test,fields}/images/NAME.png    RGB (or gray) 8-bit
    DATA/{train,val,test,fields}/labels/NAME.png    16-bit instance labels (0 = background)
    DATA/{train,val,test,fields}/masks/NAME.png     binary masks; used (connected components,
                                                    4-connected) only where labels/ is missing
    DATA/SPLIT/counts.csv                           name,count (else: number of instances)

What it does

1. Reads the splits; converts each image to one gray channel (``--channels gray``, PIL's
   ITU-R 601 luma, the default) or keeps RGB (``--channels rgb``), and normalises it like the
   StarDist examples: ``csbdeep.utils.normalize(x, 1, 99.8)`` per image (RGB: the three
   channels jointly, so the colour balance is kept).
2. Builds a ``StarDist2D`` from scratch (``Config2D``: 32 rays, grid (2, 2), 48 x 48 patches,
   batch 8, 50 steps per epoch, Adam 1e-3 as the project uses; StarDist's default 3e-4
   learns far too slowly for a budget of minutes) and trains it until
   ``--seconds`` of wall-clock time have passed, counted like the project's
   ``benchmarks/quality.py``: from the start of ``fit`` (tracing, the data generator and the
   per-epoch validation count), checked after every step. The epoch that is cut short still
   validates, so StarDist's checkpoint of the best validation loss is the model kept.
   Crops smaller than the patch are padded (image: reflected; labels: -1 = "ignore", which
   StarDist excludes from both losses); the default 48 px patch fits every crop
   (the generator's crops are 48-100 px), so nothing is padded by default.
3. Optimises the probability and NMS thresholds on the validation crops
   (``model.optimize_thresholds``).
4. Predicts instances on the test crops (whole crops, one tile) and on the fields (any size:
   ``n_tiles`` so that each tile is at most ``--tile`` px).
5. Scores each split: count error (mean over images of |predicted - true| / max(true, 1), as
   ``unet.evaluate``), object precision / recall / F1 at IoU 0.5
   (``stardist.matching.matching_dataset``), pixel Dice of the foreground pooled over all
   pixels of all images (as ``unet.metrics``), and seconds.

Outputs under --out: model/ (StarDist's config, weights, thresholds), pred/SPLIT/NAME.png
(16-bit labels), results.json (the JSON object printed with --json) and per_image.csv.

Environment: TensorFlow 2.21 + Keras 3 + csbdeep 0.8.x + stardist 0.9.x work together natively
(no ``tf_keras``, no ``TF_USE_LEGACY_KERAS``); see REPORT.md next to this file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's unet

import numpy as np  # noqa: E402

SPLITS = ("train", "val", "test", "fields")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def read_image(path, channels):
    """The image as float32 gray ``(H, W)`` or RGB ``(H, W, 3)``, any format or bit depth
    (read by the project's own reader, so 16-bit TIFFs keep their values)."""
    from unet.image import to_channels
    from unet.io import read_image as read_raw

    raw = read_raw(path)
    if channels == "gray":
        return to_channels(raw, 1)[..., 0].astype(np.float32)
    return to_channels(raw, 3).astype(np.float32)


def read_labels(pair):
    """Instance labels of a data-folder pair: labels/, else an instance-id mask, else the
    connected components of the binary mask."""
    from scipy import ndimage

    from unet.io import read_labels as read_ids

    if pair.labels is not None:
        return read_ids(pair.labels).astype(np.int32)
    ids = read_ids(pair.mask)
    if np.unique(ids).size > 2:
        return ids.astype(np.int32)
    labels, _ = ndimage.label(ids > 0)
    return labels.astype(np.int32)


def read_counts(folder):
    path = folder / "counts.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["name"]: int(row["count"]) for row in csv.DictReader(f)}


def load_split(folder, channels):
    """``(names, normalised images, labels, true counts)`` of one split folder."""
    from csbdeep.utils import normalize

    from unet.io import find_pairs

    folder = Path(folder)
    pairs = find_pairs(folder)
    names = [p.name for p in pairs]
    counts = read_counts(folder)
    axis = (0, 1) if channels == "gray" else (0, 1, 2)  # RGB: channels jointly
    images, labels, true_counts = [], [], []
    for pair in pairs:
        x = read_image(pair.image, channels)
        images.append(normalize(x, 1, 99.8, axis=axis).astype(np.float32))
        y = read_labels(pair)
        labels.append(y)
        if pair.name in counts:
            true_counts.append(counts[pair.name])
        else:
            true_counts.append(int(len(np.unique(y[y > 0]))))
    return names, images, labels, true_counts


def pad_to_patch(x, y, patch):
    """Pad a crop smaller than ``patch`` (bottom/right): image reflected, labels -1 (ignored)."""
    ph, pw = max(0, patch[0] - x.shape[0]), max(0, patch[1] - x.shape[1])
    if ph == 0 and pw == 0:
        return x, y, False
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 2)
    mode = "reflect" if ph < x.shape[0] and pw < x.shape[1] else "symmetric"
    x = np.pad(x, widths, mode=mode)
    y = np.pad(y, [(0, ph), (0, pw)], mode="constant", constant_values=-1)
    return x, y, True


def augmenter(x, y):
    """Random quarter turns and flips (image and labels) and an intensity scale and shift."""
    k = np.random.randint(4)
    x, y = np.rot90(x, k, axes=(0, 1)), np.rot90(y, k, axes=(0, 1))
    if np.random.rand() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    x = x * np.random.uniform(0.6, 2.0) + np.random.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
def time_budget(seconds):
    """Keras callback: stop training once ``seconds`` have passed since ``fit`` began."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.steps = 0
            self.epochs = 0
            self.seconds = 0.0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.perf_counter() - self.start > seconds:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    return TimeBudget()


def build_model(args, n_channel, outdir):
    """A fresh StarDist2D, built in float32 whatever global dtype policy is set: a
    ``mixed_bfloat16`` policy left on by other Keras code in the same process breaks
    StarDist's losses ("Input 'y' of 'Mul' Op has type bfloat16 ...")."""
    import keras
    from stardist.models import Config2D, StarDist2D

    conf = Config2D(
        n_rays=args.rays,
        grid=(args.grid, args.grid),
        n_channel_in=n_channel,
        train_patch_size=(args.patch, args.patch),
        train_batch_size=args.batch,
        train_steps_per_epoch=args.steps_per_epoch,
        train_epochs=100000,  # the time budget stops it
        train_learning_rate=args.lr,
        train_tensorboard=False,  # TF 2.21 does not install tensorboard
        use_gpu=False,
    )
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return StarDist2D(conf, name="stardist", basedir=str(outdir))
    finally:
        keras.mixed_precision.set_global_policy(policy)


def train(model, train_data, val_data, args):
    """Train until the budget is spent; returns ``(seconds, steps, epochs, padded)``."""
    patch = (args.patch, args.patch)
    X, Y, padded = [], [], 0
    for x, y in zip(*train_data):
        x, y, p = pad_to_patch(x, y, patch)
        X.append(x)
        Y.append(y)
        padded += p
    Xv, Yv = [], []
    for x, y in zip(*val_data):
        x, y, p = pad_to_patch(x, y, patch)
        Xv.append(x)
        Yv.append(y)
    model.prepare_for_training()
    budget = time_budget(args.seconds)
    model.callbacks.append(budget)
    model.train(X, Y, validation_data=(Xv, Yv), augmenter=None if args.no_augment else augmenter,
                seed=args.seed, epochs=100000, steps_per_epoch=args.steps_per_epoch)
    return budget.seconds, budget.steps, budget.epochs, padded


# --------------------------------------------------------------------------------------
# Prediction and scores
# --------------------------------------------------------------------------------------
def n_tiles_for(x, tile):
    tiles = [max(1, int(np.ceil(s / tile))) for s in x.shape[:2]]
    return tuple(tiles) + ((1,) if x.ndim == 3 else ())


def predict_split(model, images, tile):
    """Instance labels of each image and the seconds of each prediction."""
    preds, seconds = [], []
    for x in images:
        start = time.perf_counter()
        labels, _ = model.predict_instances(x, n_tiles=n_tiles_for(x, tile),
                                            show_tile_progress=False)
        seconds.append(time.perf_counter() - start)
        preds.append(labels.astype(np.int32))
    return preds, seconds


def pooled_dice(truths, preds):
    """Dice over all pixels of all images, as ``unet.evaluate`` pools it."""
    from unet.metrics import confusion_counts, scores_from_counts

    totals = np.sum([confusion_counts(t, p) for t, p in zip(truths, preds)], axis=0)
    return scores_from_counts(*totals)["dice"]


def score_split(names, labels, true_counts, preds, seconds):
    from stardist.matching import matching_dataset

    n_pred = [int(len(np.unique(p[p > 0]))) for p in preds]
    rows = [{"image": n, "count_true": c, "count_pred": k, "seconds": round(s, 4)}
            for n, c, k, s in zip(names, true_counts, n_pred, seconds)]
    result = {"images": len(names), "predict_seconds": float(np.sum(seconds)),
              "predict_seconds_per_image": float(np.mean(seconds)) if seconds else None}
    counted = [(c, k) for c, k in zip(true_counts, n_pred) if c is not None]
    if counted:
        true = np.array([c for c, _ in counted], float)
        pred = np.array([k for _, k in counted], float)
        result.update(count_true=int(true.sum()), count_pred=int(pred.sum()),
                      count_error=float(np.mean(np.abs(pred - true) / np.maximum(true, 1))))
    pairs = [(t, p) for t, p in zip(labels, preds) if t is not None]
    if pairs:
        truths, predictions = zip(*pairs)
        m = matching_dataset(list(truths), list(predictions), thresh=0.5, show_progress=False)
        result.update(precision=float(m.precision), recall=float(m.recall), f1=float(m.f1),
                      tp=int(m.tp), fp=int(m.fp), fn=int(m.fn),
                      mean_matched_iou=float(m.mean_matched_score),
                      panoptic_quality=float(m.panoptic_quality),
                      dice=float(pooled_dice(truths, predictions)))
    return result, rows


def save_labels(folder, names, preds):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, p in zip(names, preds):
        Image.fromarray(p.astype(np.uint16)).save(folder / f"{name}.png")


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------
def versions():
    import csbdeep
    import keras
    import stardist
    import tensorflow as tf

    return {"python": sys.version.split()[0], "tensorflow": tf.__version__,
            "keras": keras.__version__, "csbdeep": csbdeep.__version__,
            "stardist": stardist.__version__, "numpy": np.__version__,
            "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS")}


def run(args):
    t0 = time.perf_counter()
    import keras

    keras.utils.set_random_seed(args.seed)
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    splits = {}
    t = time.perf_counter()
    for split in SPLITS:
        if (data / split / "images").is_dir():
            splits[split] = load_split(data / split, args.channels)
    load_seconds = time.perf_counter() - t
    for need in ("train", "val"):
        if need not in splits:
            raise SystemExit(f"{data / need}/images not found")
    n_channel = 1 if args.channels == "gray" else 3

    model = build_model(args, n_channel, out / "model")
    train_seconds, steps, epochs, padded = train(
        model, splits["train"][1:3], splits["val"][1:3], args)

    t = time.perf_counter()
    _, Xv, Yv, _ = splits["val"]
    thresholds = model.optimize_thresholds(
        Xv, Yv, predict_kwargs={"n_tiles": None, "show_tile_progress": False})
    threshold_seconds = time.perf_counter() - t

    result = {
        "method": "stardist2d",
        "versions": versions(),
        "config": {"channels": args.channels, "n_rays": args.rays, "grid": [args.grid] * 2,
                   "patch": [args.patch] * 2, "batch": args.batch,
                   "steps_per_epoch": args.steps_per_epoch, "lr": args.lr,
                   "augment": not args.no_augment, "seed": args.seed, "tile": args.tile,
                   "params": int(model.keras_model.count_params())},
        "budget_s": args.seconds,
        "train": {"seconds": train_seconds, "steps": steps, "epochs": epochs,
                  "steps_per_s": steps / train_seconds if train_seconds else None,
                  "images": len(splits["train"][0]), "padded_images": padded},
        "thresholds": {**{k: float(v) for k, v in thresholds.items()},
                       "seconds": threshold_seconds},
        "load_seconds": load_seconds,
    }
    per_image = []
    for split in ("test", "fields"):
        if split not in splits:
            continue
        names, images, labels, counts = splits[split]
        preds, seconds = predict_split(model, images, args.tile)
        if split == "fields" and images:
            # The first call traces the model for this input size: time a second one.
            again = time.perf_counter()
            model.predict_instances(images[0], n_tiles=n_tiles_for(images[0], args.tile),
                                    show_tile_progress=False)
            result["field_predict_warm_seconds"] = time.perf_counter() - again
            result["field_shape"] = list(images[0].shape[:2])
            result["field_n_tiles"] = list(n_tiles_for(images[0], args.tile))
        result[split], rows = score_split(names, labels, counts, preds, seconds)
        per_image += [{"split": split, **r} for r in rows]
        save_labels(out / "pred" / split, names, preds)
    result["total_seconds"] = time.perf_counter() - t0

    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["split", "image", "count_true", "count_pred",
                                               "seconds"])
        writer.writeheader()
        writer.writerows(per_image)
    with open(out / "results.json", "w") as f:
        json.dump(result, f, indent=2)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train/ val/ [test/] [fields/]")
    p.add_argument("--seconds", type=float, default=120, help="training budget (120)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true",
                   help="print only the result as one JSON object on stdout (logs -> stderr)")
    p.add_argument("--channels", choices=("gray", "rgb"), default="gray")
    p.add_argument("--rays", type=int, default=32)
    p.add_argument("--grid", type=int, default=2, choices=(1, 2, 4))
    p.add_argument("--patch", type=int, default=48,
                   help="square training patch, divisible by 8*grid (48)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3,
                   help="Adam learning rate (1e-3, as the project; StarDist's default is 3e-4)")
    p.add_argument("--tile", type=int, default=512, help="largest prediction tile side (512)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        real_stdout, sys.stdout = sys.stdout, sys.stderr  # StarDist and Keras print freely
        try:
            result = run(args)
        finally:
            sys.stdout = real_stdout
        print(json.dumps(result))
    else:
        result = run(args)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
