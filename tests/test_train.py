"""Training: the config, precision and strategy choices, a run that learns, resuming."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import tensorflow as tf
import numpy as np
import pytest

import unet
from conftest import TINY

from unet.train import Config, _StopOnNaN, load_run, make_strategy, read_history, resolve_precision, train

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ config
def test_the_training_window_sets_the_tile_and_is_chosen_from_the_data(sample_dir):
    from unet.data import MAX_AUTO_CROP, choose_crop_size, load_folder

    config = Config(crop_size=100)
    assert (config.tile_size, config.output_tile_size) == (188, 100)  # depth 3
    deep = Config(depth=4, crop_size=100)
    assert (deep.tile_size, deep.output_tile_size) == (284, 100)
    assert config.skip == "crop" and config.num_classes == 1
    same = Config(padding="same", crop_size=100)
    assert same.tile_size == same.output_tile_size == 104  # a multiple of 2**3
    assert Config(padding="same", depth=4, crop_size=100).tile_size == 112
    with pytest.raises(ValueError, match="chosen from the data"):
        Config().tile_size  # noqa: B018
    crops = load_folder(sample_dir / "train")
    assert choose_crop_size(crops, 3) == 100  # crops of <= 100 px are used whole
    rows, cols = np.mgrid[:1024, :1024]
    disks = np.zeros((1024, 1024), np.uint8)
    for cy, cx in ((100, 100), (500, 300), (800, 900)):
        disks |= ((rows - cy) ** 2 + (cols - cx) ** 2 <= 20**2).astype(np.uint8)  # 40 px wide
    field = crops.__class__(["f"], [np.zeros((1024, 1024, 3), np.float32)], [disks])
    # a large image: room for three of its largest objects (3 x 40 px; the context is 2 x 44)
    assert choose_crop_size(field, 3) == unet.tile_size_for(120, 3)[1]
    # large objects: the window stops at MAX_AUTO_CROP (a 220 px tile at depth 3), which
    # bounds the time of the default training whatever the object size
    big = ((rows - 500) ** 2 + (cols - 500) ** 2 <= 45**2).astype(np.uint8)  # 90 px wide
    large = crops.__class__(["f"], [np.zeros((1024, 1024, 3), np.float32)], [big])
    window = choose_crop_size(large, 3)
    assert window == MAX_AUTO_CROP < 3 * 90
    assert Config(crop_size=window).tile_size == 220


def test_auto_steps_spend_about_the_same_pixels_on_any_training_window():
    from unet.run import MAX_AUTO_STEPS, TRAINING_PIXELS, choose_steps

    assert Config().steps == "auto"
    assert choose_steps(220, 8) == 3000  # the largest window crop_size=None chooses
    assert choose_steps(188, 8) == 4100  # the 100 px spore crops: 4108 rounded to an epoch
    assert choose_steps(188, 16) == 2100 and choose_steps(188, 8, 50) == 4100
    assert choose_steps(300, 8) == 1600  # a larger explicit window gets fewer steps
    for tile in (124, 148, 188, 220, 284, 540):
        steps = choose_steps(tile, 8)
        assert steps % 100 == 0 and 100 <= steps <= MAX_AUTO_STEPS
        if steps < MAX_AUTO_STEPS:  # within half an epoch of the budget
            assert abs(steps * 8 * tile**2 - TRAINING_PIXELS) <= 50 * 8 * tile**2
    assert choose_steps(60, 8) == MAX_AUTO_STEPS  # tiny tiles: capped, not 40000 steps
    assert choose_steps(4000, 8) == 100  # at least one epoch
    assert Config().quick().steps == 40
    with pytest.raises(ValueError, match='"auto" is chosen when training starts'):
        Config().epochs  # noqa: B018


def test_config_round_trip_and_unknown_keys(tmp_path):
    config = Config(filters=8, loss="dice", train_limit=10)
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['filtres'\]"):
        Config.from_dict({"filtres": 8})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Config.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Config.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(loss="focal"), "loss`? must be one of"),
        (dict(padding="full"), "padding`? must be one of"),
        (dict(steps=0), "steps`? must be a positive integer"),
        (dict(crop_size=-4), "crop_size`? must be a positive integer"),
        (dict(split_h=0), "split_h`? must be positive"),
        (dict(filters=2.5), "filters`? must be a positive integer"),
        (dict(threshold=1.0), "threshold`? must be between 0 and 1"),
        (dict(learning_rate=0), "learning_rate`? must be positive"),
        (dict(foreground_fraction=1.5), "foreground_fraction`? must be between 0 and 1"),
        (dict(validation_share=0), "validation_share`? must be above 0 and at most 1"),
        (dict(max_minutes=0), "max_minutes`? must be above 0, or null"),
    ],
)
def test_config_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        Config(**values)


def test_config_changes_augmentation_fields_and_refuses_unknown_ones(tmp_path):
    config = Config(augmentation={"brightness": 0.2, "contrast": 0.5, "gamma": 0.4,
                                  "elastic_grid": 4.0})
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    changed = unet.Augmentation.from_overrides(config.augmentation)
    assert (changed.brightness, changed.contrast, changed.gamma) == (0.2, 0.5, 0.4)
    assert changed.elastic_grid == 4 and isinstance(changed.elastic_grid, int)
    assert changed.rotation == unet.Augmentation().rotation  # the rest as by default
    assert unet.Augmentation.from_overrides(None) == unet.Augmentation()
    for bad, message in (({"contras": 0.5}, r"Unknown augmentation field\(s\) \['contras'\]"),
                         ({"contrast": "high"}, "contrast must be a number"),
                         ({"flip": 1}, "flip must be true or false"),
                         ({"elastic_grid": 2.5}, "elastic_grid must be an integer"),
                         ({"gamma": -0.1}, "gamma must be >= 0")):
        with pytest.raises(ValueError, match=message):
            Config(augmentation=bad)
    with pytest.raises(ValueError, match="augmentation`? must be an object or null"):
        Config(augmentation=[0.5])


def test_quick_config_is_short():
    quick = Config(steps=5000).quick()
    assert quick.steps == 40 and quick.epochs == 4 and quick.train_limit == 64
    assert quick.val_limit == 16


# --------------------------------------------------------------------------- precision
def test_precision_choices():
    assert resolve_precision("fp32") == "float32"
    assert resolve_precision("bf16") == "mixed_bfloat16"
    assert resolve_precision("fp16") == "mixed_float16"
    cpu_bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    assert resolve_precision("auto") == ("mixed_bfloat16" if cpu_bf16 else "float32")
    with pytest.raises(ValueError, match="precision`? must be one of"):
        resolve_precision("int8")


def test_describe_hardware_names_the_device_and_the_policy():
    line = unet.describe_hardware("fp32")
    assert line.endswith("precision 'fp32' -> float32")
    assert line.startswith("GPU: " if tf.config.list_physical_devices("GPU") else "CPU only (")


def test_strategy_choices(monkeypatch):
    import tensorflow as tf

    assert make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="strategy`? must be one of"):
        make_strategy("horovod")
    with pytest.raises(ValueError, match="No TPU was found"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multiworker")


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path, sample_dir):
    """MirroredStrategy for real: the CPU split into two logical devices."""
    code = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from unet.train import Config, make_strategy, train
        strategy = make_strategy("mirrored")
        print("replicas", strategy.num_replicas_in_sync)
        config = Config(filters=4, depth=2, steps=4, steps_per_epoch=2, batch_size=4)
        result = train(config, {str(sample_dir)!r}, {str(tmp_path / "run")!r},
                       precision="fp32", strategy="mirrored", verbose=0)
        print("loss", result["history"]["loss"][-1])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas 2" in done.stdout
    assert np.isfinite(float(done.stdout.split("loss")[-1]))
    assert (tmp_path / "run" / "model.keras").exists()


# ---------------------------------------------------------------------------- training
def test_a_short_run_learns_and_writes_its_files(trained_run):
    out, result = trained_run
    for name in ("model.keras", "config.json", "history.csv", "curves.png"):
        assert (out / name).exists(), name
    assert (out / "logs").is_dir() and not (out / "backup").exists()
    saved = Config.load(out / "config.json")
    assert saved.crop_size == 100  # chosen from the data: the largest crop
    assert isinstance(saved.flatten, int)  # "auto" (the default): the window it chose
    chosen = {k: getattr(saved, k) for k in ("crop_size", "flatten", "threshold", "split_h",
                                              "min_area", "calibration", "augmentation")}
    assert saved == Config(**TINY, **chosen) and result["config"] == saved
    assert saved.calibration["objective"].startswith("object F1")  # the sample has labels/
    assert 0 <= saved.calibration["default_score"] <= saved.calibration["score"] <= 1
    assert "calibrated on object F1" in result["calibration_note"]
    dice = result["history"]["val_dice"]
    assert len(dice) == result["epochs"] >= 4 and result["steps"] == 4 * result["epochs"]
    np.testing.assert_array_equal(result["history"]["step"], 4 * np.arange(1, len(dice) + 1))
    # Validation Dice rises well above where it started.
    assert dice.max() >= 0.6 and dice.max() >= dice[0] + 0.3, dice
    # every epoch's wall-clock time is in the history, and together they are the run
    seconds = result["history"]["seconds"]
    assert len(seconds) == len(dice) and np.all(seconds > 0)
    assert seconds.sum() <= result["seconds"] + 1e-6


def test_the_checkpoint_is_the_best_epoch_and_validation_means_what_evaluate_says(
        trained_run, sample_dir):
    from unet.evaluate import evaluate

    out, result = trained_run
    model, config = load_run(out)
    # validation ran on whole images at their own size, at the threshold of training,
    # flattened by the run's background window
    scores = evaluate(model, sample_dir / "val", threshold=TINY.get("threshold", 0.5),
                      count=False, flatten=config.flatten)
    assert scores["dice"] == pytest.approx(result["history"]["val_dice"].max(), abs=1e-6)


def test_nan_loss_stops_training_and_is_reported():
    guard = _StopOnNaN()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    guard.set_model(model)
    guard.on_batch_end(0, {"loss": 0.5})
    assert not guard.fired and not guard.model.stop_training
    guard.on_batch_end(1, {"loss": float("nan")})
    assert guard.fired and guard.model.stop_training


def test_run_directory_guards(tmp_path, trained_run, sample_dir):
    out, _ = trained_run
    with pytest.raises(FileExistsError, match="already holds files"):
        train(Config(**TINY), sample_dir, out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        train(Config(**TINY), sample_dir, tmp_path / "file")
    with pytest.raises(ValueError, match="has no train/ or val/ folder"):
        train(Config(**TINY), sample_dir / "train", tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a bad call


def test_load_run_errors(tmp_path, trained_run):
    out, _ = trained_run
    model, config = load_run(out / "model.keras")
    assert config == result_config(out) and model.output_shape == (None, None, None, 1)
    with pytest.raises(FileNotFoundError, match="holds no model.keras"):
        load_run(tmp_path)
    (tmp_path / "weights.h5").write_text("x")
    with pytest.raises(ValueError, match="is not a .keras model file"):
        load_run(tmp_path / "weights.h5")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="Cannot load the model"):
        load_run(tmp_path / "broken.keras")


# ---------------------------------------------------------------------------- resuming
def result_config(out):
    return Config.load(out / "config.json")


def _train_command(data, out, config_file, steps):
    return [sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(out),
            "--config", str(config_file), "--steps", str(steps), "--precision", "fp32"]


def test_a_killed_run_resumes_where_it_stopped(tmp_path, sample_dir):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps({**TINY, "steps": 24}))  # 6 epochs of 4 steps
    out = tmp_path / "run"
    command = _train_command(sample_dir, out, config_file, 24)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
    history = out / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:  # header + 2
            break
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = read_history(history)["epoch"]
    assert len(done_before) >= 2 and (out / "backup").is_dir()

    second = subprocess.run(command, capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed" in second.stdout
    rows = history.read_text().splitlines()[1:]
    epochs = [int(r.split(",")[0]) for r in rows]
    assert sorted(set(epochs)) == list(range(6))
    # Only the epoch that may have been cut mid-way is repeated, never the whole run.
    assert len(epochs) <= 7 and epochs[: len(done_before)] == list(done_before)
    assert not (out / "backup").exists()
    load_run(out)


# ------------------------------------------------------------------- config and geometry
def test_config_json_has_a_schema_version(tmp_path):
    from unet.run import SCHEMA_VERSION

    Config(**TINY).save(tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    assert Config.load(tmp_path / "c.json") == Config(**TINY)
    del saved["schema_version"]  # a file from before the versioning reads as version 1
    assert Config.from_dict(saved) == Config(**TINY)
    with pytest.raises(ValueError, match="newer than this unet"):
        Config.from_dict({**saved, "schema_version": SCHEMA_VERSION + 1})


def test_a_version_1_config_is_upgraded_from_epochs_to_steps():
    old = {"filters": 8, "epochs": 12, "early_stopping_patience": 8, "reduce_lr_patience": 3,
           "crop_size": 100, "threshold": 0.4}  # what version 1 wrote (no schema_version)
    config = Config.from_dict(old)
    assert (config.steps, config.early_stopping_steps, config.reduce_lr_steps) == (1200, 800, 300)
    assert config.threshold == 0.4 and config.crop_size == 100 and config.filters == 8


def test_geometry_comes_from_the_config_and_is_checked(tmp_path, trained_run):
    from unet.model import model_geometry

    out, _ = trained_run
    model, config = load_run(out)
    geometry = model_geometry(model)
    assert (geometry.depth, geometry.padding, geometry.resize_skips) == (3, "valid", False)
    assert model._unet_geometry is geometry  # read from config.json, not from the layers
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "model.keras").write_bytes((out / "model.keras").read_bytes())
    Config(**{**TINY, "depth": 2}).save(mixed / "config.json")  # the wrong run's config
    with pytest.raises(ValueError, match="does not match its config"):
        load_run(mixed)


def test_an_empty_or_truncated_model_file_is_named_as_such(tmp_path, trained_run):
    out, _ = trained_run
    (tmp_path / "empty.keras").write_bytes(b"")
    data = (out / "model.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    for name in ("empty.keras", "cut.keras"):
        with pytest.raises(ValueError, match="not a complete .keras archive"):
            load_run(tmp_path / name)


def test_without_instance_truth_the_calibration_is_skipped_with_one_line(tmp_path, sample_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_dir / "train", data / "train")
    shutil.copytree(sample_dir / "val", data / "val", ignore=shutil.ignore_patterns("labels"))
    (data / "val" / "counts.csv").unlink()
    result = train(Config(**{**TINY, "steps": 4, "steps_per_epoch": 2}), data, tmp_path / "run",
                   precision="fp32", strategy="default", verbose=0)
    assert result["calibration"] is None
    assert result["calibration_note"].startswith("calibration skipped: the validation split has")
    saved = Config.load(tmp_path / "run" / "config.json")
    assert (saved.threshold, saved.split_h, saved.min_area) == (0.5, None, 16)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"threshold": "0.5"}, "threshold`? must be a number, got '0.5'"),
        ({"learning_rate": "1e-3"}, "learning_rate`? must be a number"),
        ({"augment": "false"}, "augment`? must be true or false, got 'false'"),
        ({"threshold": None}, "threshold`? must be a number, got None"),
        ({"dropout": "x"}, "dropout`? must be a number"),
        ({"depth": 24}, "depth`? must be a positive integer no larger than 6"),
        ({"filters": 10**6}, "filters`? must be a positive integer no larger than 512"),
        ({"steps": "3000"}, 'steps`? must be a positive integer or "auto", got \'3000\''),
        ({"dropout": 1.0}, "dropout`? must be at least 0 and below 1"),
        ({"seed": -1}, "seed`? must be at least 0"),
        ({"flatten": 2}, "flatten`? must be at least 3 and no larger than 4096"),
        ({"flatten": "on"}, 'flatten`? must be a whole number, "auto" or null, got \'on\''),
    ],
)
def test_a_config_file_with_values_of_the_wrong_type_or_size_is_refused(tmp_path, values, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=message):
        Config.load(path)  # a UsageError: one line from the CLI, before any heavy work


def disk_data(root, inside, outside):
    """train/ and val/ of two 64 px images, each of one disk of radius 7 (149 px)."""
    from unet.io import save_png

    rows, cols = np.mgrid[:64, :64]
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for i in range(2):
            disk = (rows - 20 - 10 * i) ** 2 + (cols - 30) ** 2 <= 7**2
            save_png(np.where(disk, inside, outside).astype(np.uint8),
                     root / split / "images" / f"s{i}.png")
            save_png(disk.astype(np.uint8) * 255, root / split / "masks" / f"s{i}.png")
    return root


def test_flatten_is_refused_for_objects_brighter_than_their_background(tmp_path):
    """Dividing out a brightfield background of fluorescence images would erase the
    objects: refused before anything is written."""
    disk_data(tmp_path / "data", 220, 20)
    with pytest.raises(ValueError, match="brighter than their background.*leave `flatten` "
                                         "at .auto., which switches it off"):
        train(Config(flatten=21, steps=1), tmp_path / "data", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_saved_before_flatten_existed_reads_as_unflattened(tmp_path):
    """A hand-written file gets the default; a run's config.json without `flatten` was
    saved before it existed, when nothing was flattened: off."""
    assert Config.from_dict(Config(flatten=61).to_dict()).flatten == 61
    assert Config().flatten == "auto" == Config.from_dict({"steps": 10}).flatten
    old = Config(flatten=None).to_dict()
    del old["flatten"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Config.load(tmp_path / "old.json").flatten == "auto"
    assert Config.load(tmp_path / "old.json", run=True).flatten is None
    (tmp_path / "new.json").write_text(json.dumps({**old, "flatten": 61}))
    assert Config.load(tmp_path / "new.json", run=True).flatten == 61
    assert load_run("spores")[1].flatten is None  # the shipped model's, saved before it


def _time_limit(minutes, epochs, spent=0.0):
    from unet.train import TimeLimit

    limit = TimeLimit(minutes, spent=spent)
    limit.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    limit.set_params({"epochs": epochs})
    return limit


def _stops_after(limit, epochs):
    """The epochs run until ``limit`` stops training (100 steps, 20 s of steps and 5 s of
    validation each; the validation carried over, 0 s, on odd epochs)."""
    for epoch in range(epochs):
        limit.on_epoch_end(epoch, {"seconds": 20.0, "val_seconds": 0.0 if epoch % 2 else 5.0,
                                   "step": 100 * (epoch + 1)})
        if getattr(limit.model, "stop_training", False):
            return epoch + 1
    return epochs


def test_the_time_limit_stops_before_the_next_epoch_would_pass_it():
    """Training stops after the last epoch whose successor would not end within the
    limit: the time spent, plus the next epoch's steps and mean validation."""
    # 25 + 20 + 25 + 20 s = 90 s after four epochs; a fifth (20 + 2.5 s) would pass 100 s
    limit = _time_limit(100 / 60, epochs=41)
    assert _stops_after(limit, 41) == 4
    assert limit.stopped_step == 400 and limit.spent == 90
    # a run resumed after 60 s of earlier sessions has 40 s left: one epoch
    assert _stops_after(_time_limit(100 / 60, epochs=41, spent=60), 41) == 1
    # the last epoch is the budget's end, not the limit's
    short = _time_limit(100 / 60, epochs=3)
    assert _stops_after(short, 3) == 3 and short.stopped_step is None
    roomy = _time_limit(60, epochs=41)
    assert _stops_after(roomy, 41) == 41 and roomy.stopped_step is None


