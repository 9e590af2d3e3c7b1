"""Pictures as arrays (no matplotlib): display copies, outlines, label colours, error maps.

What the library writes to disk (``predict``'s overlays) and what the figures in
:mod:`unet.plot` show are drawn here, as uint8 RGB arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .errors import UsageError

OUTLINE_COLOR = (255, 208, 0)


#: Percentiles of an image that :func:`display_image` stretches to black and white.
DISPLAY_PERCENTILES = (1.0, 99.8)


def display_image(image, value_range=None):
    """An 8-bit RGB copy of any image for display: uint8 kept, others stretched.

    Gray is replicated to RGB and alpha dropped; images of other dtypes (16-bit,
    float) are stretched between their 1st and 99.8th percentiles, or between the
    ``(low, high)`` of ``value_range`` (a block of a larger image shown as the whole
    image is: :func:`display_range`).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    low, high = (np.percentile(image, DISPLAY_PERCENTILES) if value_range is None
                 else value_range)
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def display_range(sample):
    """The ``(low, high)`` :func:`display_image` stretches an image by, from a sample of
    its pixels (e.g. :func:`unet.image.percentile_sample`)."""
    sample = np.asarray(sample)
    if sample.ndim == 3:
        sample = sample[..., :3] if sample.shape[2] >= 3 else sample[..., :1]
    return tuple(float(v) for v in np.percentile(sample, DISPLAY_PERCENTILES))


def inner_boundaries(labels):
    """The pixels of each labelled region that touch another label or the background.

    What ``skimage.segmentation.find_boundaries(labels, mode="inner")`` gives (tested
    equal), from one boolean comparison per direction instead of a grey dilation and
    erosion of the label image: on a 2048² field 1 byte per pixel at a time instead
    of 8, and about 8x faster.
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        later = tuple(slice(1, None) if a == axis else slice(None) for a in (0, 1))
        earlier = tuple(slice(None, -1) if a == axis else slice(None) for a in (0, 1))
        differs = labels[later] != labels[earlier]
        out[later] |= differs
        out[earlier] |= differs
    out &= labels != 0
    return out


def outline_overlay(image, labels, color=OUTLINE_COLOR):
    """The image (8-bit RGB) with the inner boundary of every labelled region drawn in.

    Parameters
    ----------
    image : array_like
        Any image :func:`display_image` accepts, the size of ``labels``.
    labels : array_like of int
        Instance labels (0 = background) or a binary mask.
    color : (int, int, int)
        RGB colour of the outlines.

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    out = display_image(image).copy()
    out[inner_boundaries(labels)] = color
    return out


def label_colors(labels):
    """An RGB picture of instance labels: each label its own colour, background black.

    The hue of label ``k`` is ``k`` times the golden ratio (mod 1), so neighbouring
    numbers get well separated colours and the same label always the same colour.

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    from skimage.color import hsv2rgb

    labels = np.asarray(labels)
    ids = np.arange(int(labels.max(initial=0)) + 1)
    hsv = np.stack([(ids * 0.6180339887) % 1.0, np.full(ids.shape, 0.65),
                    np.full(ids.shape, 0.95)], axis=1)
    palette = (hsv2rgb(hsv[None])[0] * 255).round().astype(np.uint8)
    palette[0] = 0
    return palette[np.clip(labels, 0, None).astype(np.int64)]


ERROR_COLORS = {"tp": (220, 220, 220), "fp": (230, 97, 0), "fn": (93, 58, 155)}


def error_map(truth, pred):
    """Agreement of a predicted mask with the truth, as an RGB picture.

    True positives light grey, false positives orange, false negatives purple,
    true negatives black (:data:`ERROR_COLORS`; readable with colour blindness).

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    truth, pred = np.asarray(truth) > 0, np.asarray(pred) > 0
    if truth.shape != pred.shape:
        raise UsageError(f"truth {truth.shape} and prediction {pred.shape} differ in shape.")
    out = np.zeros((*truth.shape, 3), np.uint8)
    out[truth & pred] = ERROR_COLORS["tp"]
    out[~truth & pred] = ERROR_COLORS["fp"]
    out[truth & ~pred] = ERROR_COLORS["fn"]
    return out


