"""Teaching the separation with a second output: a boundary class or a distance map.

    python benchmarks/boundary.py DATA BASELINE_RUN --work DIR [--target boundary|distance]
                                  [--ring 2]

Issue 11 asks, where instance labels exist, to teach the network the separation if that
measurably counts better, and names a boundary class and a distance/centre output. The default learns the
binary mask and separates touching objects afterwards (distance transform, h-maxima,
watershed; threshold, split height and smallest object calibrated on the validation
split). ``separation.py`` measured the separation put into a binary target (object
interiors, with and without the paper's border weights). This script measures the
three-class target of the nucleus-segmentation literature: every pixel is background,
an object's *interior*, or its *boundary* (the inner ring of ``ring`` pixels of each
labelled object, so touching objects are ``2 ring`` boundary pixels apart), learnt by a
softmax head with cross-entropy plus the soft Dice of the interior and boundary classes
(the Dice keeps the thin boundary class from being ignored). With ``--target distance``
the network has two sigmoid outputs instead: the foreground (the binary mask, learnt with
the default BCE + Dice) and each object's distance to its own border divided by the
object's largest (1 at its centre, lowest on its edge pixels, 0 outside; touching
objects meet in a valley), learnt with BCE against that soft target on every pixel.

The network, window, background flattening, augmentation, optimiser, step budget,
precision policy, learning-rate schedule and early stopping are the baseline run's (its
``config.json``); only the head (3 classes instead of 1) and the loss differ. The second
target rides through the library's unchanged ``tf.data`` pipeline in the loss weight (0
outside the image; inside it 1, or 2 on the boundary, or 1 + the normalised distance;
the weight is resampled by nearest neighbour, so the targets stay exact under
augmentation). Every epoch the foreground Dice of the validation images (foreground
probability over 0.5, each image whole at its own size) drives the schedule, the early
stopping and the kept weights, as ``val_dice`` does in ``train``.

At prediction the components of ``seed map > threshold`` inside the foreground (the
interior probability, or the predicted distance; from ``min_area`` pixels up) are the
seeds; a watershed on the negated seed map grows them over the foreground (interior +
boundary probability, or the foreground output, over 0.5), a foreground component
that holds no seed is an object of its own, and objects smaller than the baseline's
calibrated smallest object are dropped, as the default drops them. Threshold and minimum seed area
are chosen on the validation split by object F1 at IoU 0.5 with
:func:`unet.calibrate.plateau_choice`, as the baseline's post-processing is (recomputed
here exactly as ``train`` calibrates it); both are scored on the test split and fields
by ``separation.score`` (Dice of the labelled objects, object F1 at IoU 0.5, mean AP
over IoU 0.5:0.95, mean count error). Training takes the baseline's budget (minutes on 2
cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import write_result
from separation import calibrate_seeds, default_method, evaluate_method, interiors, print_table

import unet.data as data
from unet.augment import Augmentation
from unet.data import load_folder, object_labels
from unet.devices import resolve_precision
from unet.metrics import confusion_counts, scores_from_counts
from unet.model import unet_model
from unet.predict import predict_tiled
from unet.run import load_run

#: Foreground (interior + boundary probability) threshold of the three-class objects.
FOREGROUND = 0.5


def boundary_weights(samples, ring):
    """Per image: 1 inside, 2 on each object's inner ring of ``ring`` px (float32)."""
    return [(1.0 + ((labels > 0) & ~interiors(labels, ring))).astype(np.float32)
            for labels in object_labels(samples)]


def normalised_distance(labels):
    """Each object's distance to its own border over its largest, 0 outside (float32)."""
    from scipy import ndimage as ndi

    out = np.zeros(labels.shape, np.float32)
    for k, where in enumerate(ndi.find_objects(labels), start=1):
        if where is None:
            continue
        padded = np.pad(labels[where] == k, 1)
        distance = ndi.distance_transform_edt(padded)[1:-1, 1:-1]
        inside = labels[where] == k
        out[where][inside] = (distance / distance.max())[inside]
    return out


def distance_weights(samples):
    """Per image: 1 + the normalised distance (1 on the background; float32)."""
    return [1.0 + normalised_distance(labels) for labels in object_labels(samples)]


