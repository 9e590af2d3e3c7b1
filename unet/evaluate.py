"""Evaluation of a trained model on a data folder, at every image's original size.

Pixel scores (Dice, IoU, precision, recall) are pooled over all pixels of all
images: the true/false positives and negatives of every image are summed first,
then the scores are computed once, so large images weigh by their pixel count.
Where the truth has instance labels or a ``counts.csv``, spores are counted in the
prediction and compared with the true counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._tf import quiet_retracing
from .count import (AP_THRESHOLDS, label_spores, object_scores, object_scores_from_counts,
                    relative_count_error)
from .data import check_mask_set
from .errors import UsageError
from .image import prepare_image
from .io import find_pairs, read_counts, read_image, read_labels, read_mask
from .metrics import confusion_counts, scores_from_counts
from .model import FROM_MODEL, prediction_settings
from .predict import predict_tiled


@dataclass
class Prediction:
    """One image of a data folder with its truth and the model's prediction.

    Attributes
    ----------
    name : str
        File stem.
    image : numpy.ndarray
        The image as the method saw it: float32 ``(H, W, C)`` normalised for a
        model, the file's own array for a function.
    truth : numpy.ndarray
        bool ``(H, W)`` mask.
    prob : numpy.ndarray
        float32 ``(H, W)`` foreground probability, at the image's own size.
    labels : numpy.ndarray or None
        int32 ``(H, W)`` true instance labels, when the folder has ``labels/``.
    mask_ids : numpy.ndarray or None
        int32 ``(H, W)``: the mask itself when it holds instance ids (more than one
        non-zero value) and there is no ``labels/``.
    """

    name: str
    image: np.ndarray
    truth: np.ndarray
    prob: np.ndarray
    labels: np.ndarray | None = None
    mask_ids: np.ndarray | None = None


def iter_predictions(model, data_dir, tta=FROM_MODEL, progress=False, limit=None,
                     flatten=FROM_MODEL):
    """Predict every image of a data folder at its original size, one at a time.

    Parameters
    ----------
    model : keras.Model or callable
        A U-Net built by this package (any padding, static or ``None`` input size):
        each image is normalised as in training and predicted by overlap-tiles at
        its own size. Or any function ``raw image -> (height, width)`` probability
        map or binary mask, e.g. ``unet.baseline.baseline_mask``, used as it is.
    data_dir : path
        A data folder (``images/``, ``masks/``, optional ``labels/``).
    tta : bool or "model"
        Test-time augmentation (see :func:`unet.predict.predict_tiled`; a U-Net only).
        ``"model"`` (the default): as the model's run predicts (off for a model from
        elsewhere; :func:`unet.model.prediction_settings`).
    progress : bool
        Show a progress bar over images.
    limit : int, optional
        Only the first ``limit`` images (by name).
    flatten : int, None or "model"
        The brightfield background window divided out of each image before it is
        normalised (a U-Net only). ``"model"`` (the default): the window the model's run
        was trained with, which a model loaded by :func:`unet.run.load_run` carries
        (:func:`unet.model.prediction_settings`; none for a model from elsewhere); an
        int: that window; None: the images as they are.

    Yields
    ------
    Prediction
    """
    import keras
    from tqdm.auto import tqdm

    if isinstance(model, keras.Model):
        channels = model.input_shape[-1]
        chosen = prediction_settings(model, flatten=flatten, tta=tta)
        flatten, tta = chosen["flatten"], chosen["tta"]

        def prepare(raw):
            return prepare_image(raw, channels, flatten=flatten)

        def predict(image):
            with quiet_retracing():
                return predict_tiled(model, image, tta=tta)

    elif callable(model):
        prepare, predict = (lambda raw: raw), model
    else:
        raise UsageError(f"model must be a keras.Model or a function, got {type(model).__name__}.")
    pairs = find_pairs(data_dir)[:limit]
    # the checks of training, before any prediction; each mask is read again below
    # rather than all held at once (a mask costs little to read next to its prediction)
    check_mask_set(data_dir, ((pair.mask, read_mask(pair.mask)) for pair in pairs),
                   allow_empty=True)
    for pair in tqdm(pairs, desc="predict", unit="image", disable=None if progress else True):
        raw = read_image(pair.image)
        truth = read_mask(pair.mask).astype(bool)
        if truth.shape != raw.shape[:2]:
            raise UsageError(
                f"Mask {pair.mask} is {truth.shape[1]}x{truth.shape[0]} but its image is "
                f"{raw.shape[1]}x{raw.shape[0]}; masks must match their images."
            )
        labels = read_labels(pair.labels) if pair.labels is not None else None
        mask_ids = None
        if labels is None:
            ids = read_labels(pair.mask)
            mask_ids = ids if np.unique(ids).size > 2 else None
        image = prepare(raw)
        prob = np.asarray(predict(image), dtype=np.float32)
        if prob.shape != truth.shape:
            raise UsageError(
                f"The prediction for {pair.image} has shape {prob.shape}, not the image's "
                f"{truth.shape}; predictions must keep the image size."
            )
        yield Prediction(pair.name, image, truth, prob, labels, mask_ids)


def true_instances(item):
    """True objects of a :class:`Prediction` and where they come from.

    ``labels/`` when the folder has it; else the mask itself when it holds instance ids
    (more than one non-zero value); else the connected components of the binary mask
    (touching objects then count as one).

    Returns
    -------
    (numpy.ndarray, str)
        int32 labels and ``"labels"``, ``"mask ids"`` or ``"mask components"``.
    """
    if item.labels is not None:
        return np.asarray(item.labels, np.int32), "labels"
    if item.mask_ids is not None:
        return item.mask_ids, "mask ids"
    from scipy import ndimage as ndi

    return ndi.label(item.truth)[0].astype(np.int32), "mask components"


def evaluate(model, data_dir, threshold=FROM_MODEL, tta=FROM_MODEL, count=True, progress=False,
             min_area=FROM_MODEL, split_h=FROM_MODEL, flatten=FROM_MODEL):
    """Score a model (or any segmentation method) on ``data_dir/images`` vs ``masks/``.

    Parameters
    ----------
    model : keras.Model or callable
        What :func:`iter_predictions` accepts: a U-Net, or a function from a raw
        image to a probability map or mask (e.g. ``unet.baseline.baseline_mask``).
    data_dir : path
        A data folder (``images/``, ``masks/``, optional ``labels/`` or ``counts.csv``).
    threshold : float or "model"
        Foreground probability threshold.
    tta : bool or "model"
        Average the predictions of flipped/rotated copies (slower; a U-Net only).
    count : bool
        Also count and match objects.
    progress : bool
        Show a progress bar over images.
    min_area, split_h : int, float, None or "model"
        Post-processing of :func:`unet.count.label_spores` (None: its own defaults).
    flatten : int, None or "model"
        The background window (see :func:`iter_predictions`).

    ``"model"``, the default of each setting: what the model's run chose, which a model
    loaded by :func:`unet.run.load_run` carries (its calibrated post-processing); for a
    model from elsewhere or a function, threshold 0.5, the labelling's own split height
    and smallest area, no augmentation, the images as they are
    (:func:`unet.model.prediction_settings`).

    Returns
    -------
    dict
        Pixel scores pooled over all pixels of all images: ``dice``, ``iou``,
        ``precision``, ``recall``; ``images``, ``pixels``. With ``count``: objects
        matched at IoU >= 0.5, pooled over images (``object_precision``,
        ``object_recall``, ``object_f1``), the mean over images of the average precision
        over IoU 0.5:0.95 (``ap_50_95``, the DSB2018 score) and where the true objects
        came from (``object_truth``: ``labels``, ``mask ids``, ``mask components`` or a
        mix, see :func:`true_instances`), and what went wrong with the unmatched objects
        (``object_errors``: :func:`unet.count.object_errors` summed over images); where
        true counts exist (``counts.csv`` or ``labels/``): ``count_true``, ``count_pred``
        (totals) and ``count_error`` (mean over images of
        :func:`unet.count.relative_count_error`). ``per_image`` rows.
    """
    data_dir = Path(data_dir)
    post = prediction_settings(model, threshold=threshold, min_area=min_area, split_h=split_h)
    threshold = post["threshold"]
    truth_counts = read_counts(data_dir, [p.name for p in find_pairs(data_dir)]) if count else {}
    totals = np.zeros(4, dtype=np.int64)
    objects = np.zeros((3, len(AP_THRESHOLDS)), dtype=np.int64)  # tp, fp, fn
    errors = {}  # object_errors pooled over images
    per_image, aps, sources = [], [], set()
    # tta and flatten: resolved by iter_predictions
    for item in iter_predictions(model, data_dir, tta=tta, progress=progress, flatten=flatten):
        pred = item.prob > threshold
        counts = np.asarray(confusion_counts(item.truth, pred), dtype=np.int64)
        totals += counts
        row = {"image": item.name, **scores_from_counts(*counts)}
        if count:
            pred_labels = label_spores(item.prob, threshold, post["min_area"], h=post["split_h"])
            truth, source = true_instances(item)
            sources.add(source)
            scores = object_scores(truth, pred_labels, errors=True)
            objects += np.stack([scores["tp"], scores["fp"], scores["fn"]])
            aps.append(float(scores["ap"].mean()))
            for key, value in scores["errors"].items():
                errors[key] = errors.get(key, 0) + value
            row.update(object_f1=object_scores_from_counts(
                           scores["tp"][0], scores["fp"][0], scores["fn"][0])["f1"],
                       ap_50_95=aps[-1], count_pred=int(pred_labels.max(initial=0)))
            if item.name in truth_counts:
                row["count_true"] = truth_counts[item.name]
        per_image.append(row)

    result = {**scores_from_counts(*totals), "images": len(per_image),
              "pixels": int(totals.sum())}
    if count and per_image:
        pooled = object_scores_from_counts(*objects[:, 0])
        result.update(
            object_precision=pooled["precision"],
            object_recall=pooled["recall"],
            object_f1=pooled["f1"],
            ap_50_95=float(np.mean(aps)),
            object_truth=" + ".join(sorted(sources)),
            object_errors=errors,
        )
    counted = [r for r in per_image if "count_true" in r]
    if counted:
        true = np.array([r["count_true"] for r in counted], dtype=float)
        pred = np.array([r["count_pred"] for r in counted], dtype=float)
        result.update(
            count_true=int(true.sum()),
            count_pred=int(pred.sum()),
            count_error=float(np.mean(relative_count_error(true, pred))),
        )
    result["per_image"] = per_image
    return result


