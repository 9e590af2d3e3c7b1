"""How the calibration's choice on the validation split holds on the test split.

    python benchmarks/calibration_rule.py RUN DATA [RUN DATA ...] [--touching 10,25,50]

For each trained run (a run directory) and its data folder (``val/`` and ``test/``, and
``fields/`` where there is one, with instance labels, or masks whose components are the
objects), the grid that ``unet.calibrate.calibrate_postprocessing`` searches is scored on
the validation split, and each rule's choice is then scored on the test split (and the
fields). Printed per run and split: the object F1 at IoU 0.5 and mean count error of

* the defaults (threshold 0.5, the relative split height, the run's smallest object
  from its training objects, as ``train`` sets it before calibrating);
* the single best setting on validation (the rule before ``plateau_choice``);
* ``plateau_choice`` on the validation split alone (the rule before the last);
* the same with the nearest setting of the grid standing in for neighbours beyond an
  edge (``plateau_in(..., edges="nearest")``), and with a neighbourhood along the
  threshold and split height only (each smallest area scored on its own);
* ``plateau_choice`` over the thresholds and smallest areas only, the split height kept
  relative; and that choice where the validation truth holds fewer than N objects
  touching another, the plateau_choice of the whole grid otherwise
  (``--touching``: the split height changes only how touching objects are cut, so
  without them the validation split cannot tell one split height from another);
* the calibration of ``train`` since it joins the training images to a validation split
  of fewer than ``unet.calibrate.FEW_OBJECTS`` objects (``plateau_choice`` on both, no
  smallest object below the run's own; here every training image, where ``train`` takes
  as many as its 8-megapixel budget holds), ``plateau_choice`` on the validation split
  alone otherwise; and the same without the floor on the smallest object.

``--val-groups K`` makes validation splits of few objects out of large ones: the
validation images in consecutive groups of K, each group in turn the validation split
(the rules scored on the test split for each, and the mean printed).

Every choice keeps the defaults where they score as well on validation, as the
calibration does. Where the data has four fields or more, a second table: the
calibration of ``train`` run on two annotated fields instead of the validation split
(each pair of consecutive fields in turn), scored on the other fields beside the run's
own choice. The validation objects and how many of them touch another are printed
beside.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from common import table

from unet import calibrate as C
from unet.count import touching_pairs
from unet.data import choose_min_area, load_folder, object_labels
from unet.predict import predict_many
from unet.run import load_run


def touching_objects(labels):
    """How many objects of a label image touch another (sharing an edge)."""
    return int(np.unique(touching_pairs(labels)).size)


def load(run, data):
    """The run's maps and truth for every split there is, and its default smallest area."""
    model, config = load_run(run)
    splits = {}
    for split in ("train", "val", "test", "fields"):
        if not (Path(data) / split).is_dir():
            continue
        samples = load_folder(Path(data) / split, channels=config.channels,
                              flatten=config.flatten)
        splits[split] = (predict_many(model, samples.images), list(object_labels(samples)))
    train = load_folder(Path(data) / "train", channels=config.channels, flatten=config.flatten)
    return splits, choose_min_area(train)


def with_training(val, train):
    """The validation split's maps and truth with the training split's appended."""
    return val[0] + train[0], val[1] + train[1]


def plateau_in(scores, axes, spans, edges="drop"):
    """``plateau_choice`` with a neighbourhood of ``spans[i]`` steps along axis i (0: the
    setting's own value only), e.g. (1, 1, 0): threshold and split height smoothed, each
    smallest area on its own. ``edges``: "drop" averages the neighbours inside the grid
    (``plateau_choice``), "nearest" stands the nearest setting of the grid in for those
    beyond an edge (as ``scipy.ndimage.uniform_filter(mode="nearest")``), so that a
    setting on an edge is not averaged over fewer, nearer neighbours than one inside."""
    index = [{value: i for i, value in enumerate(axis)} for axis in axes]
    at = {tuple(ix[v] for ix, v in zip(index, key)): key for key in scores}
    sizes = [len(axis) for axis in axes]

    def neighbourhood(key):
        centre = tuple(ix[v] for ix, v in zip(index, key))
        ranges = [range(c - s, c + s + 1) for c, s in zip(centre, spans)]
        if edges == "nearest":
            points = [tuple(min(max(i, 0), n - 1) for i, n in zip(p, sizes))
                      for p in itertools.product(*ranges)]
        else:
            points = [p for p in itertools.product(*ranges) if p in at]
        near = [scores[at[p]] for p in points]
        return tuple(np.mean(near, axis=0)) + tuple(scores[key])

    return min(scores, key=neighbourhood)


