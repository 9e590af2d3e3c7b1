"""Counting, splitting and measuring spores; the classical baseline."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse

from unet.baseline import (
    baseline_mask, estimate_background, flatten_background, otsu_mask, to_gray,
)
from unet.count import (
    MIN_AREA,
    SPORE_COLUMNS,
    count_errors,
    count_spores,
    label_spores,
    measure_spores,
)
from unet.metrics import segmentation_scores


def draw(shape, *shapes):
    """A boolean image with disks ``("disk", (r, c), radius)`` and ellipses."""
    image = np.zeros(shape, bool)
    for kind, *args in shapes:
        if kind == "disk":
            rr, cc = disk(args[0], args[1], shape=shape)
        else:
            (r, c), (ra, ca), angle = args
            rr, cc = ellipse(r, c, ra, ca, rotation=angle, shape=shape)
        image[rr, cc] = True
    return image


def test_separate_disks_are_counted_and_measured():
    centres = [(20, 20), (20, 70), (60, 30), (70, 80)]
    mask = draw((100, 100), *[("disk", c, 8) for c in centres])
    result = count_spores(mask)
    assert result.count == 4
    table = result.table
    assert list(table) == list(SPORE_COLUMNS)
    found = sorted(zip(np.round(table["centroid_y"]), np.round(table["centroid_x"])))
    assert found == sorted(centres)
    area = np.count_nonzero(draw((100, 100), ("disk", (20, 20), 8)))
    np.testing.assert_array_equal(table["area_px"], area)
    np.testing.assert_allclose(table["equivalent_diameter"], 2 * np.sqrt(area / np.pi))
    assert np.all(table["eccentricity"] < 0.2) and np.all(np.isnan(table["mean_intensity"]))
    np.testing.assert_array_equal(table["id"], [1, 2, 3, 4])


def test_ellipse_axes_orientation_and_intensity():
    mask = draw((80, 80), ("ellipse", (40, 40), (6, 15), 0.0))  # long along columns
    intensity = np.where(mask, 0.25, 1.0)
    rgb = np.stack([intensity] * 3, -1)
    table = count_spores(mask, intensity_image=rgb).table
    assert table["major_axis"][0] == pytest.approx(30, abs=1.5)
    assert table["minor_axis"][0] == pytest.approx(12, abs=1.5)
    # Major axis along the columns: perpendicular to the row axis.
    assert abs(table["orientation"][0]) == pytest.approx(np.pi / 2, abs=0.05)
    assert table["mean_intensity"][0] == pytest.approx(0.25)


@pytest.mark.parametrize("radius, angle", [(6, 0.0), (9, 0.7), (12, 2.0)])
def test_two_touching_disks_are_split_in_two(radius, angle):
    d = 1.8 * radius
    a = np.array([50.0, 45.0])
    b = a + d * np.array([np.sin(angle), np.cos(angle)])
    mask = draw((110, 110), ("disk", a, radius), ("disk", b, radius))
    assert ndi.label(mask)[1] == 1  # they do touch
    labels = label_spores(mask)
    assert labels.max() == 2
    # Each centre lies in its own label, and the split keeps every pixel.
    assert labels[tuple(np.round(a).astype(int))] != labels[tuple(np.round(b).astype(int))]
    np.testing.assert_array_equal(labels > 0, mask)
    assert label_spores(mask, split=False).max() == 1


def test_lone_elongated_and_ragged_ellipses_are_not_split():
    rng = np.random.default_rng(2)
    for k in range(12):
        a = rng.uniform(6, 20)
        radii = (a * rng.uniform(0.45, 1), a)
        mask = draw((80, 80), ("ellipse", (40.3, 39.6), radii, rng.uniform(0, 3)))
        ring = ndi.binary_dilation(mask) & ~ndi.binary_erosion(mask)  # pixels along the outline
        ragged = mask ^ (ring & (rng.random(mask.shape) < 0.3))
        assert label_spores(mask).max() == 1
        assert label_spores(ragged).max() == 1


def test_specks_are_dropped_and_holes_filled():
    mask = draw((60, 60), ("disk", (30, 30), 10))
    mask[28:33, 28:33] = False  # a hole: a spore with a bright centre
    mask[5:8, 5:8] = True  # 9-pixel speck
    mask[50, 50] = True
    labels = label_spores(mask)
    assert labels.max() == 1
    assert labels[30, 30] == 1  # hole filled
    assert labels[6, 6] == 0 and labels[50, 50] == 0
    assert np.count_nonzero(labels) == np.count_nonzero(draw((60, 60), ("disk", (30, 30), 10)))
    assert label_spores(mask, min_area=5).max() == 2  # the 9-pixel speck is kept now
    np.testing.assert_array_equal(label_spores(mask, min_area=None), labels)  # None: MIN_AREA
    assert label_spores(mask, fill_holes=False)[30, 30] == 0
    assert MIN_AREA > 9


def test_probability_maps_are_thresholded():
    prob = np.zeros((50, 50), np.float32)
    prob[draw((50, 50), ("disk", (15, 15), 6))] = 0.9
    prob[draw((50, 50), ("disk", (35, 35), 6))] = 0.4
    assert label_spores(prob).max() == 1
    assert label_spores(prob, threshold=0.3).max() == 2
    assert label_spores((prob > 0.3).astype(np.uint8) * 255).max() == 2  # 0/255 mask
    empty = count_spores(np.zeros((10, 10)))
    assert empty.count == 0 and all(len(v) == 0 for v in empty.table.values())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        label_spores(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="integer label image"):
        measure_spores(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="intensity image has shape"):
        measure_spores(np.zeros((4, 4), int), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="same non-zero number"):
        count_errors([1, 2], [1])


def test_count_errors_hand_computed():
    e = count_errors([10, 0, 5, 20], [12, 1, 5, 16])
    assert e["mae"] == pytest.approx((2 + 1 + 0 + 4) / 4)
    assert e["bias"] == pytest.approx((2 + 1 + 0 - 4) / 4)
    # |pred - true| / max(true, 1): an invented spore on an empty image is a full error
    assert e["mean_relative_error"] == pytest.approx((0.2 + 1.0 + 0 + 0.2) / 4)
    assert e["total_relative_error"] == pytest.approx(1 / 35)
    assert (e["true_total"], e["pred_total"], e["images"]) == (35, 34, 4)
    np.testing.assert_allclose(e["rel_error"], [0.2, 1.0, 0.0, 0.2])
    np.testing.assert_array_equal(e["abs_error"], [2, 1, 0, 4])


# ---------------------------------------------------------------------------- baseline
def brightfield_scene(seed=0, spore_level=0.55):
    """Dark ellipses on a bright background with strong vignetting and noise."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    truth, specs = np.zeros((h, w), bool), []
    while len(specs) < 14:
        r, c = rng.uniform(15, h - 15), rng.uniform(15, w - 15)
        if all(np.hypot(r - r0, c - c0) > 28 for r0, c0 in specs):
            specs.append((r, c))
            truth |= draw((h, w), ("ellipse", (r, c), (rng.uniform(5, 7), rng.uniform(8, 11)),
                                   rng.uniform(0, np.pi)))
    yy, xx = np.mgrid[:h, :w]
    illumination = 1.0 - 0.6 * (((yy - 40) / h) ** 2 + ((xx - 60) / w) ** 2)  # a bright corner
    scene = np.where(truth, spore_level, 1.0) * illumination
    scene += rng.normal(0, 0.02, scene.shape)
    return scene, truth, len(specs)


