"""From a probability map to counted, measured spores.

1. Threshold: a probability map becomes a binary mask (``prob > threshold``);
   a binary mask (bool/integer, or 0/1 floats) is used as it is.
2. Fill holes: spores predicted as rings (bright centres) become solid. Every
   enclosed background region is filled, so a closed ring of touching spores
   would also be filled; that is rare in spore fields and keeps whole spores whole.
3. Drop specks: connected regions smaller than ``min_area`` pixels are noise.
4. Split touching spores: the Euclidean distance to the background peaks near
   each spore's centre; every dome of it (smoothed a little, :data:`SPLIT_SMOOTH`) whose top rises at least ``h`` pixels
   above the saddle towards a higher one (an h-maximum) seeds one spore, and a
   watershed of the negated distance grows the seeds back to the mask. By default
   ``h`` is relative: :data:`SPLIT_RATIO` of the median object radius.
   Two touching disks of radius r whose centres are d apart have peaks r and a
   saddle sqrt(r**2 - d**2 / 4), so they are split when the neck is narrower than
   the spores by more than ``2 h``; a lone (elliptical) spore has one maximum.
5. Measure: one row per spore via ``skimage.measure.regionprops_table``.

Connectivity is 4 (pixels touching only at a corner are separate regions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from .errors import UsageError

#: Regions smaller than this many pixels are dropped as specks (a disk of ~4.5 px
#: diameter): far below any spore the generator draws or a microscope at useful
#: magnification shows, well above single noisy pixels.
MIN_AREA = 16
#: A trained run's smallest object: this fraction of the median area of its training
#: objects, but never below :data:`MIN_AREA` (:func:`min_area_for_areas`), so specks
#: are dropped at the objects' own scale. Chosen with ``benchmarks/min_area.py`` on the
#: validation splits of six trained runs on data the project did not make (an
#: independent spore renderer, BBBC007 nuclei, also magnified 3x, DSB2018, HeLa, E.
#: coli), counted with the default threshold and split: mean object F1 0.913 at 0.1
#: against 0.901 with 16 px (0.909 at 0.08, 0.908 at 0.15).
MIN_AREA_FRACTION = 0.1
#: Default split height: ``None`` means relative, :data:`SPLIT_RATIO` times the median
#: equivalent radius of the image's objects (:func:`split_height`), so the same default
#: holds at any magnification. A distance maximum must rise this many pixels above its
#: saddle to seed its own spore.
SPLIT_H = None
#: The relative split height, chosen with ``benchmarks/split_height.py``: the *true*
#: masks (touching spores merged) of whole fields of ten kinds of data (four spore
#: geometries of the project's generator, four of an independent renderer, real HeLa and
#: BBBC007 nuclei), counted against their true instances, and the masks the classical
#: baseline finds in noisy test scenes (ragged outlines). 0.05 times the median radius
#: with the smoothing below counted 4.6 % off on average (worst 19 %, dense overlapping
#: spores, which no split height of a binary mask separates well; 2.7 % on the ragged
#: masks), where the absolute 1 px tuned on the first style counted 7.6 % off (worst
#: 28 %), 0.03 times the radius 3.5 % but over-split ragged outlines (6.2 %).
SPLIT_RATIO = 0.05
#: Standard deviation (pixels) of the Gaussian that smooths the distance map before its
#: h-maxima are found (the watershed itself floods the raw distance): the ripples a
#: ragged, thresholded outline leaves in the distance map then seed no spores of their
#: own, so a small split height does not cut ragged spores apart.
SPLIT_SMOOTH = 0.5

#: Columns of :func:`measure_spores`, in order.
SPORE_COLUMNS = (
    "id",
    "area_px",
    "centroid_y",
    "centroid_x",
    "equivalent_diameter",
    "major_axis",
    "minor_axis",
    "eccentricity",
    "orientation",
    "solidity",
    "mean_intensity",
)


def count_labels(labels):
    """The number of objects in a label image: its distinct non-zero values."""
    values = np.unique(np.asarray(labels))
    return int(np.count_nonzero(values))


def relative_count_error(true_counts, pred_counts):
    """Per-image count error ``|predicted - true| / max(true, 1)``.

    The one definition the package uses (``evaluate``'s ``count_error`` is its mean
    over images). Dividing by ``max(true, 1)`` keeps it defined for images without
    objects, where every invented object counts as a full error.

    Returns
    -------
    numpy.ndarray
        float64, one value per image.
    """
    true = np.asarray(true_counts, dtype=np.float64).ravel()
    pred = np.asarray(pred_counts, dtype=np.float64).ravel()
    if true.shape != pred.shape or true.size == 0:
        raise UsageError(
            f"Need the same non-zero number of true and predicted counts, got {true.size} "
            f"and {pred.size}."
        )
    return np.abs(pred - true) / np.maximum(true, 1.0)


def to_mask(prob_or_mask, threshold=0.5):
    """Binary mask: ``prob > threshold`` for floats, ``value > 0`` for bool/integers."""
    image = np.asarray(prob_or_mask)
    if image.ndim != 2:
        raise UsageError(f"Expected a 2-D probability map or mask, got shape {image.shape}.")
    if image.dtype.kind == "f":
        return image > threshold
    return image > 0


def remove_small_regions(labels, min_area=MIN_AREA):
    """Set regions (of an integer label image) with fewer than ``min_area`` pixels to 0."""
    out = np.array(labels)  # a copy
    if min_area > 1 and out.max(initial=0) > 0:
        _drop_small(out, np.bincount(out.ravel()), min_area)
    return out


def _drop_small(labels, sizes, min_area):
    """Set the regions of ``labels`` (``sizes``: their pixel counts by id) with fewer
    than ``min_area`` pixels to 0, in place; return which ids were dropped."""
    small = sizes < min_area
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return small


def split_height(mask, ratio=SPLIT_RATIO):
    """The relative split height of a mask: ``ratio`` times its objects' median radius.

    The radius of an object is that of the disk of its area; objects are the connected
    regions of ``mask`` (touching spores count as one, which moves the median little
    while most spores stand alone). An empty mask gives 1 pixel.
    """
    regions, n = ndi.label(np.asarray(mask, bool))
    return split_height_for_areas(np.bincount(regions.ravel(), minlength=n + 1)[1:], ratio)


#: Background pixels kept around each region while it is split: the smoothing of its
#: distance map (:data:`SPLIT_SMOOTH`, truncated at 4 sigma) reaches 2 px beyond it.
_SPLIT_PAD = 3


def _split_regions(regions, count, h, min_area=1, open_top=False):
    """Split the regions of a label image in place into pieces labelled 1..N; return N.

    ``regions`` (int32) holds ``count`` connected regions, 4-connected as
    :func:`scipy.ndimage.label` makes them (0 = background). Each region is split on its
    own, in its bounding box padded with :data:`_SPLIT_PAD` background pixels (none
    beyond the image's edge), without the other regions. That gives what splitting the
    whole mask at once gives (the nearest background pixel of a region's pixel is always
    nearer than any pixel of another region, so its distance map is its own; the
    smoothing mixes in a neighbour only where two regions touch at a corner; the
    watershed never floods from one region into another), up to the order in which
    skimage's watershed settles pixels of equal height (tested: the same spores, over
    99.9 % of the pixels in the same one), and except that two regions touching only at
    a corner are never joined by one seed (which a whole-image split could do). But no
    whole-image distance map, smoothed copy, h-maximum transform or watershed is ever
    made, so the memory is that of the label image, and skimage's reconstruction and
    watershed sort only the pixels of each region instead of a field that is mostly
    background (a 1024² field of ~400 spores: 1.05 s whole, about 0.25 s region by
    region). Pieces smaller than ``min_area`` pixels become background. Spores are
    numbered region by region, in the order of each region's first pixel (row by row),
    and within a region in that order of their seeds. ``open_top``: the first row is
    not the image's edge (a strip of a larger image, :func:`label_strips`), so regions
    there get background above them too.
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    pad, eight, total = _SPLIT_PAD, np.ones((3, 3)), 0
    for index, box in enumerate(ndi.find_objects(regions, max_label=count), start=1):
        if box is None:
            continue
        crop = regions[box]
        here = crop == index
        # background around it, except beyond the image's edge: there, as in a
        # distance map of the whole image, a cut spore is taken to go on
        widths = [(pad if s.start > 0 or (axis == 0 and open_top) else 0,
                   pad if s.stop < size else 0)
                  for axis, (s, size) in enumerate(zip(box, regions.shape))]
        inside = np.pad(here, widths)
        unpad = tuple(slice(a, a + s.stop - s.start) for (a, _), s in zip(widths, box))
        distance = ndi.distance_transform_edt(inside)
        smooth = ndi.gaussian_filter(distance, SPLIT_SMOOTH) if SPLIT_SMOOTH else distance
        # The h-maximum transform: lowering every dome by h and rebuilding it under the
        # distance map flattens the top of each dome into one plateau, saddles less than
        # h deep included. Each plateau (8-connected) is one seed. (skimage's h_maxima
        # would keep two summits of one dome as separate pixels.)
        marker = np.maximum(smooth - h, 0.0)
        n = 0
        # The h-maximum transform has no more maxima than the distance map itself, so
        # a region whose smoothed distance has one maximum (most spores lie alone) is
        # one spore without it (skimage's reconstruction sorts every pixel it is given).
        if marker.any() and ndi.label(local_maxima(smooth, connectivity=2) & inside,
                                      structure=eight)[1] > 1:
            domes = reconstruction(marker, smooth, method="dilation")
            seeds, n = ndi.label(local_maxima(domes, connectivity=2) & (domes > 0) & inside,
                                 structure=eight)
        if n > 1:
            pieces = watershed(-distance, seeds, mask=inside)[unpad]
        else:  # one seed, or none (too thin for an h-maximum): the region is one spore
            pieces, n = here.astype(np.int32), 1
        if min_area > 1:
            small = np.bincount(pieces.ravel(), minlength=n + 1) < min_area
            small[0] = False
            if small.any():
                keep = np.cumsum(~small) - 1  # piece -> its number among those kept
                keep[small] = 0
                pieces, n = keep[pieces].astype(np.int32), int(np.count_nonzero(~small[1:]))
        # negative while the loop runs, so that no new id is taken for a later region
        crop[here] = -(pieces[here] + total) * (pieces[here] > 0)
        total += n
    np.negative(regions, out=regions)
    return total


