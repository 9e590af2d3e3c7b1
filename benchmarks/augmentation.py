"""The intensity augmentation's ranges, measured on data the project did not make.

    python benchmarks/augmentation.py DATA --work DIR [--variants off,former,default,strong]
                                      [--baseline RUN] [--seed 0]

``unet.Augmentation`` changes each training crop's brightness (a value added, uniform in
``±0.1``), contrast (scaled around the mean by ``1 ± 0.5``; ``1 ± 0.2`` before 0.2.0, close
to nnU-Net's 0.75-1.25) and gamma (``exp(±0.2)``; nnU-Net 0.7-1.5). The StarDist examples
scale the intensity by 0.6-2 and shift it by ±0.2. This script trains
``unet.train.train(Config(seed=S, augmentation=RANGES), DATA, DIR/VARIANT)`` (every default
of ``python -m unet train`` but ``Config.augmentation``) with only those three ranges
changed, the flips, rotations, elastic deformation and noise as they are:

* ``off``: no intensity change;
* ``former``: the defaults before 0.2.0, contrast 1 ± 0.2 (the tables' "default" rows
  measured before the change);
* ``default``: today's defaults (or ``--baseline RUN``, a default run already trained with
  the same seed, not trained again; an earlier run, so whether training now would give
  the same weights is not checked);
* ``medium``: brightness ±0.15, contrast 1 ± 0.35, gamma exp(±0.3);
* ``strong``: brightness ±0.2, contrast 1 ± 0.5, gamma exp(±0.4);
* ``contrast``: contrast 1 ± 0.5 only, brightness and gamma at their defaults (what
  made it the default; the same as ``default`` since 0.2.0).

Each run is scored on ``DATA/test`` (and ``DATA/fields`` where present) by
``unet.evaluate`` with the run's calibrated post-processing, the unmatched objects sorted
by ``unet.object_errors``. Training takes the minutes of a default run per variant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import table, write_result

from unet.evaluate import evaluate
from unet.run import Config, load_run
from unet.train import train

VARIANTS = {
    "off": {"brightness": 0.0, "contrast": 0.0, "gamma": 0.0},
    "former": {"contrast": 0.2},
    "default": {},
    "medium": {"brightness": 0.15, "contrast": 0.35, "gamma": 0.3},
    "strong": {"brightness": 0.2, "contrast": 0.5, "gamma": 0.4},
    "contrast": {"contrast": 0.5},
}


def train_variant(data, out, overrides, seed):
    """Train with every default but the intensity ranges; return the minutes."""
    start = time.perf_counter()
    train(Config(seed=seed, augmentation=overrides or None), data, out, verbose=0)
    return (time.perf_counter() - start) / 60


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--variants", default="off,former,default,strong")
    parser.add_argument("--baseline", type=Path, help="a default run of DATA, same seed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows, result = [], {"data": str(args.data), "seed": args.seed, "variants": {}}
    for name in args.variants.split(","):
        if name == "default" and args.baseline is not None:
            run, minutes = args.baseline, None
        else:
            run = args.work / name
            minutes = train_variant(args.data, run, VARIANTS[name], args.seed) \
                if not (run / "model.keras").exists() else None
        model, config = load_run(run)
        entry = {"run": str(run), "minutes": minutes, "calibration": config.calibration}
        for split in ("test", "fields"):
            if not (args.data / split).is_dir():
                continue
            scores = evaluate(model, args.data / split)
            scores.pop("per_image")
            entry[split] = scores
            e = scores["object_errors"]
            rows.append((name, split, f"{scores['dice']:.3f}", f"{scores['object_f1']:.3f}",
                         f"{scores['ap_50_95']:.3f}", f"{100 * scores['count_error']:.1f} %",
                         e["missed"], e["merged"], e["spurious"],
                         "-" if minutes is None else f"{minutes:.1f}"))
        result["variants"][name] = entry
        print(table(rows, ("intensity", "split", "Dice", "object F1", "AP 0.5:0.95",
                           "count error", "missed", "merged", "spurious", "train min")),
              flush=True)
    write_result(f"augmentation_{args.data.name}_seed{args.seed}", result)


if __name__ == "__main__":
    main()
