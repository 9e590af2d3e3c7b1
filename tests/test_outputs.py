"""What predict reports per image: labels TIFFs, ROIs, tables in units, channels, pixel sizes."""

import math
import warnings

import numpy as np
import pytest
import roifile
import tifffile
from skimage.draw import ellipse

from unet import outputs
from unet.count import count_spores, measure_spores
from unet.errors import UsageError
from unet.imagefile import (NO_PIXEL_SIZE, PixelSize, pixel_size_for, read_image_channels,
                            read_pixel_size)
from unet.outputs import (check_areas, format_cell, polygon_area, report_spores, spore_columns,
                          table_rows, trace_outline, write_labels_tiff, write_probability_tiff,
                          write_rois)
from unet.render import id_overlay
from unet.spores import render_field


@pytest.fixture(scope="module")
def field():
    image, truth = render_field(3, (300, 260))
    spores = count_spores(truth > 0, intensity_image=image.mean(axis=2))
    assert spores.count > 20 and len(outputs.border_ids(spores.labels)) > 0
    return image, spores


# ------------------------------------------------------------------ which spores, columns
def test_border_spores_are_flagged_or_left_out_and_ids_stay_consistent(field):
    _, spores = field
    flagged = report_spores(spores.labels, spores.table)
    assert flagged.count == spores.count and flagged.lut is None
    edge = set(outputs.border_ids(spores.labels).tolist())
    assert {i for i, t in zip(flagged.table["id"], flagged.table["touches_border"]) if t} == edge
    kept = report_spores(spores.labels, spores.table, exclude_border=True)
    assert kept.count == spores.count - len(edge) == kept.count
    assert kept.touching_border == len(edge) and not kept.table["touches_border"].any()
    relabelled = kept.relabel(spores.labels)
    assert np.array_equal(np.unique(relabelled), np.arange(kept.count + 1))
    assert not np.isin(relabelled[[0, -1]], kept.table["id"]).any()  # no edge spore left
    np.testing.assert_array_equal(np.bincount(relabelled.ravel())[1:], kept.table["area_px"])


def test_max_area_leaves_out_large_spores_and_limits_are_checked(field):
    _, spores = field
    limit = int(np.median(spores.table["area_px"]))
    kept = report_spores(spores.labels, spores.table, max_area=limit)
    assert kept.table["area_px"].max() <= limit
    assert kept.count + kept.too_large == spores.count and kept.too_large > 0
    assert check_areas(16, None) == (16, None) and check_areas(0, 5) == (0, 5)
    for lo, hi, name in [(-1, None, "min_area"), (None, 0, "max_area"), (20, 10, "max_area"),
                         (2.5, None, "min_area")]:
        with pytest.raises(UsageError, match=f"`{name}`"):
            check_areas(lo, hi)


def test_columns_carry_their_units_and_values_convert(field):
    _, spores = field
    plain = report_spores(spores.labels, spores.table)
    assert set(plain.table) == set(spore_columns(False))
    assert not any(c.endswith(("_um", "_um2")) for c in plain.table)
    for column in spore_columns(False):
        assert column in ("id", "eccentricity", "solidity", "mean_intensity", "touches_border",
                          "orientation_deg") or column.endswith("_px"), column
    scaled = report_spores(spores.labels, spores.table, PixelSize(0.25, "given"))
    assert set(scaled.table) == set(spore_columns(True))
    np.testing.assert_allclose(scaled.table["area_um2"], scaled.table["area_px"] * 0.0625)
    np.testing.assert_allclose(scaled.table["major_axis_um"], scaled.table["major_axis_px"] / 4)
    np.testing.assert_allclose(scaled.table["centroid_x_um"], spores.table["centroid_x"] / 4)


@pytest.mark.parametrize("rotation, angle", [(0.0, 0.0), (np.pi / 4, 45.0), (-np.pi / 4, 135.0),
                                             (np.pi / 2, 90.0)])
