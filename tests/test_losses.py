"""Losses: hand-computed values, per-pixel weights, sigmoid vs softmax, training with (x, y, w)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import unet
from unet.losses import EPSILON, BCEDiceLoss, BCELoss, DiceLoss, get_loss

# One image 2x2: truth [[1, 0], [1, 0]], probabilities [[.9, .2], [.6, .4]].
Y = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
P = np.array([0.9, 0.2, 0.6, 0.4], np.float32).reshape(1, 2, 2, 1)
W = np.array([1, 0, 2, 1], np.float32).reshape(1, 2, 2, 1)


def value(loss, *args):
    return float(loss(*args))


def softmax_pair(p, y):
    """The same prediction as a 2-class softmax head with class-index truth."""
    return np.concatenate([1 - p, p], axis=-1), y.astype(np.int32)


def test_bce_hand_computed_plain_and_weighted():
    ce = -np.log([0.9, 0.8, 0.6, 0.6])
    assert value(BCELoss(), Y, P) == pytest.approx(ce.mean(), rel=1e-6)
    # Weighted mean sum(w * l) / sum(w): weights 1, 0, 2, 1.
    assert value(BCELoss(), Y, P, W) == pytest.approx((ce[0] + 2 * ce[2] + ce[3]) / 4, rel=1e-6)


def test_dice_hand_computed_plain_and_with_inclusion():
    # All pixels: overlap .9 + .6 = 1.5, sum p = 2.1, sum t = 2.
    assert value(DiceLoss(), Y, P) == pytest.approx(1 - (3 + 1) / (4.1 + 1), rel=1e-6)
    # Weights only include/exclude: pixel 1 (p=.2) is out, weight 2 counts once.
    assert value(DiceLoss(), Y, P, W) == pytest.approx(1 - (3 + 1) / (3.9 + 1), rel=1e-6)
    assert value(DiceLoss(smooth=0), Y, P) == pytest.approx(1 - 3 / 4.1, rel=1e-6)


def test_bce_dice_is_the_weighted_sum():
    loss = BCEDiceLoss(bce_weight=0.3, dice_weight=2.0)
    expected = 0.3 * value(BCELoss(), Y, P, W) + 2.0 * value(DiceLoss(), Y, P, W)
    assert value(loss, Y, P, W) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", [BCELoss(), DiceLoss(), BCEDiceLoss()])
def test_padding_with_weight_zero_changes_nothing(loss):
    rng = np.random.default_rng(0)
    y = (rng.random((3, 6, 5, 1)) > 0.6).astype(np.float32)
    p = rng.random((3, 6, 5, 1)).astype(np.float32)
    w = rng.random((3, 6, 5, 1)).astype(np.float32) + 0.5
    # Pad every crop to 10x9 with junk predictions whose weight is 0.
    pad = ((0, 0), (2, 2), (1, 3), (0, 0))
    yp, pp = np.pad(y, pad, constant_values=1), np.pad(p, pad, constant_values=0.01)
    wp = np.pad(w, pad)
    assert value(loss, yp, pp, wp) == pytest.approx(value(loss, y, p, w), rel=1e-5)
    # Keras' default reduction would not: it divides by the number of pixels.
    ref = keras.losses.BinaryCrossentropy()
    assert float(ref(yp, pp, wp)) != pytest.approx(float(ref(y, p, w)), rel=1e-3)


@pytest.mark.parametrize("loss", [BCELoss(), DiceLoss(), BCEDiceLoss()])
def test_softmax_with_two_classes_equals_sigmoid(loss):
    probs, labels = softmax_pair(P, Y)
    assert value(loss, labels, probs, W) == pytest.approx(value(loss, Y, P, W), rel=1e-5)
    # One-hot truth and a missing channel axis on truth and weights work the same.
    one_hot = np.eye(2, dtype=np.float32)[labels[..., 0]]
    assert value(loss, one_hot, probs, W) == pytest.approx(value(loss, Y, P, W), rel=1e-5)
    assert value(loss, Y[..., 0], P, W[..., 0]) == pytest.approx(value(loss, Y, P, W), rel=1e-6)


def test_multiclass_dice_averages_the_foreground_classes():
    # 3 classes, 2 pixels: truth classes [1, 2]; probabilities chosen by hand.
    probs = np.array([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]], np.float32).reshape(1, 1, 2, 3)
    labels = np.array([1, 2]).reshape(1, 1, 2, 1)
    d1 = (2 * 0.7 + 1) / (1.0 + 1 + 1)  # class 1: overlap .7, sum p = 1.0, sum t = 1
    d2 = (2 * 0.6 + 1) / (0.7 + 1 + 1)  # class 2: overlap .6, sum p = 0.7, sum t = 1
    assert value(DiceLoss(), labels, probs) == pytest.approx(1 - (d1 + d2) / 2, rel=1e-6)
    assert value(BCELoss(), labels, probs) == pytest.approx(-np.log([0.7, 0.6]).mean(), rel=1e-6)


def test_empty_masks_and_all_zero_weights_are_safe():
    empty, zero = np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 4, 4, 1), np.float32)
    assert value(DiceLoss(), empty, zero) == pytest.approx(0.0, abs=1e-6)  # both empty: perfect
    assert value(BCELoss(), empty, zero) == pytest.approx(-np.log1p(-EPSILON), abs=1e-6)
    # Saturated, wrong probabilities stay finite thanks to clipping.
    assert np.isfinite(value(BCELoss(), np.ones_like(empty), zero))
    # No pixel counts: the weighted mean is 0, not NaN.
    for loss in (BCELoss(), DiceLoss(), BCEDiceLoss()):
        assert np.isfinite(value(loss, Y, P, np.zeros_like(W)))
    assert value(BCELoss(), Y, P, np.zeros_like(W)) == 0.0


def test_low_precision_predictions_give_float32():
    out = BCEDiceLoss()(Y, tf.constant(P, tf.bfloat16), W)
    assert out.dtype == tf.float32 and np.isfinite(float(out))


def test_get_loss_names_and_errors():
    assert isinstance(get_loss("bce"), BCELoss)
    weighted = get_loss("weighted_bce")
    assert isinstance(weighted, BCELoss) and weighted.name == "weighted_bce"
    dice = get_loss("dice", smooth=2)
    assert isinstance(dice, DiceLoss) and dice.smooth == 2
    assert isinstance(get_loss("BCE_Dice"), BCEDiceLoss)
    loss = DiceLoss()
    assert get_loss(loss) is loss
    with pytest.raises(ValueError, match="bce, dice, bce_dice, weighted_bce"):
        get_loss("focal")


def test_serialization_round_trip():
    loss = BCEDiceLoss(bce_weight=0.5, dice_weight=2.0, smooth=3.0)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, BCEDiceLoss)
    assert (again.bce_weight, again.dice_weight, again.smooth) == (0.5, 2.0, 3.0)


@pytest.mark.parametrize("name, classes", [("bce_dice", 1), ("weighted_bce", 2)])
def test_fit_on_a_dataset_of_image_mask_weight(tmp_path, name, classes):
    """model.fit with (x, y, w) where w is (B, O, O, 1): trains, uses our weighting, saves."""
    model = unet.unet_model((None, None, 1), num_classes=classes, filters=2, depth=2)
    t = unet.input_size_for_output(12, depth=2)
    o = unet.output_size(t, depth=2)
    rng = np.random.default_rng(1)
    x = rng.random((8, t, t, 1), dtype=np.float32)
    c = (t - o) // 2
    y = (x[:, c : c + o, c : c + o] > 0.5).astype(np.float32)
    w = np.ones_like(y)
    w[:, :, o - 3 :] = 0  # padding columns
    data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(4)
    loss = get_loss(name)
    metrics = unet.segmentation_metrics()
    model.compile(keras.optimizers.Adam(1e-2), loss=loss, weighted_metrics=metrics)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {"dice", "iou", "precision", "recall"} <= set(history.history)
    # The reported loss is our weighted mean, batch by batch.
    batch_losses = [float(loss(yb, model.predict_on_batch(xb), wb)) for xb, yb, wb in data]
    assert model.evaluate(data, verbose=0, return_dict=True)["loss"] == pytest.approx(
        np.mean(batch_losses), rel=1e-4
    )
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(
        again.predict_on_batch(x[:2]), model.predict_on_batch(x[:2]), atol=1e-6
    )
