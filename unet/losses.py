"""Segmentation losses that honour per-pixel weights.

Every loss here takes the model's probabilities ``y_pred`` and

* for a 1-class sigmoid head: ``y_pred`` ``(B, H, W, 1)`` and a binary (or soft)
  ``y_true`` ``(B, H, W, 1)``;
* for a softmax head with ``C >= 2`` classes: ``y_pred`` ``(B, H, W, C)`` and
  ``y_true`` holding class indices ``(B, H, W, 1)`` (or one-hot ``(B, H, W, C)``);
  for binary data with ``C = 2``, class 1 is the foreground.

``sample_weight`` is a per-pixel weight ``(B, H, W, 1)`` (``(B, H, W)`` and
per-image ``(B,)`` weights are broadcast). Keras' own ``Loss.__call__`` would
divide the weighted sum by the number of pixels, so a batch whose crops were
mirror-padded (padding pixels weighted 0) would get a smaller loss than the same
crops unpadded. These losses compute the weighted *mean* instead::

    loss = sum(w * l) / sum(w)          (0 when every weight is 0)

so padding with weight 0 changes nothing. Dice uses the weights as pixel
inclusion (``w > 0``): a pixel either takes part in the overlap sums or not.
Everything is computed in float32 from probabilities (clipped to
``[EPSILON, 1 - EPSILON]`` before the logarithm), also under mixed precision.
Dice and the weighted mean are pooled over all pixels of the batch, not averaged
per image, so crops without spores do not make the loss unstable.
"""

from __future__ import annotations

import keras
from keras import ops

from .errors import UsageError

#: Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before taking logarithms.
EPSILON = 1e-7
#: Default smoothing term of the soft Dice loss (see :class:`DiceLoss`).
SMOOTH = 1.0


def _scale_for_replicas(value):
    """Divide by the number of replicas under a ``tf.distribute`` strategy.

    Keras sums gradients over replicas, so each replica's loss must be divided by
    their number; Keras' own ``Loss.__call__`` does the same.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # already loaded by Keras with this backend

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * (1.0 / replicas)
    return value


def prepare_targets(y_true, y_pred, sample_weight=None):
    """Bring targets, probabilities and weights to one float32 layout.

    Parameters
    ----------
    y_true : tensor
        Binary mask ``(B, H, W, 1)`` for a sigmoid head; class indices
        ``(B, H, W, 1)`` or one-hot ``(B, H, W, C)`` for a softmax head. A missing
        channel axis ``(B, H, W)`` is added.
    y_pred : tensor
        Probabilities ``(B, H, W, C)``; ``C = 1`` means a sigmoid head.
    sample_weight : tensor, optional
        Per-pixel ``(B, H, W, 1)`` / ``(B, H, W)`` or per-image ``(B,)`` weights.

    Returns
    -------
    target, probs, weight : tensors
        ``target`` and ``probs`` of shape ``(B, H, W, C)`` (one-hot for softmax),
        ``weight`` of shape ``(B, H, W, 1)``, all float32.
    """
    probs = ops.cast(y_pred, "float32")
    target = ops.cast(y_true, "float32")
    rank = len(probs.shape)
    if len(target.shape) == rank - 1:
        target = ops.expand_dims(target, -1)
    classes = probs.shape[-1]
    if classes is None:
        raise UsageError("The number of classes (last axis of y_pred) must be known.")
    if classes > 1 and target.shape[-1] == 1:
        target = ops.one_hot(ops.cast(ops.squeeze(target, -1), "int32"), classes)
    if sample_weight is None:
        weight = ops.ones_like(probs[..., :1])
    else:
        weight = ops.cast(sample_weight, "float32")
        while len(weight.shape) < rank:
            weight = ops.expand_dims(weight, -1)
        weight = ops.broadcast_to(weight, ops.shape(probs[..., :1]))
    return target, probs, weight


def pixel_cross_entropy(target, probs):
    """Per-pixel cross-entropy ``(B, H, W, 1)`` from probabilities.

    Binary cross-entropy for a sigmoid head (one channel), categorical
    cross-entropy over the classes for a softmax head.
    """
    probs = ops.clip(probs, EPSILON, 1.0 - EPSILON)
    if probs.shape[-1] == 1:
        return -(target * ops.log(probs) + (1.0 - target) * ops.log(1.0 - probs))
    return -ops.sum(target * ops.log(probs), axis=-1, keepdims=True)


def weighted_mean(values, weight):
    """``sum(w * values) / sum(w)``; 0 when all weights are 0."""
    return ops.divide_no_nan(ops.sum(values * weight), ops.sum(weight))


def soft_dice(target, probs, weight, smooth=SMOOTH):
    """Soft Dice coefficient over the foreground classes, pooled over the batch.

    For each foreground channel ``c`` (the only channel of a sigmoid head,
    classes ``1 .. C-1`` of a softmax head) over the included pixels
    (``weight > 0``)::

        dice_c = (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    and the result is the mean over those channels.
    """
    include = ops.cast(weight > 0, "float32")
    if probs.shape[-1] > 1:
        probs, target = probs[..., 1:], target[..., 1:]
    axes = tuple(range(len(probs.shape) - 1))
    overlap = ops.sum(probs * target * include, axis=axes)
    total = ops.sum(probs * include, axis=axes) + ops.sum(target * include, axis=axes)
    return ops.mean((2.0 * overlap + smooth) / (total + smooth))


class _WeightedLoss(keras.losses.Loss):
    """Base class: ``__call__`` returns the already weight-reduced scalar.

    ``reduction`` is accepted for Keras compatibility but has no effect: the
    result is always the weighted mean described in the module docstring.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            target, probs, weight = prepare_targets(y_true, y_pred, sample_weight)
            return _scale_for_replicas(self._reduce(target, probs, weight))

    def call(self, y_true, y_pred):
        """The loss with all pixels weighted 1 (a scalar)."""
        target, probs, weight = prepare_targets(y_true, y_pred)
        return self._reduce(target, probs, weight)

    def _reduce(self, target, probs, weight):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="unet")
