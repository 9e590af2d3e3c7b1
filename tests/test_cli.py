"""The command line: outputs, the --json contract, and one clear line for user mistakes."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from unet.cli import main


def run_cli(*args):
    """`python -m unet ARGS` in a fresh process: (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "unet", *map(str, args)],
                          capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def assert_user_error(capsys, args, *fragments):
    """Exit code 2 and exactly one line on stderr naming what went wrong."""
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_no_command_prints_help_and_fails():
    code, out, err = run_cli()
    assert code == 2 and "generate-data" in out and "predict" in out
    assert err == ""  # TensorFlow's start-up chatter is not printed


def test_bad_arguments_exit_2_with_argparse_message():
    code, _, err = run_cli("train", "--data")
    assert code == 2 and "expected one argument" in err


# --------------------------------------------------------------------------- evaluate
def test_evaluate_json_is_one_object_with_pooled_scores(trained_run, sample_dir):
    run, _ = trained_run
    code, out, err = run_cli("evaluate", "--model", run, "--data", sample_dir / "test", "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("dice", "iou", "precision", "recall", "object_precision", "object_recall",
                "object_f1", "ap_50_95"):
        assert 0.0 <= result[key] <= 1.0
    assert result["object_truth"] == "labels"
    assert result["images"] == 4 and len(result["per_image"]) == 4
    counts = {r["name"]: int(r["count"]) for r in csv.DictReader(open(sample_dir / "test" / "counts.csv"))}
    assert result["count_true"] == sum(counts.values())
    errors = result["object_errors"]
    assert errors["true"] == sum(counts.values())
    assert errors["true"] - errors["matched"] == sum(
        errors[k] for k in ("missed", "merged", "split", "outline"))

    code, text, err = run_cli("evaluate", "--model", run, "--data", sample_dir / "test")
    assert code == 0, err
    assert (f"unmatched {errors['true'] - errors['matched']} of {errors['true']} true objects: "
            f"{errors['missed']} missed, {errors['merged']} merged") in text


def test_evaluate_user_errors(capsys, tmp_path, trained_run, sample_dir):
    run, _ = trained_run
    assert_user_error(capsys, ["evaluate", "--model", tmp_path / "nope", "--data", sample_dir / "test"],
                      "does not exist")
    assert_user_error(capsys, ["evaluate", "--model", run, "--data", tmp_path], "images")
    assert_user_error(capsys, ["evaluate", "--model", run, "--data", sample_dir / "test",
                               "--threshold", "2"], "--threshold must be between 0 and 1")


def test_evaluate_split_height_relative_overrides_the_runs(trained_run, sample_dir):
    from unet.evaluate import evaluate
    from unet.run import load_run

    run, _ = trained_run
    model, _ = load_run(run)
    for given, library in (("relative", None), ("0.3", 0.3)):
        code, out, err = run_cli("evaluate", "--model", run, "--data", sample_dir / "test",
                                 "--split-h", given, "--json")
        assert code == 0, err
        expected = evaluate(model, sample_dir / "test", split_h=library)
        assert json.loads(out)["per_image"] == json.loads(json.dumps(expected["per_image"]))
    code, text, err = run_cli("evaluate", "--model", run, "--data", sample_dir / "test",
                              "--split-h", "relative")
    assert code == 0 and "split_h relative," in text, err
    code, _, err = run_cli("evaluate", "--model", run, "--data", sample_dir / "test",
                           "--split-h", "rel")
    assert code == 2 and "expected a number of pixels or 'relative'" in err


