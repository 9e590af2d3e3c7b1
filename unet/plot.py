"""Figures: the concept diagrams of the notebooks, spore samples, predictions and counts.

Every figure the README and notebooks show is drawn by a function here, so that
`make figures` (scripts/make_figures.py) and the notebooks draw the same thing.
matplotlib is imported inside the functions, keeping `import unet` light.
"""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path, dpi=110):
    """Save a matplotlib figure as a PNG (parents created) and close it.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
