"""Post-processing chosen on validation data: the fast grid equals label_spores, and the
choice recovers the split a data set needs."""

import itertools

import numpy as np
import pytest

from unet.calibrate import _objects, calibrate_postprocessing
from unet.count import count_labels, label_spores, remove_small_regions


def peanuts_image(seed=0, n=12, radius=7, gap=5.0):
    """Peanut-shaped objects (two disks 9 px apart, one object each) on a 200x200 image,
    as a soft map: the default split height (1 px) cuts each in two, 2 px does not."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:200, :200]
    labels = np.zeros((200, 200), np.int32)
    k = 0
    for i in range(n):
        cy, cx = 20 + (i // 4) * 55, 20 + (i % 4) * 50
        k += 1
        for dx in (0, 2 * radius - gap):  # the second disk overlaps the first by `gap` px
            labels[(rows - cy) ** 2 + (cols - cx - dx) ** 2 <= radius**2] = k
    prob = (labels > 0) * 0.9 + rng.random(labels.shape) * 0.05
    return prob.astype(np.float32), labels


@pytest.mark.parametrize("threshold, h, area", [(0.5, 1.0, 16), (0.3, 0.25, 5), (0.7, 4.0, 60)])
def test_the_fast_grid_equals_label_spores(threshold, h, area):
    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    prob = ndi.gaussian_filter(rng.random((120, 140)), 3)
    prob = (prob - prob.min()) / np.ptp(prob)
    fast = remove_small_regions(_objects(prob, threshold, h), area)
    # regions below the grid's least area dropped before splitting: the same objects
    dropped = remove_small_regions(_objects(prob, threshold, h, min(area, 12)), area)
    np.testing.assert_array_equal(dropped > 0, fast > 0)
    assert count_labels(dropped) == count_labels(fast)
    slow = label_spores(prob, threshold=threshold, min_area=area, h=h)
    assert count_labels(fast) == count_labels(slow)
    np.testing.assert_array_equal(fast > 0, slow > 0)


def test_calibration_finds_the_split_height_the_objects_need():
    probs, labels = zip(*(peanuts_image(seed) for seed in range(3)))
    result = calibrate_postprocessing(probs, labels=labels)
    assert result["objective"].startswith("object F1")
    assert result["score"] >= 0.95 and result["score"] > result["default_score"]
    chosen = label_spores(probs[0], result["threshold"], result["min_area"], h=result["split_h"])
    assert count_labels(chosen) == count_labels(labels[0]) == 12
    assert count_labels(label_spores(probs[0])) == 24  # the defaults cut every peanut in two
    assert result["objects"] == 36  # 12 peanuts in each of the 3 images


def test_no_smallest_object_below_the_floor_is_tried(monkeypatch):
    import unet.calibrate as C

    probs, labels = zip(*(peanuts_image(seed) for seed in range(2)))
    grid, tried = C._grid_by_objects, []

    def spy(probs, labels, thresholds, split_heights, min_areas):
        tried.append(tuple(min_areas))
        return grid(probs, labels, thresholds, split_heights, min_areas)

    monkeypatch.setattr(C, "_grid_by_objects", spy)
    free = calibrate_postprocessing(probs, labels=labels)
    floored = calibrate_postprocessing(probs, labels=labels, min_area_floor=60,
                                       default_min_area=60)
    alone = calibrate_postprocessing(probs, labels=labels, min_area_floor=10 ** 6,
                                     default_min_area=10 ** 6)
    assert min(tried[0]) < 60 and tried[1] == tuple(a for a in tried[0] if a >= 60)
    assert tried[2] == (10 ** 6,)  # none left: the floor itself
    assert floored["min_area"] >= 60 and free["min_area"] <= floored["min_area"]
    assert alone["min_area"] == 10 ** 6


def test_calibration_by_counts_and_without_truth():
    probs, labels = zip(*(peanuts_image(seed) for seed in range(2)))
    counts = [count_labels(t) for t in labels]
    result = calibrate_postprocessing(probs, counts=counts, masks=[t > 0 for t in labels])
    assert result["objective"].startswith("mean count error") and result["score"] == 0.0
    assert result["objects"] == sum(counts)
    assert calibrate_postprocessing(probs) is None


def test_plateau_choice_prefers_a_broad_optimum_to_a_lone_spike():
    from unet.calibrate import plateau_choice

    axes = ((0.3, 0.4, 0.5, 0.6, 0.7), (0.5, 1.0, 2.0), (8, 16))
    scores = {key: (-0.80, 0.1) for key in itertools.product(*axes)}
    scores[(0.3, 0.5, 8)] = (-0.95, 0.1)  # one lucky setting in a corner of the grid
    for key in itertools.product((0.5, 0.6, 0.7), (1.0, 2.0), (8, 16)):
        scores[key] = (-0.90, 0.1)  # a region where nearby settings all do well
    assert min(scores, key=scores.get) == (0.3, 0.5, 8)  # plain argmax takes the spike
    chosen = plateau_choice(scores, axes)
    assert scores[chosen] == (-0.90, 0.1)  # a setting of the plateau, not the spike


def test_calibration_keeps_the_runs_own_smallest_object_where_it_scores_as_well():
    """Disks of ~314 px with 30 px specks that are not objects: the run's default
    smallest object (a tenth of the disks, 31 px) already drops the specks, so the
    calibration keeps it; the fixed 16 px counts the specks and is replaced."""
    rows, cols = np.mgrid[:200, :200]
    probs, labels = [], []
    for seed in range(2):
        truth = np.zeros((200, 200), np.int32)
        for k, (cy, cx) in enumerate(((40, 40), (40, 140), (140, 40), (140, 140)), 1):
            truth[(rows - cy - seed) ** 2 + (cols - cx) ** 2 <= 10**2] = k
        speck = np.zeros((200, 200), bool)
        speck[95:100, 90:96] = True  # 30 px, far from every disk
        probs.append(((truth > 0) | speck).astype(np.float32) * 0.9)
        labels.append(truth)
    kept = calibrate_postprocessing(probs, labels=labels, default_min_area=31)
    assert (kept["threshold"], kept["split_h"], kept["min_area"]) == (0.5, None, 31)
    assert kept["score"] == kept["default_score"] == 1.0
    fixed = calibrate_postprocessing(probs, labels=labels)
    assert fixed["default_score"] < 1.0 and fixed["score"] == 1.0
    assert fixed["min_area"] > 30
