"""Figures: the concept diagrams of the notebooks, spore samples, predictions and counts.

Every figure the README and notebooks show is drawn by a function here, so that
``make figures`` (scripts/make_figures.py) and the notebooks draw the same thing:
:mod:`unet.plot.concepts` (the operations and the architecture) and
:mod:`unet.plot.results` (data, training and results). Both are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from ..render import (  # noqa: F401  (drawn as arrays; here for the figures' users)
    ERROR_COLORS,
    OUTLINE_COLOR,
    display_image,
    error_map,
    label_colors,
    outline_overlay,
)
from .concepts import (  # noqa: F401
    convolution_step,
    pooling_example,
    skip_connection,
    tile_plan,
    transposed_convolution_steps,
    unet_architecture,
)
from .results import (  # noqa: F401
    PANEL_KINDS,
    counted_field,
    image_grid,
    method_comparison,
    prediction_strip,
    size_histogram,
    threshold_curves,
    spore_field,
    spore_samples,
    training_curves,
    training_tile,
)


def save_figure(fig, path, dpi=110):
    """Save a matplotlib figure as a PNG (parents created, written atomically) and close it.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})
    plt.close(fig)
    return path