def test_a_run_that_reaches_its_time_limit_ends_as_a_finished_run(tmp_path, sample_dir):
    """The command line says where the limit stopped it; the run is complete: its best
    network, its calibration, no backup left to resume from."""
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps({**TINY, "max_minutes": 1e-4}))
    out = tmp_path / "run"
    done = subprocess.run(_train_command(sample_dir, out, config_file, 48),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "max_minutes: stopped at 0.0001 min after 4 of 48 steps" in done.stdout
    assert "--max-minutes off trains them all" in done.stdout
    history = read_history(out / "history.csv")
    assert list(history["step"]) == [4]
    saved = result_config(out)
    assert saved.max_minutes == 1e-4 and saved.calibration is not None
    assert (out / "model.keras").is_file() and not (out / "backup").exists()
    load_run(out)


def test_a_run_saved_before_the_contrast_default_changed_reads_as_its_former_range(
        tmp_path, trained_run):
    """Training saves every augmentation field it used; a run's config.json whose
    `augmentation` is null, partial or absent predates the change of the contrast
    default (0.2 -> 0.5) and reads as 0.2; a hand-written file gets today's default."""
    saved = json.loads((trained_run[0] / "config.json").read_text())["augmentation"]
    assert saved == dataclasses.asdict(unet.Augmentation()) and saved["contrast"] == 0.5
    assert Config.load(trained_run[0] / "config.json", run=True).augmentation == saved
    old = Config().to_dict()
    for augmentation, contrast in ((None, 0.2), ({"gamma": 0.4}, 0.2),
                                   ({"contrast": 0.3}, 0.3), ("absent", 0.2)):
        values = {**old, "augmentation": augmentation}
        if augmentation == "absent":
            del values["augmentation"]
        (tmp_path / "old.json").write_text(json.dumps(values))
        run = Config.load(tmp_path / "old.json", run=True)
        assert unet.Augmentation.from_overrides(run.augmentation).contrast == contrast
        hand = Config.load(tmp_path / "old.json")
        assert unet.Augmentation.from_overrides(hand.augmentation).contrast == (
            0.3 if augmentation == {"contrast": 0.3} else 0.5)
    # without augmentation nothing is filled in (a resumed run compares equal)
    (tmp_path / "off.json").write_text(json.dumps({**old, "augment": False}))
    assert Config.load(tmp_path / "off.json", run=True) == Config(augment=False)
    assert Config(augment=False).resolved_augmentation() == Config(augment=False)
    assert unet.Augmentation.from_overrides(
        load_run("spores")[1].augmentation).contrast == 0.5  # the shipped model, retrained


def test_flatten_auto_takes_its_window_from_the_objects_or_stays_off(tmp_path, monkeypatch):
    import unet.data
    from unet.data import choose_flatten, load_folder
    from unet.image import divide_background

    dark = disk_data(tmp_path / "dark", 40, 200)
    # the disks of radius 7 are 2 sqrt(50) px wide: the background pixel nearest their
    # centre is (5, 5) away; three times that is 42.4
    assert choose_flatten(load_folder(dark / "train")) == 43
    assert choose_flatten(load_folder(disk_data(tmp_path / "bright", 220, 20) / "train")) is None
    loaded = []  # (split, flatten) of every folder training reads

    def recording(folder, *args, **kwargs):
        loaded.append((Path(folder).name, kwargs.get("flatten")))
        return load_folder(folder, *args, **kwargs)

    monkeypatch.setattr(unet.data, "load_folder", recording)
    result = train(Config(flatten="auto", steps=1, calibrate=False), dark, tmp_path / "run")
    # read once to choose, then the images training and validation see are flattened
    assert loaded == [("train", None), ("train", 43), ("val", 43)]
    assert result["config"].flatten == 43
    assert Config.load(tmp_path / "run" / "config.json").flatten == 43  # what predict reads
    assert Config.from_dict(Config(flatten="auto").to_dict()).flatten == "auto"
    with pytest.raises(ValueError, match='"auto" is chosen when training starts'):
        divide_background(np.ones((8, 8)), "auto")  # an unresolved config at prediction


def test_auto_steps_are_chosen_from_the_training_tile_and_saved(tmp_path, monkeypatch):
    import unet.run
    from unet.data import choose_crop_size, load_folder

    data = disk_data(tmp_path / "dark", 40, 200)
    tile = Config(crop_size=choose_crop_size(load_folder(data / "train"), 3)).tile_size
    monkeypatch.setattr(unet.run, "TRAINING_PIXELS", 6 * 2 * tile**2)  # six steps of two tiles
    config = Config(steps_per_epoch=3, batch_size=2, flatten=None, calibrate=False)
    result = train(config, data, tmp_path / "run")
    assert result["config"].tile_size == tile and result["config"].steps == 6 == result["steps"]
    assert Config.load(tmp_path / "run" / "config.json").steps == 6  # what a resume compares


def test_whole_numbers_written_as_floats_are_read_as_integers():
    config = Config.from_dict({"steps": 3000.0, "learning_rate": 1, "seed": 3.0})
    assert (config.steps, config.seed) == (3000, 3) and isinstance(config.steps, int)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)


