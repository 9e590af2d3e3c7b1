"""Evaluation at full size: per-image predictions and pooled scores."""

import numpy as np

from unet.data import find_pairs, read_mask
from unet.evaluate import evaluate, iter_predictions
from unet.train import load_run


def test_iter_predictions_and_evaluate_agree(trained_run, sample_dir):
    run, _ = trained_run
    model, config = load_run(run)
    folder = sample_dir / "test"
    items = list(iter_predictions(model, folder))
    pairs = find_pairs(folder)
    assert [p.name for p in items] == [p.name for p in pairs]
    tp = fp = fn = 0
    for item, pair in zip(items, pairs):
        truth = read_mask(pair.mask) > 0
        np.testing.assert_array_equal(item.truth, truth)
        assert item.prob.shape == truth.shape and item.prob.dtype == np.float32
        assert item.image.shape == (*truth.shape, 3)
        assert item.labels is not None and item.labels.shape == truth.shape
        pred = item.prob > config.threshold
        tp += np.sum(pred & truth)
        fp += np.sum(pred & ~truth)
        fn += np.sum(~pred & truth)
    result = evaluate(model, folder, threshold=config.threshold)
    assert result["images"] == len(pairs)
    assert result["dice"] == 2 * tp / (2 * tp + fp + fn)
    assert len(list(iter_predictions(model, folder, limit=2))) == 2
