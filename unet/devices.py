"""Hardware choices: the mixed-precision policy and the distribution strategy.

TensorFlow is imported inside the functions, so the command line can list the
choices without starting it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError, check_choice

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _cpu_has_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision="auto"):
    """Map a precision choice to a Keras dtype policy name.

    ``"auto"`` picks the fastest safe policy for the hardware: bfloat16 mixed
    precision on GPUs of compute capability ≥ 8.0 (A100, H100) and on CPUs with
    native bf16 instructions (AVX512_BF16 or AMX), float16 mixed precision on older
    GPUs (≥ 7.0, with loss scaling, which Keras adds), else float32.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return _POLICIES[precision]
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major = (details.get("compute_capability") or (0, 0))[0]
        return "mixed_bfloat16" if major >= 8 else "mixed_float16" if major >= 7 else "float32"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def describe_hardware(precision="auto"):
    """One line naming the device TensorFlow will use and the precision policy.

    For the top of a notebook or a log: ``"GPU: Tesla T4 (compute capability
    7.5); precision 'auto' -> mixed_float16"`` or ``"CPU only (2 cores, bf16
    instructions); precision 'auto' -> mixed_bfloat16"``.
    """
    import tensorflow as tf

    policy = resolve_precision(precision)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            name = details.get("device_name", gpu.name)
            capability = details.get("compute_capability")
            if capability:
                name += f" (compute capability {capability[0]}.{capability[1]})"
            names.append(name)
        device = f"GPU: {', '.join(names)}"
    else:
        extra = ", bf16 instructions" if _cpu_has_bf16() else ""
        device = f"CPU only ({os.cpu_count()} cores{extra})"
    return f"{device}; precision {precision!r} -> {policy}"


def make_strategy(strategy="auto"):
    """A ``tf.distribute`` strategy.

    ``"auto"``: a TPU if one is reachable, MirroredStrategy over all GPUs when there
    is more than one, else the default (single-device) strategy. ``"multiworker"``
    reads the cluster from the ``TF_CONFIG`` environment variable.
    """
    import tensorflow as tf

    check_choice("strategy", strategy, STRATEGIES)
    if strategy in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError):
            if strategy == "tpu":
                raise UsageError(
                    "No TPU was found; use `strategy='auto'` or `strategy='default'`."
                ) from None
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (one unless the CPU was split
        # with tf.config.set_logical_device_configuration, as the tests do).
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError(
                "`strategy='multiworker'` needs the TF_CONFIG environment variable "
                "describing the cluster."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