def test_baseline_finds_dark_ellipses_under_uneven_illumination():
    scene, truth, n = brightfield_scene()
    mask = baseline_mask(scene)
    assert segmentation_scores(truth, mask)["dice"] > 0.9
    assert count_spores(mask).count == n
    # Without flattening, one global threshold fails on this illumination.
    naive = otsu_mask(scene)
    assert segmentation_scores(truth, naive)["dice"] < 0.7
    # ... although it is fine under even light, dark or bright objects alike
    even = np.where(truth, 0.4, 1.0)
    assert np.array_equal(otsu_mask(even), truth)
    assert np.array_equal(otsu_mask(np.dstack([1.4 - even] * 3), dark=False), truth)
    assert not otsu_mask(np.ones((8, 8))).any()  # constant: nothing found


def test_baseline_shape_filter_and_bright_objects():
    scene, truth, n = brightfield_scene(1)
    row = next(r for r in range(10, 230) if not truth[r - 4 : r + 7].any())
    scene[row : row + 3, 20:300] = 0.3  # a long dark scratch that touches no spore
    mask = baseline_mask(scene)
    assert not mask[row + 1].any()  # too eccentric: filtered out
    assert count_spores(mask).count == n
    bright, truth, n = brightfield_scene(1, spore_level=1.8)  # e.g. fluorescence
    assert segmentation_scores(truth, baseline_mask(bright, dark=False))["dice"] > 0.9
    assert count_spores(baseline_mask(bright, dark=False)).count == n
    assert baseline_mask(scene, max_area=50).sum() == 0  # every spore is larger


