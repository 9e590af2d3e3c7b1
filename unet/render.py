"""Pictures as arrays (no matplotlib): display copies, outlines, label colours, error maps.

What the library writes to disk (``predict``'s overlays) and what the figures in
:mod:`unet.plot` show are drawn here, as uint8 RGB arrays.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

OUTLINE_COLOR = (255, 208, 0)


def display_image(image):
    """An 8-bit RGB copy of any image for display: uint8 kept, others stretched.

    Gray is replicated to RGB and alpha dropped; images of other dtypes (16-bit,
    float) are stretched between their 1st and 99.8th percentiles.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    low, high = np.percentile(image, (1.0, 99.8))
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


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
    from skimage.segmentation import find_boundaries

    out = display_image(image).copy()
    out[find_boundaries(np.asarray(labels), mode="inner")] = color
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
               excluded_color=EXCLUDED_COLOR, font_size=12):
    """The image with every spore outlined and its id written on it, legible at 1:1.

    Parameters
    ----------
    image : array_like
        Any image :func:`display_image` accepts.
    labels : array_like of int
        The reported spores (0 = background), outlined in ``color``.
    centroids : array_like
        ``(n, 2)`` ``(row, column)`` where each id is written (centred).
    ids : sequence of int
        The ids to write, one per centroid.
    excluded : array_like of bool or int, optional
        Spores found but not reported, outlined in ``excluded_color`` without an id.
    font_size : int
        Text height in pixels (white with a black rim, readable on any background).

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    out = display_image(image).copy()
    if excluded is not None:
        out[find_boundaries(np.asarray(excluded), mode="inner")] = excluded_color
    out[find_boundaries(np.asarray(labels), mode="inner")] = color
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    font = _font(int(font_size))
    stroke = max(1, int(font_size) // 6)
    for (row, col), number in zip(np.asarray(centroids, dtype=float).reshape(-1, 2), ids):
        draw.text((col, row), str(int(number)), fill=(255, 255, 255), font=font, anchor="mm",
                  stroke_width=stroke, stroke_fill=(0, 0, 0))
    return np.asarray(picture)