def _regions(mask, min_area):
    """4-connected regions of ``mask`` of at least ``min_area`` pixels (int32, in
    place of the others 0), their number before dropping, and the areas kept."""
    regions, count = ndi.label(mask)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    small = _drop_small(regions, sizes, min_area)
    return regions, count, sizes[1:][~small[1:]]


def split_touching(mask, h=SPLIT_H):
    """Instance labels of a binary mask, touching spores separated by a watershed.

    Each 4-connected region of the mask is split on its own, in its bounding box padded
    with a few background pixels: the memory beyond the label image and the time follow
    the regions, not the image (the same spores as a split of the whole mask at once;
    two regions that touch only at a corner stay two spores).

    Parameters
    ----------
    mask : array_like of bool
        Foreground mask.
    h : float or None
        Minimum height of a distance maximum to seed a spore (see module notes);
        None: :func:`split_height` of the mask.

    Returns
    -------
    numpy.ndarray of int32
        0 = background, 1..N = spores (every foreground pixel gets a label).
    """
    regions, count, areas = _regions(np.asarray(mask, bool), 1)
    if h is None:
        h = split_height_for_areas(areas)
    _split_regions(regions, count, h)
    return regions


def resolve_min_area(min_area):
    """``min_area``, or :data:`MIN_AREA` for None (the labelling's own smallest object,
    which a run saved before it chose its own carries).

    >>> resolve_min_area(None), resolve_min_area(40)
    (16, 40)
    """
    return MIN_AREA if min_area is None else min_area