def test_flattening_and_gray_conversion():
    rgb = np.zeros((4, 5, 4))
    rgb[..., 1] = 1.0  # pure green, alpha ignored
    np.testing.assert_allclose(to_gray(rgb), 0.587, rtol=1e-6)  # Rec. 601 luma, as everywhere
    # A linear illumination ramp is flattened exactly, up to the image edges.
    yy, xx = np.mgrid[:50, :200]
    ramp = 1 + xx / 100 + yy / 200
    np.testing.assert_allclose(flatten_background(ramp, size=11), 1.0, atol=1e-9)
    np.testing.assert_allclose(flatten_background(ramp, 11, method="subtract"), 0, atol=1e-9)
    # A dark disk is not part of the background; a bright one is, unless dark=False.
    spot = ramp * np.where(draw((50, 200), ("disk", (25, 100), 6)), 0.5, 1.0)
    np.testing.assert_allclose(estimate_background(spot, 21), ramp, rtol=0.02)
    bright = ramp * np.where(draw((50, 200), ("disk", (25, 100), 6)), 1.5, 1.0)
    np.testing.assert_allclose(estimate_background(bright, 21, dark=False), ramp, rtol=0.02)
    assert np.max(estimate_background(bright, 21) / ramp) > 1.1
    with pytest.raises(ValueError, match="method"):
        flatten_background(ramp, method="median")


# ------------------------------------------------------------------ touching and matching
def test_touching_pairs_finds_edge_neighbours_only():
    from unet.count import touching_pairs

    labels = np.array([
        [1, 1, 0, 2],
        [1, 3, 3, 2],
        [0, 0, 0, 0],
        [4, 0, 0, 5],
        [0, 5, 0, 0],
    ])
    # 1-3 share an edge, 3-2 share an edge, 1-2 do not; 4 and 5 only meet at a corner
    np.testing.assert_array_equal(touching_pairs(labels), [[1, 3], [2, 3]])
    assert touching_pairs(np.zeros((3, 3), int)).shape == (0, 2)
    with pytest.raises(ValueError, match="2-D"):
        touching_pairs(np.zeros(4, int))


def test_match_spores_by_overlap():
    from unet.count import match_spores

    truth = np.zeros((40, 40), int)
    truth[0:10, 0:10] = 1    # 100 px
    truth[20:30, 0:10] = 2   # 100 px
    truth[20:30, 20:30] = 3  # 100 px, missed
    pred = np.zeros((40, 40), int)
    pred[0:10, 2:12] = 5     # IoU 80 / 120 = 0.667: a match
    pred[20:30, 0:4] = 6     # IoU 40 / 100: too small a piece
    pred[20:30, 4:10] = 7    # IoU 60 / 100: a match
    pred[35:38, 35:38] = 9   # invented
    result = match_spores(truth, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 2, 1)
    assert result["precision"] == pytest.approx(2 / 4)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 * 2 / (3 + 4))
    assert result["mean_iou"] == pytest.approx((80 / 120 + 0.6) / 2)
    assert result["missed"].tolist() == [3] and result["invented"].tolist() == [6, 9]
    assert match_spores(truth, pred, min_iou=0.7)["tp"] == 0
    same = match_spores(truth, truth)
    assert (same["f1"], same["mean_iou"], same["fp"]) == (1.0, 1.0, 0)
    empty = match_spores(np.zeros((5, 5), int), np.zeros((5, 5), int))
    assert empty["f1"] == 1.0 and np.isnan(empty["mean_iou"])
    with pytest.raises(ValueError, match="min_iou"):
        match_spores(truth, pred, min_iou=0.3)


