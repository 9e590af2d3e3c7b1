"""The smallest-object default against the size of the objects.

    python benchmarks/min_area.py RUN DATA [RUN DATA ...] [--fractions 0.05,0.08,0.1,0.15,0.2,0.25]

For each trained run (a run directory) and its data folder, the validation and test
splits (and ``fields/`` where there is one) are predicted once and counted with the
default threshold (0.5) and split height (relative): what a user gets whose validation
split has no instance truth (binary masks and no ``counts.csv``: no calibration), and
what a calibration keeps when its validation split cannot tell the settings apart. The
smallest object kept (``min_area``) is either the fixed :data:`unet.count.MIN_AREA`
(16 px, chosen on spores) or a fraction of the median area of the *training* objects
(labels, or the components of the masks), known when training ends, rounded down and
never less than ``MIN_AREA`` (:func:`unet.count.min_area_for_areas`; small objects are
treated as before). Printed per run and split: object F1 at IoU 0.5 / mean count error
of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import table

from unet.calibrate import _grid_by_objects
from unet.count import MIN_AREA, min_area_for_areas
from unet.data import load_folder, object_areas, object_labels
from unet.predict import predict_many
from unet.run import load_run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="RUN DATA")
    parser.add_argument("--fractions", default="0.05,0.08,0.1,0.15,0.2,0.25",
                        help="fractions of the median training object area")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a data folder after every run directory")
    fractions = [float(f) for f in args.fractions.split(",")]
    rows = []
    for run, data in zip(args.pairs[::2], args.pairs[1::2]):
        model, config = load_run(run)
        data = Path(data)
        areas = object_areas(load_folder(data / "train", channels=config.channels))
        median = float(np.median(areas))
        for split in ("val", "test", "fields"):
            if not (data / split).is_dir():
                continue
            samples = load_folder(data / split, channels=config.channels,
                                  flatten=config.flatten)
            probs, truth = predict_many(model, samples.images), list(object_labels(samples))
            chosen = [MIN_AREA, *(min_area_for_areas(areas, f) for f in fractions)]
            # pooled object F1 at IoU 0.5 and mean count error, as the calibration scores
            # its grid: threshold 0.5, the relative split height (h None)
            scored = _grid_by_objects(probs, truth, (0.5,), (None,), sorted(set(chosen)))
            rows.append([Path(run).name, split, f"{median:.0f}",
                         *(f"{-scored[0.5, None, a][0]:.3f} / "
                           f"{100 * scored[0.5, None, a][1]:.1f} %" for a in chosen)])
            print(rows[-1], flush=True)
    print("object F1 / count error at threshold 0.5 and the relative split height")
    print(table(rows, ["run", "split", "median training area (px)", f"{MIN_AREA} px",
                       *(f"max({MIN_AREA}, {f:g} x median)" for f in fractions)]))


if __name__ == "__main__":
    main()
