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


# --- concept figures ---
# Small diagrams of the operations taught in notebooks 01-04. The numbers they show
# are computed here with NumPy, so a figure can never disagree with its arithmetic.

_WINDOW = "#f4a261"  # highlighted input window / current input value
_KERNEL = "#a8dadc"  # kernel cells
_RESULT = "#e76f51"  # the output value being computed
_POOL_COLORS = ("#8ecae6", "#ffb703", "#90be6d", "#f4acb7")


def _grid(ax, values, x0, y0, *, colors=None, fmt="{:g}", fontsize=11, blank=None, lw=1.0):
    """Draw ``values`` as a grid of numbered unit squares, top-left corner at (x0, y0).

    The y axis points down (the caller inverts it), so row ``i`` lies at ``y0 + i``.
    ``colors`` is an array of face colours or None; cells where ``blank`` is True are
    drawn empty and grey.
    """
    from matplotlib.patches import Rectangle

    values = [[v for v in row] for row in values]
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            empty = blank is not None and blank[i][j]
            face = "#f0f0f0" if empty else (colors[i][j] if colors is not None else "white")
            ax.add_patch(Rectangle((x0 + j, y0 + i), 1, 1, facecolor=face, edgecolor="#444",
                                   lw=lw))
            if not empty:
                ax.text(x0 + j + 0.5, y0 + i + 0.5, fmt.format(v), ha="center", va="center",
                        fontsize=fontsize)


def _outline(ax, x0, y0, h, w, color, lw=3.0):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=color, lw=lw, zorder=5))


def _finish(ax, xmax, ymax, margin=0.3):
    ax.set_xlim(-margin, xmax + margin)
    ax.set_ylim(ymax + margin, -margin - 0.6)
    ax.set_aspect("equal")
    ax.axis("off")