def test_object_scores_from_counts_pool_and_follow_the_empty_rule():
    from unet.count import match_spores, object_scores_from_counts
    from unet.errors import UsageError

    # pooled over images: the counts are summed first, then divided
    assert object_scores_from_counts(2 + 3, 2 + 0, 1 + 4) == pytest.approx(
        {"precision": 5 / 7, "recall": 5 / 10, "f1": 10 / 17})
    # nothing to find and nothing found: 1; one side empty: 0 where it divides by 0
    assert object_scores_from_counts(0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert object_scores_from_counts(0, 3, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert object_scores_from_counts(0, 0, 2) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # the scores match_spores gives for one image
    rng = np.random.default_rng(3)
    truth = ndi.label(rng.random((48, 48)) > 0.6)[0]
    pred = ndi.label(ndi.binary_opening(rng.random((48, 48)) > 0.55))[0]
    m = match_spores(truth, pred)
    assert m["tp"] > 0 and m["fp"] > 0 and m["fn"] > 0
    s = object_scores_from_counts(m["tp"], m["fp"], m["fn"])
    assert s == {k: m[k] for k in ("precision", "recall", "f1")}
    with pytest.raises(UsageError, match="non-negative"):
        object_scores_from_counts(1, -1, 0)


def test_object_errors_name_each_unmatched_object():
    from unet.count import object_errors

    truth = np.zeros((60, 60), int)
    truth[0:10, 0:10] = 1      # matched
    truth[0:10, 10:20] = 2     # touches 3; both merged into one prediction
    truth[0:10, 20:30] = 3
    truth[20:30, 0:10] = 4     # cut in two halves: split
    truth[20:30, 20:30] = 5    # a corner of 16 px predicted: missed
    truth[40:50, 0:10] = 6     # a prediction twice its size over it: outline
    pred = np.zeros((60, 60), int)
    pred[0:10, 0:10] = 1
    pred[0:10, 10:30] = 2      # the merger of 2 and 3
    pred[20:30, 0:5] = 3
    pred[20:30, 5:10] = 4
    pred[20:24, 20:24] = 5
    pred[40:50, 0:20] = 6      # IoU 100 / 200 = 0.5: no match; half of it on truth
    pred[40:50, 40:50] = 7     # on background: spurious
    errors = object_errors(truth, pred)
    assert errors == {"true": 6, "pred": 7, "matched": 1, "missed": 1, "merged": 2,
                      "split": 1, "outline": 1, "spurious": 1}
    # the kinds of error add up to the unmatched true objects of the matching
    assert sum(errors[k] for k in ("missed", "merged", "split", "outline")) == 5
    named = object_errors(truth * 10, pred + 100 * (pred > 0), ids=True)["ids"]
    assert {k: v.tolist() for k, v in named.items()} == {
        "missed": [50], "merged": [20, 30], "split": [40], "outline": [60], "spurious": [107]}
    # a prediction 3 px off the outline of 6 matches at IoU 70 / 130 (> 0.5), not at 0.6
    pred[40:50, 0:20] = 0
    pred[40:50, 3:13] = 6
    assert object_errors(truth, pred)["matched"] == 2
    assert object_errors(truth, pred, min_iou=0.6)["outline"] == 1
    assert object_errors(truth, truth) == {"true": 6, "pred": 6, "matched": 6, "missed": 0,
                                           "merged": 0, "split": 0, "outline": 0,
                                           "spurious": 0}
    with pytest.raises(ValueError, match="same shape"):
        object_errors(truth, pred[:10])


def test_object_errors_add_up_to_the_matching_on_random_labels():
    from skimage.segmentation import watershed

    from unet.count import match_spores, object_errors, object_scores

    rng = np.random.default_rng(3)
    for _ in range(20):
        grids = []
        for _ in range(2):  # random touching and lone objects, some background
            seeds = np.zeros((48, 48), int)
            ys, xs = rng.integers(0, 48, (2, 12))
            seeds[ys, xs] = np.arange(1, 13)
            grids.append(watershed(np.zeros((48, 48)), seeds, mask=rng.random((48, 48)) < 0.9))
        truth, pred = grids
        pred[rng.random((48, 48)) < 0.05] = 0
        errors, match = object_errors(truth, pred), match_spores(truth, pred)
        assert errors["matched"] == match["tp"]
        assert sum(errors[k] for k in ("missed", "merged", "split", "outline")) == match["fn"]
        assert errors["spurious"] <= match["fp"]
        # evaluate's single pass: the same errors from object_scores' overlaps
        scores = object_scores(truth, pred, errors=True)
        assert scores["errors"] == errors
        assert scores["tp"][0] == match["tp"]
    assert "errors" not in object_scores(truth, pred)
    with pytest.raises(ValueError, match="same shape"):
        object_scores(truth, pred[:10])


def _split_whole_image(mask, h):
    """The split as it was done on whole-image arrays (the reference for the one done
    region by region): distance map, smoothing, h-maxima and watershed of all regions
    at once."""
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    from unet.count import SPLIT_SMOOTH, split_height

    h = split_height(mask) if h is None else h
    distance = ndi.distance_transform_edt(mask)
    smooth = ndi.gaussian_filter(distance, SPLIT_SMOOTH)
    domes = reconstruction(np.maximum(smooth - h, 0.0), smooth, method="dilation")
    seeds, n = ndi.label(local_maxima(domes, connectivity=2) & (domes > 0) & mask,
                         structure=np.ones((3, 3)))
    labels = watershed(-distance, seeds, mask=mask)
    orphans = mask & (labels == 0)
    labels[orphans] = ndi.label(orphans)[0][orphans] + n
    return labels


def _agreement(a, b):
    """Share of the foreground whose label in ``a`` is the one-to-one match (largest
    overlap) of its label in ``b``."""
    pairs, overlap = np.unique(np.c_[a[a > 0], b[a > 0]], axis=0, return_counts=True)
    best = {}
    for (x, y), n in zip(map(tuple, pairs), overlap):
        if y and n > best.get(x, 0):
            best[x] = n
    return sum(best.values()) / np.count_nonzero((a > 0) | (b > 0))


@pytest.mark.parametrize("seed, h", [(0, 0.36), (1, 1.0), (2, None), (4, None)])
def test_splitting_region_by_region_matches_the_whole_image(seed, h):
    """Each region split on its own gives the spores of the whole-image split: the same
    number, the same foreground, and the same pixels in each up to the order in which
    the watershed settles pixels of equal height (and the smoothing where two regions
    touch at a corner)."""
    from unet.count import split_touching
    from unet.spores import SporeStyle, render_field

    dense = SporeStyle(field_density=900.0, touching=0.35, overlapping=0.15)
    _, labels = render_field(seed, shape=(384, 384), style=dense)
    mask = labels > 0
    # Two regions that touch only at a corner, a one-pixel speck, and spores cut by
    # every edge of the image (beyond which a spore is taken to go on).
    mask[5:15, 5:15] = mask[15:25, 15:25] = True
    mask[5:15, 15:25] = mask[15:25, 5:15] = False
    mask[240, 3] = True
    by_region = split_touching(mask, h)
    whole = _split_whole_image(mask, h)
    assert by_region.max() > 100
    assert by_region.max() == whole.max() == np.unique(by_region[mask]).size
    np.testing.assert_array_equal(by_region > 0, mask)
    assert _agreement(by_region, whole) > 0.999
    touching_edge = np.unique(np.r_[by_region[0], by_region[-1], by_region[:, 0],
                                    by_region[:, -1]])
    assert touching_edge.size > 5


def test_spores_are_numbered_consecutively_region_by_region():
    # a two-spore region found first (its first pixel comes first), then a lone one
    mask = draw((60, 80), ("disk", (12, 12), 8), ("disk", (12, 27), 8), ("disk", (45, 40), 8))
    labels = label_spores(mask)
    assert labels.dtype == np.int32 and labels.max() == 3
    assert labels[12, 12] == 1 and labels[12, 27] == 2 and labels[45, 40] == 3
    assert label_spores(mask, split=False)[45, 40] == 2
    # a piece smaller than min_area is dropped and the numbers stay consecutive
    mask = draw((60, 80), ("disk", (12, 12), 8), ("disk", (12, 25), 5), ("disk", (45, 40), 8))
    assert label_spores(mask).max() == 3
    labels = label_spores(mask, min_area=120)  # the small disk: about 80 px
    assert np.array_equal(np.unique(labels), [0, 1, 2])
    assert labels[12, 12] == 1 and labels[12, 25] == 0 and labels[45, 40] == 2


def _strips(array, rows):
    for top in range(0, len(array), rows):
        yield top, array[top : top + rows]


def _put_together(steps, shape):
    """The label image of label_strips' steps, checking that the final rows come in order."""
    out, done = np.zeros(shape, np.int32), 0
    for step in steps:
        assert step.done_top == done
        out[done : done + len(step.done)] = step.done
        done += len(step.done)
        finished = step.finished[step.finished > 0]
        if finished.size:  # the spores finished in a step come whole and numbered on
            assert finished.min() == step.first_id
    assert done == shape[0]
    return out


def _same_up_to_ids(a, b):
    assert ((a > 0) == (b > 0)).all()
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    assert pairs.shape[1] == len(set(pairs[0])) == len(set(pairs[1])) == a.max() == b.max()


@pytest.mark.parametrize("rows", [1, 7, 50, 400])
def test_labelling_strip_by_strip_finds_the_spores_of_the_whole_mask(rows):
    from unet.count import label_strips
    from unet.spores import SporeStyle, render_field

    dense = SporeStyle(field_density=900.0, touching=0.35, overlapping=0.15)
    _, labels = render_field(5, shape=(300, 260), style=dense)
    mask = labels > 0
    mask[100:130, 100:130] = True  # a square with a hole: filled
    mask[110:120, 110:120] = False
    mask[200:260, 20] = True  # a tall thin region spanning strips
    whole = label_spores(mask, min_area=8, h=0.5)
    strips = _put_together(label_strips(_strips(mask, rows), 300, min_area=8, h=0.5),
                           mask.shape)
    assert whole.max() > 50 and strips[115, 115] > 0
    _same_up_to_ids(whole, strips)


def test_holes_closed_only_further_down_are_filled_as_in_the_whole_mask():
    """A ragged mask (smoothed noise at the percolation threshold: pockets closed by
    several regions, regions joined by filling them) gives the whole mask's spores."""
    from unet.count import label_strips

    noise = ndi.gaussian_filter(np.random.default_rng(1).random((300, 240)), 3)
    prob = (noise - noise.min()) / (noise.max() - noise.min())
    whole = label_spores(prob, 0.55, min_area=3, h=0.5)
    assert not (ndi.binary_fill_holes(prob > 0.55) == (prob > 0.55)).all()
    for rows in (5, 13, 64):
        _same_up_to_ids(whole, _put_together(
            label_strips(_strips(prob, rows), 300, 0.55, min_area=3, h=0.5), prob.shape))


def test_label_strips_counts_without_splitting_and_refuses_gaps():
    from unet.count import split_height_for_areas, label_strips, split_height
    from unet.errors import UsageError

    mask = draw((90, 80), ("disk", (20, 20), 9), ("disk", (20, 36), 9), ("disk", (70, 40), 12))
    regions = _put_together(label_strips(_strips(mask, 10), 90, split=False, min_area=1),
                            mask.shape)
    assert regions.max() == 2  # the touching pair is one region
    assert split_height_for_areas(np.bincount(regions.ravel())[1:]) == split_height(mask)
    with pytest.raises(UsageError, match="split height"):
        next(label_strips(_strips(mask, 10), 90, h=None))
    with pytest.raises(UsageError, match="starts at row 20, expected 10"):
        list(label_strips(((t, r) for t, r in _strips(mask, 10) if t != 10), 90, h=1.0))


def test_the_smallest_object_follows_the_objects_size():
    from unet.count import MIN_AREA_FRACTION, min_area_for_areas

    assert min_area_for_areas([]) == MIN_AREA
    assert min_area_for_areas([100, 170, 166]) == MIN_AREA  # spores: a tenth is 16.6
    assert min_area_for_areas([300, 511, 2000]) == int(MIN_AREA_FRACTION * 511) == 51
    assert min_area_for_areas([2355] * 3) == 235  # large nuclei: specks of 200 px go
    assert min_area_for_areas([20, 30]) == MIN_AREA  # never below the fixed floor


def test_an_unset_smallest_object_is_the_fixed_floor():
    from unet.count import count_labels, resolve_min_area
    from unet.run import Config

    assert resolve_min_area(None) == MIN_AREA and resolve_min_area(40) == 40
    # a run saved before runs chose their own smallest object carries None
    assert Config(min_area=None).postprocessing()["min_area"] == MIN_AREA
    mask = np.zeros((40, 40), bool)
    mask[disk((10, 10), 1.5)] = True  # 9 px: a speck under the floor
    mask[disk((28, 28), 4)] = True  # 49 px
    assert count_labels(label_spores(mask, min_area=None)) == 1