def target_dataset(samples, config, target, ring):
    """The library's training stream with ``(image, [mask or interior, second, valid])``."""
    import tensorflow as tf

    weights = (boundary_weights(samples, ring) if target == "boundary"
               else distance_weights(samples))
    original = data.sample_weights
    data.sample_weights = lambda *args, **kwargs: weights  # the second target
    try:
        stream = data.make_dataset(
            samples, config.tile_size, config.output_tile_size, batch_size=config.batch_size,
            augment=Augmentation() if config.augment else None, shuffle=True,
            seed=config.seed, repeat=True, foreground_fraction=config.foreground_fraction)
    finally:
        data.sample_weights = original

    def targets(image, mask, weight):
        valid = tf.cast(weight > 0.5, tf.float32)
        if target == "distance":
            return image, tf.concat([mask, tf.maximum(weight - 1.0, 0.0), valid], axis=-1)
        boundary = tf.cast(weight > 1.5, tf.float32)
        interior = mask * (1.0 - boundary)
        return image, tf.concat([interior, boundary, valid], axis=-1)

    return stream.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def three_class_loss(y_true, y_pred):
    """Cross-entropy over the valid pixels + 1 - mean soft Dice of interior and boundary."""
    from keras import ops

    from unet.losses import pixel_cross_entropy, soft_dice, weighted_mean

    interior, boundary, valid = y_true[..., 0], y_true[..., 1], y_true[..., 2]
    target = ops.stack([1.0 - interior - boundary, interior, boundary], axis=-1)
    probs, valid = ops.cast(y_pred, "float32"), valid[..., None]
    cross_entropy = weighted_mean(pixel_cross_entropy(target, probs), valid)
    return cross_entropy + 1.0 - soft_dice(target, probs, valid)


def distance_loss(y_true, y_pred):
    """BCE + soft Dice of the foreground, + BCE of the normalised distance (valid pixels)."""
    from keras import ops

    from unet.losses import pixel_cross_entropy, soft_dice, weighted_mean

    mask, distance, valid = y_true[..., :1], y_true[..., 1:2], y_true[..., 2:3]
    probs = ops.cast(y_pred, "float32")
    mask_probs, distance_probs = probs[..., :1], probs[..., 1:2]
    return (weighted_mean(pixel_cross_entropy(mask, mask_probs), valid)
            + 1.0 - soft_dice(mask, mask_probs, valid)
            + weighted_mean(pixel_cross_entropy(distance, distance_probs), valid))


#: Per target: (foreground map, seed map) of a prediction ``(h, w, C)``.
MAPS = {
    "boundary": lambda p: (p[..., 1] + p[..., 2], p[..., 1]),
    "distance": lambda p: (p[..., 0], p[..., 1]),
}


def predict_classes(model, images):
    """All output maps ``(h, w, C)`` of images at their own size."""
    return [predict_tiled(model, image, all_classes=True) for image in images]


def foreground_dice(probs, masks, target):
    """Pooled Dice of ``foreground > FOREGROUND`` against the masks."""
    counts = sum(np.asarray(confusion_counts(np.asarray(m) > 0, MAPS[target](p)[0] > FOREGROUND),
                            np.int64) for p, m in zip(probs, masks))
    return scores_from_counts(*counts)["dice"]


def objects(prob, threshold, min_area, target, min_object):
    """Seeds grown over the foreground by a watershed; seedless components kept; objects
    below ``min_object`` pixels dropped (the default's smallest object)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from unet.count import remove_small_regions

    foreground, seed_map = MAPS[target](prob)
    foreground = foreground > FOREGROUND
    seeds = remove_small_regions(
        ndi.label((seed_map > threshold) & foreground)[0].astype(np.int32), min_area)
    labels = watershed(-seed_map, seeds, mask=foreground)
    rest = ndi.label(foreground & (labels == 0))[0]
    labels[rest > 0] = rest[rest > 0] + labels.max(initial=0)
    return remove_small_regions(labels.astype(np.int32), min_object)


def build(config, target):
    """The baseline's network with three softmax classes, or two sigmoid outputs."""
    import keras

    model = unet_model((None, None, config.channels), num_classes=3 if target == "boundary" else 2,
                       filters=config.filters, depth=config.depth, padding=config.padding,
                       skip=config.skip, batch_norm=config.batch_norm, dropout=config.dropout)
    if target == "boundary":
        return model
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="maps")(
        model.get_layer("head").output)
    return keras.Model(model.input, outputs, name=model.name)


