"""Baseline: segment the spore test data with one global Otsu threshold.

A plain threshold (dark = spore) is what one would try before a U-Net. The synthetic
data are built so that it fails in the ways it fails on real brightfield images:
pale (hyaline) spores with only a dark wall, bright vacuoles, halos, dark debris,
uneven illumination. This prints the pooled Dice / IoU / precision / recall (over all
pixels of all images at their original size) on the test crops and on dish fields and
writes them to benchmarks/results/otsu_baseline.json.

Usage:
    python benchmarks/otsu_baseline.py                 # renders test split + fields of seed 0
    python benchmarks/otsu_baseline.py --data data/spores   # reads test/ and fields/ instead
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet.spores import DEFAULT_COUNTS, render_split  # noqa: E402


def read_folder(folder):
    """Yield (image, truth) from a data folder's images/ and masks/ (matched by stem)."""
    for path in sorted((folder / "images").glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        yield image, np.asarray(Image.open(folder / "masks" / path.name)) > 0


def otsu_scores(pairs):
    """Pooled pixel scores of a global Otsu threshold (dark = foreground)."""
    tp = fp = fn = images = 0
    for image, truth in pairs:
        gray = rgb2gray(image)
        predicted = gray < threshold_otsu(gray)
        tp += int(np.count_nonzero(predicted & truth))
        fp += int(np.count_nonzero(predicted & ~truth))
        fn += int(np.count_nonzero(~predicted & truth))
        images += 1
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "images": images,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data set root with test/ (and fields/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered data (0)")
    parser.add_argument("--test", type=int, default=DEFAULT_COUNTS["test"], help="crops to render")
    parser.add_argument("--fields", type=int, default=DEFAULT_COUNTS["fields"], help="fields")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    result = {"method": "global Otsu threshold on luminance, dark = spore"}
    for split, n in (("test", args.test), ("fields", args.fields)):
        if args.data is not None:
            folder = args.data / split
            if not (folder / "images").is_dir():
                continue
            pairs = read_folder(folder)
            result["source"] = str(args.data)
        else:
            pairs = ((image, labels > 0) for _, image, labels in render_split(split, n, args.seed))
            result["source"] = f"unet.spores.render_split(seed={args.seed})"
        if n or args.data is not None:
            result[split] = otsu_scores(pairs)
            s = result[split]
            print(
                f"Otsu on {split:6s} ({s['images']:4d} images): Dice {s['dice']:.3f}  "
                f"IoU {s['iou']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
            )
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = ROOT / "benchmarks" / "results" / "otsu_baseline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
