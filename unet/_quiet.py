"""Silencing TensorFlow's expected, harmless retracing warnings."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def quiet_retracing():
    """Hide TensorFlow's "triggered tf.function retracing" warnings inside the block.

    Tracing a function again is expected, and harmless, where this is used: images
    of different sizes give tiles of different shapes (each traces Keras' predict
    function once), and each augmentation setting compiles its own resampler.
    TensorFlow's warning that tracing is expensive would only be noise there.
    """
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
