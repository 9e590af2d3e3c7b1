"""An independent renderer of synthetic spore micrographs, for testing the project on data it did not make.

    python benchmarks/other_renderer.py OUT --style default --train 360 --val 40 --test 200 \
        --fields 1 --seed 1 [--field-size 1024] [--overwrite] [--set KNOB=VALUE ...]
    python benchmarks/other_renderer.py --list-styles
    python benchmarks/other_renderer.py --stats [--style NAME] [--seed 1]
    python benchmarks/other_renderer.py --preview /tmp/sheet.png [--style NAME]

Why it exists
-------------
The project trains and scores its U-Net on spores drawn by its own generator. A model
(and its default settings: tile size, normalisation, loss weights, the touching-spore
split used for counting) can look good on that data partly because the data follow the
generator's assumptions. This module is written separately, without reading or reusing
the project's generator, and makes different assumptions about optics and shape, so the
project's defaults can be tested on data it did not make. It needs only numpy, scipy,
scikit-image, Pillow, tifffile and the standard library; it imports nothing from the
project.

What it renders
---------------
Brightfield (or dark-field) images of fungal spores lying on a dish, built as a small
physical model rather than as painted ellipses:

* **Shapes.** Each spore is a convex body given by an implicit gauge function ``F``
  (``F <= 1`` inside), one of: a *superellipse* ``|u/a|^n + |v/b|^n`` with ``n`` in
  about 1.7..3 (from boxy to pointed-oval), an asymmetric *ovoid* (egg; one end
  narrower, the half-width scaled by ``1 + k u/a``) and a *lemon* (the smooth
  intersection of a vesica, two circular arcs meeting in blunt tips, with a wide
  ellipse), each with a small low-order Fourier wobble. Long axes are log-normal
  (median ``size``, default 21 px, so most of them 12..34 px); widths come from a
  per-species aspect ratio. A scene holds one or two *species* (a shape model, size,
  aspect and pigment shared by their spores, with individual scatter).
* **Appearance** (Beer-Lambert, not grey levels): every spore adds optical density
  (per RGB channel, so pigmented spores are brown and hyaline ones nearly neutral) with
  an ellipsoidal thickness profile; pale, normal and dark/pigmented kinds; some have a
  thicker wall (an extra dense band just inside the outline); most carry granules (dark
  specks and refractile lipid droplets, sometimes one large central guttule). Where two
  spores overlap their densities add, so the overlap is darker.
* **Defocus halos** from the transport-of-intensity approximation
  ``I = I0 (1 - z * laplacian(phase))``: every spore and droplet has a phase
  thickness, and each spore sits at its own focus offset ``z`` (the dish's focus field
  plus a per-spore height). Spores below focus get a bright rim outside and a dark rim
  inside, spores above focus the opposite; refractile droplets turn into bright or
  dark points.
* **Light and dish**: a smooth random illumination field (low-frequency random field,
  a linear gradient and some vignetting, typically +-25 % or more over a field), a
  tinted medium with faint agar texture, and a lamp colour.
* **Debris that is never in the mask**: curved fibres (some out of focus), irregular
  non-convex specks and dirt clumps (some spore-sized and dark), refractile crystals,
  out-of-focus blobs and rings, and out-of-focus ghost spores in another focal plane.
* **Camera**: blur whose sigma varies over the image with the focus field, Poisson
  (shot) plus Gaussian (read) noise, a random white-balance cast and tone curve, 8-bit
  RGB with optional JPEG artefacts (encoded and decoded, then saved losslessly), or the
  ``gray16`` style's single-channel uint16 with a random gain and offset.
* **Dark field** (style ``dark_background``): the same scene seen by scattered light:
  a dark background, bright outlines and glowing bodies, bright debris.

How it differs from a simple ellipse model: non-elliptic convex shape families and
species; densities that add (no painted "on top" order); halos that come from optics
and change sign with focus; granules and droplets that do the same; spatially varying
blur; colour from per-channel absorption; debris of several kinds that a global
threshold cannot tell from spores; a camera model with shot noise, cast and
compression.

Truth
-----
* ``masks/NAME.png``: 0/255, the pixels whose *centre* lies inside any spore body
  (``F <= 1``; the wall is inside, halos and debris are not). Touching or overlapping
  spores merge into one foreground region: it is a binary mask.
* ``labels/NAME.tif``: uint16 instances, 0 = background, 1..K. A pixel covered by two
  overlapping spores belongs to the one it lies deeper inside (larger signed distance
  to the outline), so the split runs through the middle of the overlap. Overlaps are
  kept to simple lenses (no crossing spores), so every instance is one 8-connected
  region; the rare fragment a 3-4 spore pile still cuts off goes to the neighbour it
  touches (about 1 in 300 spores in ``dense``). Spores within a cluster touch (share an
  edge or overlap); spores outside clusters are kept at least ``gap`` (2 px) apart.
* ``counts.csv``: ``name,count`` where count = K, the spores with at least one pixel in
  the image (spores cut by the border count).
* ``kinds.csv``: ``name,id,kind``, the optical kind of every label (``pale``,
  ``normal``, ``dark``), to score the kinds apart.

Crops are scenes of their own (not cut from fields), each lit by its own window into a
random dish of field size, so a crop shows only a part of the uneven light. With the same
seed, ``default``, ``dark_background``, ``gray16`` and ``debris`` lay out the same spores
(they differ after the spores are drawn), which allows paired comparisons.

Layout: ``OUT/{train,val,test}/{images,masks,labels}/crop_NNNNN.*`` plus
``counts.csv`` and ``kinds.csv`` in each split (crops 64..100 px per side, not square, 0..6 spores
each), and ``OUT/fields/...`` likewise with ``field_NNN.*`` (whole dish fields,
default 1024 x 1024, about 250 spores for the default style). Images are PNG (RGB 8-bit)
or, for ``gray16``, TIFF (uint16). ``OUT/other_renderer.json`` records the style and
seed. Each split and each image has its own branch of ``SeedSequence(seed)``, so the
same seed gives identical files and changing ``--train`` leaves val/test unchanged.

Styles (``--list-styles``; any knob can be overridden with ``--set knob=value``)
------
``default``          as above: mixed pale/normal/dark spores, ~10 % of groups clustered,
                     moderate debris, uneven light, ~25 % of images JPEG-compressed.
``dense``            crowded: ~650 spores per field, half the groups are clusters of
                     2..4 with more and deeper overlaps; crops hold 3..6 spores.
``small``            long axis median 11 px (~7..16 px); ~600 spores per field.
``large``            long axis median 40 px (~28..56 px); ~110 spores per field, 0..4
                     per crop.
``lowcontrast``      mostly pale spores, weak density, stronger uneven light, more
                     blur and noise, more debris and ghosts.
``dark_background``  dark field: background dark, spores brighter than it.
``gray16``           single-channel uint16 TIFF images, linear camera with a random gain
                     (full scale 3000..60000 counts) and offset; no JPEG, no colour.
``debris``           the default spores under heavy dirt: 4x fibres, specks and blobs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

# Small matrix products only: BLAS threads would spin on the shared cores for nothing.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
from scipy import ndimage as ndi

# --------------------------------------------------------------------------------------
# Styles
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """Every knob of the renderer. Ranges are (low, high) drawn uniformly per image or object."""

    name: str = "default"
    description: str = "mixed spores, some clusters, moderate debris and uneven light"
    # size and shape
    size: float = 21.0                      # median long axis, px
    size_spread: float = 0.26               # log-normal sigma of the long axis
    aspect: tuple = (0.52, 0.86)            # width / length of a species
    shape_mix: tuple = (0.45, 0.35, 0.20)   # superellipse, ovoid, lemon
    # kinds of spores: probabilities of pale, normal, dark (pigmented)
    kind_mix: tuple = (0.22, 0.53, 0.25)
    density_scale: float = 1.0              # multiplies every spore density
    wall_prob: float = 0.4
    granules: float = 1.0                   # granules per 100 px^2 of body (mean)
    guttule_prob: float = 0.25              # one large central lipid droplet
    # counts and clustering
    field_spores: int = 250                 # per 1024 x 1024 field (scaled with area)
    crop_counts: tuple = (0.07, 0.16, 0.2, 0.2, 0.16, 0.12, 0.09)  # P(0..6 spores)
    cluster_rate: float = 0.10              # probability that a group is a cluster (2..4)
    cluster_sizes: tuple = (0.55, 0.30, 0.15)  # P(2), P(3), P(4)
    overlap_prob: float = 0.5               # within a cluster: overlap (else just touch)
    overlap_depth: tuple = (0.05, 0.35)     # overlap as a fraction of the narrower width
    gap: float = 2.0                        # min gap between spores of different groups, px
    # optics
    focus: tuple = (-0.9, 0.9)              # mean focus offset of an image
    focus_spread: float = 0.5               # per-spore focus scatter (sign flips halos)
    halo: float = 0.6                       # strength of the defocus (phase) term
    halo_width: tuple = (1.0, 2.2)          # px
    blur: tuple = (0.5, 0.9)                # base blur sigma, px
    blur_focus: float = 0.6                 # extra blur sigma per unit |focus|
    blur_max: float = 1.7                   # cap of the blur sigma, px
    # light
    illumination: float = 0.22              # sd of the log illumination field
    illum_scale: tuple = (180.0, 450.0)     # feature size of the field, px
    gradient: float = 0.3                   # max relative change across a field
    vignette: float = 0.25
    texture: float = 0.02                   # agar texture density
    medium_tint: float = 0.08               # density of the tinted medium
    # debris, per megapixel
    fibres: float = 25.0
    specks: float = 350.0
    clumps: float = 30.0                    # spore-sized irregular dirt
    crystals: float = 60.0
    blobs: float = 25.0                     # out-of-focus blobs and rings
    ghosts: float = 0.05                    # out-of-focus spores, per in-focus spore
    # camera
    photons: tuple = (250.0, 1500.0)        # photo-electrons at white
    read_noise: tuple = (0.003, 0.012)      # fraction of white
    exposure: tuple = (0.7, 0.9)            # bright-background level before the tone curve
    gamma: tuple = (1.0, 1.8)
    cast: float = 0.07                      # sd of log white-balance gains
    jpeg_prob: float = 0.25
    jpeg_quality: tuple = (35, 85)
    # modes
    dark_field: bool = False
    gray16: bool = False


_BASE = Style()
STYLES = {
    "default": _BASE,
    "dense": replace(
        _BASE, name="dense", description="crowded: ~650 spores per field, half the groups "
        "clustered (2..4), more and deeper overlaps; crops hold 3..6 spores",
        field_spores=650, cluster_rate=0.5, overlap_prob=0.65, overlap_depth=(0.1, 0.4),
        gap=1.0, crop_counts=(0, 0, 0, 0.2, 0.25, 0.28, 0.27),
        cluster_sizes=(0.4, 0.35, 0.25)),
    "small": replace(
        _BASE, name="small", description="small spores: long axis median 11 px "
        "(~7..16 px), ~600 per field", size=11.0, field_spores=600, halo_width=(0.8, 1.5),
        granules=0.8),
    "large": replace(
        _BASE, name="large", description="large spores: long axis median 40 px "
        "(~28..56 px), ~110 per field, 0..4 per crop", size=40.0, field_spores=110,
        crop_counts=(0.12, 0.3, 0.3, 0.18, 0.1, 0, 0), granules=1.2, halo_width=(1.4, 3.0)),
    "lowcontrast": replace(
        _BASE, name="lowcontrast", description="mostly pale, weak spores; stronger uneven "
        "light, more blur, noise, debris and ghosts", kind_mix=(0.7, 0.27, 0.03),
        density_scale=0.7, illumination=0.32, gradient=0.45, blur=(0.7, 1.2), blur_max=1.9,
        photons=(180.0, 700.0), read_noise=(0.006, 0.016), specks=500.0, blobs=45.0,
        ghosts=0.12, halo=0.4),
    "dark_background": replace(
        _BASE, name="dark_background", description="dark field: dark background, spores "
        "brighter than it (bright outlines, glowing bodies), bright debris",
        dark_field=True, jpeg_prob=0.15, gamma=(1.0, 1.6)),
    "gray16": replace(
        _BASE, name="gray16", description="single-channel uint16 TIFF, linear camera, "
        "random gain (full scale 3000..60000) and offset; no JPEG", gray16=True,
        jpeg_prob=0.0, photons=(1500.0, 8000.0), read_noise=(0.001, 0.005)),
    "debris": replace(
        _BASE, name="debris", description="default spores under heavy dirt: 4x fibres, "
        "specks, clumps and blobs", fibres=100.0, specks=1400.0, clumps=120.0,
        crystals=200.0, blobs=90.0, ghosts=0.1),
}


def _fail(message):
    """One clear line on stderr, exit status 2 (like argparse's usage errors)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def get_style(name, overrides=()):
    """A style by name, with ``knob=value`` overrides (values parsed as Python literals)."""
    import ast

    if name not in STYLES:
        _fail(f"unknown style {name!r}; choose from {', '.join(STYLES)}")
    style = STYLES[name]
    known = {f.name for f in dataclasses.fields(Style)}
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in known or not _:
            _fail(f"--set {item!r}: knob must be one of {', '.join(sorted(known))}")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            changes[key] = value
    return replace(style, **changes)


# --------------------------------------------------------------------------------------
# Smooth random fields
# --------------------------------------------------------------------------------------


def _bspline_weights(pos, j0, j1):
    """(len(pos), j1 - j0) cubic B-spline weights of nodes j0..j1-1 at node positions pos."""
    t = np.abs(pos[:, None] - np.arange(j0, j1)[None, :])
    w = np.zeros_like(t)
    near, mid = t < 1, (t >= 1) & (t < 2)
    w[near] = 2 / 3 - t[near] ** 2 + t[near] ** 3 / 2
    w[mid] = (2 - t[mid]) ** 3 / 6
    return w.astype(np.float32)


def _spline(grid, ys, xs):
    """The cubic B-spline through ``grid`` (nodes 1 apart) at node positions ys, xs."""
    (a0, a1), (b0, b1) = [(max(int(np.floor(p.min())) - 1, 0), min(int(np.ceil(p.max())) + 2, n))
                          for p, n in ((ys, grid.shape[0]), (xs, grid.shape[1]))]
    return _bspline_weights(ys, a0, a1) @ grid[a0:a1, b0:b1] @ _bspline_weights(xs, b0, b1).T


_SPLINE_SD = {}


def _spline_sd(smooth):
    """sd of the spline through a unit-sd grid smoothed by ``smooth`` (measured once)."""
    if smooth not in _SPLINE_SD:
        g = ndi.gaussian_filter(np.random.default_rng(0).standard_normal((260, 260)), smooth, mode="wrap")
        g = (g - g.mean()) / g.std()
        p = np.linspace(4, 255, 700)
        _SPLINE_SD[smooth] = float(_spline(g.astype(np.float32), p, p).std())
    return _SPLINE_SD[smooth]


def _smooth_field(rng, shape, origin, extent, scale):
    """A zero-mean, unit-sd smooth random field of feature size ``scale`` px, evaluated
    on the window ``shape`` at ``origin`` of a virtual area of size ``extent`` (a cubic
    B-spline through random nodes ``scale`` px apart, normalised over the whole area,
    so a window shows only its part of the variation)."""
    nodes = [math.ceil(e / scale) + 4 for e in extent]
    grid = ndi.gaussian_filter(rng.standard_normal(nodes), 0.6, mode="wrap")
    grid = ((grid - grid.mean()) / (grid.std() * _spline_sd(0.6))).astype(np.float32)
    ys = (origin[0] + np.arange(shape[0]) + 0.5) / scale + 1.5
    xs = (origin[1] + np.arange(shape[1]) + 0.5) / scale + 1.5
    return _spline(grid, ys, xs).astype(np.float32)


# --------------------------------------------------------------------------------------
# Spore shapes
# --------------------------------------------------------------------------------------


class Spore:
    """One convex spore: centre (y, x), long semi-axis a, short b, angle, shape model."""

    def __init__(self, y, x, a, b, angle, kind, params):
        self.y, self.x, self.a, self.b, self.angle = float(y), float(x), a, b, angle
        self.kind = kind
        self.p = params
        self.c, self.s = math.cos(angle), math.sin(angle)

    def local(self, ys, xs):
        dy, dx = ys - self.y, xs - self.x
        return dx * self.c + dy * self.s, -dx * self.s + dy * self.c

    def gauge(self, ys, xs):
        """F(y, x): < 1 inside, 1 on the outline, roughly 1 + distance/b outside."""
        u, v = self.local(ys, xs)
        a, b, p = self.a, self.b, self.p
        if self.kind == "super":
            n = p["n"]
            f = (np.abs(u / a) ** n + np.abs(v / b) ** n) ** (1.0 / n)
        elif self.kind == "ovoid":
            w = b * np.clip(1.0 + p["k"] * u / a, 0.25, None)
            f = np.sqrt((u / a) ** 2 + (v / w) ** 2)
        else:  # lemon: vesica (two arcs) smoothly intersected with a wide ellipse
            at = a * p["tip"]
            radius = (at * at + b * b) / (2 * b)
            off = radius - b
            d1 = np.sqrt(u * u + (v - off) ** 2)
            d2 = np.sqrt(u * u + (v + off) ** 2)
            fv = np.maximum(d1, d2) / radius
            fe = np.sqrt((u / a) ** 2 + (v / (1.3 * b)) ** 2)
            f = (fv ** 10 + fe ** 10) ** 0.1
        theta = np.arctan2(v / b, u / a)
        wob = 1.0 + p["e2"] * np.cos(2 * theta + p["p2"]) + p["e3"] * np.cos(3 * theta + p["p3"])
        return f * wob

    def radius(self, angles):
        """Distance from the centre to the outline along the given global angles."""
        angles = np.asarray(angles, float)
        lo = np.full_like(angles, 0.5 * self.b)
        hi = np.full_like(angles, 1.6 * self.a)
        cy, cx = np.sin(angles), np.cos(angles)
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            inside = self.gauge(self.y + mid * cy, self.x + mid * cx) <= 1.0
            lo = np.where(inside, mid, lo)
            hi = np.where(inside, hi, mid)
        return 0.5 * (lo + hi)

    def outline(self, m=40):
        cached = self.__dict__.get("_outline")
        if cached is None or len(cached[0]) != m:
            t = np.linspace(0, 2 * np.pi, m, endpoint=False)
            r = self.radius(t)
            cached = self._outline = (self.y + r * np.sin(t), self.x + r * np.cos(t))
        return cached


def _species(rng, style, scale=1.0):
    """Shared traits of one species in a scene."""
    kind = rng.choice(["super", "ovoid", "lemon"], p=np.asarray(style.shape_mix) / sum(style.shape_mix))
    mix = rng.dirichlet(np.asarray(style.kind_mix) * 12 + 0.05)
    return {
        "kind": kind,
        "size": style.size * scale * math.exp(rng.normal(0, 0.12)),
        "aspect": rng.uniform(*style.aspect),
        "kind_mix": mix,
        # per-channel absorption of the pigment: brown (blue absorbed most) to olive
        "pigment": np.array([0.62, 0.85, 1.25]) * np.exp(rng.normal(0, 0.08, 3)),
        "n": rng.uniform(1.7, 3.0),
        "k": rng.uniform(0.08, 0.3),
        "tip": rng.uniform(1.03, 1.16),
    }


def _new_spore(rng, style, sp, y, x, angle=None):
    length = sp["size"] * math.exp(rng.normal(0, style.size_spread))
    length = float(np.clip(length, 0.45 * style.size, 2.2 * style.size))
    aspect = float(np.clip(sp["aspect"] + rng.normal(0, 0.05), 0.4, 0.97))
    a, b = length / 2, max(length * aspect / 2, 1.8)
    params = {
        "n": float(np.clip(sp["n"] + rng.normal(0, 0.15), 1.6, 3.2)),
        "k": float(np.clip(sp["k"] + rng.normal(0, 0.04), 0.0, 0.32)),
        "tip": float(np.clip(sp["tip"] + rng.normal(0, 0.02), 1.01, 1.2)),
        "e2": rng.uniform(0, 0.02), "e3": rng.uniform(0, 0.025),
        "p2": rng.uniform(0, 2 * np.pi), "p3": rng.uniform(0, 2 * np.pi),
    }
    if angle is None:
        angle = rng.uniform(0, np.pi)
    s = Spore(y, x, a, b, angle, sp["kind"], params)
    s.species = sp
    return s


def _separated(s, t, tol):
    """True when convex spores s and t are apart by more than ``tol`` px (tol < 0: they
    may overlap by up to -tol px measured along the short axis)."""
    d = math.hypot(s.y - t.y, s.x - t.x)
    if d > s.a * 1.3 + t.a * 1.3 + tol + 1:
        return True
    for p, q in ((s, t), (t, s)):
        oy, ox = p.outline()
        if np.min(q.gauge(oy, ox)) < 1.0 + tol / q.b:
            return False
    return True


def _lens(s, t, limit=0.45):
    """True when s and t do not overlap, or overlap in a simple lens: each outline enters
    the other body along one arc covering less than ``limit`` of it (a cross, which
    would cut one instance in two, fails)."""
    for p, q in ((s, t), (t, s)):
        inside = q.gauge(*p.outline(64)) < 1.0
        if inside.mean() >= limit or np.count_nonzero(inside != np.roll(inside, 1)) > 2:
            return False
    return True


def _connect_labels(labels):
    """Safety net: a fragment of an instance cut off from its main region goes to the
    neighbouring instance it touches most (the mask is unchanged). Returns the count."""
    from skimage.measure import label as cc

    n = int(labels.max())
    regions = cc(labels, background=0, connectivity=2)
    if int(regions.max()) == np.count_nonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:]):
        return 0
    fixed = 0
    sizes = np.bincount(regions.ravel())
    owner = np.zeros(len(sizes), np.int64)
    owner[regions.ravel()] = labels.ravel()
    for k in range(1, n + 1):
        parts = np.nonzero(owner == k)[0]
        if len(parts) < 2:
            continue
        for r in parts[np.argsort(sizes[parts])[:-1]]:
            frag = regions == r
            ring = ndi.binary_dilation(frag, np.ones((3, 3), bool)) & ~frag
            around = labels[ring]
            around = around[(around > 0) & (around != k)]
            if len(around):
                labels[frag] = np.bincount(around).argmax()
                fixed += 1
    return fixed


