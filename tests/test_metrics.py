"""Metrics: Keras metrics pooled over batches and NumPy scores, against hand counts."""

import keras
import numpy as np
import pytest

from unet.metrics import (
    IoU,
    Dice,
    Precision,
    Recall,
    confusion_counts,
    scores_from_counts,
    segmentation_metrics,
    segmentation_scores,
)

# Truth and prediction, 1x6 pixels: TP at 0, 1; FN at 2; FP at 3; TN at 4, 5.
TRUTH = np.array([1, 1, 1, 0, 0, 0], np.float32).reshape(1, 1, 6, 1)
PROB = np.array([0.9, 0.6, 0.4, 0.7, 0.1, 0.5], np.float32).reshape(1, 1, 6, 1)
HAND = {"dice": 4 / 6, "iou": 2 / 4, "precision": 2 / 3, "recall": 2 / 3}


def keras_scores(y_true, y_pred, sample_weight=None, **kwargs):
    out = {}
    for metric in (Dice(**kwargs), IoU(**kwargs), Precision(**kwargs), Recall(**kwargs)):
        metric.update_state(y_true, y_pred, sample_weight)
        out[metric.name] = float(metric.result())
    return out


def test_keras_metrics_hand_computed_sigmoid():
    assert keras_scores(TRUTH, PROB) == pytest.approx(HAND)
    # 0.5 is not above the threshold 0.5; at 0.3 pixel 2 becomes TP and 5 FP.
    at_03 = {"dice": 6 / 8, "iou": 3 / 5, "precision": 3 / 5, "recall": 1.0}
    assert keras_scores(TRUTH, PROB, threshold=0.3) == pytest.approx(at_03)


def test_keras_metrics_softmax_two_and_three_classes():
    probs2 = np.concatenate([1 - PROB, PROB], -1)
    assert keras_scores(TRUTH.astype(int), probs2) == pytest.approx(HAND)
    # Three classes: foreground = any class > 0, predicted when 1 - p0 > 0.5.
    labels = np.array([1, 2, 2, 0, 0, 0]).reshape(1, 1, 6, 1)
    probs3 = np.stack([1 - PROB[..., 0], PROB[..., 0] / 2, PROB[..., 0] / 2], -1)
    assert keras_scores(labels, probs3) == pytest.approx(HAND)
    # class_id=2 against the rest: p2 = prob / 2 > 0.3 only at pixels 0 and 3.
    per_class = keras_scores(labels, probs3, threshold=0.3, class_id=2)
    # truth class 2 at pixels 1, 2 -> TP 0, FP 2, FN 2
    assert per_class == pytest.approx({"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0})


def test_keras_metrics_pool_over_batches_and_ignore_weight_zero():
    m = Dice()
    m.update_state(TRUTH, PROB)  # TP 2, FP 1, FN 1
    perfect = np.ones((1, 1, 4, 1), np.float32)
    m.update_state(perfect, perfect)  # TP 4
    assert float(m.result()) == pytest.approx(12 / 14)  # pooled, not mean(4/6, 1)
    m.reset_state()
    weight = np.array([1, 1, 0, 0, 1, 3], np.float32).reshape(1, 1, 6, 1)  # hide FN and FP
    m.update_state(TRUTH, PROB, weight)
    assert float(m.result()) == pytest.approx(1.0)
    # binary_weights=False sums the weights: TP 1 + 3, FN 2, FP 4 (pixel 5: 0.5 is not > 0.5).
    w2 = np.array([1, 3, 2, 4, 1, 1], np.float32).reshape(1, 1, 6, 1)
    weighted = keras_scores(TRUTH, PROB, w2, binary_weights=False)
    assert weighted["dice"] == pytest.approx(2 * 4 / (2 * 4 + 4 + 2))
    assert keras_scores(TRUTH, PROB, w2)["dice"] == pytest.approx(HAND["dice"])


def test_keras_metrics_empty_conventions():
    empty = np.zeros((1, 3, 3, 1), np.float32)
    assert keras_scores(empty, empty) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    zeros = {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert keras_scores(empty + 1, empty) == zeros
    assert keras_scores(empty, empty + 1) == zeros


def test_keras_metric_config_and_registration():
    m = IoU(threshold=0.3, class_id=2, name="iou_c2")
    again = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert isinstance(again, IoU)
    assert (again.threshold, again.class_id, again.name) == (0.3, 2, "iou_c2")
    names = [metric.name for metric in segmentation_metrics()]
    assert names == ["dice", "iou", "precision", "recall"]


def test_numpy_counts_and_scores_match_the_keras_metrics():
    rng = np.random.default_rng(3)
    truth = rng.random((2, 17, 23, 1)) > 0.6
    prob = rng.random((2, 17, 23, 1)).astype(np.float32)
    counts = confusion_counts(truth, prob > 0.5)
    t, p = truth.ravel(), prob.ravel() > 0.5
    assert counts == (np.sum(t & p), np.sum(~t & p), np.sum(t & ~p), np.sum(~t & ~p))
    expected = keras_scores(truth.astype(np.float32), prob)
    assert scores_from_counts(*counts) == pytest.approx(expected)


def test_numpy_masks_any_positive_value_and_ignore_mask():
    truth = np.array([[0, 255, 255], [0, 0, 7]], np.uint8)  # 0/255 and label values
    pred = np.array([[1, 1, 0], [0, 0, 1]], bool)
    assert confusion_counts(truth, pred) == (2, 1, 1, 2)
    keep = np.array([[0, 1, 1], [1, 1, 1]])
    assert confusion_counts(truth, pred, mask=keep) == (2, 0, 1, 2)
    assert segmentation_scores(truth, pred) == pytest.approx(
        {"dice": 4 / 6, "iou": 2 / 4, "precision": 2 / 3, "recall": 2 / 3}
    )


def test_numpy_pooling_and_empty_rules():
    # Pooling sums counts first: an empty image adds nothing.
    a = confusion_counts([[1, 1, 0]], [[1, 0, 0]])
    b = confusion_counts([[0, 0, 0]], [[0, 0, 0]])
    pooled = np.add(a, b)
    assert scores_from_counts(*pooled)["dice"] == pytest.approx(2 / 3)
    assert scores_from_counts(0, 0, 0) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert scores_from_counts(0, 0, 5) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert scores_from_counts(0, 5, 0) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}


def test_numpy_refuses_mismatched_shapes_and_probabilities():
    with pytest.raises(ValueError, match="same shape"):
        confusion_counts(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="probability map"):
        confusion_counts(np.zeros((2, 2)), np.full((2, 2), 0.7))
    with pytest.raises(ValueError, match="non-negative"):
        scores_from_counts(1, -1, 0)
