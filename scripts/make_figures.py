"""Regenerate every figure in `markdown images/` (run by `make figures`).

Each entry of FIGURES maps a file name to a function returning a matplotlib figure;
the drawing code lives in `unet.plot` so the notebooks draw the same figures.
Usage: python scripts/make_figures.py [NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from unet import plot  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "markdown images"

# file name -> zero-argument callable returning a matplotlib Figure
FIGURES = {
    "spore_samples.png": plot.spore_samples,
    "spore_field.png": plot.spore_field,
    # concept figures (notebooks 01-04)
    "convolution.png": plot.convolution_step,
    "pooling.png": plot.pooling_example,
    "transposed_convolution.png": plot.transposed_convolution_steps,
    "skip_connection.png": plot.skip_connection,
    "unet_architecture.png": plot.unet_architecture,
}


def main(names):
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        sys.exit(f"error: unknown figure(s) {unknown}; choose from {sorted(FIGURES)}")
    for name in names or FIGURES:
        path = plot.save_figure(FIGURES[name](), OUT / name)
        print(f"wrote {path.relative_to(OUT.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
