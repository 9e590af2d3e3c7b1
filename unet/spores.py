"""Synthetic brightfield microscopy of fungal spores on a dish surface, with exact truth.

No real spore images ship with this project, so it makes its own: crops of at most
100 x 100 pixels holding a few spores (the training data) and whole "dish field"
images of 1024 x 1024 pixels or more holding hundreds (for tiled prediction and
counting). Crops and fields come from one scene renderer, so a crop looks like a
piece cut out of a field.

How a scene is made
-------------------
1. **Geometry.** Spores are ellipses (major axis 14-30 px, minor/major 0.55-0.9, any
   orientation). They are placed one by one: most keep a gap of 2 px to the others,
   some are pushed until they *touch* another one and a few *overlap* one (at most
   ``max_overlap`` of the smaller spore's area), so that touching spores must be split
   by a watershed. A later spore lies on top: overlapped pixels belong to it.
2. **Truth.** The mask is exactly the spore bodies: the pixels whose centre lies inside
   an ellipse. The instance label image holds the number of the top spore at each
   pixel; the spore count is the number of distinct labels in the image.
3. **Optics.** The image is rendered from the same ellipses as a transmission map:
   each spore adds optical density (a dark wall just inside its edge, a pigmented or
   pale (hyaline) body with granular texture, bright vacuoles / oil drops, sometimes a
   septum) and a bright halo ring just *outside* its edge (the phase / defocus halo
   of brightfield, which is not part of the spore). Edges are anti-aliased from the
   signed distance to the ellipse, so the mask boundary sits where the image says.
   Debris that is *not* spore (dark specks, thin fibres, irregular clumps) is as dark
   as spores. The dish surface has a mottled texture, the lamp a colour tint and the
   objective vignetting plus an illumination gradient. Then a moderate Gaussian defocus
   blur, shot (Poisson) and read (Gaussian) noise and 8-bit quantisation.

Everything that can be tuned is a field of :class:`SporeStyle`. Every function is
deterministic given its random generator or seed; :func:`generate_dataset` derives one
seed per image with ``np.random.SeedSequence(seed).spawn``, so the same seed writes
byte-identical files.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError, as_pair, check_choice
from .io import save_png, write_csv

SPLITS = ("train", "val", "test", "fields")
DEFAULT_COUNTS = {"train": 1000, "val": 150, "test": 150, "fields": 4}
FIELD_SIZE = 1024
_SUBFOLDERS = ("images", "masks", "labels")


@dataclass(frozen=True)
class SporeStyle:
    """Every knob of the synthetic spore microscope, with its default.

    Ranges are ``(low, high)`` and are sampled uniformly per image or per object.
    Lengths are in pixels, densities per megapixel (10**6 px) of image area.

    Attributes
    ----------
    major_axis : (float, float)
        Full length of a spore's long axis.
    aspect : (float, float)
        Minor axis / major axis.
    crop_size : (int, int)
        Side lengths of crops (height and width drawn independently).
    spores_per_crop : (int, int)
        Spores placed around a crop (inclusive range); the first is near the centre,
        others may be cut by the border or fall outside.
    field_density : float
        Spores per megapixel in dish fields (a 1024 x 1024 field holds about 400).
    touching : float
        Probability that a spore is placed touching an existing one.
    overlapping : float
        Probability that a spore is placed overlapping an existing one.
    max_overlap : float
        Largest overlap, as a fraction of the smaller spore's area.
    gap : float
        Distance kept from other spores by a spore that is neither touching nor
        overlapping.
    hyaline : float
        Fraction of pale (hyaline) spores: nearly clear body, only the wall is dark.
    body_od : (float, float)
        Optical density (``-ln`` transmission) of a pigmented spore body.
    hyaline_od : (float, float)
        Optical density of a hyaline spore body.
    wall_od : (float, float)
        Extra optical density of the wall, peaking ``wall_depth`` inside the edge.
    wall_depth, wall_width : float
        Where the wall's density peaks (inside the edge) and its Gaussian width.
    halo : (float, float)
        Peak brightening of the halo ring outside the edge (0.2 = 20 % brighter).
    halo_distance, halo_width : float
        Distance of the halo peak outside the edge, and its Gaussian width.
    granularity : float
        Relative amplitude of the fine texture of spore bodies.
    vacuoles : (int, int)
        Number of bright vacuoles / oil drops per spore (inclusive range).
    vacuole_size : (float, float)
        Vacuole radius as a fraction of the spore's semi-minor axis.
    septum : float
        Probability that a spore shows a dark septum across its middle.
    pigment_color : (float, float, float)
        Relative optical density of spore pigment in R, G, B (brownish: blue absorbed most).
    hyaline_color : (float, float, float)
        The same for hyaline spores (nearly neutral).
    specks : float
        Dark dust specks per megapixel (radius 0.6-2.5 px).
    fibres : float
        Thin curved fibres per megapixel (20-150 px long).
    clumps : float
        Irregular debris clumps per megapixel (radius 2.5-6 px, no halo).
    debris_od : (float, float)
        Optical density of debris: the same range as spores, so darkness alone cannot tell.
    blur : (float, float)
        Standard deviation of the Gaussian defocus blur.
    vignetting : (float, float)
        Relative darkening at the corners of a field.
    gradient : float
        Largest relative illumination gradient across a field.
    background_texture : (float, float)
        Relative amplitude of the mottled dish surface.
    exposure : (float, float)
        Background level at the field centre as a fraction of 255.
    photons : (float, float)
        Photo-electrons per pixel at background level (shot noise = sqrt of it).
    read_noise : (float, float)
        Read noise in electrons.
    lamp_color : (float, float, float)
        Relative R, G, B brightness of the lamp (a warm white).
    tint : float
        Random spread of the lamp colour per channel (white balance).
    reference_field : int
        Side of the dish field a crop is imagined to be cut from (for vignetting).
    """

    major_axis: tuple = (14.0, 30.0)
    aspect: tuple = (0.55, 0.9)
    crop_size: tuple = (48, 100)
    spores_per_crop: tuple = (2, 7)
    field_density: float = 400.0
    touching: float = 0.07
    overlapping: float = 0.02
    max_overlap: float = 0.3
    gap: float = 2.0
    hyaline: float = 0.55
    body_od: tuple = (0.25, 0.9)
    hyaline_od: tuple = (0.02, 0.12)
    wall_od: tuple = (0.3, 0.6)
    wall_depth: float = 1.0
    wall_width: float = 1.1
    halo: tuple = (0.12, 0.3)
    halo_distance: float = 1.6
    halo_width: float = 1.3
    granularity: float = 0.15
    vacuoles: tuple = (0, 2)
    vacuole_size: tuple = (0.2, 0.4)
    septum: float = 0.2
    pigment_color: tuple = (0.8, 1.0, 1.25)
    hyaline_color: tuple = (0.95, 1.0, 1.05)
    specks: float = 300.0
    fibres: float = 25.0
    clumps: float = 60.0
    debris_od: tuple = (0.3, 1.3)
    blur: tuple = (0.5, 1.1)
    vignetting: tuple = (0.15, 0.4)
    gradient: float = 0.1
    background_texture: tuple = (0.02, 0.05)
    exposure: tuple = (0.62, 0.78)
    photons: tuple = (250.0, 600.0)
    read_noise: tuple = (1.0, 4.0)
    lamp_color: tuple = (1.04, 1.0, 0.93)
    tint: float = 0.03
    reference_field: int = FIELD_SIZE


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spore:
    cy: float
    cx: float
    a: float  # semi-major axis
    b: float  # semi-minor axis
    theta: float  # angle of the major axis from the x axis

    def frame(self, shape, pad):
        """Local coordinates over the spore's bounding box (clipped to ``shape``).

        Returns the box's slices, the rotated coordinates ``u, v`` of the pixel
        centres, ``r2`` (< 1 inside) and an approximate signed distance ``d`` to the
        edge in pixels (negative inside; exact sign, first-order magnitude).
        """
        y0 = max(int(np.floor(self.cy - self.a - pad)), 0)
        y1 = min(int(np.ceil(self.cy + self.a + pad)) + 1, shape[0])
        x0 = max(int(np.floor(self.cx - self.a - pad)), 0)
        x1 = min(int(np.ceil(self.cx + self.a + pad)) + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            return None
        dy = np.arange(y0, y1, dtype=np.float64)[:, None] - self.cy
        dx = np.arange(x0, x1, dtype=np.float64)[None, :] - self.cx
        c, s = np.cos(self.theta), np.sin(self.theta)
        u = dx * c + dy * s
        v = dy * c - dx * s
        ua, vb = u / self.a, v / self.b
        r2 = ua * ua + vb * vb
        r = np.sqrt(r2)
        grad = np.sqrt((ua / self.a) ** 2 + (vb / self.b) ** 2)
        d = np.where(grad > 1e-9, (r - 1.0) * r / np.maximum(grad, 1e-9), -self.b)
        d = np.maximum(d, -self.b)
        return (slice(y0, y1), slice(x0, x1)), u, v, r2, d


def _sample_ellipse(rng, style, cy, cx):
    major = rng.uniform(*style.major_axis)
    minor = major * rng.uniform(*style.aspect)
    return _Spore(cy, cx, major / 2, minor / 2, rng.uniform(0, np.pi))


def _place_spores(rng, shape, n, style, margin, central_first):
    """Place ``n`` spores (fewer if space runs out) and rasterise their instance labels.

    Coordinates are those of the image; the label canvas extends ``margin`` pixels
    beyond each side so that spores cut by the border are handled like the others.
    Each spore is free (``style.gap`` away from all others), touching one existing
    spore or overlapping one (drawn on top of it, sharing at most
    ``style.max_overlap`` of the smaller area and leaving the one below in one piece,
    also within the image, with at least ``1 - style.max_overlap`` of its area visible),
    so every label is one connected region.
    """
    from scipy import ndimage

    h, w = shape
    canvas = np.zeros((h + 2 * margin, w + 2 * margin), np.int32)
    spores, areas, paired = [], [], []  # pixels of each whole ellipse; already overlapping

    def rasterise(sp, pad):
        moved = _Spore(sp.cy + margin, sp.cx + margin, sp.a, sp.b, sp.theta)
        return moved.frame(canvas.shape, pad + 1)

    def shared(sp, label):
        box = rasterise(sp, 0)
        return 0 if box is None else np.count_nonzero((box[3] < 1) & (canvas[box[0]] == label))

    def free(first):
        if first:
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        else:
            cy = rng.uniform(-margin / 2, h + margin / 2)
            cx = rng.uniform(-margin / 2, w + margin / 2)
        sp = _sample_ellipse(rng, style, cy, cx)
        box = rasterise(sp, style.gap)
        if box is None or np.any((box[4] < style.gap) & (canvas[box[0]] > 0)):
            return None
        return sp, box, None

    def next_to(overlap):
        j = int(rng.integers(len(spores)))
        base, label = spores[j], j + 1
        if overlap and paired[j]:
            return None  # one overlap per spore
        s = _sample_ellipse(rng, style, 0.0, 0.0)
        phi = rng.uniform(0, 2 * np.pi)

        def at(t):
            return _Spore(base.cy + t * np.sin(phi), base.cx + t * np.cos(phi), s.a, s.b, s.theta)

        smaller = np.pi * min(s.a * s.b, base.a * base.b)
        target = rng.uniform(0.05, style.max_overlap) * smaller if overlap else 0
        # Bisect the distance between centres: `lo` shares more than `target`, `hi` not.
        lo, hi = 0.0, base.a + s.a + 2.0
        if shared(at(lo), label) <= target:
            return None  # spore j is mostly hidden already
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if shared(at(mid), label) > target else (lo, mid)
        sp = at(lo if overlap else hi)
        box = rasterise(sp, 0)
        if box is None:
            return None
        sl, inside, under = box[0], box[3] < 1, canvas[box[0]]
        if np.any(inside & (under > 0) & (under != label)):
            return None  # would cover a third spore
        common = np.count_nonzero(inside & (under == label))
        if overlap:
            # share little, and leave the spore below in one piece, mostly visible
            rest = canvas == label
            rest[sl] &= ~inside
            if not 0 < common <= style.max_overlap * min(np.count_nonzero(inside), areas[j]):
                return None
            if np.count_nonzero(rest) < (1 - style.max_overlap) * areas[j]:
                return None
            if ndimage.label(rest)[1] != 1:
                return None
            # nor in two pieces within the image, where the border cuts it
            if ndimage.label(rest[margin : margin + h, margin : margin + w])[1] > 1:
                return None
        elif common:
            return None
        return sp, box, j

    p_touch, p_overlap = style.touching, style.overlapping
    for k in range(n):
        mode = rng.choice(3, p=[1 - p_touch - p_overlap, p_touch, p_overlap]) if spores else 0
        for _attempt in range(40):
            found = free(k == 0 and central_first) if mode == 0 else next_to(mode == 2)
            if found is not None:
                sp, box, below = found
                canvas[box[0]][box[3] < 1] = len(spores) + 1
                spores.append(sp)
                areas.append(np.count_nonzero(box[3] < 1))
                paired.append(mode == 2)
                if mode == 2:
                    paired[below] = True
                break
    return spores, _relabel(canvas[margin : margin + h, margin : margin + w])


def _relabel(labels):
    """Number the labels present 1..K in order of their first drawing."""
    present = np.unique(labels)
    present = present[present > 0]
    if present.size > np.iinfo(np.uint16).max:
        raise UsageError(f"{present.size} spores do not fit 16-bit labels; render a smaller image.")
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    return lut[labels]


# --------------------------------------------------------------------------------------
# Optics
# --------------------------------------------------------------------------------------
def _smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise with unit standard deviation."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(noise.std(), 1e-12)


def _draw_spore(rng, sp, style, od, halo, cover, grain):
    """Add one spore's optical density, halo and coverage to the accumulators."""
    pad = style.halo_distance + 3 * style.halo_width
    box = sp.frame(od.shape[:2], pad)
    if box is None:
        return
    sl, u, v, _, d = box
    cov = np.clip(0.5 - d, 0.0, 1.0)  # anti-aliased coverage: > 0.5 exactly inside
    hyaline = rng.random() < style.hyaline
    body = rng.uniform(*(style.hyaline_od if hyaline else style.body_od))
    density = body * (1.0 + style.granularity * grain[sl])
    density += rng.uniform(*style.wall_od) * np.exp(
        -(((d + style.wall_depth) / style.wall_width) ** 2)
    )
    for _ in range(rng.integers(style.vacuoles[0], style.vacuoles[1] + 1)):
        radius = rng.uniform(*style.vacuole_size) * sp.b
        room_u, room_v = max(sp.a - radius - 2, 0), max(sp.b - radius - 2, 0)
        angle, rho = rng.uniform(0, 2 * np.pi), np.sqrt(rng.random())
        u0, v0 = room_u * rho * np.cos(angle), room_v * rho * np.sin(angle)
        dist = np.hypot(u - u0, v - v0) - radius
        strength = rng.uniform(0.5, 0.9) * body + rng.uniform(0.02, 0.1)
        density -= strength * np.clip(0.5 - dist, 0.0, 1.0)
    if rng.random() < style.septum:
        u0 = rng.uniform(-0.25, 0.25) * sp.a
        density += rng.uniform(0.15, 0.35) * np.exp(-(((u - u0) / 0.8) ** 2))
    color = np.asarray(style.hyaline_color if hyaline else style.pigment_color)
    od[sl] += (cov * density)[..., None] * color
    ring = rng.uniform(*style.halo) * np.exp(
        -(((d - style.halo_distance) / style.halo_width) ** 2)
    )
    halo[sl] = np.maximum(halo[sl], ring * (1.0 - cov))
    cover[sl] = np.maximum(cover[sl], cov)


