"""Choosing the post-processing on the user's own validation data, as StarDist chooses its thresholds.

From probability maps to counted objects, :func:`unet.count.label_spores` needs three
numbers: the probability ``threshold``, the split height ``h`` of touching objects and
the smallest object ``min_area``. Defaults tuned on one kind of image do not carry
over to another (a split height that separates one renderer's touching spores merges
another's), so after training :func:`calibrate_postprocessing` searches a small grid on
the validation split and keeps the centre of the best plateau (each setting scored by
the mean over it and its neighbours in the grid, :func:`plateau_choice`):

* with instance truth (``labels/``, or masks holding instance ids): the highest object
  F1 at IoU 0.5, pooled over the images (ties: the lower count error);
* with true counts only (``counts.csv``): the threshold of the best pooled pixel Dice,
  then the lowest mean count error;
* with neither: nothing to calibrate on; the defaults stay (and the caller says so).

The search reuses work: for one threshold and split height the objects are labelled
once with ``min_area=1``, and each ``min_area`` then only drops the smaller objects,
which gives exactly what ``label_spores`` gives with that ``min_area`` (both the
objects before splitting and their pieces are dropped when smaller; a piece is never
larger than its object).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi

from .count import (
    MIN_AREA,
    SPLIT_H,
    count_labels,
    label_spores,
    object_scores,
    object_scores_from_counts,
    relative_count_error,
    remove_small_regions,
)
from .errors import UsageError

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: Split heights tried, as fractions of the median true object radius (so the grid
#: scales with the objects); the relative default (None) is scored beside them.
SPLIT_RATIOS = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25)
#: ``min_area`` candidates as fractions of the median true object area (plus MIN_AREA).
AREA_FRACTIONS = (0.05, 0.1, 0.2, 0.35)
#: Fewer true objects than this in the calibration images and the choice is said to be
#: unreliable: on 13 and 40 validation objects (HeLa tiles, DSB2018) it left the defaults
#: for one or two objects more and lost on the test images on one machine of two; on 102
#: objects and more it held (``benchmarks/README.md``). ``train`` joins the training
#: images to a validation split of fewer objects (``unet.train``).
FEW_OBJECTS = 50


def _objects(prob, threshold, h, smallest=1):
    """``label_spores(prob, threshold, min_area=smallest, h=h)``: every object of
    ``smallest`` pixels or more, which each ``min_area`` of the grid from ``smallest`` up
    then only trims (:func:`remove_small_regions`). Each region is split on its own and
    its pieces are no larger than it, so regions below ``smallest`` are dropped before
    splitting without changing any object the grid keeps; on the noisy maps of a barely
    trained network, hundreds of specks an image, that is most of the splitting."""
    return label_spores(prob, threshold, min_area=smallest, h=h)


def calibrate_postprocessing(probs, labels=None, counts=None, masks=None,
                             thresholds=THRESHOLDS, split_heights=None,
                             min_areas=None, default_min_area=MIN_AREA,
                             source="validation images", min_area_floor=None):
    """The post-processing that scores best on validation images, with its neighbours.

    The grid point chosen is the one whose neighbourhood scores best
    (:func:`plateau_choice`); the defaults are kept where they score as well.

    Parameters
    ----------
    probs : sequence of numpy.ndarray
        Foreground probability maps, one per validation image, at the images' size.
    labels : sequence of numpy.ndarray, optional
        True instance labels, one per image (the objective is then object F1).
    counts : sequence of int, optional
        True counts, one per image (used when there are no labels).
    masks : sequence of numpy.ndarray, optional
        True binary masks (choose the threshold by pixel Dice when only counts exist).
    thresholds : sequence of float
        The grid of probability thresholds.
    split_heights : sequence of float, optional
        Split heights in pixels; default :data:`SPLIT_RATIOS` times the median radius
        of the true objects.
    min_areas : sequence of int, optional
        Default: fractions :data:`AREA_FRACTIONS` of the median true object area (from
        the labels, else the mask components), and :data:`unet.count.MIN_AREA`.
    default_min_area : int
        The smallest object of the defaults, which are scored beside the grid and kept
        (with threshold 0.5 and the relative split height) where they score as well: a
        trained run's own, from its training objects (:func:`unet.data.choose_min_area`).
    source : str
        What the images are, for the ``objective`` line ("on 4 validation images").
    min_area_floor : int, optional
        No smallest object below this is tried (at least it is). ``train`` sets its own
        smallest object where it joins training images to a validation split of few
        objects: the network's maps of images it learnt hold none of the fragments that
        a smaller ``min_area`` would keep on new images.

    Returns
    -------
    dict or None
        ``threshold``, ``split_h``, ``min_area`` (the choice), ``objective`` (what was
        maximised or minimised, in words), ``score`` (its value for the choice) and
        ``default_score`` (for threshold 0.5, the relative split height
        :data:`unet.count.SPLIT_H` and ``default_min_area``), ``images`` and
        ``objects`` (the true objects of all images); None without any truth.
    """
    probs = [np.asarray(p, np.float32) for p in probs]
    if labels is None and counts is None:
        return None
    if not probs:
        raise UsageError("calibrate_postprocessing needs at least one validation image.")
    truth = labels if labels is not None else (
        [ndi.label(np.asarray(m) > 0)[0] for m in masks] if masks is not None else None)
    grid_heights, grid_areas = calibration_grid(truth)
    split_heights = grid_heights if split_heights is None else split_heights
    min_areas = grid_areas if min_areas is None else min_areas
    if min_area_floor is not None:
        min_areas = tuple(a for a in min_areas if a >= min_area_floor) or (int(min_area_floor),)
    thresholds = tuple(thresholds)
    if labels is not None:
        objective = f"object F1 at IoU 0.5 on {len(probs)} {source}"
        scores = _grid_by_objects(probs, labels, thresholds, split_heights, min_areas)
    else:
        objective = f"mean count error on {len(probs)} {source}"
        if masks is not None:
            thresholds = (_best_pixel_threshold(probs, masks, thresholds),)
        scores = _grid_by_counts(probs, counts, thresholds, split_heights, min_areas)
    best = plateau_choice(scores, (thresholds, split_heights, min_areas))
    default_score = _score_default(probs, labels, counts, default_min_area)
    if default_score <= scores[best]:  # the relative default does as well: keep it
        best = (0.5, None, int(default_min_area))
        scores[best] = default_score
    sign = -1.0 if labels is not None else 1.0  # stored as minimised keys
    return {
        "threshold": float(best[0]),
        "split_h": None if best[1] is None else float(best[1]),
        "min_area": int(best[2]),
        "objective": objective,
        "score": float(sign * scores[best][0]),
        "default_score": float(sign * default_score[0]),
        "images": len(probs),
        "objects": true_objects(labels, counts),
    }


def true_objects(labels=None, counts=None):
    """How many true objects calibration images hold: the objects of their ``labels``
    (instance label images) where given, else the sum of their ``counts``."""
    if labels is not None:
        return int(sum(count_labels(t) for t in labels))
    return int(sum(counts))


def calibration_grid(truth):
    """The split heights and smallest areas the calibration tries for these objects.

    Parameters
    ----------
    truth : sequence of numpy.ndarray or None
        True instance labels, one per image (None: no objects known).

    Returns
    -------
    (list of float, list of int)
        :data:`SPLIT_RATIOS` times the median object radius, and :data:`AREA_FRACTIONS`
        of the median object area with :data:`unet.count.MIN_AREA` (the median area
        taken as ``4 * MIN_AREA`` without objects).
    """
    areas = (np.concatenate([np.bincount(np.asarray(t).ravel())[1:] for t in truth])
             if truth is not None else np.array([]))
    areas = areas[areas > 0]
    median = float(np.median(areas)) if areas.size else 4.0 * MIN_AREA
    radius = float(np.sqrt(median / np.pi))
    return (sorted({round(r * radius, 3) for r in SPLIT_RATIOS}),
            sorted({max(1, int(round(f * median))) for f in AREA_FRACTIONS} | {MIN_AREA}))


def plateau_choice(scores, axes):
    """The grid point whose neighbourhood scores best: robust to a lucky spike.

    With a few validation images the best of a hundred settings is often a spike that
    happens to fit them (on one DSB2018 quadrant: threshold 0.4 and a split height of
    0.23 px, validation F1 0.897, which over-split the test nuclei). Each setting is
    scored instead by the mean of its scores and those of its neighbours (one step
    along any axis of the grid, edges included: up to 27 points), and the best of those
    means is chosen.

    Parameters
    ----------
    scores : dict
        ``(threshold, h, min_area) -> tuple`` of scores to minimise (compared in order).
    axes : tuple of sequences
        The grid values along each of the three axes.

    Returns
    -------
    tuple
        The chosen key of ``scores``.
    """
    index = [{value: i for i, value in enumerate(axis)} for axis in axes]
    at = {tuple(ix[v] for ix, v in zip(index, key)): key for key in scores}

    def neighbourhood(key):
        centre = tuple(ix[v] for ix, v in zip(index, key))
        near = [scores[at[p]] for p in itertools.product(*[(c - 1, c, c + 1) for c in centre])
                if p in at]
        return tuple(np.mean(near, axis=0)) + tuple(scores[key])

    return min(scores, key=neighbourhood)


def _score_default(probs, labels, counts, min_area=MIN_AREA):
    """The key of the defaults (threshold 0.5, relative split height, ``min_area``)."""
    return score_setting(probs, labels, counts, 0.5, SPLIT_H, min_area)


def score_setting(probs, labels, counts, threshold, h, min_area):
    """The key of one setting, labelled by :func:`label_spores` itself: ``(-F1, mean
    count error)`` with labels, ``(mean count error,)`` with counts. (The grid's
    shortcut, label with ``min_area=1`` then drop small objects, is exact for a split
    height in pixels, not for the relative one, which follows the objects kept.)"""
    tp = fp = fn = 0
    errors = []
    for k, prob in enumerate(probs):
        pred = label_spores(prob, threshold, min_area, h=h)
        n_pred = count_labels(pred)
        if labels is not None:
            s = object_scores(labels[k], pred, thresholds=(0.5,))
            tp, fp, fn = tp + int(s["tp"][0]), fp + int(s["fp"][0]), fn + int(s["fn"][0])
            true = count_labels(labels[k])
        else:
            true = counts[k]
        errors.append(float(relative_count_error([true], [n_pred])[0]))
    if labels is not None:
        return (-object_scores_from_counts(tp, fp, fn)["f1"], float(np.mean(errors)))
    return (float(np.mean(errors)),)


def _grid_by_objects(probs, labels, thresholds, split_heights, min_areas):
    """(threshold, h, min_area) -> (-F1, count error), pooled over the images."""
    tally = {}
    for prob, truth in zip(probs, labels):
        truth = np.asarray(truth)
        n_true = int(np.unique(truth[truth > 0]).size)
        for threshold, h in itertools.product(thresholds, split_heights):
            objects = _objects(prob, threshold, h, min(min_areas))
            for area in min_areas:
                pred = remove_small_regions(objects, area)
                s = object_scores(truth, pred, thresholds=(0.5,))
                n_pred = int(np.unique(pred[pred > 0]).size)
                t = tally.setdefault((threshold, h, area), [0, 0, 0, 0.0])
                t[0] += int(s["tp"][0])
                t[1] += int(s["fp"][0])
                t[2] += int(s["fn"][0])
                t[3] += float(relative_count_error([n_true], [n_pred])[0])
    n = len(probs)
    return {k: (-object_scores_from_counts(tp, fp, fn)["f1"], err / n)
            for k, (tp, fp, fn, err) in tally.items()}


def _grid_by_counts(probs, counts, thresholds, split_heights, min_areas):
    """(threshold, h, min_area) -> (mean count error,)."""
    errors = {}
    for prob, true in zip(probs, counts):
        for threshold, h in itertools.product(thresholds, split_heights):
            objects = _objects(prob, threshold, h, min(min_areas))
            for area in min_areas:
                pred = remove_small_regions(objects, area)
                n_pred = int(np.unique(pred[pred > 0]).size)
                key = (threshold, h, area)
                errors[key] = errors.get(key, 0.0) + float(
                    relative_count_error([true], [n_pred])[0])
    return {k: (v / len(probs),) for k, v in errors.items()}


def _best_pixel_threshold(probs, masks, thresholds):
    def dice(threshold):
        tp = fp = fn = 0
        for prob, mask in zip(probs, masks):
            pred, truth = prob > threshold, np.asarray(mask) > 0
            tp += np.count_nonzero(pred & truth)
            fp += np.count_nonzero(pred & ~truth)
            fn += np.count_nonzero(~pred & truth)
        return 2 * tp / max(2 * tp + fp + fn, 1)

    return max(thresholds, key=dice)
