"""`--strategy multiworker` for real: two local worker processes on localhost ports.

The two-process tests take about a minute each on two CPU cores (TensorFlow starts
twice, the workers talk over gRPC), so they carry the ``slow`` marker: CI runs them
(it selects no markers); ``pytest -m "not slow"`` leaves them out locally.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import TINY

from unet.devices import COLLECTIVE_TIMEOUT, TIMEOUT_VARIABLE, multiworker_role
from unet.run import Config, load_run, read_history
from unet.train import train

#: One epoch of four steps, no calibration (the chief's own, single-process step).
ONE_EPOCH = {**TINY, "steps": 4, "steps_per_epoch": 4, "calibrate": False}

#: How long a worker may take to notice that the other one is gone and end, in seconds.
#: Measured on two busy CPU cores: 10-36 s after the kill (the coordination service
#: misses the dead task's heartbeats, or the collective's socket is reset, then the
#: process shuts down); the collective timeout below bounds it where neither happens.
LOST_WORKER_BOUND = 150
TEST_TIMEOUT = 40  # UNET_COLLECTIVE_TIMEOUT for these runs: far above one tiny step


def free_ports(n):
    """``n`` distinct free localhost ports (bound to port 0 together, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_workers(tmp_path, out, config, data):
    """Start `unet train --strategy multiworker` as worker 0 (the chief) and worker 1."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    private = tmp_path / "tmp"  # where the non-chief worker makes its private folder
    private.mkdir(exist_ok=True)
    ports = free_ports(2)
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "PYTHONUNBUFFERED": "1",
               TIMEOUT_VARIABLE: str(TEST_TIMEOUT), "TMPDIR": str(private)}
        command = [sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(out),
                   "--config", str(config_file), "--precision", "fp32", "--strategy",
                   "multiworker"]
        procs.append(subprocess.Popen(
            command, env=env, start_new_session=True,
            stdout=open(tmp_path / f"worker{index}.out", "w"),
            stderr=open(tmp_path / f"worker{index}.err", "w")))
    return procs


def finish(procs, timeout):
    """Wait for every process (killing all of them if one hangs); their exit codes."""
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1, deadline - time.time())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def output(tmp_path, index, stream="out"):
    return (tmp_path / f"worker{index}.{stream}").read_text()


def flat_weights(model):
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in model.get_weights()])


# ------------------------------------------------------------------ the worker role
@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
])
def test_the_chief_is_the_chief_task_else_worker_0(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    role = multiworker_role()
    assert role.is_chief is chief and role.workers == 2
    assert role.timeout == COLLECTIVE_TIMEOUT
    monkeypatch.setenv(TIMEOUT_VARIABLE, "0")
    assert multiworker_role().timeout == 0  # no limit


@pytest.mark.parametrize("value, message", [
    ("not json", "TF_CONFIG must be JSON"),
    (json.dumps({"cluster": {"worker": ["a:1"]}}), "TF_CONFIG must be JSON"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}),
     "TF_CONFIG must be JSON"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["p:1"]},
                 "task": {"type": "ps", "index": 0}}),
     "'worker' tasks only"),
])
def test_a_broken_tf_config_is_refused_in_one_sentence(monkeypatch, value, message):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=message):
        multiworker_role()


def test_a_bad_collective_timeout_is_refused(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 0))
    monkeypatch.setenv(TIMEOUT_VARIABLE, "soon")
    with pytest.raises(ValueError, match=TIMEOUT_VARIABLE):
        multiworker_role()


# -------------------------------------------------------------------- two processes
@pytest.mark.slow
def test_two_workers_train_as_one_process_does(tmp_path, sample_dir):
    """Both workers finish; the chief alone writes the run; the result is a 1-worker run's.

    What may differ from one process, and the tolerances that follow: each step's global
    batch of 4 is split into 2 + 2 and the gradients are summed over the workers, but the
    loss is pooled per worker (the weighted cross-entropy is normalised by each half's
    weights, the soft Dice pooled over each half), so the gradient is not the 1-process
    gradient to rounding, only close to it; Adam then moves most weights by about the
    learning rate per step whatever the gradient's size, so weights whose gradient is
    near 0 may move the other way. Measured (3 steps of batch 4): the two runs' weight
    changes point the same way (cosine 0.98) and differ by 0.19 of their length; the
    logged training loss differs by 0.1-0.4 %. The bounds below (cosine > 0.9, difference
    < 0.5 of the change, loss within 3 %) hold that with room, and fail for a wrong setup:
    different initial weights (the difference is then the size of the weights, about 10x
    the change), unsynchronised workers or a worker training on its half alone.
    """
    out = tmp_path / "run"
    procs = start_workers(tmp_path, out, ONE_EPOCH, sample_dir)
    # The 1-process reference, here, while the workers start.
    single = train(Config(**ONE_EPOCH), sample_dir, tmp_path / "single", precision="fp32",
                   strategy="default", verbose=0)
    codes = finish(procs, 400)
    assert codes == [0, 0], (output(tmp_path, 0, "err")[-2000:], output(tmp_path, 1, "err")[-2000:])

    # The chief owns OUT; the other worker wrote only to its private folder, now removed.
    assert sorted(p.name for p in out.iterdir()) == [
        ".unet.lock", "config.json", "curves.png", "history.csv", "logs", "model.keras"]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert f"worker 1 of 2: the chief writes {out}" in output(tmp_path, 1)
    assert "trained 4 steps" in output(tmp_path, 0) and "trained 4 steps" in output(tmp_path, 1)

    history = read_history(out / "history.csv")
    reference = single["history"]
    np.testing.assert_array_equal(history["step"], [4])
    np.testing.assert_array_equal(reference["step"], [4])
    assert history["loss"][0] == pytest.approx(reference["loss"][0], rel=0.03)
    # Both workers logged the same history (the logs are averaged over the workers).
    assert output(tmp_path, 1).splitlines()[1].split(" - ")[3:6] == \
        output(tmp_path, 0).splitlines()[1].split(" - ")[3:6]

    model, config = load_run(out)
    reference_model, _ = load_run(tmp_path / "single")
    keras.utils.set_random_seed(config.seed)
    start = flat_weights(config.build_model())  # the initial weights of both runs
    moved, moved_alone = flat_weights(model) - start, flat_weights(reference_model) - start
    cosine = moved @ moved_alone / np.linalg.norm(moved) / np.linalg.norm(moved_alone)
    apart = np.linalg.norm(moved - moved_alone) / np.linalg.norm(moved_alone)
    assert cosine > 0.9 and apart < 0.5, (cosine, apart)


@pytest.mark.slow
def test_a_lost_worker_ends_the_other_clearly_and_the_run_resumes(tmp_path, sample_dir):
    """Kill worker 1 after the first epoch: the chief ends (exit 2, one clear line) within
    a bounded time instead of waiting for ever, and `train` on its folder resumes."""
    config = {**ONE_EPOCH, "steps": 16}  # 4 epochs
    out = tmp_path / "run"
    procs = start_workers(tmp_path, out, config, sample_dir)
    history = out / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if history.exists() and len(history.read_text().splitlines()) >= 2:  # header + 1
            break
        time.sleep(0.2)
    alive = [p.poll() is None for p in procs]
    if not all(alive):
        finish(procs, 1)
        pytest.fail(f"a worker ended before the kill: {output(tmp_path, 0, 'err')[-2000:]}")
    os.killpg(procs[1].pid, signal.SIGKILL)
    killed = time.time()
    try:
        code = procs[0].wait(timeout=LOST_WORKER_BOUND)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        finish(procs, 1)
    waited = time.time() - killed
    assert code is not None, f"the chief still ran {LOST_WORKER_BOUND} s after the kill"
    err = output(tmp_path, 0, "err").strip().splitlines()
    assert code == 2, err[-20:]
    last = err[-1]
    assert last.startswith("error: multi-worker training stopped: worker 0 of 2 lost contact "
                           "with the other workers"), last
    assert f"{out / 'backup'}" in last and "--strategy default" in last, last
    assert (out / "backup").is_dir() and read_history(history)["epoch"].size >= 1
    print(f"the chief ended {waited:.0f} s after the kill")

    # Resume on one process from the chief's folder: the epochs left, then a complete run.
    config_file = tmp_path / "config.json"
    done = subprocess.run(
        [sys.executable, "-m", "unet", "train", "--data", str(sample_dir), "--out", str(out),
         "--config", str(config_file), "--precision", "fp32", "--strategy", "default"],
        capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed and trained 16 steps" in done.stdout
    epochs = read_history(history)["epoch"]
    np.testing.assert_array_equal(epochs, np.arange(4))
    assert not (out / "backup").exists()
    load_run(out)
