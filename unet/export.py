"""Export a trained model for the bioimage tools and for TensorFlow Serving.

:func:`export_model` writes, into ``OUT``:

* ``OUT/bioimageio/`` and the same zipped as ``OUT/NAME.bioimageio.zip``: a
  **bioimage.io model package** (model spec 0.5) that deepImageJ/Fiji, ilastik, QuPath
  and bioimage.io read: ``rdf.yaml``; the weights as a TensorFlow SavedModel
  (``tf_saved_model.zip``) and as ONNX (``weights.onnx``, through tf2onnx); a test input
  and the model's output on it (``test_input.npy``, ``test_output.npy``) with PNG
  samples; ``cover.png``; ``README.md`` (the documentation) and ``LICENSE``.
* ``OUT/serving/1/``: a plain Keras ``model.export()`` SavedModel for TensorFlow
  Serving (base path ``OUT/serving``, version 1; signature ``serving_default``, input
  ``image`` (batch, height, width, channels) float32, already normalised).

How the package describes the model, and why:

* Axes ``batch, y, x, channel`` (the model's own order; no transposes in the weights).
  Input sizes ``min + n * step`` (the valid U-Net sizes); the output of each spatial
  axis is the input's minus twice the context (``size.offset``; spec 0.5 says a halo
  the model crops itself is an offset, not a ``halo``).
* Pre-processing with the spec's own operations: ``scale_range`` over ``y, x, channel``
  (per image, all channels jointly) from the 1st to the 99.8th percentile, which is
  :func:`unet.normalize` (plus ``eps = 1e-6``). No post-processing: the sigmoid
  probability is what ilastik and QuPath want (threshold: ``config.unet.threshold``).
* The SavedModel in the package is the *frozen* graph saved as a TF1-style SavedModel
  (weights as constants, signatures ``serving_default`` and ``serve`` returning a dict,
  default attributes stripped): deepImageJ runs SavedModels with TensorFlow Java
  (libtensorflow 2.10 at most), QuPath with DJL's TensorFlow 2.x, and a SavedModel
  written by TensorFlow 2.21 / Keras 3 holds ops those runtimes do not know
  (``DisableCopyOnRead``); bioimage.io's own loader asserts a dict. ONNX uses opset 17
  (ONNX Runtime Java 1.12 of deepImageJ reads up to 17).
* ``format_version: 0.5.4`` with plain file names for ``covers`` and ``documentation``:
  the Java parsers of QuPath and deepImageJ read those as strings, which 0.5.11 and
  later turned into objects; ``bioimageio.spec`` upgrades 0.5.4 itself.
* No ``github_user`` for the authors: the validator checks it online, and validation
  must work offline.

:func:`validate_package` runs ``bioimageio.core``'s ``test_model`` (static validation,
then each weight format reproducing the test output and running other valid sizes)
offline. tf2onnx, onnx, onnxruntime and bioimageio.core come with the ``export`` extra:
``pip install "unet-spores[export]"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import UsageError
from .run import load_run, resolve_model_path
from .sizes import input_size_for_output, is_valid_input_size, output_size

FORMATS = ("tensorflow", "onnx")
FORMAT_VERSION = "0.5.4"
P_LOW, P_HIGH, EPS = 1.0, 99.8, 1e-6
OPSET = 17
_EXTRA = 'pip install "unet-spores[export]"'
_CITE = {
    "text": "Ronneberger, O., Fischer, P., Brox, T.: U-Net: Convolutional Networks for "
            "Biomedical Image Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _zip_dir(folder, zip_path):
    """Zip a folder with its contents at the archive root."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())