# ---------------------------------------------------------------------------- predict
def test_predict_writes_masks_overlays_and_tables(tmp_path, trained_run, sample_dir):
    run, _ = trained_run
    odd = tmp_path / "in" / "odd.tif"
    odd.parent.mkdir()
    rng = np.random.default_rng(0)
    import tifffile

    tifffile.imwrite(odd, (rng.random((123, 77)) * 4000).astype(np.uint16))  # 16-bit gray
    images = sorted((sample_dir / "test" / "images").glob("*.png"))[:2]
    out = tmp_path / "out"
    code, stdout, err = run_cli("predict", "--model", run, *images, odd, "--out", out)
    assert code == 0, err
    names = [p.stem for p in images] + ["odd"]
    for name, path in zip(names, [*images, odd]):
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        size = Image.open(path).size
        assert mask.shape == (size[1], size[0]) and set(np.unique(mask)) <= {0, 255}
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert overlay.shape == (size[1], size[0], 3)
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["image"] for r in summary] == names
    spores = list(csv.DictReader(open(out / "spores.csv")))
    assert {"image", "id", "area_px", "centroid_y_px", "centroid_x_px", "equivalent_diameter_px",
            "eccentricity", "orientation_deg", "touches_border"} <= set(spores[0]) if spores else True
    for name in names:
        assert (out / f"{name}_labels.tif").is_file() and (out / f"{name}_rois.zip").is_file()
    for row in summary:
        assert sum(r["image"] == row["image"] for r in spores) == int(row["count"])
    assert f"{len(names)} images" in stdout


def test_predict_never_overwrites_without_the_flag(capsys, tmp_path, trained_run, sample_dir):
    run, _ = trained_run
    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    assert main(["predict", "--model", str(run), str(image), "--out", str(out)]) == 0
    capsys.readouterr()
    def outputs():  # every file but the lock, which each run takes (and writes its pid to)
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".unet.lock"}

    before = outputs()
    assert_user_error(capsys, ["predict", "--model", run, image, "--out", out], "--overwrite")
    assert outputs() == before
    assert main(["predict", "--model", str(run), str(image), "--out", str(out), "--overwrite"]) == 0


def test_predict_user_errors(capsys, tmp_path, trained_run):
    run, _ = trained_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    assert_user_error(capsys, ["predict", "--model", run, broken, "--out", tmp_path / "o1"],
                      "broken.png")
    (tmp_path / "notes.txt").write_text("hello")
    assert_user_error(capsys, ["predict", "--model", run, tmp_path / "notes.txt", "--out",
                               tmp_path / "o2"], "is not an image")
    assert_user_error(capsys, ["predict", "--model", run, tmp_path / "missing.png", "--out",
                               tmp_path / "o3"], "does not exist")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(good)
    assert_user_error(capsys, ["predict", "--model", run, good, "--out", broken], "is a file")
    assert_user_error(capsys, ["predict", "--model", tmp_path / "nope.keras", good, "--out",
                               tmp_path / "o4"], "does not exist")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


# ------------------------------------------------------------------------------ train
def test_train_user_errors(capsys, tmp_path, sample_dir):
    assert_user_error(capsys, ["train", "--data", sample_dir / "train", "--out", tmp_path / "r"],
                      "no train/ or val/ folder")
    assert_user_error(capsys, ["train", "--data", tmp_path / "none", "--out", tmp_path / "r"],
                      "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", blocker], "is a file")
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", blocker / "run"])
    (tmp_path / "c.json").write_text('{"filtres": 8}')
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                               "--config", tmp_path / "c.json"], "Unknown config key")
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                               "--steps", "0"], "--steps must be a positive integer")
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                               "--foreground-fraction", "2"],
                      "--foreground-fraction must be between 0 and 1")
    assert not (tmp_path / "r").exists()