class _Grid:
    """Spatial buckets of spores for neighbour queries."""

    def __init__(self, cell):
        self.cell, self.cells = cell, {}

    def add(self, s):
        self.cells.setdefault((int(s.y // self.cell), int(s.x // self.cell)), []).append(s)

    def near(self, s):
        i, j = int(s.y // self.cell), int(s.x // self.cell)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                yield from self.cells.get((i + di, j + dj), ())


def _place(rng, style, species, n, region, bounds=None):
    """Up to ``n`` spores in groups (single or clusters) with centres in ``region``
    (y0, x0, y1, x1). Returns the list of spores, each with ``.group``."""
    y0, x0, y1, x1 = region
    cell = 2.6 * 2.2 * style.size / 2 + style.gap + 2
    grid = _Grid(cell)
    spores, group = [], 0
    failures = 0
    csz = np.asarray(style.cluster_sizes) / sum(style.cluster_sizes)
    while len(spores) < n and failures < 60:
        want = 1 if rng.random() >= style.cluster_rate else int(rng.choice([2, 3, 4], p=csz))
        want = min(want, n - len(spores))
        sp = species[rng.integers(len(species))]
        first = _new_spore(rng, style, sp, rng.uniform(y0, y1), rng.uniform(x0, x1))
        if not all(_separated(first, t, style.gap) for t in grid.near(first)):
            failures += 1
            continue
        failures = 0
        first.group = group
        members = [first]
        tries = 0
        while len(members) < want and tries < 25:
            tries += 1
            parent = members[rng.integers(len(members))]
            u = rng.uniform(0, 2 * np.pi)
            angle = parent.angle + rng.normal(0, 0.3) if rng.random() < 0.4 else None
            s = _new_spore(rng, style, sp, 0.0, 0.0, angle)
            if rng.random() < style.overlap_prob:
                depth = rng.uniform(*style.overlap_depth) * 2 * min(parent.b, s.b)
            else:
                depth = rng.uniform(0.9, 1.8)
            dist = parent.radius([u])[0] + s.radius([u + np.pi])[0] - depth
            s = Spore(parent.y + dist * math.sin(u), parent.x + dist * math.cos(u),
                      s.a, s.b, s.angle, s.kind, s.p)
            s.species, s.group = sp, group
            if bounds is not None:
                by0, bx0, by1, bx1 = bounds
                if not (by0 <= s.y <= by1 and bx0 <= s.x <= bx1):
                    continue
            # the new spore must touch its parent, may touch (not swallow) its mates,
            # and keeps clear of everything else
            if np.min(parent.gauge(*s.outline())) > 1.0:
                continue
            ok = all(_separated(s, t, style.gap) for t in grid.near(s))
            ok = ok and all(
                _separated(s, m, -0.45 * 2 * min(s.b, m.b)) for m in members if m is not parent)
            # overlaps must be simple lenses (no crossing), so every instance stays one region
            ok = ok and all(_lens(s, m) for m in members)
            if not ok:
                continue
            members.append(s)
        for m in members:
            grid.add(m)
            spores.append(m)
        group += 1
    return spores


# --------------------------------------------------------------------------------------
# Rasterising spores and debris into optical maps
# --------------------------------------------------------------------------------------


def _box(s, pad, shape):
    r = s.a * 1.35 + pad
    y0, y1 = max(int(s.y - r), 0), min(int(s.y + r) + 2, shape[0])
    x0, x1 = max(int(s.x - r), 0), min(int(s.x + r) + 2, shape[1])
    return y0, y1, x0, x1


def _gauss_dot(out, y, x, sigma, value):
    r = int(3 * sigma + 2)
    y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, out.shape[0])
    x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, out.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1)[:, None] + 0.5 - y
    xx = np.arange(x0, x1)[None, :] + 0.5 - x
    out[y0:y1, x0:x1] += value * np.exp(-(yy * yy + xx * xx) / (2 * sigma * sigma))


class Scene:
    """Optical maps of one image: density (3 channels), focus-weighted phase, labels."""

    def __init__(self, shape):
        self.shape = shape
        self.density = np.zeros((3,) + shape, np.float32)      # in-focus density, RGB
        self.far = np.zeros(shape, np.float32)                 # out-of-focus layer (grey)
        self.phase_z = np.zeros(shape, np.float32)             # sum of z_i * phase_i
        self.phase = np.zeros(shape, np.float32)               # plain phase (dark field)
        self.depth = np.full(shape, -np.inf, np.float32)
        self.labels = np.zeros(shape, np.int32)
        self.kinds = {}                                        # spore index -> kind name


def _draw_spore(scene, rng, style, s, index, z, far=False):
    y0, y1, x0, x1 = _box(s, 4, scene.shape)
    if y0 >= y1 or x0 >= x1:
        return
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    ys, xs = np.broadcast_arrays(ys, xs)
    f = s.gauge(ys, xs)
    gy, gx = np.gradient(f)
    dist = (1.0 - f) / np.maximum(np.hypot(gy, gx), 1e-3)   # signed px, + inside
    dist = np.clip(dist, -50, 50)
    cover = np.clip(dist + 0.5, 0.0, 1.0)
    thick = np.sqrt(np.clip(1.0 - f * f, 0.0, 1.0))
    sp = s.species
    kind = rng.choice(3, p=sp["kind_mix"])                     # pale, normal, dark
    if not far:
        scene.kinds[index] = KINDS[kind]
    k = style.density_scale
    if kind == 0:
        dens, colour = rng.uniform(0.04, 0.12) * k, np.array([0.95, 1.0, 1.05])
        phase_amp = rng.uniform(0.8, 1.4)
    elif kind == 1:
        dens, colour = rng.uniform(0.12, 0.4) * k, 0.5 * sp["pigment"] + 0.5
        phase_amp = rng.uniform(0.6, 1.1)
    else:
        dens, colour = rng.uniform(0.6, 1.6) * k, sp["pigment"] * rng.uniform(0.9, 1.15)
        phase_amp = rng.uniform(0.3, 0.8)
    gray = dens * (0.35 + 0.65 * thick) * cover
    # light refracted out of the objective's aperture at the steep margin: a dark
    # contour whatever the focus (what makes hyaline spores visible in brightfield)
    edge = cover * np.exp(-np.clip(dist, 0, None) / rng.uniform(0.8, 1.6))
    gray += edge * (rng.uniform(0.18, 0.35) if kind == 0 else rng.uniform(0.06, 0.2)) * (0.5 + 0.5 * k)
    ph = phase_amp * (0.4 + 0.6 * thick) * cover
    if rng.random() < style.wall_prob:
        tw = rng.uniform(1.0, 2.6) * max(s.b / 8, 0.6)
        band = cover * np.clip(tw + 0.5 - dist, 0.0, 1.0)
        gray += band * (rng.uniform(0.15, 0.5) * k + 0.6 * dens)
        ph += band * rng.uniform(0.3, 0.8)
    if not far:
        # granules: dark specks and refractile droplets inside the body
        area = math.pi * s.a * s.b
        n = rng.poisson(style.granules * area / 100.0)
        for _ in range(n):
            r, t = math.sqrt(rng.random()) * 0.7, rng.uniform(0, 2 * np.pi)
            u, v = r * s.a * math.cos(t), r * s.b * math.sin(t)
            gy_, gx_ = s.y + u * s.s + v * s.c, s.x + u * s.c - v * s.s
            sig = rng.uniform(0.5, 1.3) * max(s.b / 7, 0.6)
            if rng.random() < 0.5:
                _gauss_dot(gray, gy_ - y0, gx_ - x0, sig, rng.uniform(0.1, 0.5) * k)
            else:
                _gauss_dot(ph, gy_ - y0, gx_ - x0, sig, rng.uniform(0.5, 1.5))
                _gauss_dot(gray, gy_ - y0, gx_ - x0, sig, 0.03)
        if rng.random() < style.guttule_prob:
            pg = np.zeros_like(gray)
            _gauss_dot(pg, s.y - y0 + rng.normal(0, 0.1 * s.b), s.x - x0 + rng.normal(0, 0.1 * s.b),
                       rng.uniform(0.22, 0.38) * s.b, 1.0)
            ph += pg * rng.uniform(0.8, 1.8)
            gray -= pg * dens * rng.uniform(0.2, 0.6)   # the droplet is clearer than the body
    if far:
        scene.far[y0:y1, x0:x1] += gray
        return
    scene.density[:, y0:y1, x0:x1] += gray[None] * colour[:, None, None].astype(np.float32)
    scene.phase_z[y0:y1, x0:x1] += z * ph
    scene.phase[y0:y1, x0:x1] += ph
    inside = f <= 1.0
    win = scene.depth[y0:y1, x0:x1]
    take = inside & (dist > win)
    win[take] = dist[take]
    scene.labels[y0:y1, x0:x1][take] = index


def _polygon_patch(rng, radius, jag):
    """A soft irregular polygon (supersampled) of mean radius ``radius``."""
    from skimage.draw import polygon

    m = int(rng.integers(5, 11))
    t = np.sort(rng.uniform(0, 2 * np.pi, m))
    r = radius * np.exp(rng.normal(0, jag, m))
    ss = 4
    size = int(2 * (r.max() + 2)) + 1
    c = size / 2
    img = np.zeros((size * ss, size * ss), np.float32)
    rr, cc = polygon((c + r * np.sin(t)) * ss, (c + r * np.cos(t)) * ss, img.shape)
    img[rr, cc] = 1.0
    return img.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _add_patch(target, patch, y, x):
    h, w = patch.shape[-2:]
    y0, x0 = int(y - h / 2), int(x - w / 2)
    sy0, sx0 = max(0, -y0), max(0, -x0)
    y1, x1 = min(y0 + h, target.shape[-2]), min(x0 + w, target.shape[-1])
    if y1 <= max(y0, 0) or x1 <= max(x0, 0):
        return
    sub = patch[..., sy0:sy0 + y1 - max(y0, 0), sx0:sx0 + x1 - max(x0, 0)]
    target[..., max(y0, 0):y1, max(x0, 0):x1] += sub


def _draw_debris(scene, rng, style, z_mean):
    h, w = scene.shape
    mp = h * w / 1e6
    brownish = lambda: np.array([0.8, 0.95, 1.15]) * np.exp(rng.normal(0, 0.1, 3))
    # fibres: curved, thin, some out of focus
    for _ in range(rng.poisson(style.fibres * mp)):
        length = int(rng.uniform(30, 320))
        y, x, head = rng.uniform(-20, h + 20), rng.uniform(-20, w + 20), rng.uniform(0, 2 * np.pi)
        turn = rng.normal(0, 0.02)
        pts = []
        for _ in range(length):
            head += turn + rng.normal(0, 0.05)
            y, x = y + math.sin(head), x + math.cos(head)
            pts.append((y, x))
        pts = np.array(pts)
        far = rng.random() < 0.3
        width = rng.uniform(2.0, 5.0) if far else rng.lognormal(math.log(0.9), 0.4)
        m = int(4 * width + 3)
        py0, px0 = int(pts[:, 0].min()) - m, int(pts[:, 1].min()) - m
        py1, px1 = int(pts[:, 0].max()) + m + 1, int(pts[:, 1].max()) + m + 1
        py0c, px0c, py1c, px1c = max(py0, 0), max(px0, 0), min(py1, h), min(px1, w)
        if py0c >= py1c or px0c >= px1c:
            continue
        line = np.ones((py1 - py0, px1 - px0), bool)
        line[(pts[:, 0] - py0).astype(int), (pts[:, 1] - px0).astype(int)] = False
        d = ndi.distance_transform_edt(line)[py0c - py0:py1c - py0, px0c - px0:px1c - px0]
        prof = np.exp(-0.5 * (d / width) ** 2).astype(np.float32)
        dens = rng.uniform(0.05, 0.2) if far else rng.uniform(0.15, 0.8)
        if far:
            scene.far[py0c:py1c, px0c:px1c] += dens * prof
        else:
            scene.density[:, py0c:py1c, px0c:px1c] += dens * prof[None] * brownish()[:, None, None]
            scene.phase_z[py0c:py1c, px0c:px1c] += z_mean * 0.6 * prof
            scene.phase[py0c:py1c, px0c:px1c] += 0.6 * prof
    # specks: small irregular dark bits (a few overlapping dots; polygons when larger)
    for _ in range(rng.poisson(style.specks * mp)):
        rad = rng.lognormal(math.log(1.3), 0.5)
        dens = rng.uniform(0.2, 1.6) * np.exp(rng.normal(0, 0.1, 3))
        yy, xx = rng.uniform(0, h), rng.uniform(0, w)
        if rad > 2.2:
            patch = _polygon_patch(rng, rad, 0.3)
            _add_patch(scene.density, patch[None] * dens[:, None, None].astype(np.float32), yy, xx)
            continue
        dot = np.zeros((int(6 * rad + 8),) * 2, np.float32)
        c = dot.shape[0] / 2
        for _ in range(int(rng.integers(1, 4))):
            _gauss_dot(dot, c + rng.normal(0, 0.6 * rad), c + rng.normal(0, 0.6 * rad),
                       max(0.45, rad * rng.uniform(0.4, 0.7)), 1.0)
        dot = np.clip(dot, 0, 1.0)
        _add_patch(scene.density, dot[None] * dens[:, None, None].astype(np.float32), yy, xx)
    # clumps: spore-sized irregular dirt, non-convex, often dark and grainy
    for _ in range(rng.poisson(style.clumps * mp)):
        rad = rng.uniform(0.25, 0.6) * style.size
        patch = _polygon_patch(rng, rad, 0.45)
        grain = ndi.gaussian_filter(rng.standard_normal(patch.shape), 1.0)
        patch = patch * np.clip(0.7 + 0.8 * grain, 0.1, 1.6)
        dens = rng.uniform(0.15, 1.0) * brownish()
        yy, xx = rng.uniform(0, h), rng.uniform(0, w)
        _add_patch(scene.density, patch[None] * dens[:, None, None].astype(np.float32), yy, xx)
        _add_patch(scene.phase_z, patch * z_mean * 0.5, yy, xx)
    # crystals: refractile, angular, mostly phase (bright or dark with focus)
    for _ in range(rng.poisson(style.crystals * mp)):
        patch = _polygon_patch(rng, rng.uniform(1.0, 4.0), 0.15)
        yy, xx = rng.uniform(0, h), rng.uniform(0, w)
        amp = rng.uniform(0.8, 2.5) * (1 if rng.random() < 0.5 else -1)
        _add_patch(scene.phase_z, patch * amp, yy, xx)
        _add_patch(scene.density, patch[None] * np.float32(0.04), yy, xx)
    # out-of-focus blobs and rings (in the far layer: blurred later)
    for _ in range(rng.poisson(style.blobs * mp)):
        rad = rng.uniform(5, 32)
        size = int(2 * rad + 12)
        yy = np.arange(size)[:, None] + 0.5 - size / 2
        xx = np.arange(size)[None, :] + 0.5 - size / 2
        rho = np.hypot(yy, xx)
        disc = np.clip(rad - rho, 0, 1).astype(np.float32)
        if rng.random() < 0.5:
            ring = np.exp(-0.5 * ((rho - rad * 0.85) / (0.12 * rad)) ** 2).astype(np.float32)
            patch = rng.uniform(0.1, 0.3) * ring - rng.uniform(0.0, 0.08) * disc
        else:
            patch = rng.uniform(0.04, 0.22) * disc
        _add_patch(scene.far, patch, rng.uniform(0, h), rng.uniform(0, w))


# --------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------


def _blur_varying(img, sigma_map, levels):
    """Gaussian blur of (C, H, W) with a per-pixel sigma, by blending fixed levels."""
    levels = np.asarray(levels, float)
    stack = [ndi.gaussian_filter(img, (0, s, s), mode="reflect", truncate=3.5) if s > 0.05 else img
             for s in levels]
    pos = np.interp(sigma_map, levels, np.arange(len(levels)))
    i0 = np.clip(np.floor(pos).astype(int), 0, len(levels) - 2)
    frac = (pos - i0).astype(np.float32)
    out = np.zeros_like(img)
    for i in range(len(levels) - 1):
        sel = (i0 == i)
        if sel.any():
            out += np.where(sel, stack[i] * (1 - frac) + stack[i + 1] * frac, 0.0)
    return out


def render(rng, style, shape, n_spores, *, pad=16, crop=True, field_extent=(1024, 1024)):
    """Render one image. ``crop`` spores are placed with centres near the image (some cut
    by the border). Returns (image, labels uint16, info dict)."""
    h, w = shape
    H, W = h + 2 * pad, w + 2 * pad
    scene = Scene((H, W))
    extent = (max(field_extent[0], h), max(field_extent[1], w))
    origin = (rng.uniform(0, extent[0] - h), rng.uniform(0, extent[1] - w))
    win = (origin[0] - pad, origin[1] - pad)

    # focus field: mean offset, slow variation; it drives halos (sign) and blur
    z_mean = rng.uniform(*style.focus)
    zfield = z_mean + 0.45 * _smooth_field(rng, (H, W), win, extent, rng.uniform(250, 600))

    nsp = 1 if rng.random() < 0.6 else 2
    species = [_species(rng, style, scale=1.0 if i == 0 else math.exp(rng.normal(0, 0.25)))
               for i in range(nsp)]
    if crop:
        m = 0.15 * style.size
        region = (pad - m, pad - m, pad + h + m, pad + w + m)
        bounds = (pad - 0.45 * style.size, pad - 0.45 * style.size,
                  pad + h + 0.45 * style.size, pad + w + 0.45 * style.size)
    else:
        region = (pad, pad, pad + h, pad + w)
        bounds = (pad - 0.3 * style.size, pad - 0.3 * style.size,
                  pad + h + 0.3 * style.size, pad + w + 0.3 * style.size)
    spores = _place(rng, style, species, n_spores, region, bounds)
    for i, s in enumerate(spores, 1):
        zy, zx = int(np.clip(s.y, 0, H - 1)), int(np.clip(s.x, 0, W - 1))
        z = zfield[zy, zx] + rng.normal(0, style.focus_spread)
        _draw_spore(scene, rng, style, s, i, z)
    # ghosts: spores in another focal plane (never in the mask)
    for _ in range(rng.poisson(style.ghosts * max(n_spores, 2))):
        sp = species[rng.integers(len(species))]
        g = _new_spore(rng, style, sp, rng.uniform(0, H), rng.uniform(0, W))
        _draw_spore(scene, rng, style, g, 0, 0.0, far=True)
    _draw_debris(scene, rng, style, z_mean)

    # dish: tinted medium, agar texture
    tint = style.medium_tint * rng.uniform(0.3, 1.0) * np.array([0.3, 0.7, 1.4]) * np.exp(rng.normal(0, 0.2, 3))
    # fine grain: gaussian-filtered white noise scaled to unit sd (the filter's sd is
    # 1/(2 sqrt(pi) sigma)), plus a coarser mottle
    noise = rng.standard_normal((H, W)).astype(np.float32)
    tex = style.texture * (ndi.gaussian_filter(noise, 1.2, truncate=3.0) * (2 * math.sqrt(math.pi) * 1.2)
                           + 0.6 * _smooth_field(rng, (H, W), win, extent, 14.0))
    dens = scene.density + tint[:, None, None].astype(np.float32) + tex[None].astype(np.float32)
    far_sigma = rng.uniform(3.0, 6.0)
    has_far = bool(scene.far.any())
    if has_far:
        far_tint = np.array([0.85, 0.97, 1.12], np.float32)[:, None, None]
        dens += ndi.gaussian_filter(scene.far, far_sigma, truncate=3.0)[None] * far_tint

    # illumination: random field x gradient x vignette
    illum = np.exp(style.illumination * _smooth_field(rng, (H, W), win, extent, rng.uniform(*style.illum_scale)))
    gy_, gx_ = np.meshgrid((np.arange(H) + win[0]) / extent[0] - 0.5,
                           (np.arange(W) + win[1]) / extent[1] - 0.5, indexing="ij")
    ang = rng.uniform(0, 2 * np.pi)
    illum *= 1.0 + rng.uniform(0, style.gradient) * (gy_ * math.sin(ang) + gx_ * math.cos(ang))
    cy, cx = rng.normal(0, 0.15, 2)
    illum *= 1.0 - rng.uniform(0, style.vignette) * ((gy_ - cy) ** 2 + (gx_ - cx) ** 2) * 2
    illum = illum.astype(np.float32)
    lamp = np.array([1.0, 0.94, 0.82]) * np.exp(rng.normal(0, 0.04, 3))

    hw = rng.uniform(*style.halo_width)
    if not style.dark_field:
        tie = 1.0 - style.halo * hw * hw * ndi.gaussian_laplace(scene.phase_z, hw)
        light = np.exp(-dens) * np.clip(tie, 0.25, 2.2)[None]
        light *= illum[None] * lamp[:, None, None].astype(np.float32)
        level = rng.uniform(*style.exposure)
    else:
        # scattered light: edges of phase and density, a glow from the bodies
        gray_d = scene.density.mean(axis=0) + 0.4 * scene.phase
        if has_far:
            gray_d = gray_d + ndi.gaussian_filter(scene.far, far_sigma, truncate=3.0)
        sm = ndi.gaussian_filter(gray_d, 1.0)
        edge = np.hypot(*np.gradient(sm))
        scatter = 1.6 * edge + 0.35 * np.clip(sm, 0, None)
        scatter += 0.5 * np.abs(ndi.gaussian_laplace(scene.phase_z, hw)) * hw * hw * 0.3
        bg = rng.uniform(0.03, 0.09) * (1 + 2 * tex)
        light = (bg + rng.uniform(0.7, 1.3) * scatter)[None] * illum[None]
        light = light * (lamp * np.array([0.85, 0.95, 1.1]))[:, None, None].astype(np.float32)
        level = 1.0
    light = light.astype(np.float32)

    # blur with a spatially varying sigma (more where the focus is off)
    s0 = rng.uniform(*style.blur)
    sig = np.minimum(s0 + style.blur_focus * np.abs(zfield) * rng.uniform(0.5, 1.0), style.blur_max)
    spread = float(sig.max() - sig.min())
    if spread < 0.08:   # a crop sees little of the focus field: one blur is enough
        s1 = float(sig.mean())
        light = ndi.gaussian_filter(light, (0, s1, s1), mode="reflect", truncate=3.5)
    else:
        levels = np.linspace(max(sig.min() - 0.01, 0), sig.max() + 0.01, 2 if spread < 0.4 else 4)
        light = _blur_varying(light, sig, levels)
    light = light[:, pad:pad + h, pad:pad + w]
    labels = scene.labels[pad:pad + h, pad:pad + w]

    # exposure, shot + read noise
    # exposure set on the bright end of the background, so little of it clips
    ref = np.percentile(light, 99.5) / 1.1 if not style.dark_field else 1.0
    light = light * (level / max(ref, 1e-6))
    photons = rng.uniform(*style.photons)
    read = rng.uniform(*style.read_noise)
    if style.gray16:
        lum = (0.3 * light[0] + 0.55 * light[1] + 0.15 * light[2]) / lamp.mean()
        e = rng.poisson(np.clip(lum, 0, None) * photons) / photons + rng.normal(0, read, lum.shape)
        gain, offset = rng.uniform(3000, 60000), rng.uniform(50, 3000)
        image = np.clip(offset + gain * e, 0, 65535).astype(np.uint16)
    else:
        e = rng.poisson(np.clip(light, 0, None) * photons) / photons
        e = e + rng.normal(0, read, e.shape)
        e *= np.exp(rng.normal(0, style.cast, 3))[:, None, None]
        gamma = rng.uniform(*style.gamma)
        e = np.clip(e, 0, 1) ** (1.0 / gamma)
        image = np.clip(np.round(e * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if rng.random() < style.jpeg_prob:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image)).save(
                buf, format="JPEG", quality=int(rng.integers(*style.jpeg_quality)))
            buf.seek(0)
            image = np.asarray(Image.open(buf).convert("RGB"))
    labels = labels.copy()
    repaired = _connect_labels(labels)
    ids = np.unique(labels)
    kinds = [scene.kinds[i] for i in ids[ids > 0]]  # of the labels 1, 2, ... after _relabel
    labels = _relabel(labels)
    return np.ascontiguousarray(image), labels, {"spores_placed": len(spores), "repaired": repaired,
                                                 "kinds": kinds}


def _relabel(labels):
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint16)
    return lut[labels]


def crop_shape(rng):
    return int(rng.integers(64, 101)), int(rng.integers(64, 101))


def render_crop(seed_seq, style, field_size=1024):
    rng = np.random.default_rng(seed_seq)
    shape = crop_shape(rng)
    p = np.asarray(style.crop_counts, float)
    n = int(rng.choice(len(p), p=p / p.sum()))
    return render(rng, style, shape, n, crop=True, field_extent=(field_size, field_size))


def render_field(seed_seq, style, field_size=1024):
    rng = np.random.default_rng(seed_seq)
    n = round(style.field_spores * field_size * field_size / 1024 ** 2)
    n = max(round(n * math.exp(rng.normal(0, 0.05))), 0)
    return render(rng, style, (field_size, field_size), n, crop=False,
                  field_extent=(field_size, field_size))


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def touching_fraction(labels):
    """Fraction of instances that share an 8-connected edge with another instance."""
    lab = labels.astype(np.int64)
    n = int(lab.max())
    if n == 0:
        return float("nan"), 0
    hit = np.zeros(n + 1, bool)
    for a, b in ((lab[1:, :], lab[:-1, :]), (lab[:, 1:], lab[:, :-1]),
                 (lab[1:, 1:], lab[:-1, :-1]), (lab[1:, :-1], lab[:-1, 1:])):
        sel = (a > 0) & (b > 0) & (a != b)
        hit[a[sel]] = True
        hit[b[sel]] = True
    return float(hit[1:].mean()), n


def equivalent_diameters(labels):
    """sqrt(4 area / pi) of the instances not cut by the image border."""
    lab = labels.astype(np.int64)
    areas = np.bincount(lab.ravel())
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    keep = np.ones(len(areas), bool)
    keep[0] = False
    keep[border] = False
    keep &= areas > 0
    return np.sqrt(4 * areas[keep] / np.pi)


def otsu_dice(image, labels, dark_field=False):
    """Dice of one global Otsu threshold on luminance (the trivial baseline)."""
    from skimage.filters import threshold_otsu

    lum = image.astype(np.float64)
    if lum.ndim == 3:
        lum = lum @ np.array([0.299, 0.587, 0.114])
    t = threshold_otsu(lum)
    pred = lum > t if dark_field else lum < t
    truth = labels > 0
    return pred, truth


def style_stats(style, seed=1, crops=200, fields=1, field_size=1024):
    root = np.random.SeedSequence(seed)
    ss_crops, ss_fields = root.spawn(2)
    counts, touch_n, touch_k, diam = [], 0, 0, []
    inter = union = 0
    for ss in ss_crops.spawn(crops):
        image, labels, _ = render_crop(ss, style, field_size)
        counts.append(int(labels.max()))
        p, t = otsu_dice(image, labels, style.dark_field)
        inter, union = inter + (p & t).sum(), union + p.sum() + t.sum()
    fcounts, finter, funion = [], 0, 0
    for ss in ss_fields.spawn(fields):
        image, labels, _ = render_field(ss, style, field_size)
        fcounts.append(int(labels.max()))
        frac, n = touching_fraction(labels)
        touch_n, touch_k = touch_n + frac * n, touch_k + n
        diam.extend(equivalent_diameters(labels))
        p, t = otsu_dice(image, labels, style.dark_field)
        finter, funion = finter + (p & t).sum(), funion + p.sum() + t.sum()
    return {
        "spores_per_crop": float(np.mean(counts)),
        "count_per_field": float(np.mean(fcounts)) if fcounts else float("nan"),
        "touching_fraction": touch_n / touch_k if touch_k else float("nan"),
        "equivalent_diameter": float(np.mean(diam)) if diam else float("nan"),
        "otsu_dice_crops": 2 * inter / union if union else float("nan"),
        "otsu_dice_fields": 2 * finter / funion if funion else float("nan"),
    }


# --------------------------------------------------------------------------------------
# Writing a data set
# --------------------------------------------------------------------------------------


def _tmp(path):
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _atomic(path, write):
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(array, path):
    from PIL import Image

    _atomic(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG"))


def save_tif(array, path):
    import tifffile

    _atomic(path, lambda tmp: tifffile.imwrite(tmp, np.ascontiguousarray(array),
                                               compression="zlib", metadata=None))


def save_text(path, text):
    _atomic(path, lambda tmp: tmp.write_text(text))


def _write_sample(folder, name, image, labels, style):
    if style.gray16:
        save_tif(image, folder / "images" / f"{name}.tif")
    else:
        save_png(image, folder / "images" / f"{name}.png")
    save_png(((labels > 0) * 255).astype(np.uint8), folder / "masks" / f"{name}.png")
    save_tif(labels.astype(np.uint16), folder / "labels" / f"{name}.tif")


def _write_kinds(folder, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "id", "kind"])
    w.writerows(rows)
    save_text(folder / "kinds.csv", buf.getvalue())


def _write_counts(folder, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "count"])
    w.writerows(rows)
    save_text(folder / "counts.csv", buf.getvalue())


