"""Concept figures of notebooks 01-05 and 10: convolution, pooling, transposed convolution,
skip connections, the U-Net diagram and overlap tiles.

The numbers they show are computed here with NumPy, so a figure can never disagree
with its arithmetic. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import numpy as np

from ..predict import mirror_indices
from ..render import display_image
from ..sizes import shape_trace

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