def min_area_for_areas(areas, fraction=MIN_AREA_FRACTION):
    """The smallest object for objects of these areas (pixels): ``fraction`` of their
    median, rounded down, and at least :data:`MIN_AREA` (``MIN_AREA`` without objects).

    >>> min_area_for_areas([166, 170]), min_area_for_areas([511]), min_area_for_areas([])
    (16, 51, 16)
    """
    if len(areas) == 0:
        return MIN_AREA
    return max(MIN_AREA, int(fraction * float(np.median(areas))))


def split_height_for_areas(areas, ratio=SPLIT_RATIO):
    """:func:`split_height` from the areas of the regions (pixels), e.g. those counted
    strip by strip (:func:`label_strips` with ``split=False``)."""
    if len(areas) == 0:
        return 1.0
    return float(ratio * np.sqrt(np.median(areas) / np.pi))


def label_spores(prob_or_mask, threshold=0.5, min_area=MIN_AREA, split=True, h=SPLIT_H,
                 fill_holes=True):
    """Instance labels of the spores in a probability map or binary mask.

    Parameters
    ----------
    prob_or_mask : array_like
        ``(height, width)`` probabilities (float) or binary mask (bool/integer).
    threshold : float
        Probability above which a pixel is spore (floats only).
    min_area : int or None
        Regions (and split pieces) smaller than this many pixels are dropped (None:
        :data:`MIN_AREA`).
    split : bool
        Separate touching spores (distance transform + h-maxima + watershed).
    h : float or None
        Splitting sensitivity in pixels, see :data:`SPLIT_H` (None: relative to the
        objects' size, :func:`split_height`).
    fill_holes : bool
        Fill enclosed background before splitting.

    Returns
    -------
    numpy.ndarray of int32
        0 = background, spores labelled 1..N consecutively, region by region in the
        order of each region's first pixel (row by row). The whole-image arrays are the
        mask and the label image (5 bytes per pixel beside the input, about 13 at the
        peak of hole filling and labelling): every region is split on its own (see
        :func:`split_touching`).
    """
    min_area = resolve_min_area(min_area)
    mask = to_mask(prob_or_mask, threshold)
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    regions, count, areas = _regions(mask, min_area)
    del mask
    if split:
        _split_regions(regions, count, split_height_for_areas(areas) if h is None else h, min_area)
        return regions
    return _consecutive(regions, count)[0]


