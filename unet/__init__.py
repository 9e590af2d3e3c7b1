"""U-Net segmentation for TensorFlow/Keras 3, from the convolution up to spore counts.

``import unet`` is cheap: it starts no TensorFlow. Every public name below is
imported on first use (``unet.unet_model``, ``unet.predict_tiled``, ...). Once Keras
is imported (by the package or by you), the layers, losses and metrics that saved
models refer to are registered, so ``keras.models.load_model("model.keras")`` works
after ``import unet``; TensorFlow's known-harmless start-up lines are dropped then
(see :mod:`unet._tf`).

Modules, lowest layer first (each imports only from the layers below it):

- ``errors``: :class:`UsageError`, the mistake a user can correct.
- ``sizes`` (valid input sizes, output sizes, tiles), ``model`` (the Keras blocks and
  :func:`unet_model`), ``losses``, ``metrics``, ``count`` (spores from masks), ``io``
  (files and folders), ``image`` (channels, normalisation), ``imagefile`` (multichannel
  TIFFs, pixel sizes), ``render`` (overlays as arrays), ``outputs`` (which spores are
  reported; labels TIFF, ImageJ ROIs, tables in units), ``augment`` (training
  augmentation as TensorFlow ops), ``devices`` (precision and distribution).
- ``predict`` (overlap-tile prediction of arrays), ``calibrate`` (post-processing chosen
  on validation data), ``data`` (tiles, weights, tf.data),
  ``baseline`` (the classical method), ``spores`` (the synthetic data).
- ``run`` (:class:`Config`, run folders, the shipped models), ``plot`` (figures),
  ``evaluate``, ``report`` (``evaluate --report``), ``batch`` (files in, files out),
  ``export`` (bioimage.io, TF Serving), ``train`` (and :func:`calibrate_run`, a trained
  run's post-processing chosen anew on annotated images).
- ``cli`` (``python -m unet`` / ``unet``).
"""

import importlib
import os
from importlib.metadata import PackageNotFoundError, version

from . import _tf

#: Name of the distribution on the package index (the import name is ``unet``).
DISTRIBUTION = "unet-spores"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

# INFO and WARNING lines of TensorFlow's C++ layer off by default; errors stay visible.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _register_saved_model_classes():
    """Import the modules whose classes saved models name (Keras registers them)."""
    for module in ("model", "losses", "metrics"):
        importlib.import_module(f".{module}", __name__)


_tf.install_import_hook(_register_saved_model_classes)

# Public names -> the module that defines them, imported on first access (PEP 562).
_LAZY = {
    "UsageError": "errors",
    # sizes: which inputs fit, what comes out
    "input_size_for_output": "sizes",
    "is_valid_input_size": "sizes",
    "nearest_valid_sizes": "sizes",
    "output_size": "sizes",
    "shape_trace": "sizes",
    "check_input_shape": "sizes",
    "tile_size_for": "sizes",
    # model: the Keras blocks
    "CenterCropToMatch": "model",
    "ResizeToMatch": "model",
    "conv_block": "model",
    "encoder_block": "model",
    "decoder_block": "model",
    "unet_model": "model",
    "count_flops": "model",
    "model_geometry": "model",
    "prediction_settings": "model",
    # losses and metrics
    "BCEDiceLoss": "losses",
    "BCELoss": "losses",
    "DiceLoss": "losses",
    "get_loss": "losses",
    "Dice": "metrics",
    "IoU": "metrics",
    "Precision": "metrics",
    "Recall": "metrics",
    "confusion_counts": "metrics",
    "scores_from_counts": "metrics",
    "segmentation_metrics": "metrics",
    "segmentation_scores": "metrics",
    # io: files and folders
    "Pair": "io",
    "find_pairs": "io",
    "list_images": "io",
    "read_image": "io",
    "read_labels": "io",
    "read_mask": "io",
    "read_counts": "io",
    # image: what a model is given
    "divide_background": "image",
    "luminance": "image",
    "normalize": "image",
    "prepare_image": "image",
    "to_channels": "image",
    # count: instance labels, splitting, measurements
    "label_spores": "count",
    "label_strips": "count",
    "measure_spores": "count",
    "count_spores": "count",
    "count_errors": "count",
    "count_labels": "count",
    "object_scores": "count",
    "object_scores_from_counts": "count",
    "object_errors": "count",
    "relative_count_error": "count",
    "match_spores": "count",
    "touching_pairs": "count",
    # render: overlays as arrays
    "outline_overlay": "render",
    # augment
    "Augmentation": "augment",
    # devices: precision and distribution
    "describe_hardware": "devices",
    "resolve_precision": "devices",
    # predict: overlap-tile prediction of arrays
    "predict_tiled": "predict",
    "predict_strips": "predict",
    "plan_tiles": "predict",
    "predict_many": "predict",
    # calibrate: post-processing chosen on validation data
    "calibrate_postprocessing": "calibrate",
    # data: samples, tiles, weights, tf.data
    "Samples": "data",
    "border_weight_map": "data",
    "class_balance": "data",
    "class_weights": "data",
    "load_folder": "data",
    "load_image": "data",
    "make_dataset": "data",
    "make_tile": "data",
    "pad_to_tile": "data",
    "sample_weights": "data",
    "choose_crop_size": "data",
    "choose_min_area": "data",
    "choose_flatten": "data",
    # baseline: the classical method for contrast
    "baseline_mask": "baseline",
    "otsu_mask": "baseline",
    "flatten_background": "baseline",
    # spores: synthetic microscopy
    "SporeStyle": "spores",
    "generate_dataset": "spores",
    "render_crop": "spores",
    "render_field": "spores",
    "render_split": "spores",
    # run folders and files in, files out (``unet.train`` and ``unet.evaluate`` are
    # the modules of those names)
    "Config": "run",
    "choose_steps": "run",
    "load_run": "run",
    "calibrate_run": "train",
    "shipped_models": "run",
    "predict_images": "batch",
    "read_image_channels": "imagefile",
    "read_pixel_size": "imagefile",
    "write_report": "report",
    "export_model": "export",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'unet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