class BCELoss(_WeightedLoss):
    """Pixel-weighted cross-entropy: ``sum(w * ce) / sum(w)``.

    Binary cross-entropy for a sigmoid head, categorical cross-entropy for a
    softmax head. With the paper's border weight map multiplied into the sample
    weights (done by the trainer, see :func:`get_loss`), this is the paper's
    weighted cross-entropy.
    """

    def __init__(self, name="bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def _reduce(self, target, probs, weight):
        return weighted_mean(pixel_cross_entropy(target, probs), weight)


@keras.saving.register_keras_serializable(package="unet")
class DiceLoss(_WeightedLoss):
    """Soft Dice loss ``1 - dice`` (see :func:`soft_dice`), pixels with weight 0 left out.

    Parameters
    ----------
    smooth : float
        Added to numerator and denominator. It makes the loss defined (0) when
        prediction and truth are both empty and keeps the gradient finite; at 1
        it is negligible against the thousands of pixels in a batch.
    """

    def __init__(self, smooth=SMOOTH, name="dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def _reduce(self, target, probs, weight):
        return 1.0 - soft_dice(target, probs, weight, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="unet")
class BCEDiceLoss(_WeightedLoss):
    """``bce_weight * BCE + dice_weight * Dice``, both with the weights as above.

    Cross-entropy gives well-scaled per-pixel gradients from the first step;
    Dice counters the imbalance of few foreground pixels. Equal weights (1, 1)
    are the common choice and need no tuning: both terms are of order 1.
    """

    def __init__(self, bce_weight=1.0, dice_weight=1.0, smooth=SMOOTH, name="bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def _reduce(self, target, probs, weight):
        bce = weighted_mean(pixel_cross_entropy(target, probs), weight)
        dice = 1.0 - soft_dice(target, probs, weight, self.smooth)
        return self.bce_weight * bce + self.dice_weight * dice

    def get_config(self):
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
        }


#: Names accepted by :func:`get_loss`.
LOSSES = ("bce", "dice", "bce_dice", "weighted_bce")


def get_loss(name, **kwargs):
    """A loss by name.

    Parameters
    ----------
    name : str or keras.losses.Loss
        ``"bce"`` (cross-entropy), ``"dice"`` (soft Dice), ``"bce_dice"`` (their
        sum) or ``"weighted_bce"``: the paper's border-weighted cross-entropy.
        That one is :class:`BCELoss` itself; the weighting happens in the data:
        the trainer multiplies the sample weights by the border weight map
        (``unet.data.border_weight_map``, w0=10, sigma=5) when this loss is
        chosen. A Loss instance is returned unchanged.
    **kwargs
        Passed to the loss class (e.g. ``smooth``, ``bce_weight``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    if isinstance(name, keras.losses.Loss):
        return name
    classes = {"bce": BCELoss, "dice": DiceLoss, "bce_dice": BCEDiceLoss, "weighted_bce": BCELoss}
    key = str(name).lower()
    if key not in classes:
        raise UsageError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
    return classes[key](name=key, **kwargs)