def _poisson_count(rng, per_mpx, area):
    return int(rng.poisson(per_mpx * area / 1e6))


def _draw_debris(rng, shape, style, od):
    """Dark specks, fibres and irregular clumps: as dark as spores, never in the mask."""
    h, w = shape
    margin = 20
    area = (h + 2 * margin) * (w + 2 * margin)
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]

    def box(cy, cx, radius):
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, h)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, w)
        if y0 >= y1 or x0 >= x1:
            return None
        return (slice(y0, y1), slice(x0, x1)), yy[y0:y1] - cy, xx[:, x0:x1] - cx

    def centre():
        return rng.uniform(-margin, h + margin), rng.uniform(-margin, w + margin)

    def color():  # between grey and the spores' brown
        return 1.0 + rng.uniform(0.3, 1.0) * (np.asarray(style.pigment_color) - 1.0)

    for _ in range(_poisson_count(rng, style.specks, area)):
        cy, cx = centre()
        radius, strength, tone = rng.uniform(0.6, 2.5), rng.uniform(*style.debris_od), color()
        found = box(cy, cx, radius + 2)
        if found:
            sl, dy, dx = found
            cov = np.clip(radius + 0.5 - np.hypot(dy, dx), 0.0, 1.0)
            od[sl] += (strength * cov)[..., None] * tone

    for _ in range(_poisson_count(rng, style.fibres, area)):
        cy, cx = centre()
        length = rng.uniform(20, 150)
        heading = rng.uniform(0, 2 * np.pi)
        bend = rng.normal(0, 0.35)
        t = np.linspace(-0.5, 0.5, max(int(length / 2), 4))
        angle = heading + bend * t * 2
        py = cy + np.cumsum(np.sin(angle)) * length / t.size
        px = cx + np.cumsum(np.cos(angle)) * length / t.size
        half_width = rng.uniform(0.5, 1.4)
        strength, tone = rng.uniform(*style.debris_od) * 0.8, color()
        y0, y1 = max(int(py.min() - 3), 0), min(int(py.max() + 4), h)
        x0, x1 = max(int(px.min() - 3), 0), min(int(px.max() + 4), w)
        if y0 >= y1 or x0 >= x1:
            continue
        gy, gx = yy[y0:y1, :, None], xx[:, x0:x1, None]
        ay, ax, by, bx = py[:-1], px[:-1], py[1:], px[1:]
        sy, sx = by - ay, bx - ax
        seg = np.clip(((gy - ay) * sy + (gx - ax) * sx) / np.maximum(sy**2 + sx**2, 1e-9), 0, 1)
        dist = np.hypot(gy - ay - seg * sy, gx - ax - seg * sx).min(axis=-1)
        cov = np.clip(half_width + 0.5 - dist, 0.0, 1.0)
        od[y0:y1, x0:x1] += (strength * cov)[..., None] * tone

    for _ in range(_poisson_count(rng, style.clumps, area)):
        cy, cx = centre()
        radius, strength, tone = rng.uniform(2.5, 6.0), rng.uniform(*style.debris_od), color()
        harmonics = [
            (k, rng.uniform(0, 0.35 / np.sqrt(k - 1)), rng.uniform(0, 2 * np.pi))
            for k in range(2, 7)
        ]
        found = box(cy, cx, radius * 2.2 + 2)
        if found:
            sl, dy, dx = found
            phi = np.arctan2(dy, dx)
            edge = radius * (1 + sum(c * np.cos(k * phi + p) for k, c, p in harmonics))
            cov = np.clip(edge + 0.5 - np.hypot(dy, dx), 0.0, 1.0)
            rough = 1.0 + 0.4 * rng.standard_normal(cov.shape)
            od[sl] += (strength * cov * rough)[..., None] * tone


