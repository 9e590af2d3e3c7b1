"""What ``predict`` reports for one image, and the files that carry it.

No TensorFlow. From the instance labels and measurements of :mod:`unet.count`:

* :func:`report_spores` decides which spores are reported (spores touching the image
  edge left out with ``exclude_border``, else flagged; spores above ``max_area``
  dropped), numbers them 1..N and converts the measurements to the table's columns
  (:func:`spore_columns`): pixel columns end in ``_px``, physical ones in ``_um`` /
  ``_um2`` (when the pixel size is known), the orientation is in degrees.
* :func:`write_labels_tiff` (uint16, uint32 beyond 65535 spores; ids = the table's
  ``id``), :func:`write_probability_tiff` (float32) and :func:`write_rois` (ImageJ ROIs,
  one traced polygon per spore, named by id) write them; :func:`format_cell` writes
  numbers without losing precision.

The writers take array-likes (NumPy arrays or memory maps of any size): large or
memory-mapped arrays are converted and compressed one strip of rows at a time, so
writing holds one strip in memory besides the input. Every file goes to a temporary
name first and is renamed into place (:func:`unet.io.atomic_path`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .imagefile import NO_PIXEL_SIZE
from .io import atomic_path

#: Measurements of :func:`unet.count.measure_spores` that are lengths (pixels).
LENGTHS = ("equivalent_diameter", "major_axis", "minor_axis")
#: Arrays of more pixels than this (and memory maps) are written strip by strip.
_WHOLE_ARRAY_PIXELS = 1 << 26
_STRIP_BYTES = 1 << 20


# --------------------------------------------------------------------------------------
# Which spores are reported, and their table
# --------------------------------------------------------------------------------------
def spore_columns(physical=False):
    """Columns of ``spores.csv`` (after ``image``), with ``_um`` ones when ``physical``.

    ``id`` (as in the labels TIFF and the ROIs), ``area_px`` / ``area_um2``,
    ``equivalent_diameter``, ``major_axis`` and ``minor_axis`` (``_px`` / ``_um``),
    ``centroid_y`` and ``centroid_x`` (row and column, ``_px`` / ``_um``),
    ``eccentricity`` (0 = circle), ``orientation_deg`` (angle of the major axis from the
    image's x axis, counter-clockwise as displayed, in [0, 180): ImageJ's "Angle"),
    ``solidity`` (area / convex area), ``mean_intensity`` (in the image's own units, over
    the spore's pixels) and ``touches_border`` (1 when the spore touches the image edge,
    so it may be cut).
    """
    columns = ["id", "area_px"] + (["area_um2"] if physical else [])
    for name in (*LENGTHS, "centroid_y", "centroid_x"):
        columns += [f"{name}_px"] + ([f"{name}_um"] if physical else [])
    return columns + ["eccentricity", "orientation_deg", "solidity", "mean_intensity",
                      "touches_border"]


@dataclass
class Reported:
    """The spores reported for one image (see :func:`report_spores`).

    Attributes
    ----------
    count : int
        Spores reported (numbered 1..count).
    table : dict of numpy.ndarray
        The columns of :func:`spore_columns` (the ``_um`` ones only with a pixel size).
    lut : numpy.ndarray or None
        Old label -> reported id (0: not reported), or ``None`` when the labels are
        reported unchanged.
    touching_border : int
        Spores that touch the image edge (left out with ``exclude_border``, else
        flagged in ``touches_border``).
    too_large : int
        Spores left out for being larger than ``max_area``.
    pixel_size : unet.imagefile.PixelSize
    """

    count: int
    table: dict
    lut: np.ndarray | None
    touching_border: int
    too_large: int
    pixel_size: object = NO_PIXEL_SIZE

    def relabel(self, labels):
        """The reported label image (ids 1..count) of a block of the original labels."""
        labels = np.asarray(labels)
        return labels if self.lut is None else self.lut[labels]


def check_areas(min_area, max_area):
    """Refuse negative or inconsistent area limits (pixels); returns them as ints."""
    values = {}
    for name, value in (("min_area", min_area), ("max_area", max_area)):
        if value is None:
            values[name] = None
            continue
        if isinstance(value, bool) or not float(value).is_integer() or value < 0:
            raise UsageError(f"`{name}` must be a whole number of pixels >= 0, got {value!r}.")
        values[name] = int(value)
    lo, hi = values["min_area"], values["max_area"]
    if hi is not None and hi < 1:
        raise UsageError(f"`max_area` must be at least 1 pixel, got {hi}.")
    if lo is not None and hi is not None and hi < lo:
        raise UsageError(
            f"`max_area` ({hi} px) is smaller than `min_area` ({lo} px): no spore could be "
            "counted.")
    return lo, hi


def border_ids(labels):
    """Labels that touch the edge of a label image (reads only its four edges)."""
    h, w = labels.shape[:2]
    edges = [np.asarray(labels[0]), np.asarray(labels[h - 1]),
             np.asarray(labels[:, 0]), np.asarray(labels[:, w - 1])]
    ids = np.unique(np.concatenate([e.ravel() for e in edges]))
    return ids[ids > 0]


def report_spores(labels, table, pixel_size=NO_PIXEL_SIZE, exclude_border=False,
                  max_area=None, *, touching=None, first_id=1):
    """Decide which spores are reported, number them (1..N, or from ``first_id``) and
    build their table.

    Parameters
    ----------
    labels : array_like of int
        Instance labels (0 = background), e.g. ``SporeCount.labels``; read only at
        its edges here.
    table : dict
        The measurements of those labels (:func:`unet.count.measure_spores`).
    pixel_size : unet.imagefile.PixelSize
        Adds the ``_um`` / ``_um2`` columns when known.
    exclude_border : bool
        Leave out the spores that touch the image edge (else they are flagged).
    max_area : int, optional
        Leave out spores larger than this many pixels.
    touching : array_like of bool, optional
        Which spores of ``table`` touch the image's edge, when ``labels`` is not the
        whole label image (None: read from the edges of ``labels``).
    first_id : int
        The id of the first spore reported (the next ones follow): a block of spores
        of a larger image (``lut`` then maps to these ids).

    Returns
    -------
    Reported
    """
    ids = np.asarray(table["id"], dtype=np.int64)
    area = np.asarray(table["area_px"], dtype=np.int64)
    if touching is None:
        touching = np.isin(ids, border_ids(labels))
    touching = np.asarray(touching, bool)
    keep = np.ones(ids.shape, bool)
    large = area > max_area if max_area is not None else np.zeros(ids.shape, bool)
    keep &= ~large
    if exclude_border:
        keep &= ~touching
    new_ids = (np.cumsum(keep) + (int(first_id) - 1)) * keep
    lut = None
    if not (keep.all() and np.array_equal(ids, np.arange(first_id, first_id + len(ids)))):
        lut_dtype = np.uint16 if new_ids.max(initial=0) <= 65535 else np.uint32
        lut = np.zeros(int(ids.max(initial=0)) + 1, lut_dtype)
        lut[ids] = new_ids
    px = pixel_size.um
    out = {"id": np.arange(first_id, first_id + int(keep.sum()), dtype=np.int64),
           "area_px": area[keep]}
    if px is not None:
        out["area_um2"] = area[keep] * px * px
    for name in (*LENGTHS, "centroid_y", "centroid_x"):
        values = np.asarray(table[name], dtype=np.float64)[keep]
        out[f"{name}_px"] = values
        if px is not None:
            out[f"{name}_um"] = values * px
    out["eccentricity"] = np.asarray(table["eccentricity"], dtype=np.float64)[keep]
    # skimage: radians from the row axis; ImageJ: degrees from the x axis, counter-clockwise
    degrees = (np.degrees(np.asarray(table["orientation"], dtype=np.float64)[keep]) + 90.0)
    out["orientation_deg"] = np.where(degrees >= 180.0, degrees - 180.0, degrees)
    out["solidity"] = np.asarray(table["solidity"], dtype=np.float64)[keep]
    out["mean_intensity"] = np.asarray(table["mean_intensity"], dtype=np.float64)[keep]
    out["touches_border"] = touching[keep].astype(np.int64)
    return Reported(count=int(keep.sum()), table=out, lut=lut,
                    touching_border=int(touching.sum()), too_large=int(large.sum()),
                    pixel_size=pixel_size)


def format_cell(value):
    """A CSV cell that reads back to the same number: floats by ``repr`` (shortest
    exact form: 20643.5, not 2.064e+04), NaN as an empty cell."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def table_rows(image_name, reported, columns):
    """Rows ``[image_name, *cells]`` of a :class:`Reported` table for ``columns``."""
    table = reported.table
    cells = [[format_cell(v) for v in table[c]] if c in table else [""] * reported.count
             for c in columns]
    return [[image_name, *row] for row in zip(*cells)] if cells else []


