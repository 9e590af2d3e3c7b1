"""Segmentation scores: Keras metrics for training, NumPy functions for evaluation.

Both count true positives (TP), false positives (FP) and false negatives (FN)
of the foreground and pool them over *all pixels of all images* before dividing:

* Dice (F1)  = 2 TP / (2 TP + FP + FN)
* IoU        = TP / (TP + FP + FN)
* precision  = TP / (TP + FP)
* recall     = TP / (TP + FN)

Empty masks: when a denominator is 0 the score is 1.0 if truth *and*
prediction are both empty (nothing to find, nothing found) and 0.0 otherwise. So
two empty masks score 1 everywhere; an empty prediction of a non-empty truth has
precision 0 and recall 0; a non-empty prediction of an empty truth has precision
0 and recall 0.

Foreground: for a sigmoid head (one channel) a pixel is predicted foreground when
its probability is ``> threshold``; for a softmax head when the foreground
probability ``1 - p(class 0)`` is ``> threshold`` (for 2 classes: ``p1 > 0.5``),
or, with ``class_id=k``, when ``p(class k) > threshold`` (one class against the
rest). Truth: a binary mask (``> 0.5``) for a sigmoid head, class indices (or
one-hot) for a softmax head.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .errors import UsageError

SCORES = ("dice", "iou", "precision", "recall")


# --------------------------------------------------------------------------------------
# Shared arithmetic (works on NumPy numbers and on tensors)
# --------------------------------------------------------------------------------------
def _ratio(numerator, denominator, both_empty, where, divide):
    """``numerator / denominator``, or 1/0 by the empty-mask rule when it is 0/0."""
    empty_value = where(both_empty, 1.0, 0.0)
    safe = where(denominator > 0, denominator, 1.0)
    return where(denominator > 0, divide(numerator, safe), empty_value)


def _scores(tp, fp, fn, where, divide):
    both_empty = (tp + fp + fn) == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty, where, divide),
        "iou": _ratio(tp, tp + fp + fn, both_empty, where, divide),
        "precision": _ratio(tp, tp + fp, both_empty, where, divide),
        "recall": _ratio(tp, tp + fn, both_empty, where, divide),
    }


# --------------------------------------------------------------------------------------
# NumPy: full-size evaluation
# --------------------------------------------------------------------------------------
def confusion_counts(truth, pred, mask=None):
    """Pixel counts ``(tp, fp, fn, tn)`` of two binary masks.

    Parameters
    ----------
    truth, pred : array_like
        Masks of the same shape; any value > 0 is foreground (0/1, 0/255, bool
        and label images all work). A probability map must be thresholded
        first (``prob > 0.5``): a float array with values strictly between 0
        and 1 is refused.
    mask : array_like, optional
        Pixels to count (> 0); the rest are ignored.

    Returns
    -------
    tuple of int
        ``(tp, fp, fn, tn)``. Sum them over many images and pass the totals to
        :func:`scores_from_counts` to pool the scores over all pixels.
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise UsageError(
            f"Truth and prediction must have the same shape, got {truth.shape} and "
            f"{pred.shape}; predict at the image's full size (no resizing)."
        )
    if pred.dtype.kind == "f" and np.any((pred > 0) & (pred < 1)):
        raise UsageError(
            "The prediction holds values between 0 and 1, so it looks like a probability "
            "map; threshold it first, e.g. pred > 0.5."
        )
    t, p = truth > 0, pred > 0
    if mask is not None:
        mask = np.asarray(mask) > 0
        if mask.shape != t.shape:
            raise UsageError(f"mask must have the masks' shape {t.shape}, got {mask.shape}.")
        t, p = t[mask], p[mask]
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    tn = int(t.size - tp - fp - fn)
    return tp, fp, fn, tn


def scores_from_counts(tp, fp, fn, tn=None):
    """Dice, IoU, precision and recall from (pooled) pixel counts.

    ``tn`` is accepted so that ``scores_from_counts(*confusion_counts(t, p))``
    works; none of these scores uses it. Empty masks follow the rule in the
    module docstring (both empty -> 1.0).

    Returns
    -------
    dict
        ``{"dice", "iou", "precision", "recall"}`` as floats.
    """
    tp, fp, fn = (float(v) for v in (tp, fp, fn))
    if min(tp, fp, fn) < 0:
        raise UsageError(f"Counts must be non-negative, got tp={tp}, fp={fp}, fn={fn}.")

    def where(cond, a, b):
        return a if cond else b

    return {k: float(v) for k, v in _scores(tp, fp, fn, where, lambda a, b: a / b).items()}


