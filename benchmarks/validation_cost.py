"""The time a large validation split adds to training, with and without its share cap.

    python benchmarks/validation_cost.py --work DIR [--fields 60] [--steps 1000]

Validation runs on the whole validation images at their own size (as ``evaluate``
scores them), after every epoch of 100 steps. On a large validation split that costs
more than the training: 60 fields of 1024^2 took about 30 s a validation here, beside
about 13 s of training steps an epoch. ``Config.validation_share`` (default 0.1)
validates only every few epochs where the split holds more pixels than that share of
an epoch's training tiles, at most every 500 steps (the learning-rate schedule's
patience), the last epoch always. This script trains the same run twice on the project's
generator (1000 training crops; the validation split its 40 crops plus ``--fields``
dish fields), once validating every epoch (``validation_share: null``) and once with
the default, both without the calibration (which predicts the validation split once
more, after training), and prints the wall-clock time of ``python -m unet train``, the
validations and their time, and the best validation Dice.
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

from common import ROOT, table, write_result

from unet.spores import generate_dataset
from unet.run import read_history


def data_with_a_large_validation_split(work, fields, seed=3):
    """``work/data``: the generator's training crops; validation crops plus fields."""
    generated = work / "generated"
    if not (generated / "train").is_dir():
        generate_dataset(generated, train=1000, val=40, test=0, fields=fields, seed=seed,
                         overwrite=True)
    data = work / "data"
    if not (data / "train").exists():
        data.mkdir(parents=True, exist_ok=True)
        os.symlink(generated / "train", data / "train")
        for sub in ("images", "masks", "labels"):
            (data / "val" / sub).mkdir(parents=True)
            for split in ("val", "fields"):
                for path in sorted((generated / split / sub).iterdir()):
                    os.symlink(path, data / "val" / sub / path.name)
    return data


def train(data, run_dir, steps, settings):
    """Wall-clock seconds of ``python -m unet train`` with ``settings`` as its config."""
    config = run_dir.with_name(run_dir.name + ".json")
    config.write_text(json.dumps(settings) + "\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", data, "--out",
                           run_dir, "--steps", str(steps), "--config", config, "--overwrite"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: training {run_dir} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--fields", type=int, default=60)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    data = data_with_a_large_validation_split(work, args.fields)
    megapixels = args.fields * 1024 * 1024 / 1e6
    rows, results = [], {"fields": args.fields, "steps": args.steps, "runs": {}}
    for name, share in (("every epoch", None), ("validation_share 0.1 (default)", 0.1)):
        run_dir = work / f"run_share_{share}"
        seconds = train(data, run_dir, args.steps, {"calibrate": False,
                                                    "validation_share": share})
        history = read_history(run_dir / "history.csv")
        validated = history["val_seconds"] > 0
        results["runs"][name] = {
            "seconds": seconds, "validations": int(validated.sum()),
            "validation_seconds": float(history["val_seconds"].sum()),
            "epoch_seconds": float(np.median(history["seconds"][1:])),  # training steps
            "best_val_dice": float(history["val_dice"].max())}
        r = results["runs"][name]
        rows.append([name, f"{seconds / 60:.1f}", f"{r['validations']} of {len(validated)}",
                     f"{r['validation_seconds']:.0f}", f"{r['epoch_seconds']:.1f}",
                     f"{r['best_val_dice']:.4f}"])
        print(rows[-1], flush=True)
    print(f"validation split: 40 crops + {args.fields} fields ({megapixels:.0f} megapixels); "
          f"{args.steps} steps")
    print(table(rows, ["validation", "train min", "validations", "validation s",
                       "epoch s without validation", "best val Dice"]))
    write_result("validation_cost", results)


if __name__ == "__main__":
    main()