def score(probs, truth, key):
    """(-F1, count error) of one setting, pooled over the images, labelled by
    ``label_spores`` itself (``unet.calibrate.score_setting``): the grid's shortcut is
    exact for a split height in pixels, not for the relative one."""
    return C.score_setting(probs, truth, None, *key)


JOINED_NO_FLOOR = f"training images joined to < {C.FEW_OBJECTS} validation objects"
JOINED = JOINED_NO_FLOOR + ", min area not below the run's (now)"


def choices(val, default_key, touching, limits, train=None):
    """Each rule's setting, chosen on the validation split (and, for the last rule, on
    the validation and training splits together where validation holds fewer than
    ``unet.calibrate.FEW_OBJECTS`` objects)."""
    probs, truth = val
    axes = (C.THRESHOLDS, *C.calibration_grid(truth))
    grid = C._grid_by_objects(probs, truth, *axes)
    default = score(probs, truth, default_key)

    def keep_default(key, scores):
        return default_key if default <= scores[key] else key

    rules = {"defaults": default_key,
             "best on validation": keep_default(min(grid, key=grid.get), grid),
             "plateau_choice (validation alone)": keep_default(C.plateau_choice(grid, axes),
                                                               grid),
             "plateau, edges nearest": keep_default(
                 plateau_in(grid, axes, (1, 1, 1), "nearest"), grid),
             "plateau over threshold and split height": keep_default(
                 plateau_in(grid, axes, (1, 1, 0)), grid)}
    relative_axes = (C.THRESHOLDS, (None,), axes[2])
    relative = {key: score(probs, truth, key) for key in itertools.product(*relative_axes)}
    chosen_relative = keep_default(C.plateau_choice(relative, relative_axes), relative)
    rules["plateau_choice, split height relative"] = chosen_relative
    for n in limits:
        rules[f"relative unless >= {n} touching"] = (
            rules["plateau_choice (validation alone)"] if touching >= n else chosen_relative)
    if train is not None:
        if C.true_objects(truth) < C.FEW_OBJECTS:
            both = with_training(val, train)
            for rule, floor in ((JOINED_NO_FLOOR, None), (JOINED, default_key[2])):
                r = C.calibrate_postprocessing(both[0], labels=both[1],
                                               default_min_area=default_key[2],
                                               min_area_floor=floor)
                rules[rule] = (r["threshold"], r["split_h"], r["min_area"])
        else:
            rules[JOINED_NO_FLOOR] = rules[JOINED] = rules["plateau_choice (validation alone)"]
    scores = {**grid, **relative, default_key: default}
    for key in rules.values():
        scores.setdefault(key, score(probs, truth, key))
    return rules, scores


def fields_as_validation(fields, chosen, min_area, size=2):
    """Rows: the calibration of ``train`` run on ``size`` annotated fields, each set of
    consecutive fields in turn, against the run's ``chosen`` setting, on the other fields."""
    probs, truth = fields
    rows = []
    for start in range(0, len(probs) - size + 1, size):
        val = list(range(start, start + size))
        rest = [i for i in range(len(probs)) if i not in val]
        r = C.calibrate_postprocessing([probs[i] for i in val], labels=[truth[i] for i in val],
                                       default_min_area=min_area)
        key = (r["threshold"], r["split_h"], r["min_area"])
        on_rest = ([probs[i] for i in rest], [truth[i] for i in rest])
        rows.append([f"{val[0]}-{val[-1]}", _setting(key), _scores(score(*on_rest, key)),
                     _scores(score(*on_rest, chosen))])
    return rows