def to_yaml(value, indent=0):
    """Block-style YAML of dicts, lists, strings, numbers and booleans.

    Strings are written as JSON strings (valid YAML double-quoted scalars), so no
    YAML library is needed to write ``rdf.yaml``.
    """
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {body[indent + 2:]}")
            else:
                lines.append(f"{pad}- {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 readers (PyYAML, SnakeYAML) read 1e-06 as a string: keep a dot
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    return json.dumps(str(value), ensure_ascii=False)


def normalize_like_bioimageio(x):
    """``scale_range`` as bioimageio.core computes it: per sample over y, x, channel,
    linear percentiles, ``eps`` in the denominator (:func:`unet.normalize` + eps)."""
    x = np.asarray(x, np.float32)
    low = np.percentile(x, P_LOW, axis=(1, 2, 3), keepdims=True)
    high = np.percentile(x, P_HIGH, axis=(1, 2, 3), keepdims=True)
    return ((x - low) / (high - low + EPS)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------
def write_frozen_saved_model(model, path, channels, output_id="probabilities"):
    """A TF1-style SavedModel of the frozen inference graph (see the module notes).

    Input ``image`` ``(None, None, None, channels)`` float32, output ``output_id``;
    signatures ``serving_default`` and ``serve``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(
        tf.TensorSpec((None, None, None, channels), tf.float32, name="image"))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        image = graph.get_tensor_by_name(frozen.inputs[0].name)
        output = tf.identity(graph.get_tensor_by_name(frozen.outputs[0].name), name=output_id)
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def(
                {"image": image}, {output_id: output})
            builder.add_meta_graph_and_variables(
                session, [tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature, "serve": signature},
                strip_default_attrs=True)
            builder.save()


def _onnx_from_saved_model(saved_model, onnx_path, opset=OPSET):
    """tf2onnx's converter on the SavedModel, in a subprocess (it logs a lot)."""
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:
        raise UsageError(
            f"ONNX weights need tf2onnx: {_EXTRA}, or pass `formats=('tensorflow',)`.")
    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
         "--signature_def", "serving_default", "--opset", str(opset), "--output", str(onnx_path)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode or not Path(onnx_path).exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("tf2onnx failed: " + " | ".join(tail))


# --------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------
README = """# {name}

A U-Net (Ronneberger et al. 2015) for spore segmentation, trained with
[unet-spores](https://github.com/spore-lab/unet-spores) {version} (TensorFlow {tf},
Keras {keras}). Input: a {channel_text} image (axes batch, y, x, channel). Output: the
foreground (spore) probability.

{provenance}

## Input and output sizes

The network uses *valid* convolutions: every output pixel sees its full context, and
the output is smaller than the input by {total} pixels in y and x ({context} per side).
Valid input sizes are `{min} + n * {step}` (n = 0, 1, 2, ...), e.g. {examples}; the
output of an input of size s is s - {total}. Tile large images with an overlap of
{total} px (deepImageJ and bioimageio.core do this from the description), or use
`unet.predict_tiled`, which mirrors the image at its borders.

## Pre- and post-processing

* `scale_range`: per image, over all pixels and channels jointly, the {plow} and
  {phigh} percentiles are mapped to 0 and 1, `(x - p{plow}) / (p{phigh} - p{plow} +
  1e-6)`, as in training (`unet.normalize`). Not clipped.
* Output: the sigmoid spore probability in [0, 1]; threshold {threshold} for a mask
  (the training run's{tta_text}). The `unet` command line then splits touching spores and
  measures them (`python -m unet predict`).

## Validation

`test_input.npy` is a synthetic spore image (raw RGB values as float32) and
`test_output.npy` the model's output on it; `bioimageio test rdf.yaml` reproduces it
with each weight format. Segmentation scores: see the training run's model card or
`python -m unet evaluate`.

## Weights

{weights}

## Licence and citation

MIT. Please cite Ronneberger, Fischer & Brox, *U-Net: Convolutional Networks for
Biomedical Image Segmentation*, MICCAI 2015, doi:10.1007/978-3-319-24574-4_28.
"""


def _package_version():
    from importlib import metadata

    try:
        return metadata.version("unet-spores")
    except metadata.PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0"


def _license_text():
    from importlib import metadata

    try:
        dist = metadata.distribution("unet-spores")
        text = dist.read_text("LICENSE") or dist.read_text("licenses/LICENSE")
        if text:
            return text
    except metadata.PackageNotFoundError:
        pass
    local = Path(__file__).resolve().parent.parent / "LICENSE"
    return local.read_text() if local.is_file() else None


def _cover(raw, prob, context, path):
    """2:1 PNG: the part of the test input the output covers | the probability."""
    from PIL import Image

    from .io import save_png
    from .render import display_image

    crop = raw[0, context:raw.shape[1] - context, context:raw.shape[2] - context]
    left = Image.fromarray(display_image(crop.astype(np.uint8) if crop.max() <= 255 else crop))
    right = Image.fromarray((np.clip(prob[0, ..., 0], 0, 1) * 255).astype(np.uint8)).convert("RGB")
    cover = Image.new("RGB", (512, 256))
    cover.paste(left.resize((256, 256), Image.NEAREST), (0, 0))
    cover.paste(right.resize((256, 256), Image.NEAREST), (256, 0))
    save_png(np.asarray(cover), path)


def _valid_sizes(depth, padding, count=3):
    sizes = [s for s in range(1, 64 * 2**depth) if is_valid_input_size(s, depth, padding)]
    return sizes[:count]


def _prepare_out(out, overwrite):
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; give a folder for the export.")
    targets = [out / "bioimageio", out / "serving"] + sorted(out.glob("*.bioimageio.zip"))
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose another output folder or "
                              "pass `overwrite=True`.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def export_model(run, out_dir, formats=FORMATS, pixel_size=None, name=None, serving=True,
                 overwrite=False, test_size=100, seed=0):
    """Write a bioimage.io model package (and a TF Serving SavedModel) of a trained model.

    Parameters
    ----------
    run : path or str
        A run directory, a ``.keras`` file or a shipped model's name (``"spores"``).
    out_dir : path
        Output folder; gets ``bioimageio/``, ``NAME.bioimageio.zip`` and ``serving/1/``.
    formats : sequence of {"tensorflow", "onnx"}
        Weight formats of the package (ONNX needs the ``export`` extra).
    pixel_size : float, optional
        Micrometres per pixel of the images the model was trained on, written on the
        spatial axes.
    name : str, optional
        The model's name in ``rdf.yaml`` (default from the run's folder name).
    serving : bool
        Also write ``serving/1/``.
    overwrite : bool
        Replace an earlier export in ``out_dir``.
    test_size : int
        Output side of the test tensor (its input is the valid size that gives it).
    seed : int
        Seed of the synthetic test image.

    Returns
    -------
    dict
        ``package`` (folder), ``zip``, ``formats``, ``serving`` (folder or None),
        ``max_abs_diff`` (per format: largest difference from Keras on the test input).
    """
    import keras
    import tensorflow as tf

    from .model import model_geometry
    from .spores import render_crop

    __version__ = _package_version()
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UsageError(f"`formats` must be one or more of {FORMATS}, got {formats!r}.")
    if pixel_size is not None and not float(pixel_size) > 0:
        raise UsageError(f"`pixel_size` must be a positive number of µm, got {pixel_size!r}.")
    path = resolve_model_path(run)
    model, config = load_run(run)
    geometry = model_geometry(model)
    if None not in geometry.input_size:
        raise UsageError(f"The model {path} has the fixed input size {geometry.input_size}; "
                         "export a fully convolutional one (input size None).")
    if geometry.num_classes != 1:
        raise UsageError("Only sigmoid models (`num_classes=1`) are exported for now.")
    if config is not None and config.flatten:
        raise UsageError(
            f"{path} was trained on images with their background divided out (`flatten` "
            f"{config.flatten}), which bioimage.io's pre-processing cannot express: other "
            "tools would give it images that were not. Export a run trained without it "
            "(`train --flatten off`).")
    if "onnx" in formats:
        import importlib.util

        if importlib.util.find_spec("tf2onnx") is None:
            raise UsageError(
                f"ONNX weights need tf2onnx: {_EXTRA}, or pass `formats=('tensorflow',)`.")
    out = _prepare_out(out_dir, overwrite)
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in (path.stem if
                   path.suffix == ".keras" else path.name)) or "model"
    name = name or f"U-Net spore segmentation ({slug})"
    threshold = config.threshold if config else 0.5
    sizes = _valid_sizes(geometry.depth, geometry.padding)
    smallest, step = sizes[0], sizes[1] - sizes[0]
    total = smallest - output_size(smallest, geometry.depth, geometry.padding)
    context = total // 2

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        package = staging / "bioimageio"
        package.mkdir()
        # ---- test tensors: a synthetic spore image, raw values in, Keras' output out
        size = input_size_for_output(test_size, geometry.depth, geometry.padding)
        rgb, _ = render_crop(rng=seed, size=size)
        if geometry.channels == 1:
            rgb = rgb.mean(axis=-1, keepdims=True)
        elif geometry.channels != 3:
            raise UsageError(f"Export needs a model of 1 or 3 channels, not {geometry.channels}.")
        raw = rgb[None].astype(np.float32)
        expected = np.asarray(model.predict(normalize_like_bioimageio(raw), verbose=0), np.float32)
        if not expected.max() > 1e-3:
            raise UsageError("The model predicts no spore on the test image; the bioimage.io "
                             "test would reject an all-zero output. Train it first.")
        np.save(package / "test_input.npy", raw)
        np.save(package / "test_output.npy", expected)
        from .io import save_png

        save_png(rgb.astype(np.uint8).squeeze(), package / "sample_input.png")
        save_png((np.clip(expected[0, ..., 0], 0, 1) * 255).astype(np.uint8),
                 package / "sample_output.png")
        _cover(raw, expected, context, package / "cover.png")

        # ---- weights
        weights, diffs = {}, {}
        saved = staging / "saved_model"
        write_frozen_saved_model(model, saved, geometry.channels)
        loaded = tf.saved_model.load(str(saved))
        got = loaded.signatures["serving_default"](
            image=tf.constant(normalize_like_bioimageio(raw)))["probabilities"].numpy()
        diffs["tensorflow"] = float(np.abs(got - expected).max())
        if "tensorflow" in formats:
            _zip_dir(saved, package / "tf_saved_model.zip")
            weights["tensorflow_saved_model_bundle"] = {
                "source": "tf_saved_model.zip",
                "sha256": _sha256(package / "tf_saved_model.zip"),
                "tensorflow_version": tf.__version__,
                "comment": "frozen graph (weights as constants) as a TF1-style SavedModel; "
                           "signatures serving_default and serve, input image, output "
                           "probabilities",
            }
        if "onnx" in formats:
            _onnx_from_saved_model(saved, package / "weights.onnx")
            try:
                import onnxruntime

                session = onnxruntime.InferenceSession(str(package / "weights.onnx"),
                                                       providers=["CPUExecutionProvider"])
                result = session.run(None, {session.get_inputs()[0].name:
                                            normalize_like_bioimageio(raw)})[0]
                diffs["onnx"] = float(np.abs(result - expected).max())
            except ImportError:
                diffs["onnx"] = None
            entry = {"source": "weights.onnx", "sha256": _sha256(package / "weights.onnx"),
                     "opset_version": OPSET, "comment": "tf2onnx from the frozen SavedModel"}
            if "tensorflow_saved_model_bundle" in weights:
                entry["parent"] = "tensorflow_saved_model_bundle"
            weights["onnx"] = entry

        # ---- documentation, licence
        provenance = ("Trained on synthetic spore images only (the package's generator); "
                      "see the model card of the training run." if path.name == "spores"
                      else f"Trained run: `{path.name}`.")
        channel_names = ["gray"] if geometry.channels == 1 else ["red", "green", "blue"]
        (package / "README.md").write_text(README.format(
            name=name, version=__version__, tf=tf.__version__, keras=keras.__version__,
            channel_text="gray" if geometry.channels == 1 else "RGB", provenance=provenance,
            total=total, context=context, min=smallest, step=step,
            examples=", ".join(map(str, sizes)), plow=P_LOW, phigh=P_HIGH, threshold=threshold,
            tta_text=", chosen for maps averaged over the flipped and turned tiles (`tta`), "
            "which the package's single pass does not do" if config and config.tta else "",
            weights="\n".join(f"* `{k}`: {v['comment']}." for k, v in weights.items()),
        ), encoding="utf-8")
        license_text = _license_text()
        if license_text:
            (package / "LICENSE").write_text(license_text, encoding="utf-8")

        # ---- rdf.yaml
        unit = ({"unit": "micrometer", "scale": float(pixel_size)} if pixel_size
                else {"scale": 1.0})  # QuPath's older parser reads scale without a default

        def space(axis, output):
            size = ({"tensor_id": "image", "axis_id": axis, "offset": -total} if output
                    else {"min": smallest, "step": step})
            note = (f"valid padding: {context} px cropped per side" if output
                    else f"valid sizes {smallest} + n*{step}")
            return {"type": "space", "id": axis, "size": size, **unit, "description": note}

        def tensor(file):
            return {"source": file, "sha256": _sha256(package / file)}

        rdf = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "name": name,
            "description": "U-Net (valid padding) for spore segmentation in brightfield "
                           "microscopy; outputs the spore probability.",
            "authors": [{"name": "The unet-spores contributors"}],
            "cite": [_CITE],
            "license": "MIT",
            "git_repo": "https://github.com/spore-lab/unet-spores",
            "version": __version__ if __version__[0].isdigit() else "0.0.0",
            "tags": ["unet", "segmentation", "2d", "microscopy", "spores", "brightfield",
                     "tensorflow", "keras", "semantic-segmentation"],
            "documentation": "README.md",
            "covers": ["cover.png"],
            "inputs": [{
                "id": "image",
                "description": "raw image (any intensity range; normalised by scale_range)",
                "axes": [{"type": "batch"}, space("y", False), space("x", False),
                         {"type": "channel", "channel_names": channel_names}],
                "test_tensor": tensor("test_input.npy"),
                "sample_tensor": tensor("sample_input.png"),
                "data": {"type": "float32"},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {"id": "scale_range", "kwargs": {"axes": ["y", "x", "channel"],
                                                     "min_percentile": P_LOW,
                                                     "max_percentile": P_HIGH, "eps": EPS}},
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                ],
            }],
            "outputs": [{
                "id": "probabilities",
                "description": "spore probability",
                "axes": [{"type": "batch"}, space("y", True), space("x", True),
                         {"type": "channel", "channel_names": ["foreground"]}],
                "test_tensor": tensor("test_output.npy"),
                "sample_tensor": tensor("sample_output.png"),
                "data": {"type": "float32", "range": [0.0, 1.0]},
            }],
            "weights": weights,
            "config": {
                "bioimageio": {"reproducibility_tolerance": [
                    {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-4,
                     "mismatched_elements_per_million": 0}]},
                "unet": {"depth": geometry.depth, "padding": geometry.padding,
                         "context": context, "threshold": float(threshold),
                         "valid_input_sizes": {"min": smallest, "step": step}},
            },
        }
        if license_text:
            rdf["attachments"] = [{"source": "LICENSE"}]
        (package / "rdf.yaml").write_text(to_yaml(rdf) + "\n", encoding="utf-8")
        zipped = staging / f"{slug}.bioimageio.zip"
        _zip_dir(package, zipped)

        if serving:
            (staging / "serving").mkdir()
            model.export(str(staging / "serving" / "1"), format="tf_saved_model", verbose=False)

        # ---- into place (an earlier export replaced only now)
        for item in ("bioimageio", "serving", zipped.name):
            target = out / item
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (staging / item).exists():
                os.replace(staging / item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"package": out / "bioimageio", "zip": out / zipped.name,
            "formats": [k for k in ("tensorflow", "onnx") if k in formats],
            "serving": out / "serving" / "1" if serving else None, "max_abs_diff": diffs}


