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
    assert config.flatten  # the default chose a background window for the sample
    folder = sample_dir / "test"
    items = list(iter_predictions(model, folder))  # prepared as the run was trained
    pairs = find_pairs(folder)
    assert [item.name for item in items] == [p.name for p in pairs]
    totals = np.zeros(4, np.int64)
    for item, pair in zip(items, pairs):
        truth = read_mask(pair.mask) > 0
        np.testing.assert_array_equal(item.truth, truth)
        assert item.image.shape == (*truth.shape, 3) and item.labels.shape == truth.shape
        # the same prediction as flattening, normalising and tiling the file by hand
        prob = predict_tiled(model, load_image(pair.image, config.channels, flatten=config.flatten))
        np.testing.assert_array_equal(item.prob, prob)
        totals += np.asarray(confusion_counts(truth, prob > config.threshold))
    result = evaluate(model, folder, threshold=config.threshold)
    expected = scores_from_counts(*totals)
    assert result["images"] == len(pairs)
    for key in ("dice", "iou", "precision", "recall"):
        assert result[key] == pytest.approx(expected[key])
    assert len(list(iter_predictions(model, folder, limit=2))) == 2
    # a window given by hand wins over the run's; None: the images as they are
    for flatten in (31, None):
        for item, pair in zip(iter_predictions(model, folder, limit=2, flatten=flatten), pairs):
            expected = load_image(pair.image, config.channels, flatten=flatten)
            np.testing.assert_array_equal(item.image, expected)
            np.testing.assert_array_equal(item.prob, predict_tiled(model, expected))


def test_a_model_loaded_without_its_run_is_given_the_images_as_they_are(trained_run, sample_dir):
    import keras

    from unet.model import PREDICTION_DEFAULTS

    from unet.data import load_image

    run, _ = trained_run
    model, config = load_run(run)
    bare = keras.models.load_model(run / "model.keras")  # no config.json read: no window known
    folder = sample_dir / "test"
    pair = find_pairs(folder)[0]
    (item,) = iter_predictions(bare, folder, limit=1)
    np.testing.assert_array_equal(item.image, load_image(pair.image, config.channels))
    (flat,) = iter_predictions(model, folder, limit=1)
    assert not np.allclose(flat.image, item.image)
    scores = evaluate(bare, folder, count=False)
    assert scores == evaluate(model, folder, count=False, **PREDICTION_DEFAULTS)
    assert scores != evaluate(model, folder, count=False)


def test_a_loaded_run_is_used_with_the_post_processing_it_chose(tmp_path, trained_run,
                                                                sample_dir):
    import keras
    from conftest import copy_run

    from unet.model import PREDICTION_DEFAULTS, prediction_settings

    run, _ = trained_run
    model, config = load_run(run)
    everything = {name: "model" for name in PREDICTION_DEFAULTS}
    assert prediction_settings(model, **everything) == config.prediction_settings()
    chosen = dict(threshold=0.8, split_h=2.0, min_area=60, tta=True)
    other, _ = load_run(copy_run(run, tmp_path / "other", **chosen))  # same weights
    folder = sample_dir / "test"
    result = evaluate(other, folder)
    assert result == evaluate(model, folder, **chosen)
    assert result != evaluate(other, folder, threshold=config.threshold, split_h=config.split_h,
                              min_area=config.min_area, tta=False)
    # a value given wins; a model from elsewhere gets the documented defaults
    assert prediction_settings(other, threshold=0.3, tta="model") == {"threshold": 0.3,
                                                                      "tta": True}
    bare = keras.models.load_model(run / "model.keras")
    assert prediction_settings(bare, **everything) == PREDICTION_DEFAULTS
    with pytest.raises(ValueError, match="threshhold is not a prediction setting"):
        prediction_settings(model, threshhold=0.5)


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
    write_pair(tmp_path, "a", np.eye(8, dtype=bool))
    with pytest.raises(ValueError, match="predictions must keep the image size"):
        evaluate(lambda raw: np.zeros((4, 4)), tmp_path, count=False)
    with pytest.raises(ValueError, match="keras.Model or a function"):
        evaluate("model.keras", tmp_path)