def test_a_history_cut_short_is_repaired_before_a_resumed_run_appends(tmp_path):
    from unet.run import repair_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_dice\n0,0.5,0.7\n1,0.4,0.8\n1,0.41,0.79\n2,0.3,0.")
    history = read_history(path)  # the cut last row is left out; epoch 1 keeps its last row
    assert history["epoch"].tolist() == [0, 1] and history["val_dice"].tolist() == [0.7, 0.79]
    repair_history(path)
    assert path.read_text() == "epoch,loss,val_dice\n0,0.5,0.7\n1,0.41,0.79\n"
    path.write_text("epoch,loss,val_dice\n0,0.5,0.7\n1,0.4\n2,x,0.9\n")
    repair_history(path)
    assert path.read_text() == "epoch,loss,val_dice\n0,0.5,0.7\n"


def test_overwrite_deletes_nothing_in_a_folder_that_is_not_a_run(tmp_path, sample_dir):
    project = tmp_path / "project"
    (project / "logs").mkdir(parents=True)
    (project / "logs" / "notes.txt").write_text("mine")
    (project / "config.json").write_text('{"tool": "something else"}')
    with pytest.raises(ValueError, match="not a run folder of this package"):
        train(Config(**TINY), sample_dir, project, overwrite=True)
    assert (project / "logs" / "notes.txt").read_text() == "mine"
    assert (project / "config.json").read_text() == '{"tool": "something else"}'


