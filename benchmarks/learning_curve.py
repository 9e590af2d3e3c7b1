"""The default training budget against the size of the training set.

    python benchmarks/learning_curve.py [--sizes 6,25,100,360,1000] [--steps N] [--work DIR]

Data the project did not make: crops and a field of ``other_renderer.py`` (1000
training, 40 validation, 200 test crops, one 1024^2 field). For each training-set size
N, the first N training crops are given to ``python -m unet train`` with its defaults
(no options: the same number of optimiser steps whatever N), and the best model is
scored on the test crops and the field by ``unet.evaluate.evaluate`` with the run's
calibrated post-processing. Also printed: the validation Dice at a quarter, half and
three quarters of the budget (from history.csv), which shows whether the default
budget still buys anything, and the share of each epoch spent outside the training
steps (validation, checkpoints, backup). ``--steps`` trains longer (or shorter) than
the default, to see what the budget costs (early stopping may end a run sooner).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from common import ROOT, machine, table, write_result

HERE = Path(__file__).resolve().parent


def subset(source, out, n):
    """A data folder holding the first ``n`` training crops and all validation crops."""
    if (out / "val").is_dir():
        return out
    from unet.io import find_pairs

    for pair in find_pairs(source / "train")[:n]:
        for kind in ("images", "masks", "labels"):
            path = {"images": pair.image, "masks": pair.mask, "labels": pair.labels}[kind]
            if path is not None:
                (out / "train" / kind).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, out / "train" / kind / path.name)
    shutil.copytree(source / "val", out / "val")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,25,100,360,1000", help="training-set sizes")
    parser.add_argument("--steps", type=int, help="training steps (default: the CLI's)")
    parser.add_argument("--work", type=Path,
                        default=ROOT / "benchmarks" / "results" / "learning_curve")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from foreign import run, score_unet, train_unet

    from unet.run import read_history

    data = args.work / "other1000"
    if not (data / "test").is_dir():
        run([sys.executable, HERE / "other_renderer.py", data, "--style", "default", "--train",
             str(max(sizes)), "--val", "40", "--test", "200", "--fields", "1", "--seed", "1"])
    rows, results = [], {"machine": machine(), "sizes": {}}
    for n in sizes:
        folder = subset(data, args.work / f"n{n}", n)
        run_dir = args.work / "runs" / (f"n{n}" + (f"_steps{args.steps}" if args.steps else ""))
        seconds = train_unet(folder, run_dir, args.steps)
        history = read_history(run_dir / "history.csv")
        steps, dice = history["step"], history["val_dice"]
        at = {f: float(dice[: max(1, int(len(dice) * f))].max()) for f in (0.25, 0.5, 0.75, 1.0)}
        test = score_unet(run_dir, data / "test")
        field = score_unet(run_dir, data / "fields")
        # the share of an epoch spent validating (the first epoch also compiles: left out)
        share = float(np.median(history["val_seconds"][1:] / history["seconds"][1:]))
        results["sizes"][n] = {"seconds": seconds, "steps": int(steps[-1]), "val_dice_at": at,
                               "test": test, "field": field, "validation_share": share}
        rows.append((n, int(steps[-1]), f"{seconds / 60:.1f}",
                     " / ".join(f"{at[f]:.3f}" for f in (0.25, 0.5, 0.75, 1.0)),
                     f"{test['dice']:.3f}", f"{test['object_f1']:.3f}",
                     f"{100 * test['count_error']:.1f} %", f"{field['dice']:.3f}",
                     f"{field['object_f1']:.3f}", f"{100 * field['count_error']:.1f} %",
                     f"{100 * share:.0f} %"))
        print(rows[-1], flush=True)
    print(table(rows, ("crops", "steps", "train min", "val Dice at 1/4, 1/2, 3/4, all",
                       "test Dice", "test obj F1", "test count err", "field Dice",
                       "field obj F1", "field count err", "validation share")))
    write_result("learning_curve", results)


if __name__ == "__main__":
    main()
