"""Fine-tuning the shipped model (`train --init spores`) against training from scratch.

The data are spores the shipped model never saw: another style of the generator
(`OTHER_STYLE`: pale, larger, more blurred spores on a darker, noisier dish), a small
training set as a lab would annotate. Both runs use the same Config (the defaults,
shortened; ``--flatten off`` by default, like the shipped model, ``--flatten auto`` as
``train --init spores`` now trains), seed and data; one starts from random weights, the
other from the shipped model. Prints the validation Dice after every epoch of each, and
how many optimiser steps each needed to reach the target Dice.

Usage: python benchmarks/finetune.py [--init spores] [--train 200] [--epochs 4]
       [--target 0.9] [--flatten off|auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Spores unlike the default style: mostly hyaline (pale), larger, blurrier, dimmer.
OTHER_STYLE = dict(hyaline=0.9, major_axis=(20.0, 36.0), aspect=(0.5, 0.8), blur=(1.0, 1.6),
                   exposure=(0.45, 0.6), photons=(120.0, 250.0), halo=(0.05, 0.15))


def steps_to(history, target, steps_per_epoch):
    dice = history.get("val_dice")
    if dice is None:
        return None
    hit = [i for i, d in enumerate(dice) if d >= target]
    return (hit[0] + 1) * steps_per_epoch if hit else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", default="spores", help="model to start from (spores)")
    p.add_argument("--train", type=int, default=200, help="training crops (200)")
    p.add_argument("--val", type=int, default=50, help="validation crops (50)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of each run (4)")
    p.add_argument("--target", type=float, default=0.9, help="validation Dice to reach (0.9)")
    p.add_argument("--seed", type=int, default=11, help="data seed (11)")
    p.add_argument("--flatten", choices=("off", "auto"), default="off",
                   help="the runs' background flattening (off, as the shipped model was "
                        "trained; auto: the training default)")
    args = p.parse_args(argv)

    import unet  # noqa: F401
    from unet.run import Config
    from unet.spores import SporeStyle, generate_dataset
    from unet.train import train

    root = Path(tempfile.mkdtemp(prefix="unet-finetune-"))
    generate_dataset(root / "data", train=args.train, val=args.val, test=0, fields=0,
                     seed=args.seed, style=SporeStyle(**OTHER_STYLE))
    fields = {f.name for f in dataclasses.fields(Config)}
    flatten = None if args.flatten == "off" else args.flatten
    config = Config(**({"flatten": flatten} if "flatten" in fields else {}))
    steps_per_epoch = math.ceil(args.train / config.batch_size)
    if "steps" in fields:  # schema 2: steps over an endless stream
        config = dataclasses.replace(config, steps=args.epochs * steps_per_epoch,
                                     steps_per_epoch=steps_per_epoch)
    else:
        config = dataclasses.replace(config, epochs=args.epochs,
                                     early_stopping_patience=args.epochs)
    results = {}
    for label, init in (("from scratch", None), (f"--init {args.init}", args.init)):
        result = train(config, root / "data", root / label.replace(" ", "_").strip("-"),
                       init=init, verbose=0)
        results[label] = result
    print(f"data: {args.train} training / {args.val} validation crops of another spore style "
          f"(seed {args.seed}: {OTHER_STYLE}); {steps_per_epoch} steps per epoch; flatten "
          f"{args.flatten} ({getattr(result['config'], 'flatten', None)})")
    for label, result in results.items():
        dice = result["history"].get("val_dice", [])
        need = steps_to(result["history"], args.target, steps_per_epoch)
        print(f"  {label:<16} validation Dice per epoch: "
              + " ".join(f"{d:.3f}" for d in dice)
              + f"; steps to Dice {args.target}: {need if need else 'not reached'}"
              + f" ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
