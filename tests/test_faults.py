"""Fault injection: `train` and `predict` killed at random points, two at once on one
folder, and writes that fail (a file-size limit, as a full disk or a quota does).

After each fault the output folder is either complete and valid or refused with one
clear line, never half-written under a final name, and running the command again
recovers. The kill points are seeded: a failure names its seed and repeats.
"""

import csv
import dataclasses
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tifffile
from conftest import SAMPLE, TINY
from PIL import Image

from unet.io import LOCK_NAME
from unet.run import Config, load_run, read_history
from unet.train import train

#: Each test here starts several processes (about a minute each on two busy cores); CI
#: runs them all.
pytestmark = pytest.mark.slow

#: Two epochs of four steps, calibrated at the end: every phase that writes to the run.
TRAIN_CONFIG = {**TINY, "steps": 8, "steps_per_epoch": 4}
EPOCHS = 2
PREDICT_INPUT = SAMPLE / "train" / "images"  # 16 crops: many files written one by one
SEEDS = (0, 1, 2)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(command, **kwargs):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True, **kwargs)


def run(command, **kwargs):
    """Run to the end: (exit code, stdout, stderr)."""
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600,
                          **kwargs)
    return done.returncode, done.stdout, done.stderr


def kill_at(commands, delays):
    """Start the commands together; SIGKILL each (its whole process group) ``delays[i]``
    seconds after the start unless it ended before. Which ones were killed."""
    procs = [start(c) for c in commands]
    begin = time.perf_counter()
    killed = [False] * len(procs)
    while any(p.poll() is None for p in procs):
        now = time.perf_counter() - begin
        for i, p in enumerate(procs):
            if p.poll() is None and now >= delays[i]:
                os.killpg(p.pid, signal.SIGKILL)
                killed[i] = True
        time.sleep(0.05)
    for p in procs:
        p.communicate()
    return killed


def run_all(commands):
    """Run the commands together to their ends: [(exit code, stdout, stderr)]."""
    procs = [start(c) for c in commands]
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def assert_one_error_line(err):
    """The command's own last word on stderr: one `error:` line, no traceback."""
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: "), err[-3000:]