def convolution_step(image=None, kernel=None, position=(1, 2)):
    """One step of a 2-D convolution layer (cross-correlation, valid padding, stride 1).

    The kernel is laid on the input window whose top-left corner is ``position``;
    the products are summed into one output value, shown with its arithmetic.

    Parameters
    ----------
    image, kernel : array_like, optional
        Small integer grids; defaults are a 5x5 input and a 3x3 kernel.
    position : (int, int)
        Output row and column to explain.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.array(image if image is not None else
                 [[1, 2, 0, 1, 3], [0, 1, 3, 2, 1], [2, 0, 1, 1, 0], [1, 3, 2, 0, 2],
                  [0, 1, 1, 3, 1]])
    w = np.array(kernel if kernel is not None else [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    k = w.shape[0]
    oh, ow = x.shape[0] - k + 1, x.shape[1] - w.shape[1] + 1
    out = np.array([[np.sum(x[i:i + k, j:j + w.shape[1]] * w) for j in range(ow)]
                    for i in range(oh)])
    pi, pj = position

    fig, ax = plt.subplots(figsize=(9.2, 3.9))
    xcol = [["white"] * x.shape[1] for _ in range(x.shape[0])]
    for i in range(k):
        for j in range(w.shape[1]):
            xcol[pi + i][pj + j] = _WINDOW
    _grid(ax, x, 0, 0, colors=xcol)
    _outline(ax, pj, pi, k, w.shape[1], _RESULT)
    kx = x.shape[1] + 1.5
    ky = (x.shape[0] - k) / 2
    _grid(ax, w, kx, ky, colors=[[_KERNEL] * w.shape[1]] * k)
    ox = kx + w.shape[1] + 1.5
    oy = (x.shape[0] - oh) / 2
    ocol = [["white"] * ow for _ in range(oh)]
    ocol[pi][pj] = _RESULT
    _grid(ax, out, ox, oy, colors=ocol)
    mid = x.shape[0] / 2
    ax.text(kx - 0.75, mid, "⋆", ha="center", va="center", fontsize=22)
    ax.text(ox - 0.75, mid, "=", ha="center", va="center", fontsize=20)
    ax.text(x.shape[1] / 2, -0.45, f"input {x.shape[0]}×{x.shape[1]}", ha="center", fontsize=11)
    ax.text(kx + w.shape[1] / 2, ky - 0.45, f"kernel {k}×{w.shape[1]}", ha="center",
            fontsize=11)
    ax.text(ox + ow / 2, oy - 0.45, f"output {oh}×{ow}", ha="center", fontsize=11)
    terms = " + ".join(f"{a}·{b}" if b >= 0 else f"{a}·({b})"
                       for a, b in zip(x[pi:pi + k, pj:pj + w.shape[1]].ravel(), w.ravel()))
    ax.text((ox + ow) / 2, x.shape[0] + 0.55,
            f"output[{pi}, {pj}] = {terms} = {out[pi, pj]}", ha="center", va="top",
            fontsize=9.5)
    ax.text((ox + ow) / 2, x.shape[0] + 1.35,
            "Slide the kernel over every window; each output value is the sum of "
            "element-wise products (no kernel flip).",
            ha="center", va="top", fontsize=9.5, color="#555")
    _finish(ax, ox + ow, x.shape[0] + 1.6)
    fig.tight_layout()
    return fig


def pooling_example(values=None):
    """Max and average pooling (2x2 windows, stride 2) of one 4x4 example.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.array(values if values is not None else
                 [[1, 3, 2, 0], [4, 6, 1, 1], [0, 2, 5, 7], [1, 1, 3, 2]])
    blocks = x.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3)  # (bi, bj, 2, 2)
    mx, av = blocks.max(axis=(2, 3)), blocks.mean(axis=(2, 3))
    color = [[_POOL_COLORS[2 * (i // 2) + j // 2] for j in range(4)] for i in range(4)]
    small = [[_POOL_COLORS[2 * i + j] for j in range(2)] for i in range(2)]

    fig, ax = plt.subplots(figsize=(7.6, 4.0))
    _grid(ax, x, 0, 0.5, colors=color, fontsize=13)
    for i in range(2):
        for j in range(2):
            _outline(ax, 2 * j, 0.5 + 2 * i, 2, 2, "#333", lw=2.5)
    ax.text(2, 0.05, "input 4×4", ha="center", fontsize=11)
    _grid(ax, mx, 7, 0, colors=small, fontsize=13)
    _grid(ax, av, 7, 3, colors=small, fmt="{:.2f}", fontsize=12)
    ax.text(10.9, 1.0, "max pooling\n2×2, stride 2\n(keep the largest)", va="center",
            fontsize=10)
    ax.text(10.9, 4.0, "average pooling\n2×2, stride 2\n(mean of 4 values)", va="center",
            fontsize=10)
    for y in (1.0, 4.0):
        ax.annotate("", xy=(6.7, y), xytext=(4.3, 2.5),
                    arrowprops=dict(arrowstyle="-|>", color="#333", lw=1.5))
    _finish(ax, 13.5, 5.0)
    fig.tight_layout()
    return fig


def transposed_convolution_steps(inputs=None, kernel=None, stride=2):
    """Transposed convolution as scatter-add: one scaled kernel copy per input value.

    Each input value multiplies the whole kernel; the copy is placed at
    ``stride`` times the value's position in the output, and overlapping copies
    are summed. Cells where two or more copies overlap are outlined.

    Parameters
    ----------
    inputs, kernel : array_like, optional
        Defaults: a 2x2 input and a 3x3 kernel (stride 2 -> 5x5 output).
    stride : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.array(inputs if inputs is not None else [[1, 2], [3, -1]])
    w = np.array(kernel if kernel is not None else [[1, 0, 1], [0, 2, 0], [1, 0, 1]])
    h, wd = x.shape
    k = w.shape[0]
    n = (h - 1) * stride + k
    parts, count = [], np.zeros((n, n), int)
    for i in range(h):
        for j in range(wd):
            part = np.zeros((n, n), x.dtype)
            mask = np.ones((n, n), bool)
            part[i * stride:i * stride + k, j * stride:j * stride + k] = x[i, j] * w
            mask[i * stride:i * stride + k, j * stride:j * stride + k] = False
            count += ~mask
            parts.append(((i, j), part, mask))
    total = sum(p for _, p, _ in parts)

    gap = 1.6
    width = len(parts) * (n + gap) + n
    fig, ax = plt.subplots(figsize=(min(2.05 * (len(parts) + 1) + 0.4, 14), 5.0))
    # top row: the input and the kernel
    top = 0
    xcol = [["white"] * wd for _ in range(h)]
    _grid(ax, x, width / 2 - wd - 2.5, top, colors=xcol, fontsize=12)
    ax.text(width / 2 - wd / 2 - 2.5, top - 0.35, f"input {h}×{wd}", ha="center", fontsize=11)
    _grid(ax, w, width / 2 + 1.5, top, colors=[[_KERNEL] * k] * k, fontsize=12)
    ax.text(width / 2 + 1.5 + k / 2, top - 0.35, f"kernel {k}×{k}, stride {stride}",
            ha="center", fontsize=11)
    y0 = max(h, k) + 1.6
    for idx, ((i, j), part, mask) in enumerate(parts):
        x0 = idx * (n + gap)
        colors = [[_WINDOW if not mask[a][b] else "white" for b in range(n)] for a in range(n)]
        _grid(ax, part, x0, y0, colors=colors, blank=mask, fontsize=10)
        ax.text(x0 + n / 2, y0 - 0.35, f"input[{i},{j}] = {x[i, j]} × kernel", ha="center",
                fontsize=10)
        ax.text(x0 + n + gap / 2, y0 + n / 2,
                "+" if idx < len(parts) - 1 else "=", ha="center", va="center", fontsize=18)
    x0 = len(parts) * (n + gap)
    _grid(ax, total, x0, y0, colors=[[_RESULT if c > 1 else "white" for c in row]
                                      for row in count], fontsize=10)
    ax.text(x0 + n / 2, y0 - 0.35, f"output {n}×{n}", ha="center", fontsize=10.5)
    if count.max() > 1:
        ax.text(width / 2, y0 + n + 0.5,
                "red cells: kernel copies overlap and are added "
                f"(overlap counts range {count.min()}–{count.max()})",
                ha="center", va="top", fontsize=10, color="#555")
    else:
        ax.text(width / 2, y0 + n + 0.5, "no overlaps: every output cell gets one copy",
                ha="center", va="top", fontsize=10, color="#555")
    _finish(ax, width, y0 + n + 1.0)
    fig.tight_layout()
    return fig


def _trace_levels(rows):
    """Group :func:`unet.model.shape_trace` rows into encoder/decoder levels."""
    enc, dec, skips = {}, {}, {}
    bottleneck = []
    for r in rows:
        if r.stage == "input":
            enc.setdefault(1, []).append(r)
        elif r.stage.startswith("encoder"):
            level = int(r.stage.split()[-1])
            if r.layer.startswith("max-pool"):
                enc.setdefault(level + 1, []).append(r)
            else:
                enc.setdefault(level, []).append(r)
        elif r.stage == "bottleneck":
            bottleneck.append(r)
        else:
            level = int(r.stage.split()[-1])
            if r.layer.startswith("concat"):
                skips[level] = tuple(int(s) for s in r.layer.split()[-1].split("->"))
            else:
                dec.setdefault(level, []).append(r)
    return enc, bottleneck, dec, skips


def skip_connection(input_size=572, depth=4, padding="valid", level=1):
    """One skip connection of the U-Net with the real sizes of ``shape_trace``.

    The encoder features of ``level`` (before pooling) are copied across, matched
    to the upsampled decoder map (centre crop as in the paper, or resizing) and
    concatenated with it along the channel axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from .model import shape_trace

    enc, bottleneck, dec, skips = _trace_levels(shape_trace(input_size, depth, padding))
    feat = enc[level][-1]  # conv2 output of the encoder level, before pooling
    pooled = enc[level + 1][0] if level < depth else None
    up, c1, c2 = dec[level]
    below = dec[level + 1][-1] if level < depth else bottleneck[-1]
    s_skip, s_up = skips[level]
    scale = 3.6 / feat.size

    fig, ax = plt.subplots(figsize=(12, 5.4))

    def square(x, y, size, color, ls="-", z=1):
        side = size * scale
        ax.add_patch(Rectangle((x, y), side, side, facecolor=color, edgecolor="#333", lw=1.5,
                               ls=ls, zorder=z))
        return side

    def arrow(p, q, color):
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=16, color=color,
                                     lw=2, zorder=6))

    enc_color, dec_color = "#cfe8f3", "#f9d9a6"
    # encoder features (before pooling) with the centre window that the crop keeps
    ex, ey = 0.0, 2.4
    side = square(ex, ey, feat.size, enc_color)
    ax.text(ex + side / 2, ey + side + 0.12,
            f"encoder {level} features\n{feat.size}×{feat.size}×{feat.channels}"
            " (before pooling)", ha="center", va="bottom", fontsize=10)
    cside = s_up * scale
    off = (side - cside) / 2
    ax.add_patch(Rectangle((ex + off, ey + off), cside, cside, fill=False, edgecolor=_RESULT,
                           lw=2, ls="--", zorder=3))
    ax.text(ex + side / 2, ey + off + cside / 2, f"centre\n{s_up}×{s_up}", ha="center",
            va="center", fontsize=9.5, color=_RESULT)
    # pooling to the level below
    if pooled is not None:
        pside = pooled.size * scale
        px, py = ex + side / 2 - pside / 2, 1.3 - pside
        square(px, py, pooled.size, "#e9f5fb")
        arrow((ex + side / 2, ey - 0.05), (ex + side / 2, 1.35), "#c0392b")
        ax.text(ex + side / 2 + 0.12, (ey + 1.3) / 2, "max-pool 2×2", va="center",
                fontsize=9.5, color="#c0392b")
        ax.text(px + pside + 0.15, py + pside / 2,
                f"{pooled.size}×{pooled.size}×{pooled.channels}\n→ deeper levels",
                va="center", fontsize=9.5)
    # concatenation: the cropped copy next to the up-conv output (channel axis)
    cx, cy = 5.6, ey + off
    square(cx, cy, s_up, enc_color)
    square(cx + cside, cy, up.size, dec_color)
    ax.text(cx + cside / 2, cy + cside / 2, f"copy\n{s_up}×{s_up}×{feat.channels}",
            ha="center", va="center", fontsize=9.5)
    ax.text(cx + 1.5 * cside, cy + cside / 2, f"up-conv\n{up.size}×{up.size}×{up.channels}",
            ha="center", va="center", fontsize=9.5)
    ax.annotate("", xy=(cx, cy + cside + 0.15), xytext=(cx + 2 * cside, cy + cside + 0.15),
                arrowprops=dict(arrowstyle="|-|", color="#333", lw=1.2))
    ax.text(cx + cside, cy + cside + 0.3,
            f"concatenate: {feat.channels} + {up.channels} = "
            f"{feat.channels + up.channels} channels", ha="center", va="bottom", fontsize=10,
            weight="bold")
    arrow((ex + off + cside + 0.05, ey + side / 2), (cx - 0.08, ey + side / 2), "#7f7f7f")
    mid = (ex + off + cside + cx) / 2
    ax.text(mid, ey + side / 2 + 0.12, "copy & crop", ha="center", va="bottom",
            fontsize=10, color="#555")
    ax.text(mid, ey + side / 2 - 0.15,
            f"(skip='crop')\nskip='resize' instead\nsqueezes all {s_skip} px\ninto {s_up}",
            ha="center",
            va="top", fontsize=8.5, color="#7f7f7f")
    # the decoder input coming up from the level below
    bside = below.size * scale
    bx, by = cx + 1.5 * cside - bside / 2, 1.3 - bside
    square(bx, by, below.size, dec_color)
    arrow((cx + 1.5 * cside, 1.35), (cx + 1.5 * cside, cy - 0.05), "#2a9d8f")
    ax.text(cx + 1.5 * cside + 0.12, (1.3 + cy) / 2, "up-conv 2×2,\nstride 2", va="center",
            fontsize=9.5, color="#2a9d8f")
    ax.text(bx + bside + 0.15, by + bside / 2,
            f"{below.size}×{below.size}×{below.channels}\nfrom the level below", va="center",
            fontsize=9.5)
    # two convolutions after the concatenation
    ox = cx + 2 * cside + 1.7
    oside = square(ox, cy + (cside - c2.size * scale) / 2, c2.size, dec_color)
    ax.text(ox + oside / 2, cy + cside / 2, f"{c2.size}×{c2.size}×{c2.channels}",
            ha="center", va="center", fontsize=9.5)
    arrow((cx + 2 * cside + 0.08, cy + cside / 2), (ox - 0.08, cy + cside / 2), "#1d4e89")
    ax.text(cx + 2 * cside + 0.85, cy + cside / 2 + 0.12, "2 × (conv\n3×3 + ReLU)",
            ha="center", va="bottom", fontsize=9, color="#1d4e89")
    ax.set_xlim(-0.3, ox + oside + 0.3)
    ax.set_ylim(min(by, 1.3 - (pooled.size * scale if pooled else 0)) - 0.2, ey + side + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


def unet_architecture(input_size=572, depth=4, padding="valid", filters=64, num_classes=2,
                      in_channels=3):
    """The U-Net diagram drawn from :func:`unet.model.shape_trace`.

    One bar per feature map: its height grows with the spatial size, its width with
    the number of channels; the size is written on the left of each bar and the
    channels above it. Arrows: 3x3 conv + ReLU, 2x2 max-pool, 2x2 up-conv, copy of
    the skip features (centre crop or resize to the upsampled size) and the 1x1
    output convolution.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import math

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from .model import shape_trace

    rows = shape_trace(input_size, depth, padding, filters, in_channels)
    enc, bottleneck, dec, skips = _trace_levels(rows)
    biggest = max(r.size for r in rows)
    step, row_gap = 1.2, 2.9
    colors = dict(conv="#1d4e89", pool="#c0392b", up="#2a9d8f", copy="#8c8c8c", head="#e09f3e")

    def height(size):
        return 0.55 + 2.0 * math.sqrt(size / biggest)

    def width(ch):
        return 0.12 + 0.05 * math.log2(max(ch, 1))

    fig, ax = plt.subplots(figsize=(13, 7.0))
    bars = {}

    def bar(key, x, level, size, ch, face="#9ecae1", label="above", size_label=True):
        y = -level * row_gap
        h, w = height(size), width(ch)
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=face, edgecolor="#222",
                               lw=1.0, zorder=3))
        if label == "above":
            ax.text(x, y + h / 2 + 0.07, str(ch), ha="center", va="bottom", fontsize=8)
        elif label in ("left", "right"):  # clear of a vertical arrow at the bar's top
            sign = 1 if label == "right" else -1
            ax.text(x + sign * (w / 2 + 0.04), y + h / 2 + 0.07, str(ch), va="bottom",
                    ha="left" if label == "right" else "right", fontsize=8)
        if size_label:
            ax.text(x - w / 2 - 0.05, y - h / 2, f"{size}²", ha="right", va="bottom",
                    fontsize=7, rotation=90)
        bars[key] = (x, y, w, h)

    def arrow(a, b, kind, vertical=False):
        xa, ya, wa, ha = bars[a]
        xb, yb, wb, hb = bars[b]
        if vertical:
            p, q = (xa, ya - ha / 2 if yb < ya else ya + ha / 2), \
                   (xb, yb + hb / 2 if yb < ya else yb - hb / 2)
        else:
            p, q = (xa + wa / 2, yb), (xb - wb / 2, yb)
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=11, lw=1.6,
                                     color=colors[kind], zorder=2,
                                     shrinkA=1, shrinkB=1))

    # contracting path: level L row holds (input or pooled map), conv1, conv2
    x = 0.0
    for level in range(1, depth + 1):
        first, c1, c2 = enc[level]
        for i, r in enumerate((first, c1, c2)):
            face = "white" if (level == 1 and i == 0) else "#9ecae1"
            where = "left" if (level > 1 and i == 0) else "above"
            bar(("enc", level, i), x + i * step, level - 1, r.size, r.channels, face, where)
        arrow(("enc", level, 0), ("enc", level, 1), "conv")
        arrow(("enc", level, 1), ("enc", level, 2), "conv")
        if level > 1:
            arrow(("enc", level - 1, 2), ("enc", level, 0), "pool", vertical=True)
        x += 2 * step
    pooled = enc[depth + 1][0]
    bar(("bot", 0), x, depth, pooled.size, pooled.channels, label="left")
    for i, r in enumerate(bottleneck, start=1):
        bar(("bot", i), x + i * step, depth, r.size, r.channels,
            label="right" if i == len(bottleneck) else "above")
        arrow(("bot", i - 1), ("bot", i), "conv")
    arrow(("enc", depth, 2), ("bot", 0), "pool", vertical=True)
    x += 2 * step
    # expanding path: level L row holds [copy | up-conv], conv1, conv2; each up-conv
    # output sits straight above the map it was computed from
    prev = ("bot", 2)
    for level in range(depth, 0, -1):
        up, c1, c2 = dec[level]
        s_skip, s_up = skips[level]
        skip_ch = enc[level][2].channels
        x = bars[prev][0]
        wup, wcp = width(up.channels), width(skip_ch)
        bar(("up", level), x, level - 1, up.size, up.channels, label=None, size_label=False)
        bar(("copy", level), x - wup / 2 - wcp / 2, level - 1, s_up, skip_ch, "white",
            label=None)
        y = -(level - 1) * row_gap
        ax.text(x - wcp / 2, y + height(s_up) / 2 + 0.07, f"{skip_ch}+{up.channels}",
                ha="center", va="bottom", fontsize=8)
        arrow(prev, ("up", level), "up", vertical=True)
        xa, ya, wa, _ = bars[("enc", level, 2)]
        xb, _, wb, _ = bars[("copy", level)]
        ax.add_patch(FancyArrowPatch((xa + wa / 2, ya), (xb - wb / 2, ya), arrowstyle="-|>",
                                     mutation_scale=11, lw=1.6, color=colors["copy"],
                                     zorder=1, shrinkA=1, shrinkB=1))
        ax.text((xa + wa / 2 + xb - wb / 2) / 2, ya + 0.06, f"{s_skip}² → {s_up}²",
                ha="center", va="bottom", fontsize=7.5, color="#666")
        bar(("dec", level, 1), x + step, level - 1, c1.size, c1.channels)
        bar(("dec", level, 2), x + 2 * step, level - 1, c2.size, c2.channels,
            label="right" if level > 1 else "above")
        arrow(("up", level), ("dec", level, 1), "conv")
        arrow(("dec", level, 1), ("dec", level, 2), "conv")
        prev = ("dec", level, 2)
    x = bars[prev][0]
    out = dec[1][-1]
    bar(("out",), x + step, 0, out.size, num_classes, "#fde2b8")
    arrow(prev, ("out",), "head")

    legend = [Line2D([0], [0], color=colors[k], lw=2.5, label=t) for k, t in (
        ("conv", "conv 3×3 + ReLU"), ("pool", "max-pool 2×2"),
        ("up", "up-conv 2×2 (stride 2)"), ("copy", "copy skip features, crop or resize"),
        ("head", "conv 1×1 (output)"))]
    ax.legend(handles=legend, loc="lower right", fontsize=9, frameon=False)
    pad_note = "valid" if padding == "valid" else "same"
    ax.set_title(f"U-Net, depth {depth}, {pad_note} padding: input {input_size}×{input_size}×"
                 f"{in_channels} → output {out.size}×{out.size}×{num_classes}   "
                 "(bar label: channels; left: size in px)", fontsize=11)
    ax.set_xlim(-0.8, x + 1.5)
    ax.set_ylim(-depth * row_gap - 1.6, height(biggest) / 2 + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


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


def label_colors(labels):
    """An RGB picture of instance labels: each label its own colour, background black.

    The hue of label ``k`` is ``k`` times the golden ratio (mod 1), so neighbouring
    numbers get well separated colours and the same label always the same colour.

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    from matplotlib.colors import hsv_to_rgb

    labels = np.asarray(labels)
    ids = np.arange(int(labels.max(initial=0)) + 1)
    hsv = np.stack([(ids * 0.6180339887) % 1.0, np.full(ids.shape, 0.65),
                    np.full(ids.shape, 0.95)], axis=1)
    palette = (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)
    palette[0] = 0
    return palette[np.clip(labels, 0, None).astype(np.int64)]


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
        raise ValueError("image_grid needs at least one panel.")
    for name, values in (("titles", titles), ("kinds", kinds), ("outlines", outlines)):
        if values is not None and len(values) != n:
            raise ValueError(f"Got {n} panels but {len(values)} {name}; give one per panel.")
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
            raise ValueError(f"Unknown panel kind {kind!r}; choose one of {PANEL_KINDS}.")
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
# so notebooks 06-07, `make figures` and the demo report draw the same pictures.
ERROR_COLORS = {"tp": (220, 220, 220), "fp": (230, 97, 0), "fn": (93, 58, 155)}


def error_map(truth, pred):
    """Agreement of a predicted mask with the truth, as an RGB picture.

    True positives light grey, false positives orange, false negatives purple,
    true negatives black (:data:`ERROR_COLORS`; readable with colour blindness).

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width, 3)``.
    """
    truth, pred = np.asarray(truth) > 0, np.asarray(pred) > 0
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape.")
    out = np.zeros((*truth.shape, 3), np.uint8)
    out[truth & pred] = ERROR_COLORS["tp"]
    out[~truth & pred] = ERROR_COLORS["fp"]
    out[truth & ~pred] = ERROR_COLORS["fn"]
    return out


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

    from .metrics import segmentation_scores

    n = len(images)
    if n == 0 or len(truths) != n or len(predictions) != n:
        raise ValueError(
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


def _count(labels):
    values = np.unique(np.asarray(labels))
    return int(np.count_nonzero(values))


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
    count = _count(labels)
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
        raise ValueError("size_histogram needs at least one sample of sizes.")
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
        ax.set_title(f"{name}: {_count(labels)} spores in all", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def tile_plan(plan, image=None, highlight=None):
    """How :func:`unet.predict.plan_tiles` cuts an image: delivered parts and one tile.

    Parameters
    ----------
    plan : unet.predict.TilePlan
    image : array_like, optional
        The image, drawn underneath.
    highlight : int, optional
        Index of the tile whose whole input (delivered part plus context, mirrored
        beyond the border) is drawn; default: the middle tile.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = plan.image_shape
    (th, tw), (sh, sw), (ch, cw) = plan.tile, plan.stride, plan.context
    origins = plan.tile_origins()
    highlight = len(origins) // 2 if highlight is None else int(highlight)
    low_r = min(min(o[0] for o in origins), 0)
    low_c = min(min(o[1] for o in origins), 0)
    high_r = max(max(o[0] for o in origins) + th, height)
    high_c = max(max(o[1] for o in origins) + tw, width)
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    if image is not None:
        from .predict import mirror_indices

        shown = display_image(image)
        rows = mirror_indices(np.arange(low_r, high_r), height)
        cols = mirror_indices(np.arange(low_c, high_c), width)
        extent = (low_c - 0.5, high_c - 0.5, high_r - 0.5, low_r - 0.5)
        ax.imshow(shown[np.ix_(rows, cols)], extent=extent, alpha=0.35)  # the mirrored margin
        ax.imshow(shown, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    ax.add_patch(Rectangle((-0.5, -0.5), width, height, fill=False, edgecolor="k", lw=1.5))
    for r, c in origins:
        top, left = r + ch, c + cw
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), min(sw, width - left),
                               min(sh, height - top), fill=False, edgecolor="#ffd000", lw=0.9))
    r, c = origins[highlight]
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), tw, th, fill=False, edgecolor="#e63946", lw=2,
                           ls="--"))
    ax.add_patch(Rectangle((c + cw - 0.5, r + ch - 0.5), min(sw, width - c - cw),
                           min(sh, height - r - ch), facecolor="#e63946", alpha=0.25))
    ax.set_xlim(low_c - 0.5, high_c - 0.5)
    ax.set_ylim(high_r - 0.5, low_r - 0.5)
    ax.set_title(f"{plan.grid[0]}×{plan.grid[1]} tiles of {th}×{tw} px, each delivering "
                 f"{sh}×{sw} (yellow)\nred: one tile's input and what it delivers; faded: the "
                 f"mirrored margin\nwork ratio {plan.work_ratio:.2f}", fontsize=9)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.tight_layout()
    return fig