def _consecutive(regions, count):
    """The regions left in a label image of ``count`` ids renumbered 1..N; and N."""
    ids = np.zeros(count + 1, np.int32)
    kept = np.flatnonzero(np.bincount(regions.ravel(), minlength=count + 1)[1:]) + 1
    ids[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return ids[regions], int(kept.size)


@dataclass
class StripLabels:
    """One step of :func:`label_strips`.

    Attributes
    ----------
    top : int
        Image row of the first row of ``finished``.
    finished : numpy.ndarray of int32
        Rows ``top ..`` of the image holding the spores finished in this step (ids
        ``first_id`` and up, consecutive), 0 elsewhere: each whole, so they can be
        measured, traced and reported from it.
    first_id : int
        The id of the first spore finished here (ids go on across steps).
    done_top : int
        Image row of the first row of ``done``.
    done : numpy.ndarray of int32
        Final label rows ``done_top ..`` (every spore in them finished, in this step or
        earlier); together the steps' ``done`` rows are the label image, top to bottom.
    """

    top: int
    finished: np.ndarray
    first_id: int
    done_top: int
    done: np.ndarray


def _fill_strip_holes(mask, done, outside, at_top, last):
    """:func:`scipy.ndimage.binary_fill_holes` for a strip of rows of a larger mask.

    Background reaching the image's edge is never a hole; here that is background
    touching the left or right edge, the top edge (first strip) or the bottom edge
    (last strip), or holding a pixel known to reach it from earlier strips
    (``outside``). Spores already finished (``done``) enclose holes like the rest of
    the foreground. Background touching the strip's bottom edge that reaches no edge
    yet is undecided: a later strip says whether it is a hole.

    Returns
    -------
    (mask with the holes filled, background known to reach the edge, undecided
    background)
    """
    background, n = ndi.label(~(mask | done))
    reach = np.zeros(n + 1, bool)
    for edge in (background[:, 0], background[:, -1], background[outside],
                 *((background[0],) if at_top else ()), *((background[-1],) if last else ())):
        reach[edge] = True
    reach[0] = False
    undecided = np.zeros(n + 1, bool)
    if not last:
        undecided[background[-1]] = True
        undecided &= ~reach
        undecided[0] = False
    holes = ~(reach | undecided)
    holes[0] = False
    return mask | holes[background], reach[background], undecided[background]


def label_strips(strips, height, threshold=0.5, min_area=MIN_AREA, split=True, h=None,
                 fill_holes=True):
    """:func:`label_spores` of an image given one strip of rows at a time.

    What a huge probability map is counted with, in memory bounded by the strips
    (and the tallest region) rather than the image: a region is labelled, split and
    handed out as soon as no later row can touch it, and the rows above the first
    region still open are final. Each region gets what :func:`label_spores` gives it
    (the same pieces: every region is split on its own, its bounding box padded with
    background except at the image's edges); the ids are numbered in the order the
    regions are finished, so they can differ from :func:`label_spores`' numbering.
    Holes are filled as :func:`scipy.ndimage.binary_fill_holes` fills them in the whole
    mask: a background pocket that reaches the strip's lower edge waits, with the
    regions around it, until a later strip shows whether it is closed.

    Parameters
    ----------
    strips : iterable of (int, array_like)
        ``(top, rows)``: probabilities or masks of image rows ``top ..``, in order and
        without gaps (as :func:`unet.predict.predict_strips` yields them).
    height : int
        The image's height (the last strip ends there).
    threshold, min_area, fill_holes
        As for :func:`label_spores`.
    split : bool
        Separate touching spores; without it each region is one spore.
    h : float
        Split height in pixels (the relative default of :func:`label_spores` needs
        every region first: count without splitting, then pass
        :func:`split_height_for_areas` of their areas).

    Yields
    ------
    StripLabels
    """
    if split and h is None:
        raise UsageError("label_strips needs a split height `h` in pixels.")
    carry_mask = carry_labels = carry_outside = None
    top, next_id, expected = 0, 1, 0
    for start, rows in strips:
        mask = to_mask(rows, threshold)
        if start != expected:
            raise UsageError(f"label_strips: a strip starts at row {start}, expected {expected}.")
        expected = start + len(mask)
        last = expected >= height
        labels = np.zeros((len(mask) + (0 if carry_mask is None else len(carry_mask)),
                           mask.shape[1]), np.int32)
        outside = np.zeros(labels.shape, bool)
        if carry_mask is not None:
            mask = np.concatenate([carry_mask, mask])
            labels[: len(carry_labels)] = carry_labels
            outside[: len(carry_outside)] = carry_outside
        undecided = None
        if fill_holes:
            mask, outside, undecided = _fill_strip_holes(mask, labels > 0, outside,
                                                        top == 0, last)
        regions, count = ndi.label(mask)
        sizes = np.bincount(regions.ravel(), minlength=count + 1)
        still_open = np.zeros(count + 1, bool)
        if not last:
            still_open[regions[-1]] = True
            if undecided is not None and undecided.any():
                # a background pocket that may turn out to be a hole: the regions
                # around it may yet be joined by filling it
                still_open[regions[ndi.binary_dilation(undecided)]] = True
            still_open[0] = False
        finished_ids = regions.copy()
        finished_ids[still_open[regions]] = 0
        _drop_small(finished_ids, sizes, min_area)
        if split:
            n = _split_regions(finished_ids, count, h, min_area, open_top=top > 0)
        else:
            finished_ids, n = _consecutive(finished_ids, count)
        np.add(finished_ids, np.int32(next_id - 1), out=finished_ids, where=finished_ids > 0)
        labels += finished_ids
        mask &= still_open[regions]  # what is left: the regions still open
        del regions
        pending = mask if undecided is None else mask | undecided
        open_rows = np.flatnonzero(pending.any(axis=1))
        keep_from = int(open_rows[0]) if open_rows.size else len(mask)
        yield StripLabels(top, finished_ids, next_id, top, labels[:keep_from])
        next_id += n
        carry_mask, carry_labels = mask[keep_from:], labels[keep_from:]
        carry_outside = outside[keep_from:]
        top += keep_from
        if last:
            return


def measure_spores(labels, intensity_image=None):
    """One row per spore: size, position and shape.

    Parameters
    ----------
    labels : array_like of int
        Instance labels (0 = background).
    intensity_image : array_like, optional
        The image, ``(height, width)`` or ``(height, width, channels)``; the mean
        intensity is taken over the spore's pixels and over channels. Without it
        ``mean_intensity`` is NaN.

    Returns
    -------
    dict of numpy.ndarray
        Columns :data:`SPORE_COLUMNS`: ``id`` (label), ``area_px``, ``centroid_y``
        and ``centroid_x`` (row, column), ``equivalent_diameter`` (of the disk with
        the same area), ``major_axis`` / ``minor_axis`` (lengths of the ellipse with
        the same second moments), ``eccentricity`` (0 = circle), ``orientation``
        (radians between the row axis and the major axis, in [-pi/2, pi/2]),
        ``solidity`` (area / convex area) and ``mean_intensity``. Lengths in pixels.
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise UsageError(
            f"labels must be a 2-D integer label image, got shape {labels.shape} and dtype "
            f"{labels.dtype}; make one with label_spores."
        )
    intensity = None
    if intensity_image is not None:
        # no float64 copy of a whole image: one channel is used as it is (regionprops
        # takes the mean of integers in float64), several are averaged in float32
        intensity = np.asarray(intensity_image)
        if intensity.dtype.kind not in "iuf":
            intensity = intensity.astype(np.float32)
        if intensity.ndim == 3:
            intensity = (intensity[..., 0] if intensity.shape[2] == 1
                         else intensity.mean(axis=2, dtype=np.float32))
        if intensity.shape != labels.shape:
            raise UsageError(
                f"The intensity image has shape {intensity.shape[:2]} but the labels "
                f"{labels.shape}; pass the image the labels were made from."
            )
    props = ["label", "area", "centroid", "equivalent_diameter_area", "axis_major_length",
             "axis_minor_length", "eccentricity", "orientation", "solidity"]
    if intensity is not None:
        props.append("intensity_mean")
    raw = regionprops_table(labels.astype(np.int32, copy=False), intensity, properties=props)
    table = {
        "id": raw["label"].astype(np.int64),
        "area_px": raw["area"].astype(np.int64),
        "centroid_y": raw["centroid-0"],
        "centroid_x": raw["centroid-1"],
        "equivalent_diameter": raw["equivalent_diameter_area"],
        "major_axis": raw["axis_major_length"],
        "minor_axis": raw["axis_minor_length"],
        "eccentricity": raw["eccentricity"],
        "orientation": raw["orientation"],
        "solidity": raw["solidity"],
        "mean_intensity": np.asarray(raw.get("intensity_mean", np.full(len(raw["label"]), np.nan)),
                                     np.float64),
    }
    return {k: np.asarray(v) for k, v in table.items()}


@dataclass
class SporeCount:
    """Result of :func:`count_spores`."""

    count: int
    labels: np.ndarray
    table: dict


def count_spores(prob_or_mask, threshold=0.5, intensity_image=None, min_area=MIN_AREA,
                 split=True, h=SPLIT_H, fill_holes=True):
    """Count and measure spores: :func:`label_spores` then :func:`measure_spores`.

    Returns
    -------
    SporeCount
        ``count`` (int), ``labels`` (int32 image) and ``table`` (dict of columns).
    """
    labels = label_spores(prob_or_mask, threshold, min_area, split, h, fill_holes)
    table = measure_spores(labels, intensity_image)
    return SporeCount(count=len(table["id"]), labels=labels, table=table)


def count_errors(true_counts, pred_counts):
    """Compare predicted object counts with the truth, image by image.

    Parameters
    ----------
    true_counts, pred_counts : sequence of int
        One number per image, in the same order.

    Returns
    -------
    dict
        ``images``, ``true_total``, ``pred_total``; ``mae`` (mean absolute
        error, objects per image); ``bias`` (mean of predicted - true: negative means
        undercounting); ``mean_relative_error`` (mean over images of
        :func:`relative_count_error`); ``total_relative_error``
        (|sum pred - sum true| / max(sum true, 1)); and the per-image arrays
        ``abs_error`` and ``rel_error``.
    """
    rel_error = relative_count_error(true_counts, pred_counts)
    true = np.asarray(true_counts, dtype=np.float64).ravel()
    pred = np.asarray(pred_counts, dtype=np.float64).ravel()
    total_true, total_pred = true.sum(), pred.sum()
    return {
        "images": int(true.size),
        "true_total": int(total_true),
        "pred_total": int(total_pred),
        "mae": float(np.abs(pred - true).mean()),
        "bias": float((pred - true).mean()),
        "mean_relative_error": float(rel_error.mean()),
        "total_relative_error": float(relative_count_error([total_true], [total_pred])[0]),
        "abs_error": np.abs(pred - true),
        "rel_error": rel_error,
    }


def touching_pairs(labels):
    """Pairs of labelled objects that touch (share an edge, 4-connectivity).

    Parameters
    ----------
    labels : array_like of int
        Instance labels (0 = background).

    Returns
    -------
    numpy.ndarray of int
        ``(n, 2)`` rows ``(a, b)`` with ``a < b``, sorted, each pair once.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UsageError(f"labels must be a 2-D label image, got shape {labels.shape}.")
    pairs = []
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])], 1))
    pairs = np.concatenate(pairs).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def object_scores_from_counts(tp, fp, fn):
    """Object precision, recall and F1 from matched-object counts, pooled or not.

    Pool the ``tp``, ``fp`` and ``fn`` of :func:`match_spores` or
    :func:`object_scores` over images first, then divide (as ``evaluate`` does). The
    empty rule is :mod:`unet.metrics`' for pixels: where a denominator is 0 the score is
    1 if there is neither a true nor a predicted object, else 0.

    Parameters
    ----------
    tp, fp, fn : int
        Matched objects, predicted objects that match nothing, true objects that nothing
        matches.

    Returns
    -------
    dict
        ``{"precision", "recall", "f1"}`` as floats.
    """
    if min(tp, fp, fn) < 0:
        raise UsageError(f"Counts must be non-negative, got tp={tp}, fp={fp}, fn={fn}.")
    tp, fp, fn = (float(v) for v in (tp, fp, fn))
    empty = float(tp + fp + fn == 0)
    return {"precision": tp / (tp + fp) if tp + fp else empty,
            "recall": tp / (tp + fn) if tp + fn else empty,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else empty}


