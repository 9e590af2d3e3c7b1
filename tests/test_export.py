"""export: the bioimage.io package reproduces the model; validated by bioimageio.core when
installed (the `export` extra; `make export-check` installs it into its own environment)."""

import importlib.util
import zipfile

import numpy as np
import pytest

from unet.errors import UsageError
from unet.export import export_model, normalize_like_bioimageio, to_yaml, validate_package
from unet.image import normalize
from unet.run import load_run

HAVE_ONNX = importlib.util.find_spec("tf2onnx") is not None
HAVE_CORE = (importlib.util.find_spec("bioimageio") is not None
             and importlib.util.find_spec("bioimageio.core") is not None)


@pytest.fixture(scope="module")
def exported(plain_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    formats = ("tensorflow", "onnx") if HAVE_ONNX else ("tensorflow",)
    return export_model(plain_run[0], out, formats=formats, pixel_size=0.5), plain_run[0]


def test_package_files_and_rdf(exported):
    result, _ = exported
    package = result["package"]
    for name in ("rdf.yaml", "tf_saved_model.zip", "test_input.npy", "test_output.npy",
                 "cover.png", "README.md", "sample_input.png", "sample_output.png"):
        assert (package / name).is_file(), name
    text = (package / "rdf.yaml").read_text()
    assert 'format_version: "0.5.4"' in text and "github_user" not in text
    assert "scale_range" in text and '- "cover.png"' in text and "offset: -88" in text
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the rdf back here")
    rdf = yaml.safe_load(text)
    space = rdf["inputs"][0]["axes"][1]
    assert space["size"] == {"min": 92, "step": 8} and space["unit"] == "micrometer"
    assert rdf["outputs"][0]["axes"][1]["size"]["offset"] == -88
    with zipfile.ZipFile(result["zip"]) as archive:
        assert "rdf.yaml" in archive.namelist() and "tf_saved_model.zip" in archive.namelist()


def test_weights_reproduce_the_keras_model(exported):
    import tensorflow as tf

    result, run = exported
    assert result["max_abs_diff"]["tensorflow"] < 1e-5
    if HAVE_ONNX:
        assert result["max_abs_diff"]["onnx"] is None or result["max_abs_diff"]["onnx"] < 1e-4
    model, _ = load_run(run)
    raw = np.load(result["package"] / "test_input.npy")
    expected = np.load(result["package"] / "test_output.npy")
    assert raw.shape == (1, 188, 188, 3) and expected.shape == (1, 100, 100, 1)
    assert expected.max() > 0.5  # the test image has spores
    # the package's normalisation is the library's, up to eps
    np.testing.assert_allclose(normalize_like_bioimageio(raw)[0], normalize(raw[0], 1, 99.8),
                               atol=1e-4)
    np.testing.assert_allclose(model.predict(normalize_like_bioimageio(raw), verbose=0),
                               expected, atol=1e-6)
    served = tf.saved_model.load(str(result["serving"]))
    got = served.signatures["serving_default"](image=tf.constant(normalize_like_bioimageio(raw)))
    np.testing.assert_allclose(next(iter(got.values())).numpy(), expected, atol=1e-5)


def test_export_refuses_to_overwrite_and_bad_formats(exported, tmp_path):
    result, run = exported
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(run, result["package"].parent, formats=("tensorflow",))
    with pytest.raises(UsageError, match="`formats`"):
        export_model(run, tmp_path / "x", formats=("torchscript",))
    assert not (tmp_path / "x").exists()


def test_a_run_trained_with_flatten_is_not_exported(trained_run, tmp_path):
    from unet.run import Config

    window = Config.load(trained_run[0] / "config.json").flatten  # the default chose one
    assert isinstance(window, int)
    with pytest.raises(UsageError, match=f"background divided out .`flatten` {window}.*"
                                         "trained without it .`train --flatten off`"):
        export_model(trained_run[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_package_says_when_the_threshold_was_chosen_for_tta(exported, tmp_path):
    from conftest import copy_run

    result, run = exported
    assert "for a mask\n  (the training run's). " in (result["package"] / "README.md").read_text()
    augmented = copy_run(run, tmp_path / "augmented", tta=True)
    package = export_model(augmented, tmp_path / "out", formats=("tensorflow",))["package"]
    assert ("(the training run's, chosen for maps averaged over the flipped and turned tiles "
            "(`tta`)") in " ".join((package / "README.md").read_text().split())


def test_yaml_floats_keep_a_dot_for_yaml_11_readers():
    assert to_yaml({"eps": 1e-06}) == "eps: 1.0e-06"
    assert to_yaml({"s": 'a "b"'}) == 's: "a \\"b\\""'


@pytest.mark.skipif(not HAVE_CORE, reason="bioimageio.core is not installed (the `export` "
                    "extra); `make export-check` validates in its own environment")
def test_bioimageio_core_validates_the_package_offline(exported):
    result, _ = exported
    statuses = validate_package(result["package"])
    assert statuses and all(s["status"] == "passed" for s in statuses.values()), statuses
    assert validate_package(result["zip"], ["tensorflow_saved_model_bundle"])[
        "tensorflow_saved_model_bundle"]["status"] == "passed"