# ---------------------------------------------------------------------- the folders
def visible(folder):
    """The files a user sees in a folder: not the lock, not a writer's hidden temporary."""
    if not folder.exists():
        return set()
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def assert_valid_file(path):
    """A file under its final name is whole: it parses as what its name says."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return
    if suffix == ".png":
        with Image.open(path) as im:
            im.load()
    elif suffix in (".tif", ".tiff"):
        tifffile.imread(path)
    elif suffix in (".zip", ".keras"):
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None, path
    elif suffix == ".json":
        json.loads(path.read_text())
    elif path.name == "history.csv":  # appended to by design; repaired before a resume
        read_history(path)
    elif suffix == ".csv":
        text = path.read_text()
        assert text.endswith("\n"), f"{path} ends mid-line"
        rows = list(csv.reader(text.splitlines()))
        assert rows and all(len(r) == len(rows[0]) for r in rows), path


def assert_valid_run(out, complete=False):
    """Either no run files, or a consistent set: config.json parses, model.keras loads,
    history.csv reads; ``complete``: the whole run with its files and no backup."""
    names = visible(out)
    for name in names:
        assert_valid_file(out / name)
    if "config.json" in names:
        Config.load(out / "config.json")
    if "model.keras" in names:
        load_run(out)
    if "history.csv" in names:
        epochs = read_history(out / "history.csv").get("epoch", np.array([]))
        assert len(set(epochs)) == len(epochs)
    if complete:
        assert {"model.keras", "config.json", "history.csv", "curves.png", "logs"} <= names
        assert "backup" not in names
        np.testing.assert_array_equal(read_history(out / "history.csv")["epoch"],
                                      np.arange(EPOCHS))
        assert Config.load(out / "config.json").calibration is not None


def assert_valid_predictions(out, reference=None):
    """Every file under a final name is whole; with a ``reference`` folder: the same
    files, and the same tables."""
    for name in visible(out):
        assert_valid_file(out / name)
    if reference is not None:
        assert visible(out) == visible(reference)
        for table in ("summary.csv", "spores.csv"):
            assert (out / table).read_text() == (reference / table).read_text(), table


# ---------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "tiny.json"
    path.write_text(json.dumps(TRAIN_CONFIG))
    return path


def train_command(out, config_file):
    return [sys.executable, "-m", "unet", "train", "--data", str(SAMPLE), "--out", str(out),
            "--config", str(config_file), "--precision", "fp32", "--strategy", "default"]


def predict_command(model, out):
    return [sys.executable, "-m", "unet", "predict", "--model", str(model), str(PREDICT_INPUT),
            "--out", str(out), "--overwrite"]


@pytest.fixture(scope="module")
def two_trains(tmp_path_factory, config_file):
    """Two `train` processes started together on one folder: ((code, out, err) each, the
    folder, the seconds the one that trained took)."""
    out = tmp_path_factory.mktemp("two_trains") / "run"
    begin = time.perf_counter()
    procs = [start(train_command(out, config_file)) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    return results, out, time.perf_counter() - begin


@pytest.fixture(scope="module")
def two_predicts(tmp_path_factory, two_trains):
    """Two `predict` processes started together into one folder, with the run trained above."""
    _, run_dir, _ = two_trains
    out = tmp_path_factory.mktemp("two_predicts") / "out"
    begin = time.perf_counter()
    procs = [start(predict_command(run_dir, out)) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    return results, out, time.perf_counter() - begin


def _one_refused_one_done(results):
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [(c, e[-2000:]) for c, _, e in results]
    refused = next(err for code, _, err in results if code == 2)
    assert_one_error_line(refused)
    assert "is in use by process" in refused.strip().splitlines()[-1]


# ------------------------------------------------------------------------ the tests
def test_two_trains_on_one_folder_one_refused_one_complete(two_trains):
    results, out, _ = two_trains
    _one_refused_one_done(results)
    assert_valid_run(out, complete=True)


def test_two_predicts_into_one_folder_one_refused_one_complete(two_predicts):
    results, out, _ = two_predicts
    _one_refused_one_done(results)
    assert_valid_predictions(out)
    names = visible(out)
    stems = [p.stem for p in PREDICT_INPUT.glob("*.png")]
    assert all(f"{s}_mask.png" in names and f"{s}_overlay.png" in names for s in stems)
    with open(out / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == len(stems)


def test_train_killed_at_random_points_recovers(tmp_path, two_trains, config_file):
    """One run per seed, all at once; each killed after a seeded fraction of the time a
    whole run took here, then run again with the same command."""
    _, _, seconds = two_trains
    delays = [random.Random(seed).uniform(0.1, 1.0) * seconds for seed in SEEDS]
    outs = [tmp_path / f"run{seed}" for seed in SEEDS]
    commands = [train_command(out, config_file) for out in outs]
    killed = kill_at(commands, delays)
    for out in outs:
        assert_valid_run(out)
    for seed, delay, was_killed, out, (code, _, err) in zip(
            SEEDS, delays, killed, outs, run_all(commands)):
        if not (code == 2 and "already holds files" in err):  # else it had finished: kept
            assert code == 0, f"seed {seed}, killed={was_killed} after {delay:.1f} s: {err[-3000:]}"
        assert_valid_run(out, complete=True)


def test_predict_killed_at_random_points_recovers(tmp_path, two_trains, two_predicts):
    """As for train; a folder left with results is refused without --overwrite (one
    line), and the same command (with --overwrite) writes what an unbroken run writes."""
    _, run_dir, _ = two_trains
    _, reference, seconds = two_predicts
    delays = [random.Random(seed).uniform(0.3, 1.0) * seconds for seed in SEEDS]
    outs = [tmp_path / f"out{seed}" for seed in SEEDS]
    commands = [predict_command(run_dir, out) for out in outs]
    kill_at(commands, delays)
    for out in outs:
        assert_valid_predictions(out)
    partial = next((out for out in outs if visible(out)), None)
    if partial is not None:
        code, _, err = run([a for a in predict_command(run_dir, partial) if a != "--overwrite"])
        assert code == 2 and "already holds results" in err, err[-3000:]
        assert_one_error_line(err)
    for seed, delay, out, (code, _, err) in zip(SEEDS, delays, outs, run_all(commands)):
        assert code == 0, f"seed {seed}, killed after {delay:.1f} s: {err[-3000:]}"
        assert_valid_predictions(out, reference)


def test_predict_with_too_little_room_fails_in_one_line_and_recovers(tmp_path, two_trains,
                                                                     two_predicts):
    """Files may grow to 16 KiB only (RLIMIT_FSIZE, what `ulimit -f 16` sets): the larger
    outputs cannot be written."""
    _, run_dir, _ = two_trains
    _, reference, _ = two_predicts
    out = tmp_path / "out"
    command = predict_command(run_dir, out)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600,
                          preexec_fn=small_files)
    assert done.returncode != 0, "every output fitted in 16 KiB: the limit tests nothing"
    assert_one_error_line(done.stderr)
    assert "File too large" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    assert_valid_predictions(out)  # nothing cut short under its final name
    code, _, err = run(command)
    assert code == 0, err[-3000:]
    assert_valid_predictions(out, reference)


# ---------------------------------------------- the narrow windows, made on purpose
def _uncalibrated(config):
    """``config`` as a run saves it before its calibration (its smallest object chosen
    from the training objects)."""
    from unet.data import choose_min_area, load_folder

    default = Config(**TRAIN_CONFIG)
    return dataclasses.replace(config, threshold=default.threshold, split_h=default.split_h,
                               min_area=choose_min_area(load_folder(SAMPLE / "train")),
                               calibration=None)


def test_a_run_killed_after_its_first_checkpoint_but_before_its_backup_starts_again(
        tmp_path, two_trains):
    """A kill at the end of the first epoch, after model.keras and the history row were
    written but before the backup marked the epoch done (or during the model's atomic
    write), used to leave a folder every rerun refused ("already holds files")."""
    _, complete, _ = two_trains
    out = tmp_path / "run"
    out.mkdir()
    _uncalibrated(Config.load(complete / "config.json")).save(out / "config.json")
    shutil.copy(complete / "model.keras", out / "model.keras")
    lines = (complete / "history.csv").read_text().splitlines(keepends=True)
    (out / "history.csv").write_text("".join(lines[:2]))  # the header and epoch 0
    (out / ".model.tmp-123-abcd0123.keras").write_bytes(b"PK\x03\x04 cut short")
    (out / "logs").mkdir()
    result = train(Config(**TRAIN_CONFIG), SAMPLE, out, precision="fp32", strategy="default",
                   verbose=0)
    assert not result["resumed"] and result["steps"] == TRAIN_CONFIG["steps"]
    assert_valid_run(out, complete=True)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [LOCK_NAME]


def test_a_run_killed_after_training_before_its_calibration_is_finished_by_a_rerun(
        tmp_path, two_trains):
    """Training ended (backup/FINISHED) but the kill came before the curves and the
    calibration were written, or before the backup was removed: the rerun trains no
    further and writes what was missing."""
    _, complete, _ = two_trains
    for calibrated in (False, True):
        out = tmp_path / f"run{calibrated}"
        shutil.copytree(complete, out)
        (out / "curves.png").unlink()
        if not calibrated:
            _uncalibrated(Config.load(out / "config.json")).save(out / "config.json")
        (out / "backup").mkdir()
        (out / "backup" / "FINISHED").touch()
        history = (out / "history.csv").read_text()
        result = train(Config(**TRAIN_CONFIG), SAMPLE, out, precision="fp32",
                       strategy="default", verbose=0)
        assert result["resumed"] and (out / "history.csv").read_text() == history
        assert_valid_run(out, complete=True)
        assert Config.load(out / "config.json") == Config.load(complete / "config.json")