def test_orientation_is_imagej_degrees_from_the_x_axis(rotation, angle):
    labels = np.zeros((80, 80), np.int32)
    # skimage's draw.ellipse: rotation counter-clockwise in (row, col); c_radius along x
    rr, cc = ellipse(40, 40, 5, 20, rotation=rotation)
    labels[rr, cc] = 1
    far = np.argmax((rr - 40.0) ** 2 + (cc - 40.0) ** 2)
    # the far end of the major axis as displayed: up-right for 45 degrees
    shown = math.degrees(math.atan2(40 - rr[far], cc[far] - 40)) % 180

    def apart(a, b):  # difference of two axis angles (mod 180)
        return min(abs(a - b) % 180, 180 - abs(a - b) % 180)

    assert apart(shown, angle) < 4
    degrees = report_spores(labels, measure_spores(labels)).table["orientation_deg"][0]
    assert 0 <= degrees < 180
    assert apart(degrees, angle) < 2


def test_numbers_are_written_without_losing_precision():
    for value in (20643.5, 12345.678901234, 1e-9, 0.1, np.float32(20643.5), np.float64(2 / 3)):
        assert float(format_cell(value)) == float(value)
    assert format_cell(float("nan")) == ""
    assert format_cell(np.int64(7)) == 7 and format_cell("a") == "a"
    assert format_cell(20643.5) == "20643.5"  # not 2.064e+04


def test_table_rows_follow_the_columns(field):
    _, spores = field
    reported = report_spores(spores.labels, spores.table)
    columns = spore_columns(True)  # physical columns of another image stay empty here
    rows = table_rows("a/b", reported, columns)
    assert len(rows) == reported.count and rows[0][0] == "a/b"
    assert rows[0][1 + columns.index("area_um2")] == ""
    assert int(rows[0][1 + columns.index("area_px")]) == reported.table["area_px"][0]


# ------------------------------------------------------------------------------ TIFFs
def test_labels_tiff_is_uint16_with_the_table_ids_and_calibration(tmp_path, field):
    _, spores = field
    reported = report_spores(spores.labels, spores.table, PixelSize(0.5, "given"),
                             exclude_border=True)
    path = tmp_path / "x_labels.tif"
    assert write_labels_tiff(path, spores.labels, reported, reported.pixel_size) == np.uint16
    with tifffile.TiffFile(path) as tif:
        back = tif.asarray()
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert back.dtype == np.uint16 and back.shape == spores.labels.shape
    assert read_pixel_size(path) == PixelSize(0.5, "imagej")
    np.testing.assert_array_equal(back, reported.relabel(spores.labels))
    table = reported.table
    np.testing.assert_array_equal(np.unique(back)[1:], table["id"])
    np.testing.assert_array_equal(np.bincount(back.ravel())[1:], table["area_px"])
    redo = measure_spores(back.astype(np.int32))
    np.testing.assert_allclose(redo["centroid_x"], table["centroid_x_px"])


def test_labels_beyond_65535_are_uint32_and_memory_maps_are_written_in_strips(tmp_path,
                                                                             monkeypatch):
    labels = np.arange(1, 300 * 240 + 1, dtype=np.int64).reshape(300, 240)  # 72000 ids
    path = tmp_path / "many_labels.tif"
    assert write_labels_tiff(path, labels) == np.uint32
    np.testing.assert_array_equal(tifffile.imread(path), labels)
    mapped = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.int32, (700, 333))
    mapped[:] = np.arange(700 * 333).reshape(700, 333) % 60000
    monkeypatch.setattr(outputs, "_STRIP_BYTES", 333 * 2 * 50)  # 50 rows per strip
    path = tmp_path / "mapped_labels.tif"
    assert write_labels_tiff(path, mapped, pixel_size=PixelSize(2.0, "given")) == np.uint16
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages[0].dataoffsets) == 14  # strips of 50 rows
        np.testing.assert_array_equal(tif.asarray(), mapped)
    assert read_pixel_size(path) == PixelSize(2.0, "imagej")
    write_probability_tiff(tmp_path / "p.tif", np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4))
    prob = tifffile.imread(tmp_path / "p.tif")
    assert prob.dtype == np.float32 and prob[2, 3] == 1.0


