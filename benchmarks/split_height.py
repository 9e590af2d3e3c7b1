"""How the split height of touching spores counts the TRUE masks of many kinds of data.

    python benchmarks/split_height.py [--fields 2] [--other DIR ...]

Segmentation aside, counting a binary mask needs touching spores split apart. This
script takes the *true* binary masks (touching spores merged, as a user's annotation
or a perfect network would give them) of whole fields and counts them with
``unet.count.label_spores`` for a range of split heights ``h``: the count error and
object F1 (IoU 0.5, against the true instance labels) then show which ``h`` carries
over between kinds of data. Data: every style of ``styles.py`` (the project's
generator, knobs far from those the default was tuned on) and, with ``--other``, data
folders made by ``other_renderer.py`` (independent code) or real microscopy prepared
by ``foreign_data.py`` (their ``fields/`` or ``test/`` split, with ``labels/``).
No training: a minute or two on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import table, write_result
from styles import style

#: The styles whose geometry differs (the others change only the optics, which the true
#: masks do not see).
GEOMETRIES = ("default", "dense", "small", "large")

#: Absolute split heights (pixels), then relative ones ("x0.07": 0.07 times the median
#: object radius; the package's default ratio is unet.count.SPLIT_RATIO).
HEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, "x0.03", "x0.05", "x0.07", "x0.1")


def score(sets, heights=HEIGHTS):
    """{set: {h: (count error, object F1)}} over lists of instance label images."""
    from unet.count import (
        count_labels,
        label_spores,
        object_scores,
        object_scores_from_counts,
        relative_count_error,
        split_height,
    )

    results = {}
    for name, truths in sets.items():
        results[name] = {}
        for h in heights:
            errors, tp, fp, fn = [], 0, 0, 0
            for labels in truths:
                mask = labels > 0
                absolute = split_height(mask, float(h[1:])) if isinstance(h, str) else h
                counted = label_spores(mask, h=absolute)
                errors.append(relative_count_error([count_labels(labels)],
                                                   [count_labels(counted)])[0])
                s = object_scores(labels, counted, thresholds=(0.5,))
                tp, fp, fn = tp + s["tp"][0], fp + s["fp"][0], fn + s["fn"][0]
            f1 = object_scores_from_counts(tp, fp, fn)["f1"]
            results[name][h] = (float(np.mean(errors)), f1)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=2, help="fields per style (2)")
    parser.add_argument("--size", type=int, default=1024, help="field side (1024)")
    parser.add_argument("--other", type=Path, nargs="*", default=[],
                        help="data folders (images/, masks/, labels/) of other data")
    args = parser.parse_args(argv)

    from unet.count import SPLIT_RATIO
    from unet.io import find_pairs, read_labels
    from unet.spores import render_field

    sets = {}
    for name in GEOMETRIES:
        sets[f"generator: {name}"] = [
            render_field(1000 + k, (args.size, args.size), style(name))[1].astype(np.int32)
            for k in range(args.fields)
        ]
    for folder in args.other:
        pairs = [p for p in find_pairs(folder) if p.labels is not None]
        if not pairs:
            raise SystemExit(f"error: {folder} has no labels/; give a folder with instance labels")
        sets[str(folder)] = [read_labels(p.labels) for p in pairs]
    results = score(sets)
    rows = []
    for name, by_h in results.items():
        rows.append((name, *(f"{100 * e:.1f} % / {f1:.3f}" for e, f1 in by_h.values())))
    print(f"count error / object F1 of the true binary masks, by split height h "
          f"(x: times the median object radius; the default is x{SPLIT_RATIO})")
    names = [f"h={h}" for h in HEIGHTS]
    print(table(rows, ("data", *names)))
    worst = {h: max(r[h][0] for r in results.values()) for h in HEIGHTS}
    mean = {h: float(np.mean([r[h][0] for r in results.values()])) for h in HEIGHTS}
    for h, name in zip(HEIGHTS, names):
        print(f"{name:>9}: worst {100 * worst[h]:.1f} %, mean {100 * mean[h]:.1f} % count error")
    best = min(HEIGHTS, key=lambda h: (worst[h], mean[h]))
    write_result("split_height", {"heights": HEIGHTS, "results": {
        name: {str(h): {"count_error": e, "object_f1": f1} for h, (e, f1) in by_h.items()}
        for name, by_h in results.items()}, "best": best})


if __name__ == "__main__":
    main()
