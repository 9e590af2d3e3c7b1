"""fp32 vs mixed precision: training speed and test Dice after the same training budget.

    python benchmarks/precision.py [--data data/spores] [--steps 400] [--train-limit 0]
                                   [--precisions fp32,bf16] [--repeats 1]

Trains the default config (``unet.train.Config()``, same seed, same crops, same
epochs) with ``unet.train.train`` once per precision, then scores each best model on
the test split (pooled Dice at the original size, ``unet.evaluate.evaluate``). Reports
seconds per epoch (the median epoch, validation included), the speed-up over fp32 (target >= 1.8x for bf16 on a CPU with
AVX512_BF16) and the Dice difference (target: within 0.01), and what
``resolve_precision("auto")`` picks here. With ``--repeats 2`` the runs alternate
(fp32, bf16, fp32, bf16) so that a change in the machine's load hits both.
fp16 is only fast on GPUs (none here: CPUs have no fp16 matmul units).

Writes benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, machine, summary, table, write_result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "spores"))
    parser.add_argument("--steps", type=int, default=400,
                        help="optimiser steps per run, in epochs of 100 (400)")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="training crops (0 = all)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list (fp32,bf16)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per precision (1)")
    args = parser.parse_args(argv)

    import keras

    from unet.evaluate import evaluate
    from unet.train import Config, load_run, resolve_precision, train

    config = dataclasses.replace(Config(), steps=args.steps, calibrate=False,
                                 train_limit=args.train_limit or None)
    auto = resolve_precision("auto")
    result = {"machine": machine(), "auto": auto, "steps": args.steps,
              "train_limit": args.train_limit, "runs": []}
    print(f"resolve_precision('auto') -> {auto}")
    precisions = args.precisions.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for precision in precisions:
                out = Path(tmp) / f"{precision}-{repeat}"
                trained = train(config, args.data, out, precision=precision,
                                strategy="default", verbose=0)
                model, _ = load_run(out)  # it carries the run's background window
                scores = evaluate(model, Path(args.data) / "test", threshold=config.threshold)
                run = {"precision": precision, "policy": trained["precision"],
                       "epochs": trained["epochs"],
                       # the median epoch (100 steps + validation): the first also compiles
                       "seconds_per_epoch": float(np.median(trained["history"]["seconds"])),
                       "best_val_dice": float(trained["history"]["val_dice"].max()),
                       "test_dice": scores["dice"], "test_count_error": scores.get("count_error")}
                result["runs"].append(run)
                print(f"{precision}: {run['seconds_per_epoch']:.1f} s/epoch, test Dice "
                      f"{run['test_dice']:.4f}", flush=True)
                keras.backend.clear_session()

    rows, base = [], None
    for precision in precisions:
        runs = [r for r in result["runs"] if r["precision"] == precision]
        entry = {
            "seconds_per_epoch": summary([r["seconds_per_epoch"] for r in runs]),
            "test_dice": summary([r["test_dice"] for r in runs]),
        }
        if base is None:
            base = entry
        entry["speedup"] = base["seconds_per_epoch"]["median"] / entry["seconds_per_epoch"]["median"]
        entry["dice_difference"] = entry["test_dice"]["median"] - base["test_dice"]["median"]
        result[precision] = entry
        rows.append((precision, f"{entry['seconds_per_epoch']['median']:.1f}",
                     f"{entry['speedup']:.2f}x", f"{entry['test_dice']['median']:.4f}",
                     f"{entry['dice_difference']:+.4f}"))
    print(table(rows, ("precision", "s/epoch", f"speed vs {precisions[0]}", "test Dice",
                       f"Dice - {precisions[0]}")))
    print("targets: bf16 >= 1.8x fp32 speed, |Dice difference| <= 0.01")
    write_result("precision", result)
    return result


if __name__ == "__main__":
    main()