def test_object_scores_are_pooled_and_name_their_truth(tmp_path):
    """Two squares, one predicted well, one merged with an invented neighbour."""
    mask = np.zeros((40, 40), bool)
    mask[2:10, 2:10] = True  # object A
    mask[20:30, 20:30] = True  # object B
    pred = np.zeros((40, 40), np.float32)
    pred[2:10, 2:10] = 1.0  # A exactly (IoU 1)
    pred[20:30, 20:25] = 1.0  # half of B (IoU 0.5: no match at 0.5)
    pred[35:39, 35:39] = 1.0  # invented (16 px, kept by min_area)
    write_pair(tmp_path, "a", mask)
    result = evaluate(lambda raw: pred, tmp_path, min_area=4)
    # tp 1, fp 2 (half of B, the invented one), fn 1 (B)
    assert result["object_truth"] == "mask components"
    assert result["object_precision"] == pytest.approx(1 / 3)
    assert result["object_recall"] == pytest.approx(1 / 2)
    assert result["object_f1"] == pytest.approx(2 / (3 + 2))
    # AP(t) = tp / (tp + fp + fn): 1/4 at every threshold (A matches up to IoU 1)
    assert result["ap_50_95"] == pytest.approx(0.25)
    # B half found is outlined too differently; the invented square lies on background
    assert result["object_errors"] == {"true": 2, "pred": 3, "matched": 1, "missed": 0,
                                       "merged": 0, "split": 0, "outline": 1, "spurious": 1}

    ids = np.zeros((40, 40), np.uint16)  # the same truth as an instance-id mask
    ids[2:10, 2:10], ids[20:30, 20:30] = 3, 7
    ids_dir = tmp_path / "ids"
    write_pair(ids_dir, "a", mask)
    Image.fromarray(ids).save(ids_dir / "masks" / "a.png")
    assert evaluate(lambda raw: pred, ids_dir, min_area=4)["object_truth"] == "mask ids"


def test_a_perfect_method_scores_one_on_objects(sample_dir):
    from unet.io import read_labels

    folder = sample_dir / "test"
    labels = {p.name: read_labels(p.labels) for p in find_pairs(folder)}
    order = iter(sorted(labels))
    result = evaluate(lambda raw: (labels[next(order)] > 0).astype(np.float32), folder,
                      split_h=0.5)
    assert result["object_truth"] == "labels"
    assert result["object_f1"] > 0.9 and result["ap_50_95"] > 0.8


# ------------------------------------------------- the same mask checks as training
def spots(shape=(40, 40)):
    mask = np.zeros(shape, bool)
    mask[5:12, 5:12] = mask[20:30, 22:31] = True
    return mask


def test_inverted_masks_are_refused_by_evaluate_and_by_training(tmp_path):
    from unet.data import load_folder
    from unet.errors import UsageError

    for name in ("a", "b"):
        write_pair(tmp_path, name, ~spots())  # drawn black on white
    with pytest.raises(UsageError, match="look inverted.*invert the masks"):
        evaluate(lambda raw: spots().astype(np.float32), tmp_path)
    with pytest.raises(UsageError, match="look inverted"):
        load_folder(tmp_path)
    assert len(load_folder(tmp_path, check_masks=False).masks) == 2
    write_pair(tmp_path, "b", spots())  # one right mask: the set is not inverted
    assert evaluate(lambda raw: spots().astype(np.float32), tmp_path, count=False)["images"] == 2


def test_evaluate_accepts_empty_masks_and_warns_about_jpeg_masks(tmp_path):
    write_pair(tmp_path, "blank", np.zeros((30, 30), bool))
    result = evaluate(lambda raw: np.zeros(raw.shape[:2], np.float32), tmp_path)
    assert result["images"] == 1 and result["per_image"][0]["count_pred"] == 0
    mask = (spots() * 255).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "masks" / "spots.jpg", quality=70)
    Image.fromarray(np.full(mask.shape, 128, np.uint8)).save(tmp_path / "images" / "spots.png")
    with pytest.warns(UserWarning, match="spots.jpg are JPEG"):
        evaluate(lambda raw: np.zeros(raw.shape[:2], np.float32), tmp_path, count=False)


def test_counts_that_match_no_image_are_reported(tmp_path):
    write_pair(tmp_path, "one", spots())
    write_pair(tmp_path, "two", spots())
    (tmp_path / "counts.csv").write_text("name,count\none,2\none.png,2\n")
    with pytest.warns(UserWarning) as caught:
        result = evaluate(lambda raw: spots().astype(np.float32), tmp_path)
    said = " ".join(str(w.message) for w in caught)
    assert "names one.png, which match no image" in said
    assert "has no count for two" in said
    assert result["count_true"] == 2 and result["count_pred"] == 2
