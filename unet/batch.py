"""Files in, files out: what ``python -m unet predict`` runs over a list of images.

Each image is read (:func:`unet.imagefile.read_image_channels`: the chosen channels,
never an unmarked channel taken for alpha), prepared as in training
(:class:`unet.image.PreparedImage`: :func:`unet.image.prepare_image`'s values, tile by
tile), predicted at its own size by overlap-tiles
(:func:`unet.predict.predict_tiled`, no resizing), thresholded, split into spores and
measured (:mod:`unet.count`); :mod:`unet.outputs` decides which spores are reported
and writes them. Every input is checked before anything is written, and every output
is written to a temporary name and renamed into place (:func:`unet.io.atomic_path`).

For a folder of many images the work overlaps: one thread reads and prepares the next
image while the model predicts the current one, and a small pool counts, measures and
writes the images already predicted. Both are bounded (one image read ahead, at most
``workers`` + 1 images waiting to be written), so memory stays that of a few images.
The model itself runs in the calling thread only.

Memory: up to :data:`STRIP_PIXELS` (2 megapixels) an image is held whole while it is counted:
the image, its probability map, the mask and label images and the overlay, about 30
bytes per pixel of an 8-bit RGB image beyond the model. A larger image goes strip by
strip (:func:`_predict_in_strips`): it is read from its file a block at a time when it is
a TIFF (:class:`unet.io.TiffRows`; PNG and JPEG are decoded whole), predicted one row of
tiles at a time (:func:`unet.predict.predict_strips`), its mask kept as bits,
labelled strip by strip (:func:`unet.count.label_strips`: the same spores), and every
output written a strip at a time (:class:`unet.io.PngRows`, label rows in a scratch
file until the TIFF's type is known). Then memory follows the tiles and the image's
width, not its area. Before anything is read or written, each image's need is
estimated from its header (:func:`predict_memory`) and an image that would not fit in
the memory available now is refused with one line saying how much it would need. An
image too large to share memory with the next ones, and every image that goes strip by
strip, is read, predicted and written on its own, without the overlap.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from scipy import ndimage as ndi

from .count import (
    label_spores,
    label_strips,
    measure_spores,
    resolve_min_area,
    split_height_for_areas,
)
from .errors import UsageError
from .image import PreparedImage, image_extremes, percentile_sample, to_channels
from .imagefile import (check_channels, check_image_channels, check_pixel_size, pixel_size_for,
                        read_image_channels)
from .io import (IMAGE_EXTENSIONS, PngRows, RawRows, TiffRows, atomic_path,
                 available_memory, check_finite, check_memory, collect_images, folder_lock,
                 image_header, list_images, remove_temporaries, save_png, scratch_path,
                 write_csv)
from .model import FROM_MODEL, model_geometry, prediction_settings
from .outputs import (Reported, check_areas, report_spores, spore_columns, spore_outline,
                      table_rows, write_labels_tiff, write_outline_rois, write_probability_tiff,
                      write_rois)
from .predict import plan_tiles, predict_strips, predict_tiled
from .render import display_range, id_overlay

#: Files written per image: ``NAME_<kind>.<ext>``.
IMAGE_OUTPUTS = {"mask": ".png", "overlay": ".png", "labels": ".tif", "rois": ".zip"}
#: Columns of ``summary.csv``.
SUMMARY_COLUMNS = ("image", "count", "touching_border", "above_max_area", "pixel_size_um",
                   "pixel_size_source")


#: Bytes per image pixel that ``predict`` holds at its peak beyond the decoded image,
#: and the bytes it needs whatever the size (a batch of the largest tiles through the
#: model, buffers). Measured with the shipped spore model (3 channels, default tiles,
#: batch size 2) on 2048² to 12000² 8-bit RGB images by ``benchmarks/memory.py
#: --predict-sizes`` (table in ``benchmarks/README.md``): the peak RSS grew by 22-31
#: bytes per pixel (the image's 3 included) between sizes; 27 + the image's bytes per
#: pixel and 1000 MB, added to the RSS with the model loaded, over-estimated the
#: measured peaks by 7-24 % (2048²: 1753 MB for 1637, 12000²: 6231 MB for 5029). What is
#: left per pixel is the image, the probability map, the mask and label images of the
#: counting (which splits each region on its own, :func:`unet.count.label_spores`) and
#: the overlay; the model reads the image tile by tile, normalised as it reads
#: (:class:`unet.image.PreparedImage`). (Before both, 70 bytes per pixel: whole-image
#: distance maps and watershed.)
PREDICT_BYTES_PER_PIXEL = 27
PREDICT_FIXED_BYTES = 1000 << 20


#: Images of more pixels than this (2 megapixels: larger than about 1448²) are predicted,
#: counted and written strip by strip (:func:`_predict_in_strips`): no whole-image array
#: but a 1-bit mask, so memory follows the tiles and the image's width, not its area.
#: Measured with the shipped model on mosaic RGB TIFFs (``benchmarks/memory.py``), that
#: path was also the faster one from 2048² up (2048²: 4.5 s instead of 5.0, peak RSS
#: 1.18 GB instead of 1.72; 4096²: 16.3 s instead of 18.0, 1.25 GB instead of 2.07).
#: Smaller images (a dish field) are held whole, and a folder of them overlaps reading,
#: predicting and writing.
STRIP_PIXELS = 1 << 21
#: What the strip-by-strip path holds beyond the loaded model whatever the size (the
#: model's activations for one of the largest tiles, buffers), and per image column
#: (strips of rows being predicted, labelled and drawn) in bytes per pixel of
#: ``2 * _STRIP_ROWS`` rows. Measured peaks beyond the model: 8192² 895 MB, 12000² 922 MB,
#: 20000² 1173 MB; the estimate (with the 1-bit mask) is 12-19 % above them.
STRIP_FIXED_BYTES = 800 << 20
STRIP_BYTES_PER_PIXEL = 24
_STRIP_ROWS = 512  # rows labelled, or drawn in the overlay, at a time


def predict_memory(header, lazy=False):
    """Bytes ``predict`` needs for one image beyond the loaded model (an estimate).

    Parameters
    ----------
    header : path or ((int, int), int, int)
        An image file, or its :func:`unet.io.image_header`.

    lazy : bool
        The image is read from its file block by block (:class:`unet.io.TiffRows`),
        not decoded whole.

    Returns
    -------
    int
        :data:`PREDICT_FIXED_BYTES` + pixels x (:data:`PREDICT_BYTES_PER_PIXEL` + the
        decoded image's bytes per pixel). Images of more than :data:`STRIP_PIXELS`
        go strip by strip: :data:`STRIP_FIXED_BYTES` + the 1-bit mask + strips of
        ``width`` x 2 x :data:`_STRIP_ROWS` pixels at :data:`STRIP_BYTES_PER_PIXEL`
        (+ the decoded image unless ``lazy``). For the default tiles and batch size;
        larger tiles or batches need more.
    """
    if not isinstance(header, tuple):
        header = image_header(header)
    (height, width), samples, nbytes = header
    image = 0 if lazy else height * width * samples * nbytes
    if height * width > STRIP_PIXELS:
        strip = width * 2 * _STRIP_ROWS * STRIP_BYTES_PER_PIXEL
        return int(STRIP_FIXED_BYTES + height * width // 8 + strip + image)
    return int(PREDICT_FIXED_BYTES + height * width * PREDICT_BYTES_PER_PIXEL + image)


@dataclass(frozen=True)
class _Input:
    path: Path
    name: str  # the image's name in the tables: its stem, or relative path without suffix
    pixel_size: object
    need: int = 0  # bytes predict needs for it (predict_memory)
    strips: bool = False  # predicted, counted and written strip by strip
    lazy: bool = False  # and read from its file block by block


def _tree(folder):
    """Image files under ``folder`` (hidden folders skipped), sorted by relative path."""
    found = []
    for directory, subdirs, _ in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(list_images(directory))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _collect(inputs, recursive):
    """``[(path, name)]``: names are stems, or paths relative to a folder given with
    ``recursive`` (``A1/image_1``); refuses two inputs with one name."""
    if not recursive:
        return [(p, p.stem) for p in collect_images(inputs)]
    items = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = _tree(item)
            if not found:
                raise UsageError(f"Folder {item} holds no images ({', '.join(IMAGE_EXTENSIONS)}), "
                                 "nor do its sub-folders.")
            items += [(p.resolve(), PurePosixPath(p.relative_to(item).with_suffix("")).as_posix())
                      for p in found]
        else:
            items += [(p, p.stem) for p in collect_images([item])]
    seen = {}
    for path, name in items:
        if name in seen and seen[name] != path:
            raise UsageError(
                f"Two inputs are named {name!r} ({seen[name]} and {path}); their outputs would "
                "collide, so predict them into separate `out_dir` folders.")
        seen[name] = path
    return list(dict(((p, n), None) for p, n in items))


def _output_dir(out_dir, names, kinds, overwrite):
    """Create OUT's sub-folders for nested names; refuse to replace any output file
    already there unless overwrite. OUT itself is made (and checked to be a folder) by
    :func:`unet.io.folder_lock`, which the caller holds."""
    out = Path(out_dir)
    planned = [out / "spores.csv", out / "summary.csv"]
    planned += [out / f"{n}_{kind}{ext}" for n in names for kind, ext in kinds.items()]
    clashes = [p for p in planned if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(
            f"{out} already holds results ({clashes[0].relative_to(out)}"
            f"{f' and {len(clashes) - 1} more' if len(clashes) > 1 else ''}); "
            "choose another `out_dir` or pass `overwrite=True`."
        )
    try:
        for folder in sorted({(out / n).parent for n in names} | {out}):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"Cannot create {out} ({error.strerror}).") from None
    if not os.access(out, os.W_OK):
        raise PermissionError(f"Cannot write to {out}; choose another `out_dir`.")
    for folder in sorted({(out / n).parent for n in names} | {out}):
        remove_temporaries(folder)  # left by a predict killed midway (the lock is ours)
    return out


#: Bytes per pixel that dividing out the background adds while it is made (float64 gray,
#: padded copy, closing and its smoothing; the float64 quotient and the float32 result): 49
#: measured (tracemalloc) for a 2048² RGB image, 64 allowed.
_FLATTEN_BYTES = 64


def _read(item, channel, channels, flatten=None):
    """The raw image (chosen channels) and what the model is given."""
    raw = TiffRows.open(item.path, channel) if item.lazy else None
    if raw is None:
        raw = read_image_channels(item.path, channel)
    else:
        check_finite(item.path, raw)  # as reading it whole checks
    have = 1 if raw.ndim == 2 else raw.shape[2]
    if channel is not None and have not in (1, channels):
        raise UsageError(
            f"`channel` picks {have} channels of {item.path}, but the model takes {channels}; "
            f"pick one channel (used as gray) or {channels}.")
    return raw, PreparedImage(raw, channels, flatten=flatten)  # normalised tile by tile


def predict_images(model, inputs, out_dir, threshold=FROM_MODEL, tta=FROM_MODEL,
                   min_area=FROM_MODEL, overwrite=False, progress=False, *, split_h=FROM_MODEL,
                   max_area=None,
                   exclude_border=False,
                   pixel_size=None, channel=None, recursive=False, tile=None, batch_size=None,
                   probability=False, workers=2, flatten=FROM_MODEL):
    """Segment, split and measure the spores in image files of any size.

    Parameters
    ----------
    model : keras.Model
        A trained U-Net (e.g. ``unet.load_run("spores")[0]``).
    inputs : sequence of path
        Image files and/or folders of images.
    out_dir : path
        Output folder (created). For each image ``NAME_mask.png`` (0/255, the
        thresholded prediction), ``NAME_overlay.png`` (the image with every reported
        spore outlined and numbered by its id; spores left out outlined in blue-grey),
        ``NAME_labels.tif`` (uint16 instance labels, uint32 beyond 65535 spores; the
        ids of ``spores.csv``, 0 = background; with the pixel size as calibration) and
        ``NAME_rois.zip`` (one ImageJ ROI per spore, named by id, for Fiji's ROI
        Manager); with ``probability`` also ``NAME_prob.tif`` (float32). Then
        ``spores.csv`` (one row per spore: ``image`` and the columns of
        :func:`unet.outputs.spore_columns`) and ``summary.csv``
        (:data:`SUMMARY_COLUMNS`: the count, the spores touching the edge, those
        above ``max_area``, and the pixel size with its source). The process holds
        OUT's lock while it writes (:func:`unet.io.folder_lock`): a second process
        writing into the same OUT is refused. An image with the same value in every
        pixel (a blank or saturated frame) gets no spores and a warning.
    threshold : float or "model"
        Foreground probability threshold.
    tta : bool or "model"
        Test-time augmentation (see :func:`unet.predict.predict_tiled`).
    min_area : int, None or "model"
        Smallest spore in pixels (None: :data:`unet.count.MIN_AREA`).
    split_h : float, None or "model"
        Split height of touching spores in pixels (None: relative to their size,
        :func:`unet.count.split_height`).
    overwrite : bool
        Replace result files already in ``out_dir``.
    progress : bool
        Show a progress bar over images.
    max_area : int, optional
        Largest spore in pixels; larger ones (clumps, debris) are left out.
    exclude_border : bool
        Leave the spores that touch the image edge out of the counts, tables, labels
        and ROIs (they may be cut); without it they are reported and flagged
        (``touches_border``).
    pixel_size : float, optional
        Micrometres per pixel for every image. Without it each TIFF's own calibration
        is used when it has one (:func:`unet.imagefile.read_pixel_size`); the
        ``_um`` / ``_um2`` columns appear when any image has a pixel size.
    channel : int or sequence of int, optional
        The channel(s) of multichannel images to segment (0 = the first): one (used as
        gray) or as many as the model takes. Needed for TIFFs with 2 or more than 3
        channels that are not marked as alpha.
    recursive : bool
        Also take the images in the sub-folders of input folders, and mirror that
        tree under ``out_dir`` (``plate/A1/x.tif`` -> ``OUT/A1/x_mask.png``; named
        ``A1/x`` in the tables).
    tile : int, optional
        Input tile size (default: chosen per image, see :func:`unet.predict.plan_tiles`);
        smaller tiles and ``batch_size`` need less memory, e.g. on small GPUs.
    batch_size : int, optional
        Tiles per model call (default 2; 1 for images that go strip by strip, whose
        tiles are the largest: half the model's memory, as fast on a CPU).
    probability : bool
        Also write ``NAME_prob.tif``.
    workers : int
        Threads that count, measure and write while the model predicts (0: all in
        the calling thread, one image after the other).
    flatten : int, None or "model"
        The brightfield background (a grey closing of this many pixels) divided out of
        each image before it is normalised; the whole image is then held in memory (up
        to 64 more bytes per pixel while it is made). None: the images as they are.

    ``"model"``, the default of ``threshold``, ``tta``, ``min_area``, ``split_h`` and
    ``flatten``: what the model's run chose, which a model loaded by
    :func:`unet.run.load_run` carries (its background window and calibrated
    post-processing); for a model from elsewhere threshold 0.5, no augmentation, the
    defaults above and no flattening (:func:`unet.model.prediction_settings`).

    Returns
    -------
    list of (str, int)
        ``(image name, spore count)`` for each image.
    """
    from tqdm.auto import tqdm

    chosen = prediction_settings(model, threshold=threshold, tta=tta, min_area=min_area,
                                 split_h=split_h, flatten=flatten)
    threshold, tta, min_area, split_h, flatten = (
        chosen[k] for k in ("threshold", "tta", "min_area", "split_h", "flatten"))
    if not 0 < float(threshold) < 1:
        raise UsageError(f"`threshold` must be between 0 and 1, got {threshold}.")
    min_area, max_area = check_areas(resolve_min_area(min_area), max_area)
    pixel_size = check_pixel_size(pixel_size)
    channel = check_channels(channel)
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size
                                   or batch_size < 1):
        raise UsageError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        raise UsageError(f"`workers` must be an integer >= 0, got {workers!r}.")
    geometry = model_geometry(model)
    if tile is not None:  # a bad tile fails here, before anything is written
        plan_tiles((1, 1), geometry.depth, geometry.padding, tile)
    items = []
    available = available_memory()
    for path, name in _collect(inputs, recursive):  # fail on a broken input first
        header = image_header(path)  # exists and opens as an image (check_image_file)
        check_image_channels(path, channel)
        strips = header[0][0] * header[0][1] > STRIP_PIXELS
        lazy = strips and not flatten and TiffRows.open(path) is not None
        need = predict_memory(header, lazy)
        if flatten:  # the background estimate's float64 arrays and the flattened image
            need += _FLATTEN_BYTES * header[0][0] * header[0][1]
        check_memory(path, header[0], need, "predicting it", "free memory, or cut the image "
                     "into smaller files (with overlap, if spores cross the cuts).", available)
        items.append(_Input(path, name, pixel_size_for(path, pixel_size), need, strips, lazy))
    # An image that could not share the memory with the next ones goes on its own.
    alone = [i.strips or (available is not None and i.need * (max(1, workers) + 2) > available)
             for i in items]
    # one process per output folder; `spool`: scratch files of table rows, until spores.csv
    with folder_lock(out_dir, "out_dir"), contextlib.ExitStack() as spool:
        kinds = dict(IMAGE_OUTPUTS, **({"prob": ".tif"} if probability else {}))
        out = _output_dir(out_dir, [i.name for i in items], kinds, overwrite)
        physical = any(i.pixel_size.um is not None for i in items)
        columns = spore_columns(physical)

        def finish(item, raw, prob):
            """Count, measure and write one predicted image (any thread)."""
            # count_spores' two steps, the gray image made only for the measurements
            labels = label_spores(prob, threshold, min_area, h=split_h)
            table = measure_spores(labels, to_channels(raw, 1))
            reported = report_spores(labels, table, item.pixel_size,
                                     exclude_border=exclude_border, max_area=max_area)
            folder, stem = (out / item.name).parent, (out / item.name).name
            save_png((np.asarray(prob) > threshold).astype(np.uint8) * 255,
                     folder / f"{stem}_mask.png")
            shown = reported.relabel(labels)
            dropped = (labels > 0) & (shown == 0) if reported.lut is not None else None
            table = reported.table
            save_png(id_overlay(raw, shown, np.c_[table["centroid_y_px"], table["centroid_x_px"]],
                                table["id"], excluded=dropped), folder / f"{stem}_overlay.png",
                     compress_level=1)  # a picture to look at: fast rather than small
            write_labels_tiff(folder / f"{stem}_labels.tif", labels, reported, item.pixel_size)
            write_rois(folder / f"{stem}_rois.zip", labels, reported)
            if probability:
                write_probability_tiff(folder / f"{stem}_prob.tif", prob, item.pixel_size)
            size = item.pixel_size
            summary = (item.name, reported.count, reported.touching_border, reported.too_large,
                       "" if size.um is None else repr(size.um), size.source)
            return table_rows(item.name, reported, columns), summary

        results = []
        bar = tqdm(total=len(items), desc="predict", unit="image",
                   disable=None if progress else True)  # None: no bar off a terminal
        with ThreadPoolExecutor(1, thread_name_prefix="unet-read") as reader, \
                ThreadPoolExecutor(max(1, workers), thread_name_prefix="unet-write") as writer:
            pending = deque()  # futures of `finish`, in input order
            ahead = None  # the next image, read while this one is predicted
            for k, item in enumerate(items):
                if alone[k]:  # the images before it finish first
                    while pending:
                        results.append(pending.popleft().result())
                        bar.update()
                raw, prepared = (ahead.result() if ahead is not None
                                 else _read(item, channel, geometry.channels, flatten))
                ahead = (reader.submit(_read, items[k + 1], channel, geometry.channels, flatten)
                         if k + 1 < len(items) and not (alone[k] or alone[k + 1]) else None)
                low, high = image_extremes(raw)  # a lazily read image block by block
                blank = low == high
                if blank:  # blank or saturated: nothing to see
                    warnings.warn(f"{item.path} has the same value in every pixel (a blank or "
                                  "saturated frame?): no spores counted in it.", stacklevel=2)
                if item.strips:
                    results.append(_predict_in_strips(
                        model, item, raw, None if blank else prepared, out, columns, spool,
                        threshold=threshold, min_area=min_area, split_h=split_h,
                        max_area=max_area, exclude_border=exclude_border, tile=tile,
                        batch_size=batch_size or 1, tta=tta, probability=probability))
                    if isinstance(raw, TiffRows):
                        raw.close()
                    del raw, prepared
                    bar.update()
                    continue
                if blank:
                    prob = np.zeros(raw.shape[:2], np.float32)
                else:
                    prob = predict_tiled(model, prepared, tile=tile, batch_size=batch_size or 2,
                                         tta=tta)
                del prepared
                if not workers or alone[k]:
                    results.append(finish(item, raw, prob))
                    del raw, prob  # not held while the next image is read
                    bar.update()
                    continue
                pending.append(writer.submit(finish, item, raw, prob))
                del raw, prob
                while len(pending) > workers or (pending and pending[0].done()):
                    results.append(pending.popleft().result())
                    bar.update()
            while pending:
                results.append(pending.popleft().result())
                bar.update()
        bar.close()
        write_csv(out / "spores.csv", ["image", *columns],
                  itertools.chain.from_iterable(rows for rows, _ in results))
        write_csv(out / "summary.csv", SUMMARY_COLUMNS, [s for _, s in results])
        return [(s[0], s[1]) for _, s in results]


class _SpooledRows:
    """Rows of ``spores.csv`` kept in a scratch CSV file until the table is written."""

    def __init__(self, path):
        self.path = path
        self._file = open(path, "w", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")

    def extend(self, rows):
        self._writer.writerows(rows)

    def close(self):
        self._file.close()

    def __iter__(self):
        self.close()
        with open(self.path, newline="") as f:
            yield from csv.reader(f)


def _predict_in_strips(model, item, raw, prepared, out, columns, spool, *, threshold,
                       min_area, split_h, max_area, exclude_border, tile, batch_size, tta,
                       probability):
    """What ``finish`` does for one image, strip by strip, for images too large to hold
    as whole arrays: the same files and rows (spores numbered in the order they are
    finished, :func:`unet.count.label_strips`).

    Three passes. The model predicts one row of tiles at a time
    (:func:`unet.predict.predict_strips`); each strip's mask is written to the mask PNG
    row by row (:class:`unet.io.PngRows`) and kept as bits (1/8 byte per pixel); the
    probabilities, with ``probability``, go to a scratch file. Then the bits are
    labelled strip by strip (with a first counting pass when the split height is
    relative), each finished spore measured, reported, traced and its label rows put in
    a scratch file. Last, the label TIFF and the overlay are written a strip at a time
    from that file, now that the number of spores (the TIFF's type) and the reported
    ids are known. The table's rows wait in a scratch file of ``spool`` (an ExitStack
    that ends after ``spores.csv`` is written). Returns ``finish``'s ``(rows,
    summary)``.
    """
    height, width = raw.shape[:2]
    folder, stem = (out / item.name).parent, (out / item.name).name
    packed = np.zeros((height, (width + 7) // 8), np.uint8)
    with contextlib.ExitStack() as scratch:
        prob_raw = None
        if probability:
            prob_raw = RawRows(scratch.enter_context(scratch_path(folder, f"{stem}_prob.raw")),
                               width, np.float32)
            scratch.callback(prob_raw.close)
        with atomic_path(folder / f"{stem}_mask.png") as tmp, PngRows(tmp, (height, width)) as png:
            strips = (predict_strips(model, prepared, tile=tile, batch_size=batch_size, tta=tta)
                      if prepared is not None else
                      ((top, np.zeros((min(_STRIP_ROWS, height - top), width), np.float32))
                       for top in range(0, height, _STRIP_ROWS)))
            for top, prob in strips:
                mask = prob > threshold
                png.write(mask.view(np.uint8) * np.uint8(255))
                packed[top : top + len(mask)] = np.packbits(mask, axis=1)
                if prob_raw is not None:
                    prob_raw.append(prob)
                del prob, mask

        def masks():
            for top in range(0, height, _STRIP_ROWS):
                yield top, np.unpackbits(packed[top : top + _STRIP_ROWS], axis=1,
                                         count=width).view(bool)

        h = split_h
        if h is None:  # relative to the regions' size: count them first
            areas = [np.bincount(step.finished.ravel())[step.first_id:]
                     for step in label_strips(masks(), height, min_area=min_area, split=False)]
            areas = np.concatenate(areas) if areas else np.zeros(0, np.int64)
            h = split_height_for_areas(areas[areas > 0])
        labels_raw = RawRows(scratch.enter_context(scratch_path(folder, f"{stem}_labels.raw")),
                             width, np.uint32)
        scratch.callback(labels_raw.close)
        rows = _SpooledRows(spool.enter_context(scratch_path(out, "spores.csv")))
        spool.callback(rows.close)
        lut, outlines, boxes, centroids, ids = [np.zeros(1, np.uint32)], [], [], [], []
        counts = {"reported": 0, "touching": 0, "large": 0}
        for step in label_strips(masks(), height, min_area=min_area, h=h):
            labels_raw.append(step.done)
            found = step.finished
            number = int(found.max(initial=0)) - step.first_id + 1
            if number <= 0:
                continue
            spans = np.flatnonzero(found.any(axis=1))
            found = found[spans[0] : spans[-1] + 1]
            top = step.top + int(spans[0])
            table = measure_spores(found, to_channels(raw[top : top + len(found)], 1))
            table["centroid_y"] = table["centroid_y"] + top
            edges = [found[:, 0], found[:, -1]]
            edges += [found[0]] if top == 0 else []
            edges += [found[-1]] if top + len(found) == height else []
            reported = report_spores(None, table, item.pixel_size, exclude_border, max_area,
                                     touching=np.isin(table["id"], np.concatenate(edges)),
                                     first_id=counts["reported"] + 1)
            new = (reported.lut[step.first_id:] if reported.lut is not None else
                   np.arange(step.first_id, step.first_id + number))
            lut.append(np.asarray(new, np.uint32))
            placed_boxes = []
            for old, where in enumerate(ndi.find_objects(found)[step.first_id - 1 :],
                                        start=step.first_id):
                if where is None or not new[old - step.first_id]:
                    continue
                placed = (slice(where[0].start + top, where[0].stop + top), where[1])
                outlines.append((int(new[old - step.first_id]),
                                 spore_outline(found[where] == old, placed)))
                placed_boxes.append((placed[0].start, placed[1].start, placed[0].stop,
                                     placed[1].stop))
            boxes.append(np.asarray(placed_boxes, np.int64).reshape(-1, 4))
            table = reported.table
            centroids.append(np.c_[table["centroid_y_px"], table["centroid_x_px"]])
            ids.append(table["id"])
            rows.extend(table_rows(item.name, reported, columns))
            counts["reported"] += reported.count
            counts["touching"] += reported.touching_border
            counts["large"] += reported.too_large
            del found, table
        packed = None  # the bit-packed mask is freed here (masks() reads it until now)
        lut = np.concatenate(lut)
        final = Reported(counts["reported"], {}, lut, counts["touching"], counts["large"],
                         item.pixel_size)
        write_labels_tiff(folder / f"{stem}_labels.tif", labels_raw, final, item.pixel_size)
        write_outline_rois(folder / f"{stem}_rois.zip", outlines, final.count)
        del outlines
        _strip_overlay(folder / f"{stem}_overlay.png", raw, labels_raw, lut,
                       np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int64),
                       np.concatenate(centroids) if centroids else np.zeros((0, 2)),
                       np.concatenate(ids) if ids else np.zeros(0, np.int64))
        if prob_raw is not None:
            write_probability_tiff(folder / f"{stem}_prob.tif", prob_raw, item.pixel_size)
    size = item.pixel_size
    summary = (item.name, final.count, final.touching_border, final.too_large,
               "" if size.um is None else repr(size.um), size.source)
    return rows, summary


#: Text height of the ids in the overlays (pixels), and the rows around a strip of the
#: overlay in which a spore's id may reach into it.
_FONT_SIZE = 12
_TEXT_REACH = 3 * _FONT_SIZE


def _strip_overlay(path, raw, labels, lut, boxes, centroids, ids):
    """The overlay of ``finish`` (:func:`unet.render.id_overlay`), drawn and written a
    strip of rows at a time from the labels kept in a file (``lut``: label -> reported
    id, 0 = found but not reported). 16-bit and float images are stretched by the
    percentiles of a sample of the whole image (:func:`unet.render.display_range`)."""
    height, width = raw.shape[:2]
    value_range = None
    if raw.dtype != np.uint8:
        value_range = display_range(percentile_sample(raw))
    dropped_any = bool((lut[1:] == 0).any())
    with atomic_path(path) as tmp, PngRows(tmp, (height, width), 3, compress_level=1) as png:
        for top in range(0, height, _STRIP_ROWS):
            bottom = min(height, top + _STRIP_ROWS)
            first, last = max(0, top - 1), min(height, bottom + 1)  # outlines see a row more
            found = labels[first:last]
            shown = lut[found]
            near = (boxes[:, 2] > top - _TEXT_REACH) & (boxes[:, 0] < bottom + _TEXT_REACH)
            picture = id_overlay(raw[first:last], shown, centroids[near], ids[near],
                                 excluded=(found > 0) & (shown == 0) if dropped_any else None,
                                 font_size=_FONT_SIZE, boxes=boxes[near], row_offset=first,
                                 value_range=value_range)
            png.write(picture[top - first : bottom - first])
