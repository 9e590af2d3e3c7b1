"""Shared helpers of the benchmark scripts: machine description, timing, the matmul limit, results.

Every script prints its figures and writes them to ``benchmarks/results/NAME.json``
(gitignored). The machine is shared, so scripts measure the quantities they compare
within one run, interleaved where they can, and report the median and the spread
(min-max) of repeated measurements.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the checkout's unet, also without installing it

import unet  # noqa: E402,F401  (first: TensorFlow starts quietly)


def cpu_name():
    """The CPU model from /proc/cpuinfo (or platform's answer)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The CPU's vector extensions that matter here (AVX-512, bf16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return [f for f in wanted if f in flags]


def machine():
    """What the figures were measured on (GPU: the devices TensorFlow sees, if any)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "flags": cpu_flags(),
        "gpu": [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in gpus] or "none (CPU only)",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def summary(values):
    """Median, min and max of repeated measurements."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(stats, digits=1, unit=""):
    """``median (min-max)`` of a :func:`summary`."""
    return (f"{stats['median']:.{digits}f}{unit} ({stats['min']:.{digits}f}-"
            f"{stats['max']:.{digits}f})")


def timed(function, repeats=5, number=1):
    """Seconds per call of ``function()``: a list of ``repeats`` timings of ``number`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return times


def matmul_gflops(dtype="float32", n=2048, repeats=5):
    """GFLOP/s of an n x n matmul in TensorFlow: the practical limit of dense compute.

    Returns a list of ``repeats`` measurements (2 n**3 FLOPs each).
    """
    import tensorflow as tf

    from unet._tf import quiet_retracing

    a = tf.cast(tf.random.stateless_normal((n, n), (1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), (3, 4)), dtype)
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    with quiet_retracing():  # a new function per call, traced once: expected
        matmul(a, b).numpy()
    return [2 * n**3 / t / 1e9 for t in timed(lambda: matmul(a, b).numpy(), repeats)]


def write_result(name, result):
    """Write ``benchmarks/results/NAME.json`` and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def table(rows, header):
    """A plain-text table (list of row tuples), columns padded."""
    rows = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