def match_spores(true_labels, pred_labels, min_iou=0.5):
    """Match predicted spores to true ones by overlap: a detection score, not a count.

    A predicted spore matches a true one when their intersection over union is above
    ``min_iou``. For ``min_iou >= 0.5`` a spore can overlap at most one other that
    much, so the matching is unique without any assignment step. Counts can agree
    while the spores do not (one missed, one invented); matching tells them apart.

    Parameters
    ----------
    true_labels, pred_labels : array_like of int
        Instance label images of the same shape (0 = background).
    min_iou : float
        Least intersection over union of a match, in [0.5, 1).

    Returns
    -------
    dict
        ``tp`` (matched pairs), ``fp`` (unmatched predictions), ``fn`` (unmatched
        true spores), ``precision``, ``recall``, ``f1`` and ``mean_iou`` (over the
        matches; NaN without any); ``missed`` and ``invented``: the labels (as given)
        of the unmatched true and predicted spores, to look at the errors. Empty
        truth and prediction score 1.
    """
    o = _checked_overlaps(true_labels, pred_labels, min_iou)
    n_true, n_pred, pair_t, pair_p, iou = o.n_true, o.n_pred, o.pair_true, o.pair_pred, o.iou
    true_ids, pred_ids = o.true_ids, o.pred_ids
    matched = iou > min_iou
    tp = int(matched.sum())
    fp, fn = n_pred - tp, n_true - tp
    missed = np.setdiff1d(np.arange(1, n_true + 1), pair_t[matched])
    invented = np.setdiff1d(np.arange(1, n_pred + 1), pair_p[matched])
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        **object_scores_from_counts(tp, fp, fn),
        "mean_iou": float(iou[matched].mean()) if tp else float("nan"),
        "missed": np.asarray(true_ids[missed]),
        "invented": np.asarray(pred_ids[invented]),
    }


