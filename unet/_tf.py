"""TensorFlow for the package: a quiet start, a clear error when it is missing.

TensorFlow's C++ layer writes start-up lines to file descriptor 2 before Python
sees them (at import, and when it first looks for GPUs, which the hook does at import) (``WARNING: All log messages before absl::InitializeLog()``, "Could not
find cuda drivers", CPU-instruction notes, and on machines without an NVIDIA
driver a harmless "failed call to cuInit"). :func:`install_import_hook` makes the
first import of ``tensorflow`` or ``keras`` after ``import unet`` drop exactly
those known-harmless lines and pass every other line through, so a real CUDA or
cuDNN load error (in Colab, say) is still shown. Set ``UNET_TF_LOG=all`` to see
everything. The same hook raises one clear line when Keras is asked for but no
TensorFlow build is installed, and calls back once Keras is imported (the package
registers its saved-model classes then).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

#: Start-up lines of TensorFlow that carry no information a user can act on.
HARMLESS = (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"cpu_feature_guard\.cc",
    r"^To enable the following instructions:",
    r"oneDNN custom operations are on",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"absl::InitializeLog\(\)",
)
_NO_DRIVER = r"failed call to cuInit"  # harmless only where no NVIDIA driver is present

MISSING_TENSORFLOW = (
    "unet needs TensorFlow (2.16 or newer), and none is installed. Install the build for "
    "your machine: pip install 'unet-spores[tensorflow]' (or tensorflow-cpu; "
    "tensorflow[and-cuda] for NVIDIA GPUs; tensorflow-macos + tensorflow-metal on Apple)."
)


def _harmless(line, driver_present):
    patterns = HARMLESS if driver_present else (*HARMLESS, _NO_DRIVER)
    return any(re.search(p, line) for p in patterns)


@contextlib.contextmanager
def filtered_stderr():
    """Drop TensorFlow's known-harmless start-up lines from file descriptor 2.

    Everything else written to fd 2 inside the block is written to ``sys.stderr``
    afterwards (so Jupyter shows it in the cell). Does nothing when
    ``UNET_TF_LOG=all`` or when fd 2 cannot be redirected.
    """
    if os.environ.get("UNET_TF_LOG", "").lower() == "all":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile(mode="w+b")
    except (OSError, ValueError, AttributeError):
        yield
        return
    os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
        capture.close()
        driver = os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
        kept = [line for line in text.splitlines() if line.strip() and not _harmless(line, driver)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


def _backend_is_tensorflow():
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


class _ImportHook(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``tensorflow`` and ``keras`` (see the module notes)."""

    names = ("tensorflow", "keras")

    def __init__(self, on_keras):
        self.on_keras = on_keras
        self.busy = set()

    def _real_spec(self, name):
        self.busy.add(name)
        try:
            return importlib.util.find_spec(name)
        finally:
            self.busy.discard(name)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names or fullname in self.busy or fullname in sys.modules:
            return None
        spec = self._real_spec(fullname)
        needs_tf = fullname == "tensorflow" or _backend_is_tensorflow()
        if needs_tf and "tensorflow" not in sys.modules and (
            spec is None if fullname == "tensorflow" else self._real_spec("tensorflow") is None
        ):
            raise ModuleNotFoundError(MISSING_TENSORFLOW, name="tensorflow")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, hook = spec.loader, self
        original = loader.exec_module

        def exec_module(module):
            try:
                with filtered_stderr():
                    original(module)
                    if fullname == "tensorflow":  # the GPU probe logs too (cuInit): do it here
                        module.config.list_physical_devices()
            finally:
                loader.exec_module = original
            if fullname == "keras" and _backend_is_tensorflow():
                hook.on_keras()

        loader.exec_module = exec_module
        return spec


def install_import_hook(on_keras):
    """Quiet the first TensorFlow/Keras import; call ``on_keras()`` once Keras is loaded.

    If Keras is already imported, ``on_keras`` runs at once.
    """
    if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook(on_keras))
    if "keras" in sys.modules and _backend_is_tensorflow():
        on_keras()


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
