import unet  # noqa: F401  (first: quiet TensorFlow start-up; registers custom objects)

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a test of a minute or more (several processes); CI runs it, "
        "`-m 'not slow'` leaves it out")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


from pathlib import Path  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "spores" / "sample"

#: A small, fast configuration: it learns the sample in seconds on two CPU cores.
TINY = dict(filters=8, depth=3, steps=48, steps_per_epoch=4, batch_size=4, learning_rate=3e-3,
            early_stopping_steps=48)


@pytest.fixture(scope="session")
def sample_dir():
    """The committed spore sample: train/, val/, test/ with images, masks, labels."""
    return SAMPLE


def _tiny_run(tmp_path_factory, name, **changes):
    """A short training run of ``TINY`` (with ``changes``) on the sample: (folder, result)."""
    from unet.train import Config, train

    out = tmp_path_factory.mktemp("run") / name
    result = train(Config(**TINY, **changes), SAMPLE, out, precision="fp32",
                   strategy="default", verbose=0)
    keras.backend.clear_session()
    return out, result


def copy_run(run, out, **changes):
    """A copy of the run folder ``run`` at ``out`` whose config.json has ``changes``."""
    import shutil

    from unet.run import Config

    shutil.copytree(run, out)
    config = Config.load(out / "config.json", run=True)
    Config(**{**config.to_dict(), **changes}).save(out / "config.json")
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short training run on the sample, shared by the tests that need a model."""
    return _tiny_run(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory):
    """The same run on the images as they are (``flatten`` off, where ``trained_run``
    has the default background flattening): what export and the strip-by-strip reading
    of large TIFFs need."""
    return _tiny_run(tmp_path_factory, "plain", flatten=None)