def _setting(key):
    h = "relative" if key[1] is None else f"{key[1]:g} px"
    return f"{key[0]:g} / {h} / {key[2]}"


def _scores(s):
    return f"{-s[0]:.3f} / {100 * s[1]:.1f} %"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="RUN DATA")
    parser.add_argument("--touching", default="10,25,50",
                        help="the touching-object limits of the last rule (comma list)")
    parser.add_argument("--val-groups", type=int, metavar="K",
                        help="each group of K validation images in turn the validation split")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a data folder after every run directory")
    limits = [int(n) for n in args.touching.split(",") if n]
    if args.val_groups:
        return val_groups(args.pairs, args.val_groups, limits)
    rows, field_rows = [], []
    for run, data in zip(args.pairs[::2], args.pairs[1::2]):
        splits, min_area = load(run, data)
        val_truth = splits["val"][1]
        n_val = C.true_objects(val_truth)
        touching = sum(touching_objects(t) for t in val_truth)
        n_train = C.true_objects(splits["train"][1])
        default_key = (0.5, None, int(min_area))
        rules, val_scores = choices(splits["val"], default_key, touching, limits,
                                    splits.get("train"))
        for split in ("test", "fields"):
            if split not in splits:
                continue
            for rule, key in rules.items():
                rows.append([Path(run).name, f"{n_val} ({touching}); {n_train}", split, rule,
                             _setting(key), f"{-val_scores[key][0]:.3f}",
                             _scores(score(*splits[split], key))])
        if "fields" in splits and len(splits["fields"][0]) >= 4:
            field_rows += [[Path(run).name, *row] for row in fields_as_validation(
                splits["fields"], rules["plateau_choice (validation alone)"], int(min_area))]
    print("object F1 / count error of each rule's choice")
    print(table(rows, ["run", "val objects (touching); training objects", "split", "rule",
                       "threshold / split height / min area", "val F1", "F1 / count error"]))
    if field_rows:
        print("\nthe calibration on two annotated fields, scored on the other fields, against "
              "the run's (plateau_choice on the validation split)")
        print(table(field_rows, ["run", "validation fields", "chosen on them",
                                 "other fields: F1 / count error", "the run's choice"]))


def val_groups(pairs, k, limits):
    """The rules with each group of ``k`` validation images in turn as the validation
    split: test object F1 / count error per group, and their means."""
    rows = []
    for run, data in zip(pairs[::2], pairs[1::2]):
        splits, min_area = load(run, data)
        default_key = (0.5, None, int(min_area))
        probs, truth = splits["val"]
        results = {}
        for start in range(0, len(probs) - k + 1, k):
            group = (probs[start:start + k], truth[start:start + k])
            touching = sum(touching_objects(t) for t in group[1])
            rules, _ = choices(group, default_key, touching, limits, splits["train"])
            n = C.true_objects(group[1])
            for rule, key in rules.items():
                results.setdefault(rule, []).append((n, score(*splits["test"], key)))
        for rule, scored in results.items():
            f1 = [-s[0] for _, s in scored]
            error = [s[1] for _, s in scored]
            rows.append([Path(run).name, f"{len(scored)} x {k} ({min(n for n, _ in scored)}-"
                         f"{max(n for n, _ in scored)} objects)", rule,
                         " ".join(f"{v:.3f}" for v in f1),
                         f"{np.mean(f1):.3f} / {100 * np.mean(error):.1f} %"])
    print("test object F1 of each rule's choice on each group of validation images, and the "
          "mean F1 / count error")
    print(table(rows, ["run", "groups (objects)", "rule", "test F1 per group",
                       "mean F1 / count error"]))


if __name__ == "__main__":
    main()
