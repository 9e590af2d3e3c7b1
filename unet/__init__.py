"""U-Net segmentation for TensorFlow/Keras 3, from the convolution up to spore counts.

Importing the package registers the custom layers, losses and metrics that saved
models use, so ``keras.models.load_model("model.keras")`` works after ``import unet``.
Heavier parts (data, training, prediction, counting) are imported on first use.
"""

import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version



def _import_tensorflow():
    """Import TensorFlow, honouring TF_CPP_MIN_LOG_LEVEL (default here: 3) at start-up too.

    TensorFlow's C++ layer logs start-up chatter (oneDNN notes, CUDA stubs, and on
    machines without a GPU an alarming but harmless "failed call to cuInit" error);
    anything that matters reaches Python as an exception or a warning. Level 3 keeps
    only those. TensorFlow 2.21 prints some lines before it reads the level, so at
    level 2 or more file descriptor 2 points at /dev/null during the import. Set
    TF_CPP_MIN_LOG_LEVEL=0 before ``import unet`` to see everything.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or not level.isdigit() or int(level) < 2:
        import tensorflow  # noqa: F401

        return
    try:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no usable file descriptor 2
        import tensorflow  # noqa: F401

        return
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow()

from .model import (
    CenterCropToMatch,
    ResizeToMatch,
    check_input_shape,
    conv_block,
    count_flops,
    decoder_block,
    encoder_block,
    input_size_for_output,
    is_valid_input_size,
    nearest_valid_sizes,
    output_size,
    shape_trace,
    unet_model,
)
from .losses import BCEDiceLoss, BCELoss, DiceLoss, get_loss
from .metrics import (
    Dice,
    IoU,
    Precision,
    Recall,
    confusion_counts,
    scores_from_counts,
    segmentation_metrics,
    segmentation_scores,
)

try:
    __version__ = version("unet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"


# Public names of the heavier modules, imported on first access (PEP 562), so that
# `import unet` stays cheap: name -> module inside the package.
_LAZY = {
    # synthetic spore microscopy
    "SporeStyle": "spores",
    "generate_dataset": "spores",
    "render_crop": "spores",
    "render_field": "spores",
    "render_split": "spores",
    # predict.py: overlap-tile prediction
    "predict_tiled": "predict",
    "plan_tiles": "predict",
    "model_geometry": "predict",
    # count.py: instance labels, splitting, measurements
    "label_spores": "count",
    "measure_spores": "count",
    "count_spores": "count",
    "count_errors": "count",
    "match_spores": "count",
    "touching_pairs": "count",
    # baseline.py: the classical method for contrast
    "baseline_mask": "baseline",
    "otsu_mask": "baseline",
    "flatten_background": "baseline",
    "Augmentation": "data",
    "Pair": "data",
    "Samples": "data",
    "border_weight_map": "data",
    "class_balance": "data",
    "class_weights": "data",
    "find_pairs": "data",
    "list_images": "data",
    "load_folder": "data",
    "load_image": "data",
    "make_dataset": "data",
    "make_tile": "data",
    "normalize": "data",
    "pad_to_tile": "data",
    "read_image": "data",
    "read_labels": "data",
    "read_mask": "data",
    "sample_weights": "data",
    "tile_size_for": "data",
    "to_channels": "data",
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


__all__ = [
    "BCEDiceLoss",
    "BCELoss",
    "CenterCropToMatch",
    "Dice",
    "DiceLoss",
    "IoU",
    "Precision",
    "Recall",
    "ResizeToMatch",
    "check_input_shape",
    "confusion_counts",
    "conv_block",
    "count_flops",
    "decoder_block",
    "encoder_block",
    "get_loss",
    "input_size_for_output",
    "is_valid_input_size",
    "nearest_valid_sizes",
    "output_size",
    "scores_from_counts",
    "segmentation_metrics",
    "segmentation_scores",
    "shape_trace",
    "unet_model",
    *_LAZY,
]