# ------------------------------------------------------------------------------- ROIs
def test_rois_read_back_with_one_polygon_per_spore_and_its_area(tmp_path, field):
    _, spores = field
    reported = report_spores(spores.labels, spores.table, exclude_border=True)
    path = tmp_path / "x_rois.zip"
    assert write_rois(path, spores.labels, reported) == reported.count
    rois = roifile.roiread(path)
    assert len(rois) == reported.count
    assert [int(r.name) for r in rois] == list(reported.table["id"])
    assert all(len(r.name) == 4 for r in rois)
    areas = [abs(polygon_area(r.coordinates())) for r in rois]
    np.testing.assert_array_equal(areas, reported.table["area_px"])
    # each outline surrounds its spore: the centroid lies inside the ROI's bounding box
    for roi, x, y in zip(rois, reported.table["centroid_x_px"], reported.table["centroid_y_px"]):
        assert roi.left <= x <= roi.right and roi.top <= y <= roi.bottom
    empty = tmp_path / "none_rois.zip"
    assert write_rois(empty, np.zeros((5, 5), np.int32)) == 0 and empty.exists()


def test_outline_follows_pixel_edges_and_keeps_diagonal_pieces_apart():
    square = np.ones((3, 4), bool)
    np.testing.assert_array_equal(trace_outline(square), [[0, 0], [4, 0], [4, 3], [0, 3]])
    pinch = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]], bool)  # corner-touching pieces
    assert abs(polygon_area(trace_outline(pinch))) == 3
    rr, cc = ellipse(20, 20, 9, 15, rotation=0.3)
    blob = np.zeros((41, 41), bool)
    blob[rr, cc] = True
    assert abs(polygon_area(trace_outline(blob))) == blob.sum()


def test_overlay_writes_the_ids(field):
    image, spores = field
    t = spores.table
    with_ids = id_overlay(image, spores.labels, np.c_[t["centroid_y"], t["centroid_x"]], t["id"])
    without = id_overlay(image, spores.labels, np.zeros((0, 2)), [])
    assert with_ids.shape == image.shape and with_ids.dtype == np.uint8
    changed = np.any(with_ids != without, axis=2)
    y, x = int(t["centroid_y"][0]), int(t["centroid_x"][0])
    assert changed[max(y - 6, 0): y + 6, max(x - 6, 0): x + 6].any()
    assert ((with_ids >= 200).all(axis=2) & changed).sum() > 10 * spores.count  # white digits


def test_an_id_too_large_for_its_spore_goes_above_it():
    from skimage.draw import disk

    image = np.full((80, 120), 90, np.uint8)
    labels = np.zeros((80, 120), np.int32)
    labels[disk((40, 30), 4)] = 1  # smaller than its id's text
    labels[disk((40, 85), 22)] = 2  # large enough to carry it
    labels[disk((3, 60), 3)] = 3  # small, at the top edge: the id goes below it
    centroids = [(40, 30), (40, 85), (3, 60)]
    white = (id_overlay(image, labels, centroids, [1, 2, 3]) >= 200).all(axis=2)
    assert not white[labels == 1].any() and white[25:36, 24:37].any()
    assert white[34:47, 80:91].any()
    assert not white[labels == 3].any() and white[6:20, 54:67].any()


