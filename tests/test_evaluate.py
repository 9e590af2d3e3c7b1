"""Evaluation at full size: per-image predictions, pooled pixel scores, counts, models and
plain functions."""

import shutil

import numpy as np
import pytest
from PIL import Image

from unet.evaluate import evaluate, iter_predictions
from unet.io import find_pairs, read_counts, read_mask
from unet.run import load_run


def write_pair(folder, name, mask, image=None):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    image = np.full(mask.shape, 128, np.uint8) if image is None else image
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{name}.png")


def test_scores_are_pooled_over_all_pixels_of_all_images(tmp_path):
    big = np.zeros((40, 50), bool)
    big[5:25, 5:25] = True  # 400 true pixels
    small = np.zeros((10, 10), bool)
    small[2:6, 2:6] = True  # 16 true pixels
    write_pair(tmp_path, "big", big)
    write_pair(tmp_path, "small", small)
    predictions = {
        "big": np.roll(big, 5, axis=1),  # 300 TP, 100 FP, 100 FN
        "small": np.zeros_like(small),  # 0 TP, 0 FP, 16 FN
    }
    truth_of = {}

    def method(raw):
        key = "big" if raw.shape == big.shape else "small"
        truth_of[key] = True
        return predictions[key].astype(np.float32)

    result = evaluate(method, tmp_path, count=False)
    tp, fp, fn = 300, 100, 116
    assert result["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert result["precision"] == pytest.approx(tp / (tp + fp))
    assert result["recall"] == pytest.approx(tp / (tp + fn))
    assert result["images"] == 2 and result["pixels"] == 40 * 50 + 10 * 10
    per_image = {r["image"]: r for r in result["per_image"]}
    assert per_image["small"]["dice"] == 0.0 and "count_true" not in per_image["small"]
    assert truth_of == {"big": True, "small": True}


def test_the_truth_itself_scores_one_and_counts_close(sample_dir):
    folder = sample_dir / "test"
    truth = {p.image.name: read_mask(p.mask) for p in find_pairs(folder)}
    names = iter(sorted(truth))

    def oracle(raw):
        return truth[next(names)].astype(np.float32)

    result = evaluate(oracle, folder)
    assert result["dice"] == result["iou"] == result["precision"] == result["recall"] == 1.0
    assert result["count_true"] == sum(read_counts(folder).values())
    # The truth mask, split by the watershed, gives nearly the true counts.
    assert result["count_error"] < 0.2


def test_a_model_is_scored_on_its_own_tiled_full_size_predictions(trained_run, sample_dir):
    from unet.data import load_image
    from unet.metrics import confusion_counts, scores_from_counts
    from unet.predict import predict_tiled

    run, _ = trained_run
    model, config = load_run(run)
    folder = sample_dir / "test"
    items = list(iter_predictions(model, folder))
    pairs = find_pairs(folder)
    assert [item.name for item in items] == [p.name for p in pairs]
    totals = np.zeros(4, np.int64)
    for item, pair in zip(items, pairs):
        truth = read_mask(pair.mask) > 0
        np.testing.assert_array_equal(item.truth, truth)
        assert item.image.shape == (*truth.shape, 3) and item.labels.shape == truth.shape
        # the same prediction as normalising and tiling the file by hand
        prob = predict_tiled(model, load_image(pair.image, config.channels))
        np.testing.assert_array_equal(item.prob, prob)
        totals += np.asarray(confusion_counts(truth, prob > config.threshold))
    result = evaluate(model, folder, threshold=config.threshold)
    expected = scores_from_counts(*totals)
    assert result["images"] == len(pairs)
    for key in ("dice", "iou", "precision", "recall"):
        assert result[key] == pytest.approx(expected[key])
    assert len(list(iter_predictions(model, folder, limit=2))) == 2


def test_counts_come_from_counts_csv_or_labels(tmp_path, sample_dir):
    folder = tmp_path / "test"
    shutil.copytree(sample_dir / "test", folder)
    from_csv = read_counts(folder)
    (folder / "counts.csv").unlink()
    assert read_counts(folder) == from_csv and len(from_csv) == 4
    shutil.rmtree(folder / "labels")
    assert read_counts(folder) == {}
    (folder / "counts.csv").write_text("image,spores\na,3\n")
    with pytest.raises(ValueError, match="must have the columns name,count"):
        read_counts(folder)


def test_predictions_must_keep_the_image_size(tmp_path):
    write_pair(tmp_path, "a", np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="predictions must keep the image size"):
        evaluate(lambda raw: np.zeros((4, 4)), tmp_path, count=False)
    with pytest.raises(ValueError, match="keras.Model or a function"):
        evaluate("model.keras", tmp_path)