def segmentation_scores(truth, pred, mask=None):
    """Scores of one pair of masks: ``scores_from_counts(*confusion_counts(...))``."""
    return scores_from_counts(*confusion_counts(truth, pred, mask))


# --------------------------------------------------------------------------------------
# Keras metrics: pooled over an epoch
# --------------------------------------------------------------------------------------
def foreground_masks(y_true, y_pred, threshold=0.5, class_id=None):
    """Boolean truth and prediction ``(B, H, W)`` of the foreground (tensors).

    See the module docstring for the sigmoid/softmax rules.
    """
    probs = ops.cast(y_pred, "float32")
    target = ops.cast(y_true, "float32")
    classes = probs.shape[-1]
    if len(target.shape) == len(probs.shape) - 1:
        target = ops.expand_dims(target, -1)
    if classes == 1:
        if class_id not in (None, 0):
            raise UsageError(f"class_id must be None for a sigmoid head, got {class_id!r}.")
        return target[..., 0] > 0.5, probs[..., 0] > threshold
    if target.shape[-1] == classes:  # one-hot truth
        index = ops.argmax(target, axis=-1)
    else:  # class indices
        index = ops.cast(target[..., 0], "int32")
    if class_id is None:
        return index > 0, (1.0 - probs[..., 0]) > threshold
    return index == class_id, probs[..., class_id] > threshold


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates weighted TP, FP and FN over all pixels of all batches.

    Parameters
    ----------
    threshold : float
        A pixel is predicted foreground when its foreground probability is above it.
    class_id : int, optional
        For softmax heads: score this class against all others instead of
        foreground (any class > 0) against background.
    binary_weights : bool
        If True (default), ``sample_weight`` only says which pixels count
        (``w > 0``), each counting once, so a border weight map used for the
        loss does not distort the score. If False the weights themselves are
        summed.
    """

    _score = None

    def __init__(self, threshold=0.5, class_id=None, binary_weights=True, name=None, dtype=None):
        super().__init__(name=name or self._score, dtype=dtype)
        self.threshold = float(threshold)
        self.class_id = None if class_id is None else int(class_id)
        self.binary_weights = bool(binary_weights)
        self.tp = self.add_variable((), "zeros", dtype="float32", name="tp")
        self.fp = self.add_variable((), "zeros", dtype="float32", name="fp")
        self.fn = self.add_variable((), "zeros", dtype="float32", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, pred = foreground_masks(y_true, y_pred, self.threshold, self.class_id)
        if sample_weight is None:
            weight = ops.ones_like(ops.cast(truth, "float32"))
        else:
            weight = ops.cast(sample_weight, "float32")
            if len(weight.shape) == len(truth.shape) + 1:
                weight = ops.squeeze(weight, -1)
            while len(weight.shape) < len(truth.shape):
                weight = ops.expand_dims(weight, -1)
            weight = ops.broadcast_to(weight, ops.shape(truth))
            if self.binary_weights:
                weight = ops.cast(weight > 0, "float32")
        truth, pred = ops.cast(truth, "float32"), ops.cast(pred, "float32")
        self.tp.assign_add(ops.sum(weight * truth * pred))
        self.fp.assign_add(ops.sum(weight * (1.0 - truth) * pred))
        self.fn.assign_add(ops.sum(weight * truth * (1.0 - pred)))

    def reset_state(self):
        for variable in (self.tp, self.fp, self.fn):
            variable.assign(0.0)

    def result(self):
        return _scores(self.tp, self.fp, self.fn, ops.where, ops.divide)[self._score]

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "class_id": self.class_id,
            "binary_weights": self.binary_weights,
        }


@keras.saving.register_keras_serializable(package="unet")
class Dice(_ConfusionMetric):
    """Dice coefficient 2TP / (2TP + FP + FN), pooled over the epoch."""

    _score = "dice"


@keras.saving.register_keras_serializable(package="unet")
class IoU(_ConfusionMetric):
    """Intersection over union TP / (TP + FP + FN), pooled over the epoch."""

    _score = "iou"


@keras.saving.register_keras_serializable(package="unet")
class Precision(_ConfusionMetric):
    """Precision TP / (TP + FP), pooled over the epoch."""

    _score = "precision"


@keras.saving.register_keras_serializable(package="unet")
class Recall(_ConfusionMetric):
    """Recall TP / (TP + FN), pooled over the epoch."""

    _score = "recall"


def segmentation_metrics(threshold=0.5, class_id=None):
    """``[Dice, IoU, Precision, Recall]`` for ``model.compile(weighted_metrics=...)``."""
    return [cls(threshold, class_id) for cls in (Dice, IoU, Precision, Recall)]
