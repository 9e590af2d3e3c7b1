"""Hardware choices: the mixed-precision policy and the distribution strategy.

TensorFlow is imported inside the functions, so the command line can list the
choices without starting it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
    reads the cluster from the ``TF_CONFIG`` environment variable
    (:func:`multiworker_role`); its collective operations fail after
    ``UNET_COLLECTIVE_TIMEOUT`` seconds (default 600) instead of waiting for ever
    for a worker that is gone.
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
    if strategy == "multiworker":
        # before anything starts TensorFlow's runtime (listing devices does): collective
        # operations can only be configured before it starts
        role = multiworker_role()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=role.timeout or None)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (one unless the CPU was split
        # with tf.config.set_logical_device_configuration, as the tests do).
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


#: Environment variable: seconds a collective operation of a multi-worker run may wait
#: for the other workers before it fails (default :data:`COLLECTIVE_TIMEOUT`; 0: forever).
TIMEOUT_VARIABLE = "UNET_COLLECTIVE_TIMEOUT"

#: Default of :data:`TIMEOUT_VARIABLE`, in seconds: far longer than one training step
#: or one validation of a real run, so only a lost worker reaches it.
COLLECTIVE_TIMEOUT = 600


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in a multi-worker cluster (from ``TF_CONFIG``)."""

    task_type: str
    task_id: int
    workers: int  # processes that train: the chief (if any) and the workers
    is_chief: bool
    timeout: float  # seconds a collective may wait (0: no limit)

    @property
    def name(self):
        return f"{self.task_type} {self.task_id}"


def multiworker_role():
    """The :class:`WorkerRole` that ``TF_CONFIG`` gives this process.

    The chief is the ``"chief"`` task, or ``"worker"`` 0 where the cluster names no
    chief (TensorFlow's rule for ``MultiWorkerMirroredStrategy``). Read without
    TensorFlow, so :func:`unet.train.train` knows before it starts whether this process
    owns the run folder.

    Raises
    ------
    UsageError
        If ``TF_CONFIG`` is missing or does not describe this task in a cluster.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UsageError(
            "`strategy='multiworker'` needs the TF_CONFIG environment variable "
            "describing the cluster."
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, task_id = str(task["type"]), int(task["index"])
        hosts = cluster[task_type]
        if not 0 <= task_id < len(hosts):
            raise IndexError(task_id)
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise UsageError(
            "TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
            "\"task\": {\"type\": \"worker\", \"index\": 0}} naming this task in the "
            f"cluster; got {text[:200]!r}."
        ) from None
    if task_type not in ("chief", "worker"):
        raise UsageError(f"TF_CONFIG names this task {task_type!r}; `strategy='multiworker'` "
                         "trains on 'chief' and 'worker' tasks only.")
    is_chief = task_type == "chief" or ("chief" not in cluster and task_id == 0)
    raw = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        timeout = float(raw) if raw.strip() else float(COLLECTIVE_TIMEOUT)
        if not timeout >= 0:
            raise ValueError(raw)
    except ValueError:
        raise UsageError(f"{TIMEOUT_VARIABLE} must be a number of seconds (0: no limit), "
                         f"got {raw!r}.") from None
    return WorkerRole(task_type, task_id, workers, is_chief, timeout)