def validate_package(package, weight_formats=None):
    """Validate a bioimage.io package with ``bioimageio.core`` (static + test_model).

    Runs offline: the package holds every file and names no ``github_user``. The
    tests run in a temporary working folder, since ``bioimageio.core`` unzips
    TensorFlow weights into the current one.

    Parameters
    ----------
    package : path
        ``rdf.yaml``, its folder, or the ``.bioimageio.zip``.
    weight_formats : sequence of str, optional
        bioimage.io names (``tensorflow_saved_model_bundle``, ``onnx``); default all.

    Returns
    -------
    dict
        ``{format: {"status": ..., "errors": [...], "seconds": ...}}``; status
        ``"passed"`` when the format reproduced the test output.

    Raises
    ------
    ModuleNotFoundError
        Without ``bioimageio.core`` (the ``export`` extra).
    """
    import importlib.util
    import time

    if importlib.util.find_spec("bioimageio") is None or \
            importlib.util.find_spec("bioimageio.core") is None:
        raise ModuleNotFoundError(f"Validating needs bioimageio.core: {_EXTRA}.")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # bioimageio.core defaults to torch
    from bioimageio.core import test_model

    package = Path(package).resolve()
    source = package / "rdf.yaml" if package.is_dir() else package
    if weight_formats is None:
        from bioimageio.spec import load_description

        description = load_description(source)
        weight_formats = [k for k, v in description.weights if v is not None]
    results = {}
    cwd = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="bioimageio-test-")
    os.chdir(scratch)
    try:
        for fmt in weight_formats:
            start = time.perf_counter()
            summary = test_model(source, weight_format=fmt)
            errors = [f"{d.name}: {e.msg[:300]}" for d in summary.details for e in d.errors]
            results[fmt] = {"status": summary.status, "errors": errors,
                            "seconds": time.perf_counter() - start}
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    return results