class Overlaps(NamedTuple):
    """What :func:`_overlaps` returns (see there)."""

    n_true: int
    n_pred: int
    pair_true: np.ndarray
    pair_pred: np.ndarray
    iou: np.ndarray
    inter: np.ndarray
    area_true: np.ndarray
    area_pred: np.ndarray
    true_ids: np.ndarray
    pred_ids: np.ndarray


def _checked_overlaps(true_labels, pred_labels, min_iou):
    """:func:`_overlaps` of two label images of one 2-D shape, ``min_iou`` in [0.5, 1)."""
    true_labels, pred_labels = np.asarray(true_labels), np.asarray(pred_labels)
    if true_labels.shape != pred_labels.shape or true_labels.ndim != 2:
        raise UsageError(
            f"Need two 2-D label images of the same shape, got {true_labels.shape} and "
            f"{pred_labels.shape}."
        )
    if not 0.5 <= min_iou < 1:
        raise UsageError(f"min_iou must be in [0.5, 1) for a unique matching, got {min_iou}.")
    return _overlaps(true_labels, pred_labels)


def _overlaps(true_labels, pred_labels):
    """The overlapping (true, predicted) object pairs of two label images and their IoU.

    Only pairs that share pixels are listed, so the cost grows with the pixels, not with
    the product of the object counts.

    Returns
    -------
    Overlaps
        ``n_true``, ``n_pred``: object counts; ``pair_true``, ``pair_pred``: the pairs as
        1-based consecutive indices; ``iou`` and ``inter`` (shared pixels) of each pair;
        ``area_true``, ``area_pred``: the areas by index (index 0: the background);
        ``true_ids``, ``pred_ids``: the original labels of the consecutive indices
        (``true_ids[k]`` is the label of index ``k``).
    """
    from skimage.segmentation import relabel_sequential

    t, _, true_ids = relabel_sequential(np.asarray(true_labels).astype(np.int64))
    p, _, pred_ids = relabel_sequential(np.asarray(pred_labels).astype(np.int64))
    n_true, n_pred = int(t.max(initial=0)), int(p.max(initial=0))
    both = (t > 0) & (p > 0)
    codes, inter = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
    pair_t, pair_p = codes // (n_pred + 1), codes % (n_pred + 1)
    area_t = np.bincount(t.ravel(), minlength=n_true + 1).astype(np.float64)
    area_p = np.bincount(p.ravel(), minlength=n_pred + 1).astype(np.float64)
    iou = inter / (area_t[pair_t] + area_p[pair_p] - inter)
    return Overlaps(n_true, n_pred, pair_t, pair_p, iou, inter.astype(np.float64), area_t,
                    area_p, np.asarray(true_ids), np.asarray(pred_ids))