def train_network(config, train_set, val_set, target, ring, run_dir):
    """Train (or load) the network; returns (model, seconds, epochs)."""
    import keras

    weights_path, info_path = run_dir / "model.weights.h5", run_dir / "train.json"
    info = json.loads(info_path.read_text()) if weights_path.exists() else None
    # as `train` chooses it for the baseline; a trained network predicts in its own
    # (runs written before the script set a precision trained in float32)
    policy = info.get("precision", "float32") if info else resolve_precision("auto")
    keras.mixed_precision.set_global_policy(policy)
    model = build(config, target)
    if info:
        model.load_weights(weights_path)
        return model, info["seconds"], info["epochs"]
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=three_class_loss if target == "boundary" else distance_loss)

    class Validation(keras.callbacks.Callback):
        best = -1.0

        def on_epoch_end(self, epoch, logs=None):
            logs["val_dice"] = foreground_dice(predict_classes(self.model, val_set.images),
                                               val_set.masks, target)
            if logs["val_dice"] > self.best:
                self.best = logs["val_dice"]
                self.model.save_weights(weights_path)
            print(f"epoch {epoch + 1}: loss {logs['loss']:.4f} val_dice {logs['val_dice']:.4f}",
                  flush=True)

    start = time.perf_counter()
    history = model.fit(
        target_dataset(train_set, config, target, ring), epochs=config.steps // config.steps_per_epoch,
        steps_per_epoch=config.steps_per_epoch, verbose=0, callbacks=[
            Validation(),
            keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="max", factor=0.5,
                                              patience=config.patience(config.reduce_lr_steps),
                                              min_lr=1e-5),
            keras.callbacks.EarlyStopping(monitor="val_dice", mode="max",
                                          patience=config.patience(config.early_stopping_steps)),
        ])
    seconds = time.perf_counter() - start
    epochs = len(history.history["loss"])
    info_path.write_text(
        json.dumps({"seconds": seconds, "epochs": epochs, "precision": policy}) + "\n")
    model.load_weights(weights_path)
    return model, seconds, epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("baseline", type=Path, help="the default run on DATA")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--target", choices=sorted(MAPS), default="boundary",
                        help="the second output: a boundary class or a distance map")
    parser.add_argument("--ring", type=int, default=2, help="boundary width inside each object")
    args = parser.parse_args(argv)
    data_dir, work = args.data.resolve(), args.work.resolve()
    target = args.target
    name = f"{target}_{data_dir.name}" + (f"_r{args.ring}" if target == "boundary" else "")
    results = {"data": str(data_dir), "target": target, "ring": args.ring, "methods": {}}

    model, config = load_run(args.baseline)  # the data prepared as the baseline's were
    train_set = load_folder(data_dir / "train", channels=config.channels, flatten=config.flatten)
    val = load_folder(data_dir / "val", channels=config.channels, flatten=config.flatten)
    if train_set.labels is None or val.labels is None:
        raise SystemExit(f"error: {data_dir} needs instance labels in train/ and val/")
    val_truth = list(object_labels(val))
    default = default_method(model, config, data_dir, val, val_truth)
    results["methods"]["masks + watershed (default)"] = default
    min_object = default["post"]["min_area"]

    run_dir = work / name
    model, seconds, epochs = train_network(config, train_set, val, target, args.ring, run_dir)
    threshold, area, val_f1 = calibrate_seeds(
        predict_classes(model, val.images), val_truth,
        lambda p, t, a: objects(p, t, a, target, min_object))
    method = (f"three classes, boundary {args.ring} px" if target == "boundary"
              else "mask + normalised distance")
    results["methods"][method] = {
        "post": {"threshold": threshold, "min_area": area}, "val_f1": val_f1,
        "train_seconds": seconds, "epochs": epochs,
        **evaluate_method(model, data_dir,
                          lambda p: objects(p, threshold, area, target, min_object),
                          lambda images: predict_classes(model, images), config.flatten)}

    print_table(results)
    write_result(f"separation_{name}", results)


if __name__ == "__main__":
    main()
