"""Figures: the concept diagrams of the notebooks, spore samples, predictions and counts.

Every figure the README and notebooks show is drawn by a function here, so that
`make figures` (scripts/make_figures.py) and the notebooks draw the same thing.
matplotlib is imported inside the functions, keeping `import unet` light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


# --- overlays (arrays, no matplotlib) ---
OUTLINE_COLOR = (255, 208, 0)


def display_image(image):
    """An 8-bit RGB copy of any image for display: uint8 kept, others stretched.

    Gray is replicated to RGB and alpha dropped; images of other dtypes (16-bit,
    float) are stretched between their 1st and 99.8th percentiles.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    low, high = np.percentile(image, (1.0, 99.8))
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def outline_overlay(image, labels, color=OUTLINE_COLOR):
    """The image (8-bit RGB) with the inner boundary of every labelled region drawn in.

    Parameters
    ----------
    image : array_like
        Any image :func:`display_image` accepts, the size of ``labels``.
    labels : array_like of int
        Instance labels (0 = background) or a binary mask.
    color : (int, int, int)
        RGB colour of the outlines.

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    from skimage.segmentation import find_boundaries

    out = display_image(image).copy()
    out[find_boundaries(np.asarray(labels), mode="inner")] = color
    return out


# --- spore data ---
def _read_folder_pairs(folder, n):
    """The first ``n`` (image, mask) pairs of a data folder, matched by file stem."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    images = sorted(p for p in (folder / "images").iterdir() if p.is_file())[:n]
    if not images:
        raise FileNotFoundError(f"{folder / 'images'} holds no images; generate some first.")
    pairs = []
    for path in images:
        masks = sorted((folder / "masks").glob(path.stem + ".*"))
        if not masks:
            raise FileNotFoundError(f"no mask for {path.name} in {folder / 'masks'}.")
        image = np.asarray(Image.open(path).convert("RGB"))
        pairs.append((image, np.asarray(Image.open(masks[0])) > 0))
    return pairs


def spore_samples(folder=None, n=16, seed=7, columns=4):
    """A grid of spore crops, each shown plain and with its true mask outlined.

    Parameters
    ----------
    folder : str or pathlib.Path, optional
        A data folder (``images/`` + ``masks/``) to read the first ``n`` crops from.
        Without it, ``n`` crops are rendered by :func:`unet.spores.render_crop` with
        the fixed ``seed``, so no data need exist.
    n : int
        Number of crops.
    seed : int
        Seed of the rendered crops.
    columns : int
        Crops per row (each takes two panels).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if folder is None:
        from .spores import render_crop

        children = np.random.SeedSequence(seed).spawn(n)
        pairs = [(image, labels > 0) for image, labels in map(render_crop, children)]
    else:
        pairs = _read_folder_pairs(folder, n)
    rows = -(-len(pairs) // columns)
    side = max(max(image.shape[:2]) for image, _ in pairs)
    height = rows * 1.2 + 0.45  # inches, the last 0.45 for the title
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2 * columns * 1.15, height), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (image, mask) in enumerate(pairs):
        row, col = divmod(i, columns)
        for k in (0, 1):
            ax = axes[row, 2 * col + k]
            ax.imshow(image, interpolation="nearest")
            if k:
                ax.contour(mask, levels=[0.5], colors="#ffd000", linewidths=0.8)
            ax.set_xlim(-0.5, side - 0.5)
            ax.set_ylim(side - 0.5, -0.5)
        h, w = image.shape[:2]
        axes[row, 2 * col].set_title(f"{h}×{w} px", fontsize=7, loc="left", pad=2)
    what = "Synthetic brightfield spore crops" if folder is None else f"Crops of {folder}"
    fig.suptitle(f"{what} (left) and their true masks (right, outlined)", fontsize=9)
    fig.subplots_adjust(wspace=0.04, hspace=0.22, top=1 - 0.4 / height)
    return fig


def spore_field(seed=0, size=1024, region=(420, 420, 180)):
    """A whole synthetic dish field and a zoomed region with its true spore outlines.

    Parameters
    ----------
    seed : int
        Seed of the field (:func:`unet.spores.render_field`).
    size : int
        Side of the square field.
    region : (int, int, int)
        Top, left and side of the zoomed square.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .spores import count_labels, render_field

    image, labels = render_field(seed, (size, size))
    top, left, side = region
    window = (slice(top, top + side), slice(left, left + side))
    zoom = outline_overlay(image[window], labels[window])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(image)
    axes[0].add_patch(
        Rectangle((left - 0.5, top - 0.5), side, side, fill=False, color="#ffd000", lw=1.5)
    )
    axes[0].set_title(f"dish field {size}×{size} px, {count_labels(labels)} spores", fontsize=9)
    axes[1].imshow(image[top : top + side, left : left + side], interpolation="nearest")
    axes[1].set_title("zoom", fontsize=9)
    axes[2].imshow(zoom, interpolation="nearest")
    axes[2].set_title("zoom with true spore outlines", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# --- training ---
def training_curves(history):
    """Loss and Dice per epoch, training vs validation.

    Parameters
    ----------
    history : dict of array
        Columns of a run's ``history.csv`` (:func:`unet.train.read_history`):
        ``epoch``, ``loss``, ``val_loss``, ``dice``, ``val_dice``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    epochs = np.asarray(history["epoch"]) + 1
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "dice", "Dice")):
        ax.plot(epochs, history[key], "o-", ms=3, label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "o-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    best = int(np.argmax(history["val_dice"])) if "val_dice" in history else None
    if best is not None:
        axes[1].axvline(epochs[best], color="0.6", ls=":", lw=1)
        axes[1].annotate(f"best {history['val_dice'][best]:.3f}", (epochs[best], 0.02),
                         xycoords=("data", "axes fraction"), fontsize=8, color="0.35")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
