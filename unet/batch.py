"""Files in, files out: what ``python -m unet predict`` runs over a list of images.

Each image is read, prepared as in training (:func:`unet.image.prepare_image`),
predicted at its own size by overlap-tiles (:func:`unet.predict.predict_tiled`, no
resizing), thresholded, split into spores and measured (:mod:`unet.count`). Every
input is checked before anything is written, and every output is written to a
temporary name and renamed into place (:func:`unet.io.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .count import MIN_AREA, SPORE_COLUMNS, count_spores
from .image import prepare_image, to_channels
from .io import check_image_file, collect_images, read_image, save_png, write_csv
from .model import model_geometry
from .predict import predict_tiled
from .render import outline_overlay


def _output_dir(out_dir, names, overwrite):
    """Create OUT; refuse to replace any output file already there unless overwrite."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`out_dir` {out} is a file; give a folder for the results.")
    planned = [out / "spores.csv", out / "summary.csv"]
    planned += [out / f"{n}_{kind}.png" for n in names for kind in ("mask", "overlay")]
    clashes = [p for p in planned if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(
            f"{out} already holds results ({clashes[0].name}"
            f"{f' and {len(clashes) - 1} more' if len(clashes) > 1 else ''}); "
            "choose another `out_dir` or pass `overwrite=True`."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"Cannot create {out} ({error.strerror}).") from None
    if not os.access(out, os.W_OK):
        raise PermissionError(f"Cannot write to {out}; choose another `out_dir`.")
    return out


def _format(value):
    """A CSV cell: floats to 4 significant digits, others as they are."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return value


def predict_images(model, inputs, out_dir, threshold=0.5, tta=False, min_area=None,
                   overwrite=False, progress=False, split_h=None):
    """Segment, split and measure the spores in image files of any size.

    Parameters
    ----------
    model : keras.Model
        A trained U-Net.
    inputs : sequence of path
        Image files and/or folders of images.
    out_dir : path
        Output folder (created). Writes ``NAME_mask.png`` (0/255), ``NAME_overlay.png``
        (the image with every counted spore outlined), ``spores.csv`` (one row per
        spore: ``image`` and the columns of :func:`unet.count.measure_spores`) and
        ``summary.csv`` (``image,count``).
    threshold : float
        Foreground probability threshold.
    tta : bool
        Test-time augmentation (see :func:`unet.predict.predict_tiled`).
    min_area : int, optional
        Smallest spore in pixels (default :data:`unet.count.MIN_AREA`).
    split_h : float, optional
        Split height of touching spores in pixels (default None: relative to their size,
        :func:`unet.count.split_height`).
    overwrite : bool
        Replace result files already in ``out_dir``.
    progress : bool
        Show a progress bar over images.

    Returns
    -------
    list of (str, int)
        ``(image name, spore count)`` for each image.
    """
    from tqdm.auto import tqdm

    paths = collect_images(inputs)
    for path in paths:  # fail on a broken input before writing anything
        check_image_file(path)
    out = _output_dir(out_dir, [p.stem for p in paths], overwrite)
    channels = model_geometry(model).channels
    summary, rows = [], []
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    for path in tqdm(paths, desc="predict", unit="image", disable=None if progress else True):
        raw = read_image(path)
        prob = predict_tiled(model, prepare_image(raw, channels), tta=tta)
        spores = count_spores(
            prob, threshold, intensity_image=to_channels(raw, 1),
            min_area=MIN_AREA if min_area is None else min_area,
            h=split_h,
        )
        save_png((prob > threshold).astype(np.uint8) * 255, out / f"{path.stem}_mask.png")
        save_png(outline_overlay(raw, spores.labels), out / f"{path.stem}_overlay.png")
        for i in range(spores.count):
            rows.append([path.stem] + [_format(spores.table[c][i]) for c in SPORE_COLUMNS])
        summary.append((path.stem, spores.count))
    write_csv(out / "spores.csv", ["image", *SPORE_COLUMNS], rows)
    write_csv(out / "summary.csv", ["image", "count"], summary)
    return summary
