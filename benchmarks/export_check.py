"""Export a model as a bioimage.io package and validate it offline with bioimageio.core.

Needs the `export` extra (tf2onnx, onnx, onnxruntime, bioimageio.core); `make export-check`
installs the package with it into its own environment (.venv-export) and runs this
script there without network access where the machine allows (`unshare -n`).

Usage: python benchmarks/export_check.py [--run spores] [--out /tmp/unet-export]

Prints the time of each step, the largest difference of each weight format from Keras on
the test input, and bioimageio.core's verdict per weight format (static validation plus
`test_model`: the test output reproduced and other valid input sizes run), for the package
folder and the zip. What it cannot check offline: nothing of this package needs the
network (every file is local and no `github_user` is named: bioimageio.spec checks
those against the GitHub API online, and fails offline); uploading to bioimage.io, and
running the package in deepImageJ, QuPath or ilastik, are not done here.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def offline():
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return False
    except OSError:
        return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="spores", help="run, .keras file or shipped model (spores)")
    p.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    args = p.parse_args(argv)
    import unet  # noqa: F401  (quiet TensorFlow start-up)
    from unet.export import export_model, validate_package

    out = Path(args.out or tempfile.mkdtemp(prefix="unet-export-"))
    start = time.perf_counter()
    result = export_model(args.run, out, overwrite=True)
    built = time.perf_counter() - start
    print(f"exported {args.run} in {built:.1f} s: {result['zip']} "
          f"({result['zip'].stat().st_size / 1e6:.2f} MB), formats {result['formats']}")
    print("max |weights - Keras| on the test input: " + json.dumps(result["max_abs_diff"]))
    print(f"network: {'none (offline)' if offline() else 'reachable'}")
    ok = True
    for what, source in (("folder", result["package"]), ("zip", result["zip"])):
        start = time.perf_counter()
        statuses = validate_package(source)
        for fmt, s in statuses.items():
            print(f"bioimageio.core test_model ({what}, {fmt}): {s['status']} in "
                  f"{s['seconds']:.1f} s")
            for error in s["errors"]:
                print(f"    {error}")
            ok &= s["status"] == "passed"
    print("export check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