def test_inner_boundaries_are_skimages(field):
    from skimage.segmentation import find_boundaries

    from unet.render import inner_boundaries

    labels = field[1].labels
    cases = [labels, labels > 0, labels[:1], labels[:, :1], np.zeros((3, 4), int),
             np.array([[1, 1, 2], [1, 3, 2], [0, 3, 3]])]  # touching labels, image edges
    for case in cases:
        np.testing.assert_array_equal(inner_boundaries(case), find_boundaries(case, mode="inner"))
    assert inner_boundaries(labels).sum() > 10 * field[1].count


# --------------------------------------------------------------------- channels, sizes
def test_a_two_channel_tiff_is_never_gray_plus_alpha(tmp_path):
    planes = np.stack([np.full((20, 30), 100, np.uint16), np.full((20, 30), 7, np.uint16)])
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, planes, imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(UsageError, match="`channel`"):
        read_image_channels(path)
    assert (read_image_channels(path, 1) == 7).all()
    assert read_image_channels(path, [1, 0]).shape == (20, 30, 2)
    with pytest.raises(UsageError, match="`channel` 2 does not exist"):
        read_image_channels(path, 2)
    interleaved = tmp_path / "yxs.tif"
    tifffile.imwrite(interleaved, np.moveaxis(planes, 0, -1), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(UsageError, match="`channel`"):
        read_image_channels(interleaved)
    assert (read_image_channels(interleaved, 0) == 100).all()
    rgba = tmp_path / "rgba.tif"
    tifffile.imwrite(rgba, np.zeros((8, 9, 4), np.uint8), photometric="rgb",
                     extrasamples=["unassalpha"])
    assert read_image_channels(rgba).shape == (8, 9, 4)  # marked alpha: RGBA as before
    five = tmp_path / "five.tif"
    tifffile.imwrite(five, np.zeros((5, 8, 9), np.uint8), imagej=True, metadata={"axes": "CYX"})
    assert read_image_channels(five, [0, 2, 4]).shape == (8, 9, 3)
    stack = tmp_path / "z.tif"
    tifffile.imwrite(stack, np.zeros((3, 8, 9), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(UsageError, match="z-stack"):
        read_image_channels(stack)
    with pytest.raises(UsageError, match="`channel`"):
        read_image_channels(path, [1, 1])


def test_pixel_size_comes_from_ome_imagej_or_resolution_tags(tmp_path):
    image = np.zeros((6, 7), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, resolution=(4.0, 4.0),
                     metadata={"unit": "micron"})
    tifffile.imwrite(tmp_path / "nm.tif", image, imagej=True, resolution=(0.01, 0.01),
                     metadata={"unit": "nm"})
    tifffile.imwrite(tmp_path / "ome.tif", image, ome=True,
                     metadata={"PhysicalSizeX": 0.13, "PhysicalSizeY": 0.13})
    tifffile.imwrite(tmp_path / "cm.tif", image, resolution=(20000, 20000),
                     resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", image, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "none.tif", image)
    assert read_pixel_size(tmp_path / "ij.tif") == PixelSize(0.25, "imagej")
    nm = read_pixel_size(tmp_path / "nm.tif")  # older tifffile rounds the rational
    assert nm.source == "imagej" and nm.um == pytest.approx(0.1, rel=1e-6)
    assert read_pixel_size(tmp_path / "ome.tif") == PixelSize(0.13, "ome")
    assert read_pixel_size(tmp_path / "cm.tif") == PixelSize(0.5, "tiff")
    assert read_pixel_size(tmp_path / "dpi.tif") == NO_PIXEL_SIZE  # an editor's default
    assert read_pixel_size(tmp_path / "none.tif") == NO_PIXEL_SIZE
    assert pixel_size_for(tmp_path / "ij.tif", 2) == PixelSize(2.0, "given")
    tifffile.imwrite(tmp_path / "rect.tif", image, imagej=True, resolution=(4.0, 2.0),
                     metadata={"unit": "um"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_pixel_size(tmp_path / "rect.tif") == NO_PIXEL_SIZE
    assert any("unequal pixel sizes" in str(w.message) for w in caught)