# --------------------------------------------------------------------------------------
# TIFF writers
# --------------------------------------------------------------------------------------
def labels_dtype(count):
    """uint16 for up to 65535 spores, else uint32."""
    return np.dtype(np.uint16 if count <= 65535 else np.uint32)


def _write_tiff(path, array, dtype, convert, pixel_size):
    """One 2-D page, zlib-compressed; strip by strip for memory maps and huge arrays."""
    import tifffile

    shape = tuple(array.shape)
    if len(shape) != 2:
        raise UsageError(f"Expected a 2-D array to write as {path.name}, got shape {shape}.")
    dtype = np.dtype(dtype).newbyteorder("<")
    imagej = dtype.kind == "f" or dtype.itemsize <= 2  # ImageJ has no 32-bit integers
    kwargs = {"photometric": "minisblack", "compression": "zlib", "byteorder": "<"}
    px = pixel_size.um if pixel_size is not None else None
    if imagej:
        kwargs.update(imagej=True, metadata={"unit": "um"} if px else {})
        if px:
            kwargs["resolution"] = (1.0 / px, 1.0 / px)
    else:
        kwargs["metadata"] = None
        if px:  # pixels per centimetre
            kwargs.update(resolution=(1e4 / px, 1e4 / px), resolutionunit="CENTIMETER")
    whole = (isinstance(array, np.ndarray) and not isinstance(array, np.memmap)
             and array.size <= _WHOLE_ARRAY_PIXELS)
    with atomic_path(path) as tmp:
        if whole:
            tifffile.imwrite(tmp, np.ascontiguousarray(convert(array), dtype=dtype), **kwargs)
            return
        rows = max(1, min(shape[0], _STRIP_BYTES // max(1, shape[1] * dtype.itemsize)))

        def strips():
            for top in range(0, shape[0], rows):
                block = np.ascontiguousarray(convert(np.asarray(array[top:top + rows])),
                                             dtype=dtype)
                yield zlib.compress(block.tobytes(), 6)

        tifffile.imwrite(tmp, strips(), shape=shape, dtype=dtype, rowsperstrip=rows, **kwargs)


def write_labels_tiff(path, labels, reported=None, pixel_size=None):
    """Write instance labels as a TIFF that napari, Fiji/MorphoLibJ and tifffile read.

    Parameters
    ----------
    path : path
        ``NAME_labels.tif``.
    labels : array_like of int
        ``(H, W)`` labels (NumPy array or memory map).
    reported : Reported, optional
        Renumbers the labels to the reported ids (0 for spores not reported).
    pixel_size : unet.imagefile.PixelSize, optional
        Written as the resolution (ImageJ calibration in µm for uint16).

    Returns
    -------
    numpy.dtype
        uint16, or uint32 beyond 65535 spores (a plain TIFF: ImageJ has no 32-bit
        integer images; Fiji opens it through Bio-Formats).
    """
    from pathlib import Path

    if reported is not None:
        count, convert = reported.count, reported.relabel
    else:
        count, convert = int(np.max(labels, initial=0)), np.asarray
    dtype = labels_dtype(count)
    _write_tiff(Path(path), labels, dtype, convert, pixel_size)
    return dtype


def write_probability_tiff(path, probability, pixel_size=None):
    """Write a foreground probability map as a float32 TIFF (ImageJ-readable)."""
    from pathlib import Path

    _write_tiff(Path(path), probability, np.float32, np.asarray, pixel_size)


# --------------------------------------------------------------------------------------
# ImageJ ROIs
# --------------------------------------------------------------------------------------
# Moving along a pixel edge with the region on the right (rows grow downwards): the
# direction after each edge, and the right-turn preference at a corner two pieces
# share only diagonally (so a 4-connected region is traced by itself).
_RIGHT_TURN = {(0, 1): (1, 0), (1, 0): (0, -1), (0, -1): (-1, 0), (-1, 0): (0, 1)}


def trace_outline(mask):
    """The outer boundary of a 4-connected region along pixel edges (corner coordinates).

    Parameters
    ----------
    mask : array_like of bool
        ``(h, w)``; its largest outline is returned when it holds several pieces.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` int ``(x, y)`` vertices of the polygon through the pixel corners
        around the region (clockwise as displayed), without collinear points; its
        shoelace area is the region's pixel count (for a region without holes).
    """
    mask = np.pad(np.asarray(mask, bool), 1)
    inside = mask[1:-1, 1:-1]
    r, c = np.nonzero(inside)
    if not len(r):
        return np.zeros((0, 2), np.int64)
    m = mask
    R, C = r + 1, c + 1  # positions in the padded mask
    edges = {}
    # (start corner) -> list of directions, corners in unpadded (row, col)
    for keep, (dr0, dc0), step in (
        (~m[R - 1, C], (0, 0), (0, 1)),   # top edge, moving right
        (~m[R, C + 1], (0, 1), (1, 0)),   # right edge, moving down
        (~m[R + 1, C], (1, 1), (0, -1)),  # bottom edge, moving left
        (~m[R, C - 1], (1, 0), (-1, 0)),  # left edge, moving up
    ):
        for y, x in zip(r[keep] + dr0, c[keep] + dc0):
            edges.setdefault((int(y), int(x)), []).append(step)
    loops = []
    while edges:
        start = min(edges)  # the top-left corner: on an outer boundary
        corner, direction = start, None
        points = []
        while True:
            options = edges.get(corner)
            if not options:
                break
            if len(options) == 1 or direction is None:
                step = options[0]
            else:
                right = _RIGHT_TURN[direction]
                step = right if right in options else options[0]
            options.remove(step)
            if not options:
                del edges[corner]
            if step != direction:
                points.append(corner)
            direction = step
            corner = (corner[0] + step[0], corner[1] + step[1])
        loops.append(np.array([(x, y) for y, x in points], np.int64))
    return max(loops, key=lambda p: abs(polygon_area(p)))


def polygon_area(points):
    """Shoelace area of a closed polygon ``(n, 2)``."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def write_rois(path, labels, reported=None):
    """Write one ImageJ ROI per spore into a zip that Fiji's ROI Manager opens.

    Each ROI is the spore's outline traced along pixel edges (as Fiji's wand traces
    it, so its area is the spore's ``area_px``), named by the spore's id zero-padded
    to at least 4 digits (the ROI Manager sorts names as text).

    Parameters
    ----------
    path : path
        ``NAME_rois.zip``.
    labels : array_like of int
        ``(H, W)`` instance labels (NumPy array or memory map).
    reported : Reported, optional
        Only the reported spores, under their reported ids.

    Returns
    -------
    int
        The number of ROIs written.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    slices = ndi.find_objects(labels)
    count = reported.count if reported is not None else len(slices)

    def outlines():
        for old, where in enumerate(slices, start=1):
            if where is None:
                continue
            new = old if reported is None or reported.lut is None else int(reported.lut[old])
            if new:
                yield new, spore_outline(labels[where] == old, where)

    found = sorted(outlines(), key=lambda item: item[0])
    return write_outline_rois(path, found, count)


def spore_outline(mask, where):
    """The traced outline (:func:`trace_outline`) of a spore's ``mask``, cut from a label
    image at ``where`` (its slices), in the label image's ``(x, y)`` pixel corners."""
    points = trace_outline(np.asarray(mask))
    return (points + np.array([where[1].start, where[0].start])).astype(np.int32)


def write_outline_rois(path, outlines, count):
    """Write ``(id, outline)`` pairs (in id order) as the ROIs of :func:`write_rois`.

    ``outlines`` may be any iterable (each ROI is made as it is written); ``count`` is
    the number of spores of the image, which sets the names' width. Returns the number
    of ROIs written.
    """
    from pathlib import Path

    import roifile

    width = max(4, len(str(count)))
    written = 0

    def rois():
        nonlocal written
        for number, points in outlines:
            roi = roifile.ImagejRoi.frompoints(points, name=f"{number:0{width}d}")
            roi.roitype = roifile.ROI_TYPE.TRACED
            written += 1
            yield roi

    with atomic_path(Path(path)) as tmp:
        import zipfile

        zipfile.ZipFile(tmp, "w").close()  # an empty zip says "no spores"
        roifile.roiwrite(tmp, rois(), mode="a")
    return written
