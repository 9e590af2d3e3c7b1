"""How the calibration's choice on the validation split holds on the test split.

    python benchmarks/calibration_rule.py RUN DATA [RUN DATA ...]

For each trained run (a run directory) and its data folder (``val/`` and ``test/`` with
instance labels, or masks whose components are the objects), the grid that
``unet.calibrate.calibrate_postprocessing`` searches is scored on both splits. Printed per
run: the test object F1 at IoU 0.5 and mean count error of the defaults, of the single
best setting on validation (the rule before ``plateau_choice``) and of the setting whose
neighbourhood scores best (``plateau_choice``, the rule now). Each choice keeps the
defaults where they score as well on validation, as the calibration does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import table

from unet import calibrate as C
from unet.data import load_folder, object_labels
from unet.predict import predict_many
from unet.run import load_run


def grids(run, data):
    """Validation and test scores of every grid setting, of the defaults, the grid axes."""
    model, config = load_run(run)
    splits = {}
    for split in ("val", "test"):
        samples = load_folder(Path(data) / split, channels=config.channels,
                              flatten=config.flatten)
        splits[split] = (predict_many(model, samples.images), list(object_labels(samples)))
    axes = (C.THRESHOLDS, *C.calibration_grid(splits["val"][1]))
    scored = {split: (C._grid_by_objects(probs, truth, *axes),
                      C._score_default(probs, truth, None))
              for split, (probs, truth) in splits.items()}
    n_val = sum(int(np.unique(t[t > 0]).size) for t in map(np.asarray, splits["val"][1]))
    return scored, axes, n_val


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="RUN DATA")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a data folder after every run directory")
    rows = []
    for run, data in zip(args.pairs[::2], args.pairs[1::2]):
        scored, axes, n_val = grids(run, data)
        (val, val_default), (test, test_default) = scored["val"], scored["test"]

        def on_test(key):
            chosen = test_default if val_default <= val[key] else test[key]
            return f"{-chosen[0]:.3f} / {100 * chosen[1]:.1f} %"

        best = min(val, key=val.get)
        rows.append([Path(run).name, n_val, f"{-test_default[0]:.3f} / {100 * test_default[1]:.1f} %",
                     on_test(best), on_test(C.plateau_choice(val, axes))])
    print("test object F1 / count error of each choice")
    print(table(rows, ["run", "validation objects", "defaults", "best on validation",
                       "plateau_choice (now)"]))


if __name__ == "__main__":
    main()
