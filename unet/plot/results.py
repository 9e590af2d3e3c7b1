"""Figures of data and results: spore samples, training curves, image grids, predictions,
counted fields, size histograms, method comparisons.

They take arrays and dicts (the spore samples also a data folder), so notebooks 06-10,
``make figures`` and the demo report draw the same pictures. matplotlib is imported
inside the functions.
"""

from __future__ import annotations

import numpy as np

from ..count import count_labels
from ..errors import UsageError
from ..io import find_pairs, read_image, read_mask
from ..metrics import segmentation_scores
from ..render import display_image, error_map, label_colors, outline_overlay
from ..spores import render_crop, render_field

# --- spore data ---
def _read_folder_pairs(folder, n):
    """The first ``n`` (RGB image, mask) pairs of a data folder (:func:`unet.io.find_pairs`)."""
    pairs = find_pairs(folder)[:n]
    return [(display_image(read_image(p.image)), read_mask(p.mask) > 0) for p in pairs]


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

    if folder is None:

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


def training_tile(image_tile, mask, weight, crop_shape=None):
    """One training example: the mirror-padded input tile, and mask and weight of its output.

    Parameters
    ----------
    image_tile : array_like
        ``(tile, tile, C)`` input (e.g. from :func:`unet.data.pad_to_tile`).
    mask, weight : array_like
        ``(out, out)`` (or ``(out, out, 1)``) mask and loss weight of the output window.
    crop_shape : (int, int), optional
        Height and width of the real crop, outlined where :func:`unet.data.pad_to_tile`
        puts it (centred in the output window).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image_tile = np.asarray(image_tile)
    mask, weight = (np.asarray(a).reshape(np.asarray(a).shape[:2]) for a in (mask, weight))
    tile, out = image_tile.shape[0], mask.shape[0]
    margin = (tile - out) // 2
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    axes[0].imshow(display_image(image_tile))
    axes[0].add_patch(Rectangle((margin - 0.5, margin - 0.5), out, out, fill=False,
                                edgecolor="#ffd000", lw=1.5))
    what = f"yellow: output window {out}×{out}"
    if crop_shape is not None:
        h, w = crop_shape
        top, left = margin + (out - h) // 2, margin + (out - w) // 2
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False,
                                    edgecolor="#00e5ff", lw=1.2, ls="--"))
        what = f"cyan: crop {h}×{w}, {what}"
    axes[0].set_title(f"input tile {tile}×{tile}, mirror-padded\n{what}", fontsize=8.5)
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"mask, output window {out}×{out}", fontsize=9)
    shown = axes[2].imshow(weight, cmap="viridis", vmin=0)
    axes[2].set_title("loss weight (0 outside the crop)", fontsize=9)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# --- image panels ---
# A generic grid of arrays, so notebooks can show images, masks, label images and maps
# side by side without drawing code of their own.
PANEL_KINDS = ("image", "mask", "labels", "map")


def _panel_kind(array):
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return "image"
    if array.dtype == bool:
        return "mask"
    if array.dtype.kind in "iu":
        return "mask" if array.max(initial=0) <= 1 else "labels"
    return "map"


def image_grid(panels, titles=None, kinds=None, outlines=None, columns=None, size=2.0,
               suptitle=None):
    """Arrays side by side: images, masks, instance labels and float maps.

    Parameters
    ----------
    panels : sequence of array_like
        What to show. How each is drawn follows its kind (see ``kinds``).
    titles : sequence of str, optional
        One per panel.
    kinds : sequence of {"image", "mask", "labels", "map", None}, optional
        ``"image"``: gray or RGB(A), any dtype, stretched for display
        (:func:`display_image`); ``"mask"``: black/white; ``"labels"``: one colour
        per object (:func:`label_colors`); ``"map"``: a float map (probabilities,
        weights) with a colour bar. None (the default) guesses: 3 or 4 channels are
        an image, bool or 0/1 integers a mask, other integers labels, floats a map.
    outlines : sequence of array_like or None, optional
        Masks or label images whose object boundaries are drawn in yellow on the
        panel of the same position.
    columns : int, optional
        Panels per row (default: all in one row).
    size : float
        Side of one panel in inches.
    suptitle : str, optional
        A title over the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    panels = [np.asarray(p) for p in panels]
    panels = [p[..., 0] if p.ndim == 3 and p.shape[2] == 1 else p for p in panels]
    n = len(panels)
    if n == 0:
        raise UsageError("image_grid needs at least one panel.")
    for name, values in (("titles", titles), ("kinds", kinds), ("outlines", outlines)):
        if values is not None and len(values) != n:
            raise UsageError(f"Got {n} panels but {len(values)} {name}; give one per panel.")
    columns = n if columns is None else int(columns)
    rows = -(-n // columns)
    extra = 0.35 if suptitle else 0.0
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size + extra),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, array in enumerate(panels):
        ax = axes.flat[i]
        kind = (kinds[i] if kinds is not None else None) or _panel_kind(array)
        if kind not in PANEL_KINDS:
            raise UsageError(f"Unknown panel kind {kind!r}; choose one of {PANEL_KINDS}.")
        if kind == "image":
            ax.imshow(display_image(array), interpolation="nearest")
        elif kind == "mask":
            ax.imshow(array > 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        elif kind == "labels":
            ax.imshow(label_colors(array), interpolation="nearest")
        else:
            shown = ax.imshow(array, cmap="viridis", interpolation="nearest")
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        if outlines is not None and outlines[i] is not None:
            edge = find_boundaries(np.asarray(outlines[i]), mode="inner")
            rgba = np.zeros((*edge.shape, 4))
            rgba[edge] = (1.0, 0.82, 0.0, 1.0)
            ax.imshow(rgba, interpolation="nearest")
        if titles is not None and titles[i]:
            ax.set_title(titles[i], fontsize=8.5)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


# --- results ---
# Figures of a trained model's output. They take arrays and dicts (never file paths),
# so notebooks 08-10, `make figures` and the demo report draw the same pictures.
def prediction_strip(images, truths, predictions, names=None, threshold=0.5, errors=True,
                     size=1.7, title=None):
    """Rows of image | truth | prediction (| errors), each row titled with its Dice.

    Parameters
    ----------
    images : sequence of array_like
        The images (any kind :func:`display_image` shows).
    truths : sequence of array_like
        True masks (> 0 is foreground).
    predictions : sequence of array_like
        Probability maps (float, thresholded at ``threshold`` for the Dice and the
        error column; shown as grey levels) or binary masks.
    names : sequence of str, optional
        Row names (e.g. file stems).
    threshold : float
        Foreground probability threshold.
    errors : bool
        Add a column of :func:`error_map`.
    size : float
        Side of one panel in inches.
    title : str, optional
        A title over the strip.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt


    n = len(images)
    if n == 0 or len(truths) != n or len(predictions) != n:
        raise UsageError(
            f"Need as many truths and predictions as images (at least one), got {n} images, "
            f"{len(truths)} truths and {len(predictions)} predictions."
        )
    columns = 4 if errors else 3
    extra = 0.3 if title else 0.0
    fig, axes = plt.subplots(n, columns, figsize=(columns * size, n * (size + 0.25) + extra),
                             squeeze=False)
    headers = ["image", "truth", "prediction", "errors: FP orange, FN purple"]
    for i in range(n):
        truth = np.asarray(truths[i]) > 0
        pred = np.asarray(predictions[i])
        pred = pred[..., 0] if pred.ndim == 3 else pred
        binary = pred > threshold if pred.dtype.kind == "f" else pred > 0
        dice = segmentation_scores(truth, binary)["dice"]
        row = axes[i]
        row[0].imshow(display_image(images[i]), interpolation="nearest")
        row[1].imshow(truth, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        shown = pred if pred.dtype.kind == "f" else binary
        row[2].imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if errors:
            row[3].imshow(error_map(truth, binary), interpolation="nearest")
        name = f"{names[i]}: " if names is not None else ""
        row[0].set_title(f"{name}Dice {dice:.3f}", fontsize=8, loc="left")
        for ax in row:
            ax.set_axis_off()
    for ax, header in zip(axes[0], headers):
        ax.text(0.5, 1.22, header, transform=ax.transAxes, ha="center", va="bottom",
                fontsize=8.5, color="0.25")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _region(shape, region, side=256):
    if region is None:
        side = min(side, *shape[:2])
        return (shape[0] - side) // 2, (shape[1] - side) // 2, side
    return tuple(int(v) for v in region)


def counted_field(image, labels, true_count=None, region=None, title=None):
    """A whole field with every counted spore outlined, and a zoomed region.

    Parameters
    ----------
    image : array_like
        The field (any kind :func:`display_image` shows).
    labels : array_like of int
        Instance labels of the counted spores (0 = background).
    true_count : int, optional
        The true number of spores, shown beside the count.
    region : (int, int, int), optional
        Top, left and side of the zoomed square (default: 256 px in the centre).
    title : str, optional
        A title over both panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    labels = np.asarray(labels)
    top, left, side = _region(labels.shape, region)
    window = (slice(top, top + side), slice(left, left + side))
    count = count_labels(labels)
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 3.5))
    axes[0].imshow(outline_overlay(image, labels))
    axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False,
                                edgecolor="#00e5ff", lw=1.5))
    truth = f" (true {true_count})" if true_count is not None else ""
    axes[0].set_title(f"{count} spores counted{truth}", fontsize=9.5)
    zoom = outline_overlay(np.asarray(image)[window], labels[window])
    axes[1].imshow(zoom, interpolation="nearest")
    axes[1].set_title(f"zoom {side}×{side} px at ({top}, {left})", fontsize=9.5)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def size_histogram(sizes, bins=30, xlabel="equivalent diameter (px)", title=None):
    """Overlaid histograms of spore sizes, e.g. predicted vs true.

    Parameters
    ----------
    sizes : dict of str -> array_like
        One sample of sizes per name (e.g. ``{"truth": ..., "U-Net": ...}``).
    bins : int or sequence
        Histogram bins, shared by all samples.
    xlabel : str
        What the sizes are.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    samples = {name: np.asarray(v, dtype=float).ravel() for name, v in sizes.items()}
    if not samples:
        raise UsageError("size_histogram needs at least one sample of sizes.")
    values = np.concatenate(list(samples.values()))
    if np.ndim(bins) == 0:
        bins = np.histogram_bin_edges(values, bins=int(bins)) if values.size else int(bins)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, v in samples.items():
        median = f", median {np.median(v):.1f}" if v.size else ""
        ax.hist(v, bins=bins, histtype="step", lw=1.8, label=f"{name}: {v.size}{median}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spores")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_comparison(image, labelings, region=None, size=3.0):
    """The same region outlined by several methods (e.g. truth, baseline, U-Net).

    Parameters
    ----------
    image : array_like
        The whole image.
    labelings : dict of str -> array_like
        Instance labels (or masks) of the whole image per method; the panel title
        gives each method's count over the whole image.
    region : (int, int, int), optional
        Top, left and side of the square shown (default: 256 px in the centre).
    size : float
        Side of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    image = np.asarray(image)
    top, left, side = _region(image.shape, region)
    window = (slice(top, top + side), slice(left, left + side))
    fig, axes = plt.subplots(1, len(labelings), figsize=(size * len(labelings), size + 0.3),
                             squeeze=False)
    for ax, (name, labels) in zip(axes[0], labelings.items()):
        labels = np.asarray(labels)
        ax.imshow(outline_overlay(image[window], labels[window]), interpolation="nearest")
        ax.set_title(f"{name}: {count_labels(labels)} spores in all", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig




def threshold_curves(thresholds, dice, count_thresholds=None, count_error=None, chosen=None):
    """Pooled Dice and the mean count error against the probability threshold.

    Parameters
    ----------
    thresholds, dice : array_like
        Thresholds and the pooled Dice at each.
    count_thresholds, count_error : array_like, optional
        Thresholds where spores were counted, and the mean relative count error
        there (drawn on a second axis).
    chosen : float, optional
        The threshold in use, marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(thresholds, dice, "o-", color="C0", ms=3, label="Dice (pooled)")
    ax.set_xlabel("probability threshold")
    ax.set_ylabel("Dice", color="C0")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    handles = ax.get_lines()
    if count_error is not None and len(count_error):
        twin = ax.twinx()
        twin.plot(count_thresholds, 100 * np.asarray(count_error), "s-", color="C1", ms=3,
                  label="count error (mean per image)")
        twin.set_ylabel("count error (%)", color="C1")
        twin.set_ylim(bottom=0)
        handles = handles + twin.get_lines()
    if chosen is not None:
        ax.axvline(chosen, color="0.4", ls="--", lw=1)
        ax.text(chosen, ax.get_ylim()[0], f" {chosen:g}", color="0.3", fontsize=8, va="bottom")
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower center")
    fig.tight_layout()
    return fig