def test_a_run_killed_before_its_first_epoch_ended_starts_again(tmp_path, sample_dir):
    from unet.run import prepare_run_dir

    config = Config(**TINY, crop_size=100).resolved_augmentation()  # as training saves it
    out = tmp_path / "run"
    (out / "logs" / "train").mkdir(parents=True)  # what a run writes before epoch 1 ends
    config.save(out / "config.json")
    assert prepare_run_dir(out, config, overwrite=False) == (out, False)
    assert not (out / "logs").exists() and (out / "config.json").exists()
    other = Config(**{**TINY, "filters": 4}, crop_size=100)
    (out / "logs").mkdir()
    with pytest.raises(FileExistsError, match="already holds files"):
        prepare_run_dir(out, other, overwrite=False)  # another config: not this run's


def test_the_best_model_is_replaced_atomically(tmp_path):
    from unet.train import BestModelCheckpoint

    path = tmp_path / "model.keras"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    checkpoint = BestModelCheckpoint(path)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_dice": 0.5})
    saved = path.read_bytes()
    checkpoint.on_epoch_end(1, {"val_dice": 0.4})  # not better: not written
    assert path.read_bytes() == saved

    def killed_half_way(target, *args, **kwargs):
        Path(target).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands in for a kill during the write

    model.save = killed_half_way
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_epoch_end(2, {"val_dice": 0.9})
    assert path.read_bytes() == saved  # the complete earlier model is still there
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left


