"""The floor: one global Otsu threshold (dark = spore) on the generated spore data.

    python benchmarks/otsu_baseline.py [--data data/spores]

A plain threshold is what one tries before a U-Net. The synthetic data are built so
that it fails the ways it fails on real brightfield images (pale spores with only a
dark wall, bright vacuoles, halos, dark debris, uneven illumination). This scores
``unet.baseline.otsu_mask`` with ``unet.evaluate.evaluate`` on the test crops and the
dish fields (pooled Dice / IoU / precision / recall over all pixels at the original
size, and the count error) and writes benchmarks/results/otsu_baseline.json: the
table in data/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import ROOT, machine, table, write_result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "spores"),
                        help="data set root with test/ and fields/ (make data)")
    args = parser.parse_args(argv)

    from unet.baseline import otsu_mask
    from unet.evaluate import evaluate

    result = {"machine": machine(), "method": "unet.baseline.otsu_mask", "splits": {}}
    rows = []
    for split in ("test", "fields"):
        folder = Path(args.data) / split
        if not (folder / "images").is_dir():
            sys.exit(f"error: {folder} has no images/; run `make data` first.")
        scores = evaluate(otsu_mask, folder)
        scores.pop("per_image")
        result["splits"][split] = scores
        rows.append((f"{split} ({scores['images']})",
                     *(f"{scores[k]:.3f}" for k in ("dice", "iou", "precision", "recall")),
                     f"{scores['count_error']:.1%}" if "count_error" in scores else "-"))
    print(table(rows, ("data", "Dice", "IoU", "precision", "recall", "count error")))
    write_result("otsu_baseline", result)


if __name__ == "__main__":
    main()
