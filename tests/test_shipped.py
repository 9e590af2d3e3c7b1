"""The shipped spore model: loaded by name, the default of predict/evaluate, plain Keras
loads it without this package, fine-tuning starts from it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet.errors import UsageError
from unet.run import DEFAULT_MODEL, MODELS_DIR, load_run, shipped_models

SHIPPED = MODELS_DIR / "spores"


def test_the_shipped_model_is_in_the_package_and_small():
    assert DEFAULT_MODEL == "spores" and "spores" in shipped_models()
    for name in ("model.keras", "config.json", "MODEL_CARD.md"):
        assert (SHIPPED / name).is_file(), name
    assert (SHIPPED / "model.keras").stat().st_size <= 3 * 2**20
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    for words in ("synthetic", "--init spores", "seed", "Dice", "make model"):
        assert words in card, words
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"models/*/model.keras"' in pyproject  # package data: pip install carries it


def test_load_run_by_name_and_an_existing_path_wins(tmp_path, monkeypatch):
    model, config = load_run("spores")
    assert config is not None and model.input_shape == (None, None, None, config.channels)
    out = model.predict(np.zeros((1, 188, 188, config.channels), np.float32), verbose=0)
    assert out.shape == (1, 100, 100, 1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spores").mkdir()  # a folder of that name, without a model
    with pytest.raises(FileNotFoundError, match="holds no model.keras"):
        load_run("spores")
    with pytest.raises(FileNotFoundError, match="shipped model"):
        load_run("nosuchmodel")


def test_plain_keras_loads_it_without_this_package(tmp_path):
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.models.load_model({str(SHIPPED / 'model.keras')!r})\n"
        "assert not [k for k in sys.modules if k == 'unet' or k.startswith('unet.')]\n"
        "assert not m.compiled  # saved without its compile config\n"
        "y = m.predict(np.zeros((1, 196, 188, 3), np.float32), verbose=0)\n"
        "assert y.shape == (1, 108, 100, 1), y.shape\n"
        "print(sorted({type(l).__name__ for l in m.layers}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)  # not the repository: `unet` is not importable there
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Cropping2D" in done.stdout and "CenterCropToMatch" not in done.stdout


def test_init_loads_the_weights_and_refuses_another_architecture():
    from unet.run import Config
    from unet.train import _initial_weights

    model, config = load_run("spores")
    weights = _initial_weights(config, "spores")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    with pytest.raises(UsageError, match="`init`"):
        _initial_weights(Config(filters=8), "spores")