def _illumination(rng, shape, origin, reference, style):
    """Vignetting and a linear gradient, evaluated in the coordinates of a whole field."""
    ref_h, ref_w = reference
    cy = ref_h / 2 + rng.normal(0, 0.08 * ref_h)
    cx = ref_w / 2 + rng.normal(0, 0.08 * ref_w)
    half_diag2 = (ref_h**2 + ref_w**2) / 4
    y = origin[0] + np.arange(shape[0], dtype=np.float64)[:, None]
    x = origin[1] + np.arange(shape[1], dtype=np.float64)[None, :]
    light = 1.0 - rng.uniform(*style.vignetting) * ((y - cy) ** 2 + (x - cx) ** 2) / half_diag2
    slope, direction = rng.uniform(0, style.gradient), rng.uniform(0, 2 * np.pi)
    along = ((y - ref_h / 2) * np.sin(direction) + (x - ref_w / 2) * np.cos(direction)) / max(
        ref_h, ref_w
    )
    return light * (1.0 + slope * along)


def _render_scene(rng, shape, n_spores, style, origin=(0, 0), reference=None, central_first=False):
    """Render one scene: ``(image uint8 HxWx3, labels uint16 HxW)``."""
    from scipy import ndimage

    style = style or SporeStyle()
    rng = np.random.default_rng(rng)
    r_geometry, r_spores, r_debris, r_optics = rng.spawn(4)
    h, w = shape
    margin = int(np.ceil(style.major_axis[1] / 2)) + 4
    spores, labels = _place_spores(r_geometry, shape, n_spores, style, margin, central_first)

    od = np.zeros((h, w, 3))
    halo = np.zeros((h, w))
    cover = np.zeros((h, w))
    grain = _smooth_noise(r_spores, (h, w), 0.8)
    for sp in spores:
        _draw_spore(r_spores, sp, style, od, halo, cover, grain)
    _draw_debris(r_debris, shape, style, od)

    surface = 1.0 + r_optics.uniform(*style.background_texture) * (
        0.7 * _smooth_noise(r_optics, shape, 8.0) + 0.3 * _smooth_noise(r_optics, shape, 1.5)
    )
    transmission = np.exp(-od) * ((1.0 + halo * (1.0 - cover)) * surface)[..., None]
    sigma = r_optics.uniform(*style.blur)
    transmission = ndimage.gaussian_filter(transmission, (sigma, sigma, 0), mode="reflect")
    reference = reference or (style.reference_field, style.reference_field)
    light = _illumination(r_optics, shape, origin, reference, style)
    tint = np.asarray(style.lamp_color) * (1 + r_optics.normal(0, style.tint, 3))
    photons = r_optics.uniform(*style.photons)
    expected = photons * transmission * light[..., None] * tint
    read_noise = r_optics.uniform(*style.read_noise)
    electrons = r_optics.poisson(expected) + r_optics.normal(0, read_noise, expected.shape)
    level = 255.0 * r_optics.uniform(*style.exposure)
    image = np.clip(np.rint(electrons * (level / photons)), 0, 255).astype(np.uint8)
    return image, labels