SPLITS = ("train", "val", "test", "fields")
#: The optical kinds of spores (``_draw_spore``), written per label into ``kinds.csv``.
KINDS = ("pale", "normal", "dark")


def generate(out, style, n=None, seed=1, field_size=1024, overwrite=False):
    """Write the data set; returns per-split rows (name, count)."""
    out = Path(out)
    n = n or {"train": 360, "val": 40, "test": 200, "fields": 1}
    todo = [s for s in SPLITS if n.get(s, 0) > 0]
    for split in todo:
        folder = out / split
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            _fail(f"{folder} is not empty; pass --overwrite to replace it")
    root = np.random.SeedSequence(seed)
    branches = dict(zip(SPLITS, root.spawn(len(SPLITS))))
    written = {}
    for split in todo:
        folder = out / split
        if folder.exists() and overwrite:
            shutil.rmtree(folder)
        for sub in ("images", "masks", "labels"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        rows, kinds = [], []
        for i, ss in enumerate(branches[split].spawn(n[split])):
            if split == "fields":
                name = f"field_{i:03d}"
                image, labels, info = render_field(ss, style, field_size)
            else:
                name = f"crop_{i:05d}"
                image, labels, info = render_crop(ss, style, field_size)
            _write_sample(folder, name, image, labels, style)
            rows.append((name, int(labels.max())))
            kinds += [(name, k, kind) for k, kind in enumerate(info["kinds"], 1)]
        _write_counts(folder, rows)
        _write_kinds(folder, kinds)
        written[split] = rows
    meta = {"renderer": "benchmarks/other_renderer.py", "seed": seed, "field_size": field_size,
            "splits": {k: len(v) for k, v in written.items()},
            "style": dataclasses.asdict(style)}
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "other_renderer.json", json.dumps(meta, indent=1, default=list) + "\n")
    return written


