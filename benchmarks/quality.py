"""End-to-end quality for the same training time: the default model vs two alternatives.

    python benchmarks/quality.py [--data data/spores] [--budget 240] [--methods ...]

Each model is trained for the same wall-clock ``--budget`` (seconds, from the start
of ``fit``: tracing, compilation and validation count) with the same loss (BCE +
Dice), optimiser (Adam 1e-3), batch size (8), precision (``auto``) and seed,
validated every 50 steps on the validation split (keeping the weights of the best
validation Dice, as ``unet.train.train`` keeps its best model), and then scored on the
test crops (pooled Dice over all pixels at the original size) and on the dish fields
(pooled Dice, and the count error: mean over fields of |predicted - true| / true):

* ``default``: the default spore model, ``unet.train.Config()`` (valid padding, crops
  mirror-padded to its 188 tile (depth 3), never resized; the package's augmentation),
  trained by this script's own loop on the images as they are (no background flattening,
  which ``other_renderer.py`` and ``foreign.py`` measure).
* ``paper``: the 31M-parameter model of the paper (``unet_model`` defaults: 64
  filters, depth 4, valid padding, the paper's cropped skips) adapted to 1 class and
  trained like the default one on 284 tiles covering the crops.
* ``resized``: the common tutorial recipe: a same-padding U-Net with BatchNorm
  (16 filters, depth 4), every crop *resized* to 128 x 128 (flips and quarter turns
  as augmentation); test crops are resized to 128 and the prediction back, fields are
  cut into 100-pixel tiles that are resized the same way.
* ``fFdD`` (e.g. ``f16d3``): the default config with F filters and depth D, to
  compare model sizes for the spore crops.
* ``baseline`` (``unet.baseline.baseline_mask``: flattened background, Otsu, shape
  filter) and ``otsu`` (one global Otsu threshold on the luminance): no training.

Writes benchmarks/results/quality.json.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from common import ROOT, machine, table, write_result

METHODS = ("default", "paper", "resized", "baseline", "otsu")
DEFAULT_METHODS = ("default", "f16d4", "paper", "resized", "baseline", "otsu")
RESIZED = 128  # the tutorial recipe's input size
FIELD_TILE = 100  # field tiles for the resized recipe: the crops' scale


def time_budget(seconds):
    import keras

    class TimeBudget(keras.callbacks.Callback):
        """Stop training once ``seconds`` of wall-clock time have passed."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.perf_counter() - self.start > seconds:
                self.model.stop_training = True

    return TimeBudget()


def best_weights():
    import keras

    class BestWeights(keras.callbacks.Callback):
        """Keep the weights of the best validation Dice and restore them at the end."""

        best, weights = -1.0, None

        def on_epoch_end(self, epoch, logs=None):
            dice = (logs or {}).get("val_dice")
            if dice is not None and dice > self.best:
                self.best, self.weights = float(dice), self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestWeights()


def compiled(build, config, policy):
    """``build()`` and compile it (loss, optimiser, metrics of ``config``) under a dtype
    policy, seeded like ``unet.train.train``; the global policy is restored after."""
    import keras

    from unet import losses, metrics

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss=losses.get_loss(config.loss),
                      weighted_metrics=metrics.segmentation_metrics(config.threshold))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def fit(model, dataset, validation, budget):
    """Train until the budget is spent (the dataset repeats), validating every 50 steps
    and keeping the best weights (as ``unet.train.train`` keeps the best model);
    return (seconds, steps, best validation Dice)."""
    budget_callback, best = time_budget(budget), best_weights()
    start = time.perf_counter()
    model.fit(dataset, epochs=10**6, steps_per_epoch=50, validation_data=validation,
              callbacks=[budget_callback, best], verbose=0, shuffle=False)
    return time.perf_counter() - start, budget_callback.steps, best.best


def train_tiled(config, samples, val, budget, policy):
    """The default or the paper model, on the package's mirror-padded tiles."""
    from unet import data

    model = compiled(config.build_model, config, policy)
    common = dict(tile=config.tile_size, out=config.output_tile_size,
                  batch_size=config.batch_size)
    dataset = data.make_dataset(samples, augment=True, seed=config.seed, repeat=True, **common)
    validation = data.make_dataset(val, augment=None, shuffle=False, **common)
    return (model, *fit(model, dataset, validation, budget))


def resize_pair(image, mask):
    import tensorflow as tf

    image = tf.image.resize(image, (RESIZED, RESIZED), "bilinear")
    mask = tf.image.resize(tf.cast(mask[..., None], tf.float32), (RESIZED, RESIZED), "nearest")
    return image, mask


def resized_arrays(samples):
    import tensorflow as tf

    pairs = [resize_pair(im, m) for im, m in zip(samples.images, samples.masks)]
    return tf.stack([p[0] for p in pairs]), tf.stack([p[1] for p in pairs])


def train_resized(config, samples, val, budget, policy):
    """The tutorial recipe: same padding, BatchNorm, crops resized to 128 x 128."""
    import tensorflow as tf

    from unet import unet_model

    images, masks = resized_arrays(samples)

    def augment(image, mask, seed):
        both = tf.concat([image, mask], axis=-1)
        both = tf.image.stateless_random_flip_left_right(both, seed)
        both = tf.image.stateless_random_flip_up_down(both, seed + 1)
        both = tf.image.rot90(both, tf.random.stateless_uniform((), seed + 2, 0, 4, tf.int32))
        return both[..., :-1], both[..., -1:]

    n = len(samples)
    seeds = tf.data.Dataset.random(config.seed).map(lambda s: tf.stack([s, s]))
    dataset = (tf.data.Dataset.from_tensor_slices((images, masks)).repeat()
               .shuffle(n, seed=config.seed))
    dataset = (tf.data.Dataset.zip((dataset, seeds))
               .map(lambda pair, s: augment(*pair, s), num_parallel_calls=tf.data.AUTOTUNE)
               .batch(config.batch_size).prefetch(tf.data.AUTOTUNE))
    model = compiled(lambda: unet_model((None, None, config.channels), num_classes=1,
                                        filters=16, depth=4, padding="same", batch_norm=True),
                     config, policy)
    validation = tf.data.Dataset.from_tensor_slices(resized_arrays(val)).batch(config.batch_size)
    return (model, *fit(model, dataset, validation, budget))


