"""Spore styles of the project's generator that the defaults were NOT tuned on.

The defaults of the package were first chosen on ``SporeStyle()``; these styles move
the knobs that matter for segmentation and counting far from it, so a benchmark can
report what each default does on data it was not tuned on (the other half of that
question is answered by ``other_renderer.py``, independent code, and by real
microscopy, ``foreign_data.py``):

* ``default``: ``SporeStyle()`` itself;
* ``dense``: crowded fields where spores touch and overlap far more often;
* ``small`` / ``large``: spores of half / about 1.5 times the default length;
* ``pale``: mostly hyaline (pale) spores, more blur, fewer photons (noisier);
* ``uneven``: strong vignetting and illumination gradient, heavier debris.
"""

from __future__ import annotations

import dataclasses

from common import ROOT  # noqa: F401  (puts the checkout's unet on the path)

from unet.spores import SporeStyle

STYLES = {
    "default": {},
    "dense": dict(field_density=900.0, touching=0.35, overlapping=0.15, max_overlap=0.45,
                  spores_per_crop=(4, 10)),
    "small": dict(major_axis=(7.0, 15.0), field_density=1200.0),
    "large": dict(major_axis=(24.0, 44.0), field_density=180.0, spores_per_crop=(1, 4)),
    "pale": dict(hyaline=0.9, blur=(1.0, 1.8), photons=(80.0, 200.0), body_od=(0.15, 0.5)),
    "uneven": dict(vignetting=(0.4, 0.6), gradient=0.4, specks=900.0, fibres=80.0,
                   clumps=150.0),
}


def style(name):
    """The :class:`unet.spores.SporeStyle` of a named style."""
    if name not in STYLES:
        raise SystemExit(f"error: unknown style {name!r}; choose one of {', '.join(STYLES)}")
    return dataclasses.replace(SporeStyle(), **STYLES[name])