def test_train_flags_reach_the_config(monkeypatch, capsys, tmp_path, sample_dir):
    import unet.train

    seen = {}

    def fake_train(config, data_dir, out_dir, **kwargs):
        seen["config"] = config
        raise unet.UsageError("stopped here by the test")

    monkeypatch.setattr(unet.train, "train", fake_train)
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                               "--foreground-fraction", "0.25", "--crop-size", "60",
                               "--steps", "7"], "stopped here by the test")
    config = seen["config"]
    assert (config.foreground_fraction, config.crop_size, config.steps) == (0.25, 60, 7)
    assert config.flatten == "auto"  # the default
    assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r"],
                      "stopped here by the test")
    assert seen["config"].steps == "auto"  # the default
    for flag, value in (("61", 61), ("auto", "auto"), ("off", None)):
        assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                                   "--flatten", flag], "stopped here by the test")
        assert seen["config"].flatten == value
    with pytest.raises(SystemExit, match="2"):  # argparse's own exit
        main(["train", "--data", str(sample_dir), "--out", str(tmp_path / "r"), "--flatten", "on"])
    assert "--flatten: expected a window in pixels, auto or off" in capsys.readouterr().err
    for flag, value in (("1200", 1200), ("auto", "auto")):
        assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                                   "--steps", flag], "stopped here by the test")
        assert seen["config"].steps == value
    with pytest.raises(SystemExit, match="2"):
        main(["train", "--data", str(sample_dir), "--out", str(tmp_path / "r"), "--steps", "lots"])
    assert "--steps: expected a number of steps or auto" in capsys.readouterr().err
    assert seen["config"].max_minutes is None  # the default
    for flag, value in (("40", 40.0), ("2.5", 2.5), ("off", None)):
        assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r",
                                   "--max-minutes", flag], "stopped here by the test")
        assert seen["config"].max_minutes == value
    for flag in ("0", "-3", "soon", "inf"):
        with pytest.raises(SystemExit, match="2"):
            main(["train", "--data", str(sample_dir), "--out", str(tmp_path / "r"),
                  "--max-minutes", flag])
        assert "--max-minutes: expected a number of minutes above 0 or off" in \
            capsys.readouterr().err
    assert seen["config"].tta is False  # the default
    for flag, value in (("--tta", True), ("--no-tta", False)):
        assert_user_error(capsys, ["train", "--data", sample_dir, "--out", tmp_path / "r", flag],
                          "stopped here by the test")
        assert seen["config"].tta is value


def test_predict_and_evaluate_augment_as_the_run_was_calibrated(monkeypatch, capsys, tmp_path,
                                                                 trained_run, sample_dir):
    import unet.batch
    import unet.evaluate
    from conftest import copy_run

    seen = []

    def fake(*args, **kwargs):
        seen.append(kwargs["tta"])
        raise unet.UsageError("stopped here by the test")

    monkeypatch.setattr(unet.evaluate, "evaluate", fake)
    monkeypatch.setattr(unet.batch, "predict_images", fake)
    plain = trained_run[0]  # read only: evaluate and predict stop before writing
    augmented = copy_run(plain, tmp_path / "augmented", tta=True)
    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    for run, flags, tta in ((plain, [], False), (augmented, [], True), (plain, ["--tta"], True),
                            (augmented, ["--no-tta"], False)):
        for command in (["evaluate", "--data", sample_dir / "test"],
                        ["predict", image, "--out", tmp_path / "out"]):
            assert_user_error(capsys, [*command, "--model", run, *flags],
                              "stopped here by the test")
            assert seen.pop() is tta


# ------------------------------------------------------------------ the error boundary
def test_library_messages_are_translated_into_flags():
    from unet.errors import translate

    message = ("`out_dir` holds results; choose another `out_dir` or pass `overwrite=True`; "
               "`strategy='tpu'` needs one, `learning_rate` stays")
    assert translate(message, {"out_dir": "--out", "overwrite": "--overwrite",
                               "strategy": "--strategy"}) == (
        "--out holds results; choose another --out or pass --overwrite; --strategy tpu needs "
        "one, `learning_rate` stays")