def predict_resized(model, image):
    """Resize to 128, predict, resize back (crops); fields in 100-pixel tiles likewise."""
    import numpy as np
    import tensorflow as tf

    height, width = image.shape[:2]
    if max(height, width) <= FIELD_TILE:
        boxes = [(0, 0, height, width)]
    else:
        starts = lambda n: sorted({min(s, n - FIELD_TILE) for s in range(0, n, FIELD_TILE)})  # noqa: E731
        boxes = [(r, c, FIELD_TILE, FIELD_TILE) for r in starts(height) for c in starts(width)]
    prob = np.zeros((height, width), np.float32)
    for i in range(0, len(boxes), 64):
        batch = boxes[i : i + 64]
        x = tf.stack([tf.image.resize(image[r : r + h, c : c + w], (RESIZED, RESIZED))
                      for r, c, h, w in batch])
        y = model.predict_on_batch(x)
        for (r, c, h, w), p in zip(batch, y):
            prob[r : r + h, c : c + w] = tf.image.resize(p, (h, w)).numpy()[..., 0]
    return prob


def score(folder, method):
    """Pooled Dice and mean count error of ``method`` on a folder (``unet.evaluate``)."""
    from unet.evaluate import evaluate

    start = time.perf_counter()
    result = evaluate(method, folder)
    return {"dice": result["dice"], "count_error": result.get("count_error"),
            "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "spores"))
    parser.add_argument("--budget", type=float, default=240,
                        help="training seconds per model (240)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma list of {', '.join(METHODS)} or fFdD (e.g. f16d4: "
                             f"the default at depth 4) ({','.join(DEFAULT_METHODS)})")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 (auto)")
    args = parser.parse_args(argv)

    import dataclasses

    import keras

    from unet import data
    from unet.baseline import baseline_mask, otsu_mask
    from unet.train import Config, resolve_precision

    policy = resolve_precision(args.precision)
    root = Path(args.data)
    channels = Config().channels
    samples = data.load_folder(root / "train", channels=channels)
    val = data.load_folder(root / "val", channels=channels)

    def windowed(cfg):  # the training window train chooses (crop_size=None): 100 for spores
        return dataclasses.replace(cfg, crop_size=data.choose_crop_size(samples, cfg.depth,
                                                                        cfg.padding))

    config = windowed(Config())
    result = {"machine": machine(), "budget_s": args.budget, "precision": policy,
              "train_crops": len(samples), "methods": {}}
    methods = args.methods.split(",")
    for name in methods:
        entry = {}
        variant = re.fullmatch(r"f(\d+)d(\d+)", name)
        if name in ("default", "paper") or variant:
            if variant:  # e.g. f16d4: the default config with 16 filters, depth 4
                cfg = windowed(dataclasses.replace(config, filters=int(variant[1]),
                                                   depth=int(variant[2])))
            elif name == "paper":  # unet_model's defaults: 64 filters, depth 4
                cfg = windowed(dataclasses.replace(config, filters=64, depth=4))
            else:
                cfg = config
            model, seconds, steps, best = train_tiled(cfg, samples, val, args.budget, policy)
            method = model  # evaluate() normalises and predicts by overlap-tiles
        elif name == "resized":
            model, seconds, steps, best = train_resized(config, samples, val, args.budget,
                                                        policy)
            method = lambda raw, m=model: predict_resized(  # noqa: E731
                m, data.normalize(data.to_channels(raw, config.channels)))
        if name in ("default", "paper", "resized") or variant:
            entry.update(params=model.count_params(), train_seconds=seconds, steps=steps,
                         epochs=steps * config.batch_size / len(samples), best_val_dice=best)
        if name == "baseline":
            method = baseline_mask
        elif name == "otsu":
            method = otsu_mask
        elif "params" not in entry:
            raise ValueError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}.")
        entry["test"] = score(root / "test", method)
        entry["fields"] = score(root / "fields", method)
        result["methods"][name] = entry
        print(f"{name}: test Dice {entry['test']['dice']:.4f}, field Dice "
              f"{entry['fields']['dice']:.4f}, field count error "
              f"{entry['fields']['count_error']:.1%}", flush=True)
        keras.backend.clear_session()

    rows = []
    for name, e in result["methods"].items():
        rows.append((
            name, f"{e['params'] / 1e6:.2f}M" if "params" in e else "-",
            f"{e['train_seconds']:.0f}" if "train_seconds" in e else "-",
            f"{e['epochs']:.1f}" if "epochs" in e else "-",
            f"{e['best_val_dice']:.4f}" if "best_val_dice" in e else "-",
            f"{e['test']['dice']:.4f}", f"{e['fields']['dice']:.4f}",
            f"{e['fields']['count_error']:.1%}",
            f"{e['test']['seconds'] + e['fields']['seconds']:.0f}",
        ))
    print(table(rows, ("method", "params", "train s", "epochs", "val Dice", "test Dice",
                       "field Dice", "field count err", "eval s")))
    write_result("quality", result)
    return result


if __name__ == "__main__":
    main()