#: Outline colour of spores found but not reported (touching the edge with
#: ``exclude_border``, or above ``max_area``): a blue-grey that stays apart from
#: :data:`OUTLINE_COLOR` for the colour blind.
EXCLUDED_COLOR = (120, 150, 255)


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def id_overlay(image, labels, centroids, ids, excluded=None, color=OUTLINE_COLOR,
               excluded_color=EXCLUDED_COLOR, font_size=12, *, boxes=None, row_offset=0,
               value_range=None):
    """The image with every spore outlined and its id written on it, legible at 1:1.

    Parameters
    ----------
    image : array_like
        Any image :func:`display_image` accepts.
    labels : array_like of int
        The reported spores (0 = background), outlined in ``color``.
    centroids : array_like
        ``(n, 2)`` ``(row, column)`` where each id is written (centred), unless the
        text would hide more than half of the spore's bounding box: then it goes just
        above the spore (below it at the image's top edge), so small spores stay visible.
    ids : sequence of int
        The ids to write, one per centroid: the spores' values in ``labels``.
    excluded : array_like of bool or int, optional
        Spores found but not reported, outlined in ``excluded_color`` without an id.
    font_size : int
        Text height in pixels (white with a black rim, readable on any background).
    boxes : array_like, optional
        ``(n, 4)`` bounding boxes ``(top, left, bottom, right)`` (bottom and right
        exclusive) of the spores, in the coordinates of ``centroids``; by default found
        in ``labels``. Given, ``image`` and ``labels`` may be a block of rows of a
        larger image, starting at its row ``row_offset`` (``centroids`` and ``boxes``
        in the larger image's coordinates), with spores beyond the block whose ids
        reach into it: the blocks drawn one by one make the picture of the whole.
    value_range : (float, float), optional
        The display range of a block of a larger image (see :func:`display_image`).

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    from PIL import Image, ImageDraw

    out = display_image(image, value_range).copy()
    if excluded is not None:
        out[inner_boundaries(excluded)] = excluded_color
    out[inner_boundaries(labels)] = color
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    font = _font(int(font_size))
    stroke = max(1, int(font_size) // 6)
    ids = [int(i) for i in ids]
    if boxes is None:
        if row_offset:
            raise UsageError("`row_offset` needs the spores' `boxes`.")
        labels = np.asarray(labels)
        found = ndi.find_objects(labels.astype(np.uint8) if labels.dtype == bool else labels,
                                 max_label=max(ids, default=0))
        boxes = [found[number - 1] if 0 < number <= len(found) else None for number in ids]
    else:
        boxes = [(slice(int(t), int(b)), slice(int(left), int(r)))
                 for t, left, b, r in np.asarray(boxes).reshape(-1, 4)]
    for (row, col), number, box in zip(np.asarray(centroids, dtype=float).reshape(-1, 2), ids,
                                       boxes):
        text, anchor = str(number), "mm"
        if box is not None:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font, anchor="mm",
                                                     stroke_width=stroke)
            # the text would hide more than half of the spore's bounding box
            high, wide = box[0].stop - box[0].start, box[1].stop - box[1].start
            if min(bottom - top, high) * min(right - left, wide) > 0.5 * high * wide:
                above = box[0].start - 1 - bottom + top
                row, anchor = ((box[0].start - 1, "md") if above >= 0
                               else (box[0].stop, "ma"))
        draw.text((col, row - row_offset), text, fill=(255, 255, 255), font=font, anchor=anchor,
                  stroke_width=stroke, stroke_fill=(0, 0, 0))
    return np.asarray(picture)