@pytest.mark.parametrize("raised, code", [
    (RuntimeError("boom"), 1),
    (ValueError("a Keras bug, not the user's"), 1),
    (KeyError("x"), 1),
])
def test_unexpected_errors_exit_1_with_one_line(capsys, monkeypatch, tmp_path, raised, code):
    import unet.spores

    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(unet.spores, "generate_dataset", broken)
    monkeypatch.delenv("UNET_DEBUG", raising=False)
    assert main(["generate-data", str(tmp_path / "d")]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unexpected ") and "--debug" in err[0]
    with pytest.raises(type(raised)):  # --debug shows the real traceback
        main(["--debug", "generate-data", str(tmp_path / "d")])


def test_user_errors_of_the_library_exit_2(capsys, monkeypatch, tmp_path):
    import unet.spores
    from unet.errors import NaNLossError, UsageError

    for error in (UsageError("`seed` must be whole, pass `overwrite=True`"),
                  NaNLossError("the loss became NaN; lower the learning rate"),
                  PermissionError("Cannot write to /x")):
        monkeypatch.setattr(unet.spores, "generate_dataset",
                            lambda *a, error=error, **k: (_ for _ in ()).throw(error))
        assert main(["generate-data", str(tmp_path / "d")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    monkeypatch.setattr(unet.spores, "generate_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(UsageError("pass `overwrite=True`")))
    main(["generate-data", str(tmp_path / "d")])
    assert "pass --overwrite" in capsys.readouterr().err


# --------------------------------------------------------------------- new options
def test_help_lists_the_new_options_with_their_defaults(capsys):
    from unet.count import MIN_AREA
    from unet.predict import MAX_TILE

    for command, options in [
        ("predict", ["--pixel-size", "--channel", "--max-area", "--exclude-border", "--recursive",
                     "--tile", "--batch-size", "--prob", "--workers", "default: spores"]),
        ("evaluate", ["--report", "default: spores"]),
        ("train", ["--init"]),
        ("export", ["--formats", "--pixel-size", "--no-serving"]),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for option in options:
            assert option in text, (command, option)
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"else {MIN_AREA})" in text and f"at most {MAX_TILE})" in text


def test_predict_option_mistakes_name_the_flags(capsys, tmp_path, trained_run, sample_dir):
    run, _ = trained_run
    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    assert_user_error(capsys, ["predict", "--model", run, image, "--out", tmp_path / "o",
                               "--min-area", "30", "--max-area", "10"], "--max-area", "--min-area")
    assert_user_error(capsys, ["predict", "--model", run, image, "--out", tmp_path / "o",
                               "--min-area", "-3"], "--min-area")
    import tifffile

    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 40, 40), np.uint16), imagej=True, metadata={"axes": "CYX"})
    assert_user_error(capsys, ["predict", "--model", run, two, "--out", tmp_path / "o"],
                      "--channel")
    assert_user_error(capsys, ["predict", "--model", run, image, "--out", tmp_path / "o",
                               "--tile", "200"], "200")
    assert not (tmp_path / "o").exists()


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(
        capsys, tmp_path, trained_run, sample_dir):
    from unet.io import folder_lock

    run, _ = trained_run
    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    with folder_lock(out):  # another process predicting into OUT (same lock, new handle)
        assert_user_error(capsys, ["predict", "--model", run, image, "--out", out],
                          "is in use by process", "choose another --out")
        assert_user_error(capsys, ["train", "--data", sample_dir, "--out", out, "--quick"],
                          "is in use by process")
    assert sorted(p.name for p in out.iterdir()) == [".unet.lock"]  # nothing else written
    assert main(["predict", "--model", str(run), str(image), "--out", str(out)]) == 0  # released


def test_calibrate_writes_a_new_run_and_refuses_an_occupied_folder(capsys, tmp_path,
                                                                    trained_run, sample_dir):
    out = tmp_path / "calibrated"
    assert main(["calibrate", "--model", str(trained_run[0]), "--data",
                 str(sample_dir / "val"), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("calibrated on object F1 at IoU 0.5 on 4 ") and str(out) in said
    saved = json.loads((out / "config.json").read_text())
    assert saved["calibration"]["data"] == str((sample_dir / "val").resolve())
    assert_user_error(capsys, ["calibrate", "--model", trained_run[0], "--data",
                               sample_dir / "val", "--out", out], "already holds files")
    assert_user_error(capsys, ["calibrate", "--model", trained_run[0], "--data",
                               sample_dir / "nowhere", "--out", tmp_path / "x"], "nowhere")
    assert not (tmp_path / "x").exists()