# --------------------------------------------------------------------------------------
# Public rendering functions
# --------------------------------------------------------------------------------------
def render_crop(rng=None, style=None, size=None):
    """Render one microscope crop with a few spores.

    Parameters
    ----------
    rng : numpy.random.Generator, int or numpy.random.SeedSequence, optional
        Source of randomness; the same seed gives the same crop.
    style : SporeStyle, optional
        Rendering knobs (the defaults if omitted).
    size : int or (int, int), optional
        Height and width; drawn from ``style.crop_size`` if omitted.

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` RGB image, shape ``(height, width, 3)``.
    labels : numpy.ndarray
        ``uint16`` instance labels, 0 = background, 1..K = spores (K = the count).
    """
    style = style or SporeStyle()
    rng = np.random.default_rng(rng)
    r_layout, r_scene = rng.spawn(2)
    if size is None:
        size = r_layout.integers(style.crop_size[0], style.crop_size[1] + 1, 2)
    size = as_pair(size, "size", positive=True)
    low, high = style.spores_per_crop
    n = int(r_layout.integers(low, high + 1))
    ref = style.reference_field  # where in an imagined field the crop was cut
    origin = tuple(r_layout.uniform(0, max(ref - side, 0)) for side in size)
    return _render_scene(r_scene, size, n, style, origin, central_first=True)