# --------------------------------------------------------------------------------------
# Preview sheet
# --------------------------------------------------------------------------------------


def _display(image, dark=False):
    im = image.astype(np.float32)
    if im.ndim == 2:
        lo, hi = np.percentile(im, (0.5, 99.8))
        im = np.clip((im - lo) / max(hi - lo, 1) * 255, 0, 255)
        im = np.repeat(im[..., None], 3, axis=2)
    return im.astype(np.uint8)


def _outline(image, labels):
    from skimage.segmentation import find_boundaries

    out = image.copy()
    out[find_boundaries(labels > 0, mode="inner")] = (255, 40, 40)
    inner = find_boundaries(labels, mode="inner") & ~find_boundaries(labels > 0, mode="inner")
    out[inner] = (255, 230, 0)
    return out


def preview(path, styles, seed=1, crops=6, field_size=1024, zoom=2):
    """A contact sheet: per style one row of crops (image above its outlined truth: red =
    mask outline, yellow = splits between instances) and a 200 px field window the same
    way. The first style's whole field is also written beside it (``*_field.png`` and
    ``*_field_outlined.png``)."""
    from PIL import Image

    cell = 100 * zoom
    white = lambda h, w: np.full((h, w, 3), 255, np.uint8)
    rows, whole = [], None
    for k, style in enumerate(styles):
        cs, fs = np.random.SeedSequence([seed, k]).spawn(2)
        tiles = []
        for ss in cs.spawn(crops):
            image, labels, _ = render_crop(ss, style, field_size)
            a = _display(image)
            b = _outline(a, labels)
            col = white(2 * cell + 4, cell)
            up = np.ones((zoom, zoom, 1), np.uint8)
            ah, bh = np.kron(a, up), np.kron(b, up)
            col[:ah.shape[0], :ah.shape[1]] = ah
            col[cell + 4:cell + 4 + bh.shape[0], :bh.shape[1]] = bh
            tiles += [col, white(2 * cell + 4, 4)]
        image, labels, _ = render_field(fs, style, field_size)
        a = _display(image)
        if whole is None:
            whole = (a, labels)
        y0 = x0 = field_size // 2 - cell // 2
        wa = a[y0:y0 + cell, x0:x0 + cell]
        wb = _outline(wa, labels[y0:y0 + cell, x0:x0 + cell])
        tiles.append(np.concatenate([wa, white(4, cell), wb], axis=0))
        row = np.concatenate(tiles, axis=1)
        rows += [row, white(8, row.shape[1])]
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).save(path)
    a, labels = whole
    p = Path(path)
    Image.fromarray(a).save(p.with_name(p.stem + "_field.png"))
    Image.fromarray(_outline(a, labels)).save(p.with_name(p.stem + "_field_outlined.png"))
    return sheet.shape


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="data set root to write")
    parser.add_argument("--style", default="default", help="style name (--list-styles)")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="override a style knob, e.g. --set cluster_rate=0.3")
    parser.add_argument("--train", type=int, default=360)
    parser.add_argument("--val", type=int, default=40)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--fields", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--field-size", type=int, default=1024)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace non-empty split folders that would be written")
    parser.add_argument("--list-styles", action="store_true")
    parser.add_argument("--stats", action="store_true",
                        help="print statistics of every style (or of --style if given) and exit")
    parser.add_argument("--stats-crops", type=int, default=200, help="crops per style for --stats")
    parser.add_argument("--stats-fields", type=int, default=1, help="fields per style for --stats")
    parser.add_argument("--preview", metavar="PNG", help="write a contact sheet and exit")
    args = parser.parse_args(argv)

    if args.list_styles:
        for name, st in STYLES.items():
            print(f"{name:16s} {st.description}")
        return 0
    if args.field_size < 128:
        parser.error("--field-size must be at least 128")
    explicit = any(a.startswith("--style") for a in (argv if argv is not None else sys.argv[1:]))
    if args.stats or args.preview:
        names = [args.style] if explicit else list(STYLES)
        styles = [get_style(n, args.set) for n in names]
        if args.preview:
            shape = preview(args.preview, styles, args.seed, field_size=args.field_size)
            print(f"wrote {args.preview} ({shape[1]}x{shape[0]})")
        if args.stats:
            print(f"{'style':16s} {'spores/crop':>11s} {'count/field':>11s} {'touching':>8s} "
                  f"{'eq.diam px':>10s} {'Otsu Dice crops':>15s} {'fields':>6s} {'s':>5s}")
            for st in styles:
                t0 = time.perf_counter()
                r = style_stats(st, args.seed, args.stats_crops, args.stats_fields, args.field_size)
                print(f"{st.name:16s} {r['spores_per_crop']:11.2f} {r['count_per_field']:11.0f} "
                      f"{r['touching_fraction']:8.3f} {r['equivalent_diameter']:10.1f} "
                      f"{r['otsu_dice_crops']:15.3f} {r['otsu_dice_fields']:6.3f} "
                      f"{time.perf_counter() - t0:5.1f}", flush=True)
        return 0
    if not args.out:
        parser.error("give OUT (the data set root), or --list-styles / --stats / --preview")
    style = get_style(args.style, args.set)
    counts = {"train": args.train, "val": args.val, "test": args.test, "fields": args.fields}
    if any(v < 0 for v in counts.values()):
        parser.error("split sizes must be >= 0")
    t0 = time.perf_counter()
    written = generate(args.out, style, counts, args.seed, args.field_size, args.overwrite)
    took = time.perf_counter() - t0
    parts = ", ".join(
        f"{k} {len(v)} (mean count {np.mean([c for _, c in v]):.1f})" for k, v in written.items())
    print(f"wrote {args.out}: style {style.name}, seed {args.seed}: {parts}; {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
