"""Evaluation of a trained model on a data folder, at every image's original size.

Pixel scores (Dice, IoU, precision, recall) are pooled over all pixels of all
images: the true/false positives and negatives of every image are summed first,
then the scores are computed once, so large images weigh by their pixel count.
Where the truth has instance labels or a ``counts.csv``, spores are counted in the
prediction and compared with the true counts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_counts(folder):
    """True spore counts of a data folder: ``counts.csv`` (name,count), else ``labels/``.

    Returns
    -------
    dict
        image name -> count; empty when the folder has neither.
    """
    from .data import read_labels

    folder = Path(folder)
    table = folder / "counts.csv"
    if table.exists():
        with table.open() as f:
            try:
                return {row["name"]: int(row["count"]) for row in csv.DictReader(f)}
            except (KeyError, ValueError):
                raise ValueError(
                    f"{table} must have the columns name,count with integer counts."
                ) from None
    labels_dir = folder / "labels"
    if labels_dir.is_dir():
        return {
            p.stem: int(np.unique(read_labels(p)).size - 1)
            for p in sorted(labels_dir.iterdir())
            if not p.name.startswith(".")
        }
    return {}


def evaluate(model, data_dir, threshold=0.5, tta=False, count=True, progress=False,
             min_area=None):
    """Score a model (or any segmentation method) on ``data_dir/images`` vs ``masks/``.

    Parameters
    ----------
    model : keras.Model or callable
        A U-Net built by this package (any padding, static or ``None`` input size):
        each image is normalised as in training and predicted by overlap-tiles at
        its own size. Or any function ``raw image -> (height, width)`` probability
        map or binary mask, e.g. ``unet.baseline.baseline_mask``, scored the same way.
    data_dir : path
        A data folder (``images/``, ``masks/``, optional ``labels/`` or ``counts.csv``).
    threshold : float
        Foreground probability threshold.
    tta : bool
        Average the predictions of flipped/rotated copies (slower, a little better).
    count : bool
        Also count spores where true counts are available.
    progress : bool
        Show a progress bar over images.
    min_area : int, optional
        Smallest spore area in pixels for counting (default: that of
        :func:`unet.count.label_spores`).

    Returns
    -------
    dict
        ``dice``, ``iou``, ``precision``, ``recall``, ``images``, ``pixels``, and when
        counted ``count_true``, ``count_pred`` (totals), ``count_error`` (mean over
        images of |predicted − true| / true) and ``per_image`` rows.
    """
    from tqdm.auto import tqdm

    import keras

    from .count import label_spores
    from .data import find_pairs, normalize, read_image, read_mask, to_channels
    from .metrics import confusion_counts, scores_from_counts
    from .predict import predict_tiled

    if isinstance(model, keras.Model):
        channels = model.input_shape[-1]

        def predict(raw):
            return predict_tiled(model, normalize(to_channels(raw, channels)), tta=tta)

    elif callable(model):
        predict = model
    else:
        raise ValueError(f"model must be a keras.Model or a function, got {type(model).__name__}.")
    data_dir = Path(data_dir)
    pairs = find_pairs(data_dir)
    truth_counts = read_counts(data_dir) if count else {}
    totals = np.zeros(4, dtype=np.int64)
    per_image = []
    for pair in tqdm(pairs, desc="evaluate", unit="image", disable=None if progress else True):
        raw = read_image(pair.image)
        truth = read_mask(pair.mask).astype(bool)
        if truth.shape != raw.shape[:2]:
            raise ValueError(
                f"Mask {pair.mask} is {truth.shape[1]}x{truth.shape[0]} but its image is "
                f"{raw.shape[1]}x{raw.shape[0]}; masks must match their images."
            )
        prob = np.asarray(predict(raw), dtype=np.float32)
        if prob.shape != truth.shape:
            raise ValueError(
                f"The prediction for {pair.image} has shape {prob.shape}, not the image's "
                f"{truth.shape}; predictions must keep the image size."
            )
        pred = prob > threshold
        counts = np.asarray(confusion_counts(truth, pred), dtype=np.int64)
        totals += counts
        row = {"image": pair.name, **scores_from_counts(*counts)}
        if pair.name in truth_counts:
            kwargs = {} if min_area is None else {"min_area": min_area}
            n_pred = int(label_spores(prob, threshold=threshold, **kwargs).max())
            row.update(count_true=truth_counts[pair.name], count_pred=n_pred)
        per_image.append(row)

    result = {**scores_from_counts(*totals), "images": len(pairs), "pixels": int(totals.sum())}
    counted = [r for r in per_image if "count_true" in r]
    if counted:
        true = np.array([r["count_true"] for r in counted], dtype=float)
        pred = np.array([r["count_pred"] for r in counted], dtype=float)
        result.update(
            count_true=int(true.sum()),
            count_pred=int(pred.sum()),
            count_error=float(np.mean(np.abs(pred - true) / np.maximum(true, 1))),
        )
    result["per_image"] = per_image
    return result