def render_field(rng=None, shape=(FIELD_SIZE, FIELD_SIZE), style=None):
    """Render a whole dish field with hundreds of spores.

    Parameters
    ----------
    rng : numpy.random.Generator, int or numpy.random.SeedSequence, optional
        Source of randomness; the same seed gives the same field.
    shape : int or (int, int)
        Height and width (1024 x 1024 by default; smaller works, e.g. for tests).
    style : SporeStyle, optional
        Rendering knobs; ``style.field_density`` sets the number of spores.

    Returns
    -------
    image, labels
        As in :func:`render_crop`.
    """
    style = style or SporeStyle()
    rng = np.random.default_rng(rng)
    r_layout, r_scene = rng.spawn(2)
    shape = as_pair(shape, "shape", positive=True)
    margin = style.major_axis[1] / 2
    area = (shape[0] + margin) * (shape[1] + margin)
    n = int(r_layout.poisson(style.field_density * area / 1e6))
    return _render_scene(r_scene, shape, n, style, (0, 0), reference=shape)


def render_split(split, n, seed=0, style=None, field_size=FIELD_SIZE):
    """Yield the images of one split of the data set, one by one.

    The images are those that :func:`generate_dataset` writes for the same ``seed``:
    every split has its own seed sequence, so changing the size of one split leaves
    the others unchanged.

    Parameters
    ----------
    split : {"train", "val", "test", "fields"}
        Which split; "fields" gives dish fields, the others crops.
    n : int
        Number of images.
    seed : int
        Seed of the whole data set.
    style : SporeStyle, optional
        Rendering knobs.
    field_size : int
        Side of the square fields.

    Yields
    ------
    name : str
        File stem, e.g. ``"crop_00000"`` or ``"field_000"``.
    image, labels : numpy.ndarray
        As in :func:`render_crop`.
    """
    check_choice("split", split, SPLITS)
    root = np.random.SeedSequence(seed).spawn(len(SPLITS))[SPLITS.index(split)]
    for i, child in enumerate(root.spawn(n)):
        if split == "fields":
            yield (f"field_{i:03d}", *render_field(child, (field_size, field_size), style))
        else:
            yield (f"crop_{i:05d}", *render_crop(child, style))