def test_the_runs_smallest_object_follows_its_training_objects(tmp_path):
    """Large objects (disks of ~1257 px): without calibration the run keeps a tenth of
    their median area as its smallest object, not the 16 px chosen for spores, and says
    so; a min_area set in the config is left as it is."""
    from PIL import Image

    rows, cols = np.mgrid[:160, :160]
    for split, n in (("train", 3), ("val", 1)):
        for sub in ("images", "masks"):
            (tmp_path / "data" / split / sub).mkdir(parents=True)
        for k in range(n):
            mask = ((rows - 50 - 10 * k) ** 2 + (cols - 60) ** 2 <= 20**2) | (
                (rows - 115) ** 2 + (cols - 100 - 5 * k) ** 2 <= 20**2)
            image = (40 + 150 * mask).astype(np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / split / "images" / f"c{k}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                tmp_path / "data" / split / "masks" / f"c{k}.png")
    area = int(((rows - 80) ** 2 + (cols - 80) ** 2 <= 20**2).sum())
    config = Config(**{**TINY, "steps": 2, "steps_per_epoch": 2, "min_area": None})
    result = train(config, tmp_path / "data", tmp_path / "run", precision="fp32",
                   strategy="default", verbose=0)
    saved = Config.load(tmp_path / "run" / "config.json")
    assert saved.min_area == result["config"].min_area == int(0.1 * area) > 16
    assert result["calibration_note"].endswith(f"min_area {saved.min_area}")
    fixed = train(dataclasses.replace(config, min_area=20), tmp_path / "data",
                  tmp_path / "run20", precision="fp32", strategy="default", verbose=0)
    assert fixed["config"].min_area == 20


def test_the_validation_interval_keeps_validation_within_its_share():
    from unet.train import validation_interval

    epoch = 100 * 8 * 188**2  # the spore default: 28.3 megapixels of tiles an epoch
    assert validation_interval(150 * 100**2, epoch, 0.1) == 1  # its 150 crops: every epoch
    assert validation_interval(0.1 * epoch, epoch, 0.1) == 1  # exactly the share
    assert validation_interval(0.1 * epoch + 1, epoch, 0.1) == 2
    fields = 60 * 1024**2 + 40 * 100**2
    assert validation_interval(fields, epoch, 0.1) == 23
    assert validation_interval(fields, epoch, 0.1, max_interval=5) == 5  # the patience
    assert validation_interval(fields, epoch, None) == 1  # None: every epoch
    assert validation_interval(fields, epoch, 1.0) == 3


def _validation(interval, epochs):
    from unet.data import Samples
    from unet.train import WholeImageValidation

    rng = np.random.default_rng(0)
    images = [rng.random((40, 52, 1)).astype(np.float32) for _ in range(2)]
    masks = [(image[..., 0] > 0.5).astype(np.uint8) for image in images]
    model = unet.unet_model((None, None, 1), num_classes=1, filters=4, depth=2)
    callback = WholeImageValidation(Samples(["a", "b"], images, masks, [None, None]),
                                    unet.get_loss("bce_dice"), interval=interval)
    callback.set_model(model)
    callback.set_params({"epochs": epochs})
    return callback


def _epoch(callback, epoch):
    logs = {}
    callback.on_epoch_end(epoch, logs)
    return logs


def test_validation_every_few_epochs_carries_its_scores_and_ends_validated():
    """Between validations the epochs carry the last scores with val_seconds 0 (so early
    stopping counts them as steps without a better Dice); the last epoch is validated."""
    callback = _validation(interval=5, epochs=7)
    first = _epoch(callback, 0)
    assert first["val_seconds"] > 0 and 0 <= first["val_dice"] <= 1
    callback.model.set_weights([w + 0.5 for w in callback.model.get_weights()])
    seconds = [first["val_seconds"]]
    for epoch in range(1, 7):
        logs = _epoch(callback, epoch)
        seconds.append(logs["val_seconds"])
        if epoch < 5:
            assert {k: v for k, v in logs.items() if k != "val_seconds"} == {
                k: v for k, v in first.items() if k != "val_seconds"}
    assert [epoch for epoch, s in enumerate(seconds) if s > 0] == [0, 5, 6]
    assert logs["val_loss"] != first["val_loss"]  # the new weights were validated


def test_a_resumed_run_keeps_the_validation_schedule():
    """The validated epochs are the multiples of the interval (and the last); a run
    resumed between them validates its first epoch (no scores to carry), then goes on
    as the uninterrupted run does."""
    whole = _validation(interval=3, epochs=10)
    assert [e for e in range(10) if _epoch(whole, e)["val_seconds"] > 0] == [0, 3, 6, 9]
    resumed = _validation(interval=3, epochs=10)
    assert [e for e in range(4, 10) if _epoch(resumed, e)["val_seconds"] > 0] == [4, 6, 9]


def test_an_interval_of_one_validates_every_epoch():
    callback = _validation(interval=1, epochs=4)
    assert all(_epoch(callback, epoch)["val_seconds"] > 0 for epoch in range(3))


def test_the_calibration_scores_at_most_its_pixel_budget():
    from unet.train import calibration_subset

    assert calibration_subset([100] * 5, budget=500) == [0, 1, 2, 3, 4]  # all fit: all
    chosen = calibration_subset([100] * 50, budget=1000)
    assert len(chosen) == 10 and chosen == sorted(set(chosen))
    assert chosen != list(range(10))  # spread over the split, not its first images
    assert chosen == calibration_subset([100] * 50, budget=1000)  # seeded
    assert calibration_subset([400, 5000, 300], budget=1000) == [0, 2]
    assert len(calibration_subset([5000, 6000], budget=1000)) == 1  # at least one image
    assert calibration_subset([5000, 6000], budget=1000, at_least_one=False) == []


def test_a_run_with_tta_calibrates_on_augmented_maps(tmp_path, sample_dir, monkeypatch):
    import unet.train as T
    from unet.calibrate import calibrate_postprocessing
    from unet.data import choose_min_area, load_folder
    from unet.predict import predict_tiled

    augmented = []

    def spy(model, image, **kwargs):
        augmented.append(kwargs.get("tta"))
        return predict_tiled(model, image, **kwargs)

    monkeypatch.setattr(T, "predict_tiled", spy)
    result = train(Config(**{**TINY, "steps": 4, "steps_per_epoch": 2, "tta": True}), sample_dir,
                   tmp_path / "run", precision="fp32", strategy="default", verbose=0)
    config = result["config"]
    assert config.tta and Config.load(tmp_path / "run" / "config.json").tta
    val = load_folder(sample_dir / "val", channels=config.channels, flatten=config.flatten)
    training = load_folder(sample_dir / "train", channels=config.channels, flatten=config.flatten)
    # every validation image and (the sample's validation split holding few spores) every
    # training image, augmented
    assert augmented == [True] * (len(val) + len(training))
    assert ", predicted with tta (" in result["calibration_note"]
    model, _ = load_run(tmp_path / "run")
    maps = [predict_tiled(model, image, tta=True) for image in val.images + training.images]
    smallest = choose_min_area(load_folder(sample_dir / "train", channels=config.channels))
    expected = calibrate_postprocessing(maps, labels=val.labels + training.labels,
                                        masks=val.masks + training.masks,
                                        default_min_area=smallest, min_area_floor=smallest)
    for key in ("threshold", "split_h", "min_area", "score", "default_score"):
        assert result["calibration"][key] == expected[key]


# ------------------------------------------------------------------ calibrating a run later
def test_calibrating_a_run_chooses_as_training_chooses(tmp_path, trained_run, sample_dir,
                                                      monkeypatch):
    import shutil

    import unet.calibrate
    import unet.train as T
    from unet.calibrate import FEW_OBJECTS
    from unet.count import count_labels
    from unet.data import choose_min_area, load_folder

    run, trained = trained_run
    before = {name: (run / name).read_bytes() for name in ("model.keras", "config.json")}
    # training calibrated on the sample's 4 validation crops and, as they hold fewer
    # than 50 spores, its 16 training crops, trying no smallest object below the run's
    val_objects = sum(count_labels(t) for t in load_folder(sample_dir / "val").labels)
    assert val_objects < FEW_OBJECTS and trained["calibration"]["training_images"] == 16
    assert trained["calibration"]["objective"] == (
        f"object F1 at IoU 0.5 on 20 images (4 validation, 16 training: the validation split "
        f"holds only {val_objects} objects)")
    # `calibrate` on the same images in one folder chooses the same way, but from every
    # smallest object of the grid: its images are not ones the network learnt
    both = tmp_path / "both"
    for split in ("val", "train"):
        for kind in ("images", "masks", "labels"):
            (both / kind).mkdir(parents=True, exist_ok=True)
            for file in (sample_dir / split / kind).iterdir():
                shutil.copyfile(file, both / kind / f"{split}_{file.name}")
    # the defaults' smallest object comes from the calibration images here, from the
    # training images in training: the same on the sample
    smallest = choose_min_area(load_folder(sample_dir / "train"))
    assert choose_min_area(load_folder(both)) == smallest
    floors = []
    calibrate = unet.calibrate.calibrate_postprocessing

    def spy(*args, min_area_floor=None, **kwargs):
        floors.append(min_area_floor)
        return calibrate(*args, min_area_floor=smallest, **kwargs)  # as training does

    monkeypatch.setattr(T, "calibrate_postprocessing", spy)
    result = T.calibrate_run(run, both, tmp_path / "again")
    assert floors == [None]  # calibrate itself sets no floor
    for key in ("threshold", "split_h", "min_area", "score", "default_score", "objects",
                "images"):
        assert result["calibration"][key] == trained["calibration"][key], key
    assert "training_images" not in result["calibration"]  # one folder, no training split
    assert result["calibration"]["objective"] == "object F1 at IoU 0.5 on 20 validation images"
    assert result["calibration"]["data"] == str(both.resolve())
    assert {name: (run / name).read_bytes() for name in before} == before  # the run is kept
    again = tmp_path / "again"
    assert (again / "model.keras").read_bytes() == before["model.keras"]
    assert sorted(p.name for p in again.iterdir()) == sorted(
        p.name for p in run.iterdir() if p.name in ("model.keras", "config.json", "history.csv",
                                                    "curves.png"))
    saved = Config.load(again / "config.json", run=True)
    assert saved == result["config"]
    assert (saved.threshold, saved.split_h, saved.min_area) == (
        result["calibration"]["threshold"], result["calibration"]["split_h"],
        result["calibration"]["min_area"])
    # everything else is the run's own: the network predicts as it did
    assert dataclasses.replace(saved, threshold=trained["config"].threshold,
                               split_h=trained["config"].split_h,
                               min_area=trained["config"].min_area,
                               calibration=trained["config"].calibration) == trained["config"]


def test_a_calibration_on_few_objects_says_so(tmp_path, trained_run, sample_dir):
    from unet.data import load_folder
    from unet.train import calibrate_run

    result = calibrate_run(trained_run[0], sample_dir / "val", tmp_path / "out")
    # the sample's 4 validation crops hold too few spores for a reliable choice: said so
    objects = sum(len(np.unique(t)) - 1 for t in load_folder(sample_dir / "val").labels)
    assert result["calibration"]["objects"] == objects < 50
    assert result["note"].endswith(f"only {objects} objects to choose on, too few for a "
                                   "reliable choice: annotate more (data/README.md)")
    # training joined the 16 training crops to them: 78 spores, no warning
    assert trained_run[1]["calibration"]["objects"] > 50
    assert "too few" not in trained_run[1]["calibration_note"]


def _disks(n_images, per_image, size=40, value=None):
    """Samples of ``n_images`` images of ``size``² with ``per_image`` labelled squares."""
    from unet.data import Samples

    labels = []
    for _ in range(n_images):
        label = np.zeros((size, size), np.int32)
        for k in range(per_image):
            label[2 + 6 * k:6 + 6 * k, 2:6] = k + 1
        labels.append(label)
    return Samples(names=[f"{value or 'im'}_{i}" for i in range(n_images)],
                   images=[np.zeros((size, size, 1), np.float32) for _ in labels],
                   masks=[(label > 0).astype(np.uint8) for label in labels], labels=labels)


def test_training_images_join_a_validation_split_of_few_objects(tmp_path, monkeypatch):
    import unet.train as T

    val, train_set = _disks(2, 3, value="val"), _disks(5, 4, value="train")
    joined, counts, added = T._with_training_images(val, None, train_set, tmp_path)
    assert added == 5 and counts is None
    assert joined.names == val.names + train_set.names  # validation first
    assert len(joined.images) == len(joined.masks) == len(joined.labels) == 7
    assert joined.labels[2] is train_set.labels[0]
    # enough validation objects, no training split, or another kind of truth: unchanged
    many = _disks(2, 5 * T.FEW_OBJECTS // 10, size=400)
    unlabelled = dataclasses.replace(train_set, labels=None)
    for given, training in ((many, train_set), (val, None), (val, unlabelled)):
        kept = T._with_training_images(given, None, training, tmp_path)
        assert kept[0] is given and kept[1:] == (None, 0)
    # counts: the training split's counts.csv joins the validation counts
    (tmp_path / "counts.csv").write_text(
        "name,count\n" + "".join(f"{name},4\n" for name in train_set.names))
    joined, counts, added = T._with_training_images(
        dataclasses.replace(val, labels=None), [3, 3], unlabelled, tmp_path)
    assert added == 5 and counts == [3, 3, 4, 4, 4, 4, 4]
    # the pixels the calibration scores: the validation images and as many training
    # images as fit beside them (here 2 of 5), none where none fits
    monkeypatch.setattr(T, "CALIBRATION_PIXELS", 4 * 40 * 40)
    joined, _, added = T._with_training_images(val, None, train_set, tmp_path)
    assert added == 2 and joined.names[:2] == val.names and len(joined) == 4
    monkeypatch.setattr(T, "CALIBRATION_PIXELS", 2 * 40 * 40 + 100)
    kept = T._with_training_images(val, None, train_set, tmp_path)
    assert kept[0] is val and kept[1:] == (None, 0)


def test_a_run_calibrated_on_counts_alone_minimises_the_count_error(tmp_path, trained_run,
                                                                    sample_dir):
    import shutil

    from unet.train import calibrate_run

    counted = tmp_path / "counted"
    shutil.copytree(sample_dir / "val", counted, ignore=shutil.ignore_patterns("labels"))
    result = calibrate_run(trained_run[0], counted, tmp_path / "out")
    assert result["calibration"]["objective"].startswith("mean count error")
    assert "lower is better" in result["note"]


def test_calibrating_a_run_refuses_without_writing_anything(tmp_path, trained_run, sample_dir):
    import shutil

    from unet.train import calibrate_run

    run = trained_run[0]
    bare = tmp_path / "bare"
    shutil.copytree(sample_dir / "val", bare, ignore=shutil.ignore_patterns("labels", "counts.csv"))
    out = tmp_path / "out"
    with pytest.raises(unet.UsageError, match="Cannot calibrate: .* has no instance labels or "
                                               "counts"):
        calibrate_run(run, bare, out)
    with pytest.raises(unet.UsageError, match="is the run itself"):
        calibrate_run(run, sample_dir / "val", run)
    (tmp_path / "lone.keras").write_bytes((run / "model.keras").read_bytes())
    with pytest.raises(unet.UsageError, match="has no config.json beside its model"):
        calibrate_run(tmp_path / "lone.keras", sample_dir / "val", out)
    (tmp_path / "lone.keras").unlink()
    assert not out.exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds files"):
        calibrate_run(run, sample_dir / "val", taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    # no staging folder left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "taken"]


def test_a_model_file_with_its_config_beside_it_is_calibrated_too(tmp_path, trained_run,
                                                                  sample_dir):
    from unet.train import calibrate_run

    run = trained_run[0]
    (tmp_path / "mine.keras").write_bytes((run / "model.keras").read_bytes())
    (tmp_path / "config.json").write_bytes((run / "config.json").read_bytes())
    calibrate_run(tmp_path / "mine.keras", sample_dir / "val", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.keras"]
    assert (tmp_path / "out" / "model.keras").read_bytes() == (run / "model.keras").read_bytes()