#: IoU thresholds of the mean average precision (2018 Data Science Bowl): 0.5, 0.55, ..., 0.95.
AP_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))


def object_scores(true_labels, pred_labels, thresholds=AP_THRESHOLDS, errors=False):
    """Matched objects of one image at several IoU thresholds (all >= 0.5).

    A predicted object matches a true one when their IoU is above the threshold (unique
    for thresholds >= 0.5). Pool ``tp``, ``fp`` and ``fn`` over images for precision,
    recall and F1 (:func:`object_scores_from_counts`); the average precision of the
    image at threshold ``t`` is ``tp / (tp + fp + fn)`` (1 when the image has neither
    true nor predicted objects), and its mean over the thresholds is the DSB2018 score
    (AP 0.5:0.95).

    Parameters
    ----------
    true_labels, pred_labels : array_like of int
        Instance label images of the same 2-D shape (0 = background).
    thresholds : sequence of float
        IoU thresholds, each in [0.5, 1).
    errors : bool
        Also return :func:`object_errors` at the lowest threshold, from the same
        overlaps (``evaluate`` wants both; computing the overlaps once saves a pass over
        the image).

    Returns
    -------
    dict
        ``thresholds``, and ``tp``, ``fp``, ``fn``, ``ap`` as arrays over them; with
        ``errors``, ``"errors"``: the dict of :func:`object_errors`.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or thresholds.min() < 0.5 or thresholds.max() >= 1:
        raise UsageError(f"IoU `thresholds` must lie in [0.5, 1), got {thresholds.tolist()}.")
    lowest = float(thresholds.min())  # the matching of F1 and of the errors
    o = _checked_overlaps(true_labels, pred_labels, lowest)
    n_true, n_pred, iou = o.n_true, o.n_pred, o.iou
    tp = (iou[None, :] > thresholds[:, None]).sum(axis=1)
    fp, fn = n_pred - tp, n_true - tp
    union = tp + fp + fn
    ap = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    result = {"thresholds": thresholds, "tp": tp, "fp": fp, "fn": fn, "ap": ap}
    if errors:
        result["errors"] = _errors(o, lowest)
    return result


#: Share of an object's area that decides each kind of error of :func:`object_errors`.
ERROR_SHARE = 0.5


def object_errors(true_labels, pred_labels, min_iou=0.5, ids=False):
    """What went wrong with the objects that did not match (IoU above ``min_iou``).

    Each unmatched true object gets one kind, tried in this order (a "share" is
    :data:`ERROR_SHARE`, half of an area):

    - **missed**: less than half of it lies in any predicted object;
    - **merged**: one predicted object covers half of it and half of another true
      object (touching objects counted as one: a lower split height would part them);
    - **split**: two or more predicted objects lie mostly (half of their area) inside
      it (a higher split height, or a larger smallest object, would join them);
    - **outline**: found, but outlined too differently to match.

    So ``missed + merged + split + outline`` is the number of unmatched true objects
    (``fn`` of :func:`match_spores`). Of the unmatched predicted objects, those lying
    less than half on any true object are **spurious** (debris, or objects the truth
    left out: a higher threshold or a larger smallest object drops them).

    Parameters
    ----------
    true_labels, pred_labels, min_iou
        As in :func:`match_spores`.
    ids : bool
        Also return the labels (as given) of the objects of each kind, to look at them.

    Returns
    -------
    dict
        ``true``, ``pred`` (object counts), ``matched``, and the counts ``missed``,
        ``merged``, ``split``, ``outline`` (unmatched true objects) and ``spurious``
        (unmatched predicted objects). With ``ids``: ``"ids"``, a dict of the same five
        kinds, each an array of labels (true labels; predicted ones for ``spurious``).
    """
    return _errors(_checked_overlaps(true_labels, pred_labels, min_iou), min_iou, ids)


def _errors(o, min_iou, ids=False):
    """:func:`object_errors` from the :class:`Overlaps` of the two label images."""
    t, p, inter = o.pair_true, o.pair_pred, o.inter
    matched = o.iou > min_iou
    unmatched_t = np.ones(o.n_true + 1, bool)
    unmatched_t[[0, *t[matched]]] = False
    unmatched_p = np.ones(o.n_pred + 1, bool)
    unmatched_p[[0, *p[matched]]] = False
    area_t, area_p = np.maximum(o.area_true, 1), np.maximum(o.area_pred, 1)
    # the share of each true object inside any prediction, of each prediction on any truth
    covered = np.bincount(t, weights=inter, minlength=o.n_true + 1) / area_t
    on_truth = np.bincount(p, weights=inter, minlength=o.n_pred + 1) / area_p
    halves_t = inter >= ERROR_SHARE * area_t[t]  # the prediction covers half of the truth
    merger = np.bincount(p[halves_t], minlength=o.n_pred + 1) >= 2
    in_merger = np.zeros(o.n_true + 1, bool)
    in_merger[t[halves_t & merger[p]]] = True
    pieces = np.bincount(t[inter >= ERROR_SHARE * area_p[p]], minlength=o.n_true + 1)
    missed = unmatched_t & (covered < ERROR_SHARE)
    merged = unmatched_t & ~missed & in_merger
    split = unmatched_t & ~missed & ~merged & (pieces >= 2)
    outline = unmatched_t & ~missed & ~merged & ~split
    spurious = unmatched_p & (on_truth < ERROR_SHARE)
    kinds = {"missed": missed, "merged": merged, "split": split, "outline": outline}
    result = {"true": o.n_true, "pred": o.n_pred, "matched": int(matched.sum()),
              **{kind: int(where.sum()) for kind, where in kinds.items()},
              "spurious": int(spurious.sum())}
    if ids:
        # index k of the boolean arrays is the consecutive index k, label *_ids[k]
        result["ids"] = {kind: o.true_ids[np.flatnonzero(where)]
                         for kind, where in kinds.items()}
        result["ids"]["spurious"] = o.pred_ids[np.flatnonzero(spurious)]
    return result