# --------------------------------------------------------------------------------------
# Writing a data set
# --------------------------------------------------------------------------------------
def generate_dataset(
    out_dir,
    train=DEFAULT_COUNTS["train"],
    val=DEFAULT_COUNTS["val"],
    test=DEFAULT_COUNTS["test"],
    fields=DEFAULT_COUNTS["fields"],
    seed=0,
    field_size=FIELD_SIZE,
    style=None,
    overwrite=False,
    progress=False,
):
    """Write a synthetic spore data set in the shared layout.

    ``OUT/{train,val,test,fields}/images/NAME.png`` (RGB, 8-bit), ``masks/NAME.png``
    (0/255), ``labels/NAME.png`` (16-bit instance labels, 0 = background) and
    ``counts.csv`` (``name,count``). A split of size 0 is not written.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The data set root, e.g. ``data/spores``. Other content there (such as
        ``sample/``) is left alone.
    train, val, test : int
        Number of crops per split.
    fields : int
        Number of whole dish fields.
    seed : int
        Seed; the same seed writes byte-identical files.
    field_size : int
        Side of the square fields, at least 1024.
    style : SporeStyle, optional
        Rendering knobs.
    overwrite : bool
        Replace existing ``train/``, ``val/``, ``test/`` and ``fields/`` folders in
        ``out_dir``; without it an existing non-empty one raises ``FileExistsError``.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``{"out": str, "splits": {split: {"images": n, "spores": total}}, "files": int,
        "spores": int, "seconds": float}``.
    """
    counts = {"train": train, "val": val, "test": test, "fields": fields}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise UsageError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"`seed` must be a non-negative integer, got {seed!r}.")
    if fields and field_size < FIELD_SIZE:
        raise UsageError(f"`field_size` must be at least {FIELD_SIZE} px, got {field_size}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder; choose another output path.")
    existing = [out / s for s in SPLITS if (out / s).exists() and any((out / s).iterdir())]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists and is not empty; pass `overwrite=True` to "
            "replace the generated splits."
        )
    from .count import count_labels  # here, not at the top: the CLI's --help reads this module

    start = time.perf_counter()
    for s in SPLITS:
        if (out / s).is_dir() and not (out / s).is_symlink():
            shutil.rmtree(out / s)
        elif (out / s).exists():
            (out / s).unlink()

    from tqdm import tqdm

    bar = tqdm(total=sum(counts.values()), disable=None if progress else True, unit="img",
               desc="spores")  # disable=None: no bar when stderr is not a terminal
    summary = {"out": str(out), "splits": {}, "files": 0}
    for split, n in counts.items():
        if n == 0:
            continue
        folder = out / split
        for sub in _SUBFOLDERS:
            (folder / sub).mkdir(parents=True, exist_ok=True)
        rows = []
        for name, image, labels in render_split(split, n, seed, style, field_size):
            save_png(image, folder / "images" / f"{name}.png")
            mask = np.where(labels > 0, 255, 0).astype(np.uint8)
            save_png(mask, folder / "masks" / f"{name}.png")
            save_png(labels, folder / "labels" / f"{name}.png")
            rows.append((name, count_labels(labels)))
            bar.update()
        write_csv(folder / "counts.csv", ["name", "count"], rows)
        summary["splits"][split] = {"images": n, "spores": sum(c for _, c in rows)}
        summary["files"] += 3 * n + 1
    bar.close()
    summary["spores"] = sum(s["spores"] for s in summary["splits"].values())
    summary["seconds"] = time.perf_counter() - start
    return summary
