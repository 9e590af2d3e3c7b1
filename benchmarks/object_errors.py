"""What the unmatched objects are, for a trained run and for the peer on the same images.

    python benchmarks/object_errors.py DATA RUN [--peer PRED_DIR] [--name NAME]
                                       [--overlay IMAGE_NAME --out PNG]

Object F1 says how many objects were not matched at IoU 0.5, not why. This script sorts
them with :func:`unet.object_errors`: true objects **missed**, **merged** with a
neighbour, **split** in pieces or **outlined** too differently, and found objects that
lie on the truth's background (**spurious**), for the run (its calibrated
post-processing, as ``evaluate`` uses it) and, with ``--peer``, for the label images
``peer_stardist.py`` wrote for the same folder (``PEER/pred/SPLIT/NAME.png``).

For the spurious objects it also gives what tells debris from objects the truth left
out: their contrast (the mean of the model's input image over the object, less the
image's median, over the same for the matched objects; medians over objects) and how
many of them the other method found too (half of their area covered by one object of
the other method). Where both methods find the same object on the truth's background,
the truth may lack it; look at ``--overlay``.

``--core-seeds 0.95,0.99``: the run's map labelled another way too, one row per value T:
the seeds are the pieces of ``probability > T`` (split as the run splits), grown over the
run's mask (``probability > threshold``) by a watershed on its distance map; mask regions
without a seed are objects of their own. Touching objects whose map dips between them
(the network's probability is lower where two objects meet) are parted that way.

``--overlay NAME --out PNG``: the model's input image NAME (gray, a 0.5 gamma to show dim
objects), true outlines green, the run's magenta, shared pixels yellow, twice the size.
Nothing is trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import table, write_result

from unet.count import (label_spores, match_spores, object_errors, object_scores_from_counts,
                        remove_small_regions)
from unet.evaluate import iter_predictions, true_instances
from unet.io import read_labels
from unet.run import load_run

KINDS = ("missed", "merged", "split", "outline", "spurious")


def contrast(gray, labels, ids):
    """|Mean of ``gray`` over each object ``ids`` - the image's median|, a list."""
    from scipy import ndimage as ndi

    if len(ids) == 0:
        return []
    means = ndi.mean(gray, labels, ids)
    return list(np.abs(np.asarray(means) - np.median(gray)))


def found_by(labels, ids, other):
    """How many objects ``ids`` of ``labels`` lie half or more in one object of ``other``."""
    hits = 0
    for i in ids:
        inside = other[labels == i]
        hits += int(np.bincount(inside[inside > 0]).max(initial=0) >= 0.5 * inside.size)
    return hits


def label_cores(prob, config, core):
    """Objects seeded by the pieces of ``prob > core`` (see the module notes)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    mask = prob > config.threshold
    seeds = label_spores(prob, core, min_area=1, h=config.split_h)
    labels = watershed(-ndi.distance_transform_edt(mask), seeds, mask=mask)
    rest, _ = ndi.label(mask & (labels == 0))
    labels = np.where(rest > 0, rest + labels.max(), labels)
    return remove_small_regions(labels, config.min_area)


def overlay(gray, truth, pred, path):
    from PIL import Image
    from skimage.segmentation import find_boundaries

    lo, hi = np.percentile(gray, [1, 99.5])
    g = np.clip((gray - lo) / max(hi - lo, 1e-9), 0, 1) ** 0.5
    rgb = np.stack([g, g, g], -1)
    t, p = find_boundaries(truth, mode="inner"), find_boundaries(pred, mode="inner")
    rgb[t], rgb[p], rgb[t & p] = (0, 1, 0), (1, 0, 1), (1, 1, 0)
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(path)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data folder with labels/ (a test split)")
    parser.add_argument("run", type=Path, help="a trained run folder")
    parser.add_argument("--peer", type=Path,
                        help="the peer's predicted label images of DATA (NAME.png)")
    parser.add_argument("--name", help="the result's name (benchmarks/results/NAME.json)")
    parser.add_argument("--core-seeds", default="",
                        help="comma-separated probabilities: also label from seeds above each")
    parser.add_argument("--overlay", help="an image name to draw")
    parser.add_argument("--out", type=Path, help="the overlay's PNG")
    args = parser.parse_args(argv)

    model, config = load_run(args.run)
    cores = [float(v) for v in args.core_seeds.split(",") if v]
    methods = {"U-Net": {}, **{f"U-Net, seeds > {c:g}": {} for c in cores}}
    if args.peer is not None:
        methods["peer"] = {}
    spread = {m: {"spurious": [], "matched": [], "shared": 0} for m in methods}
    for item in iter_predictions(model, args.data):
        truth, _ = true_instances(item)
        gray = item.image.mean(axis=-1) if item.image.ndim == 3 else item.image
        preds = {"U-Net": label_spores(item.prob, config.threshold, config.min_area,
                                       h=config.split_h)}
        for c in cores:
            preds[f"U-Net, seeds > {c:g}"] = label_cores(item.prob, config, c)
        if args.peer is not None:
            preds["peer"] = read_labels(args.peer / f"{item.name}.png")
        for method, pred in preds.items():
            errors = object_errors(truth, pred, ids=True)
            for kind in ("true", "pred", "matched", *KINDS):
                methods[method][kind] = methods[method].get(kind, 0) + errors[kind]
            spurious = errors["ids"]["spurious"]
            matched = np.setdiff1d(np.unique(pred)[1:], match_spores(truth, pred)["invented"])
            spread[method]["spurious"] += contrast(gray, pred, spurious)
            spread[method]["matched"] += contrast(gray, pred, matched)
            if args.peer is not None:
                other = preds["peer" if method != "peer" else "U-Net"]
                spread[method]["shared"] += found_by(pred, spurious, other)
        if args.overlay == item.name and args.out is not None:
            overlay(gray, truth, preds["U-Net"], args.out)

    rows, result = [], {"data": str(args.data), "run": str(args.run),
                        "peer": str(args.peer) if args.peer else None, "methods": {}}
    for method, e in methods.items():
        tp, fp, fn = e["matched"], e["pred"] - e["matched"], e["true"] - e["matched"]
        f1 = object_scores_from_counts(tp, fp, fn)["f1"]
        s = spread[method]
        relative = (float(np.median(s["spurious"]) / np.median(s["matched"]))
                    if s["spurious"] and s["matched"] else float("nan"))
        result["methods"][method] = {**e, "f1": f1, "spurious_contrast": relative,
                                     "spurious_found_by_other": s["shared"]}
        rows.append((method, e["true"], e["pred"], e["matched"], f"{f1:.3f}",
                     *(e[k] for k in KINDS), f"{relative:.2f}",
                     s["shared"] if args.peer is not None else "-"))
    print(table(rows, ("method", "true", "found", "matched", "F1", *KINDS,
                       "spurious contrast", "spurious found by the other")))
    write_result(f"object_errors_{args.name or args.data.parent.name}", result)


if __name__ == "__main__":
    main()
