"""predict_images: every output of an image agrees with spores.csv; options; folders."""

import csv
import shutil
import threading

import numpy as np
import pytest
import roifile
import tifffile
from PIL import Image

from unet.batch import SUMMARY_COLUMNS, predict_images
from unet.errors import UsageError
from unet.outputs import polygon_area
from unet.run import load_run


@pytest.fixture(scope="module")
def model(plain_run):
    return load_run(plain_run[0])[0]  # unflattened: these tests give it images as they are


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_labels_rois_and_table_agree_spore_by_spore(tmp_path, model, plain_run, sample_dir):
    from unet.run import Config

    images = sorted((sample_dir / "test" / "images").glob("*.png"))
    out = tmp_path / "out"
    summary = predict_images(model, images, out, probability=True)
    threshold = Config.load(plain_run[0] / "config.json", run=True).threshold  # the run's
    spores = rows(out / "spores.csv")
    table = rows(out / "summary.csv")
    assert list(table[0]) == list(SUMMARY_COLUMNS)
    assert sum(c for _, c in summary) == len(spores) > 0
    for (name, count), row in zip(summary, table):
        assert row["image"] == name and int(row["count"]) == count
        assert row["pixel_size_source"] == "none" and row["pixel_size_um"] == ""
        mine = [r for r in spores if r["image"] == name]
        labels = tifffile.imread(out / f"{name}_labels.tif")
        assert labels.dtype == np.uint16
        assert labels.shape == Image.open(sample_dir / "test" / "images" / f"{name}.png").size[::-1]
        ids = [int(r["id"]) for r in mine]
        assert ids == list(range(1, count + 1))
        np.testing.assert_array_equal(np.unique(labels[labels > 0]), ids)
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        assert [int(r["area_px"]) for r in mine] == list(areas)
        rois = roifile.roiread(out / f"{name}_rois.zip") if count else []
        assert len(rois) == count
        assert [abs(polygon_area(r.coordinates())) for r in rois] == list(areas)
        prob = tifffile.imread(out / f"{name}_prob.tif")
        assert prob.dtype == np.float32 and prob.shape == labels.shape
        mask = np.asarray(Image.open(out / f"{name}_mask.png")) > 0
        np.testing.assert_array_equal(mask, prob > threshold)
        assert not any(k.endswith(("_um", "_um2")) for k in mine[0]) if mine else True


def test_predict_uses_the_post_processing_the_run_chose(tmp_path, plain_run, sample_dir):
    from conftest import copy_run

    images = sorted((sample_dir / "test" / "images").glob("*.png"))[:2]
    strict = copy_run(plain_run[0], tmp_path / "strict", threshold=0.9, min_area=10_000)
    model, _ = load_run(strict)
    assert [count for _, count in predict_images(model, images, tmp_path / "a",
                                                 probability=True)] == [0, 0]
    name = images[0].stem
    prob = tifffile.imread(tmp_path / "a" / f"{name}_prob.tif")
    mask = np.asarray(Image.open(tmp_path / "a" / f"{name}_mask.png")) > 0
    np.testing.assert_array_equal(mask, prob > 0.9)
    given = predict_images(model, images, tmp_path / "b", threshold=0.5, min_area=16)
    assert all(count > 0 for _, count in given)


def test_predict_divides_out_the_background_of_a_run_trained_so(tmp_path, model, sample_dir):
    from unet.image import prepare_image
    from unet.predict import predict_tiled

    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    predict_images(model, [image], tmp_path / "out", probability=True, flatten=31)
    prob = tifffile.imread(tmp_path / "out" / f"{image.stem}_prob.tif")
    raw = np.asarray(Image.open(image))
    np.testing.assert_allclose(prob, predict_tiled(model, prepare_image(raw, 3, flatten=31)),
                               atol=1e-6)
    assert not np.allclose(prob, predict_tiled(model, prepare_image(raw, 3)), atol=1e-3)


def test_predict_divides_out_the_window_of_the_run_the_model_was_loaded_from(
        tmp_path, trained_run, sample_dir):
    from unet.image import prepare_image
    from unet.predict import predict_tiled

    flat, config = load_run(trained_run[0])  # trained with the default: flattened
    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    predict_images(flat, [image], tmp_path / "out", probability=True)
    prob = tifffile.imread(tmp_path / "out" / f"{image.stem}_prob.tif")
    raw = np.asarray(Image.open(image))
    expected = predict_tiled(flat, prepare_image(raw, 3, flatten=config.flatten))
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    predict_images(flat, [image], tmp_path / "plain", probability=True, flatten=None)
    plain = tifffile.imread(tmp_path / "plain" / f"{image.stem}_prob.tif")
    np.testing.assert_allclose(plain, predict_tiled(flat, prepare_image(raw, 3)), atol=1e-6)


def test_exclude_border_units_and_area_limits(tmp_path, model, sample_dir):
    images = sorted((sample_dir / "test" / "images").glob("*.png"))
    everything = predict_images(model, images, tmp_path / "all")
    inner = predict_images(model, images, tmp_path / "inner", exclude_border=True,
                           pixel_size=0.5, max_area=400)
    flagged = rows(tmp_path / "all" / "spores.csv")
    kept = rows(tmp_path / "inner" / "spores.csv")
    summary = rows(tmp_path / "inner" / "summary.csv")
    assert sum(r["touches_border"] == "1" for r in flagged) > 0
    assert all(r["touches_border"] == "0" for r in kept)
    assert all(int(r["area_px"]) <= 400 for r in kept)
    for (name, n_all), (_, n_in), row in zip(everything, inner, summary):
        border = sum(r["image"] == name and r["touches_border"] == "1" for r in flagged)
        assert int(row["touching_border"]) == border
        assert n_in <= n_all - border
        assert row["pixel_size_source"] == "given" and float(row["pixel_size_um"]) == 0.5
    for r in kept:
        assert float(r["area_um2"]) == pytest.approx(int(r["area_px"]) * 0.25)
        assert float(r["major_axis_um"]) == pytest.approx(float(r["major_axis_px"]) / 2)
    with pytest.raises(UsageError, match="`max_area`"):
        predict_images(model, images, tmp_path / "bad", min_area=30, max_area=20)
    with pytest.raises(UsageError, match="`min_area`"):
        predict_images(model, images, tmp_path / "bad", min_area=-1)
    with pytest.raises(UsageError, match="`pixel_size`"):
        predict_images(model, images, tmp_path / "bad", pixel_size=0)
    assert not (tmp_path / "bad").exists()


def test_recursive_mirrors_the_tree_and_tiff_calibration_is_used(tmp_path, model, sample_dir):
    plate = tmp_path / "plate"
    images = sorted((sample_dir / "test" / "images").glob("*.png"))
    for well, image in zip(["A1", "A1", "B2/field"], images):
        (plate / well).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, plate / well / image.name)
    rgb = np.asarray(Image.open(images[3]))
    tifffile.imwrite(plate / "top.tif", rgb, photometric="rgb", resolution=(2.0, 2.0),
                     imagej=True, metadata={"unit": "um"})
    out = tmp_path / "out"
    summary = predict_images(model, [plate], out, recursive=True)
    names = [n for n, _ in summary]
    assert names == [f"A1/{images[0].stem}", f"A1/{images[1].stem}",
                     f"B2/field/{images[2].stem}", "top"]
    for name in names:
        for kind in ("mask.png", "overlay.png", "labels.tif", "rois.zip"):
            assert (out / f"{name}_{kind}").is_file()
    table = {r["image"]: r for r in rows(out / "summary.csv")}
    assert table["top"]["pixel_size_source"] == "imagej"
    assert float(table["top"]["pixel_size_um"]) == 0.5
    assert table[names[0]]["pixel_size_source"] == "none"
    spores = rows(out / "spores.csv")
    assert "area_um2" in spores[0]
    assert all((r["area_um2"] == "") == (r["image"] != "top") for r in spores)
    # without --recursive only the top level is taken
    flat = predict_images(model, [plate], tmp_path / "flat")
    assert [n for n, _ in flat] == ["top"]
    labels = tifffile.TiffFile(out / "top_labels.tif")
    assert labels.imagej_metadata["unit"] == "um"
    labels.close()


def test_channels_of_a_multichannel_tiff(tmp_path, model, sample_dir):
    gray = np.asarray(Image.open(sorted((sample_dir / "test" / "images").glob("*.png"))[0]))
    gray = gray.mean(axis=2).astype(np.uint16) * 200
    noise = np.random.default_rng(0).integers(0, 60000, gray.shape, dtype=np.uint16)
    path = tmp_path / "in" / "two.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.stack([noise, gray]), imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(UsageError, match="`channel`"):
        predict_images(model, [path], tmp_path / "refused")
    picked = predict_images(model, [path], tmp_path / "c1", channel=1)
    single = tmp_path / "in2" / "two.tif"
    single.parent.mkdir()
    tifffile.imwrite(single, gray)
    alone = predict_images(model, [single], tmp_path / "gray")
    assert picked[0][1] == alone[0][1] > 0
    with pytest.raises(UsageError, match="`channel`"):
        predict_images(model, [path], tmp_path / "c01", channel=[0, 1])  # 2 of a 3-channel model


def test_overlapped_and_serial_runs_write_the_same(tmp_path, model, sample_dir):
    images = sorted((sample_dir / "test" / "images").glob("*.png"))
    assert (predict_images(model, images, tmp_path / "a", workers=0, tile=204)
            == predict_images(model, images, tmp_path / "b", workers=3, tile=204, batch_size=1))
    for name in ("spores.csv", "summary.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    with pytest.raises(UsageError, match="204|196|212"):
        predict_images(model, images, tmp_path / "c", tile=200)


def test_a_blank_or_saturated_frame_gives_no_spores_and_a_warning(tmp_path, model):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.full((60, 70, 3), 255, np.uint8)).save(frames / "saturated.png")
    Image.fromarray(np.zeros((60, 70), np.uint8)).save(frames / "blank.png")
    with pytest.warns(UserWarning, match="same value in every pixel"):
        counts = predict_images(model, [frames], tmp_path / "out")
    assert sorted(counts) == [("blank", 0), ("saturated", 0)]
    assert not np.asarray(Image.open(tmp_path / "out" / "blank_mask.png")).any()


def test_an_image_predict_could_not_fit_is_refused_before_anything_is_written(
        tmp_path, model, sample_dir, monkeypatch):
    import unet.batch
    from unet.io import format_bytes

    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    width, height = Image.open(image).size
    need = unet.batch.predict_memory(image)
    assert need > unet.batch.PREDICT_FIXED_BYTES + width * height * unet.batch.PREDICT_BYTES_PER_PIXEL
    monkeypatch.setattr(unet.batch, "available_memory", lambda: need - 1)
    with pytest.raises(UsageError) as error:
        predict_images(model, [image], tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and str(image) in message and f"{width} x {height}" in message
    assert f"about {format_bytes(need)} of memory" in message and "smaller files" in message
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_an_image_too_large_with_one_line(tmp_path, trained_run, sample_dir,
                                                          monkeypatch, capsys):
    import unet.batch
    from unet.cli import main

    image = sorted((sample_dir / "test" / "images").glob("*.png"))[0]
    monkeypatch.setattr(unet.batch, "available_memory", lambda: 64 << 20)
    assert main(["predict", "--model", str(trained_run[0]), str(image), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "64.0 MB" in err[0], err
    assert not (tmp_path / "out").exists()


def test_images_too_large_to_overlap_are_predicted_one_at_a_time_alike(tmp_path, model,
                                                                       sample_dir, monkeypatch):
    import unet.batch

    images = sorted((sample_dir / "test" / "images").glob("*.png"))
    serial = predict_images(model, images, tmp_path / "a", workers=0)
    need = max(unet.batch.predict_memory(p) for p in images)
    monkeypatch.setattr(unet.batch, "available_memory", lambda: 2 * need)  # fits alone only
    threads, read = [], unet.batch._read

    def spy(*args):
        threads.append(threading.current_thread().name)
        return read(*args)

    monkeypatch.setattr(unet.batch, "_read", spy)
    assert predict_images(model, images, tmp_path / "b", workers=2) == serial
    assert threads == ["MainThread"] * len(images)  # nothing read ahead
    for name in ("spores.csv", "summary.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_temporaries_of_a_killed_predict_are_removed_and_others_kept(tmp_path, model, sample_dir):
    from unet.io import atomic_path, is_temporary_name

    out = tmp_path / "out"
    out.mkdir()
    left = atomic_path(out / "a_mask.png").__enter__()  # a write that never finished
    left.write_bytes(b"half")
    mine = out / ".notes.tmp-keep.txt"  # not a name atomic_path makes
    mine.write_text("mine")
    assert is_temporary_name(left.name) and not is_temporary_name(mine.name)
    images = sorted((sample_dir / "test" / "images").glob("*.png"))[:1]
    predict_images(model, images, out)
    assert not left.exists() and mine.read_text() == "mine"


# --------------------------------------------------------------------------------------
# Large images: strip by strip
# --------------------------------------------------------------------------------------
def _same_spores_up_to_ids(whole, strips):
    """The two label images hold the same spores (pixel for pixel); returns strip id ->
    whole id."""
    assert ((whole > 0) == (strips > 0)).all()
    pairs = np.unique(np.stack([strips[strips > 0], whole[strips > 0]]), axis=1)
    assert pairs.shape[1] == len(set(pairs[0])) == len(set(pairs[1])) == whole.max() == strips.max()
    return dict(zip(pairs[0].tolist(), pairs[1].tolist()))


@pytest.mark.parametrize("options", [
    {"split_h": 0.5},
    {"split_h": None, "exclude_border": True, "max_area": 150},  # relative: a counting pass first
])
def test_a_large_image_is_predicted_strip_by_strip_with_the_same_outputs(
        tmp_path, model, monkeypatch, options):
    import unet.batch
    from unet.count import label_spores
    from unet.io import is_temporary_name
    from unet.render import id_overlay
    from unet.spores import render_field

    image, _ = render_field(3, (330, 250))[:2]
    tifffile.imwrite(tmp_path / "big.tif", image, rowsperstrip=23, compression="zlib")
    options = {"threshold": 0.5, "min_area": 16, **options}  # label_spores's, as found below
    whole = predict_images(model, [tmp_path / "big.tif"], tmp_path / "whole", probability=True,
                           **options)
    monkeypatch.setattr(unet.batch, "STRIP_PIXELS", 1000)  # every image strip by strip
    monkeypatch.setattr(unet.batch, "_STRIP_ROWS", 40)
    strips = predict_images(model, [tmp_path / "big.tif"], tmp_path / "strips", probability=True,
                            **options)
    # enough spores that many cross a strip's edge (20 to 30, as the tiny model's last
    # digits fall on the machine: 20 with the border and size filters on an Intel Xeon)
    assert strips == whole and whole[0][1] >= 15
    a, b = tmp_path / "whole", tmp_path / "strips"
    assert (a / "summary.csv").read_text() == (b / "summary.csv").read_text()
    np.testing.assert_array_equal(np.asarray(Image.open(a / "big_mask.png")),
                                  np.asarray(Image.open(b / "big_mask.png")))
    np.testing.assert_array_equal(tifffile.imread(a / "big_prob.tif"),
                                  tifffile.imread(b / "big_prob.tif"))
    labels = tifffile.imread(b / "big_labels.tif")
    assert labels.dtype == np.uint16
    to_whole = _same_spores_up_to_ids(tifffile.imread(a / "big_labels.tif"), labels)
    by_id = {int(r["id"]): r for r in rows(a / "spores.csv")}
    table = rows(b / "spores.csv")
    assert [int(r["id"]) for r in table] == list(range(1, len(table) + 1))
    for row in table:  # every measurement the same, only the numbering may differ
        other = by_id[to_whole[int(row["id"])]]
        assert row.keys() == other.keys()
        for column in row.keys() - {"id"}:  # centroids: offset by the strip's row
            assert row[column] == other[column] or float(row[column]) == pytest.approx(
                float(other[column]), rel=1e-12), column
    areas = np.bincount(labels.ravel())[1:]
    rois = roifile.roiread(b / "big_rois.zip")
    assert [int(r.name) for r in rois] == list(range(1, len(table) + 1))
    assert [abs(polygon_area(r.coordinates())) for r in rois] == list(areas)
    # the overlay drawn strip by strip is the overlay of the whole image with these ids
    found = label_spores(tifffile.imread(a / "big_prob.tif"), h=options["split_h"])
    drawn = id_overlay(image, labels, [(float(r["centroid_y_px"]), float(r["centroid_x_px"]))
                                       for r in table], [int(r["id"]) for r in table],
                       excluded=(found > 0) & (labels == 0))
    np.testing.assert_array_equal(np.asarray(Image.open(b / "big_overlay.png")), drawn)
    assert not [p.name for p in b.iterdir() if is_temporary_name(p.name)]  # no scratch left


def test_a_large_tiff_is_read_lazily_and_a_blank_one_gives_no_spores(tmp_path, model,
                                                                     monkeypatch):
    import unet.batch
    from unet.io import TiffRows

    monkeypatch.setattr(unet.batch, "STRIP_PIXELS", 1000)
    monkeypatch.setattr(unet.batch, "_STRIP_ROWS", 32)
    opened = []
    real_open = TiffRows.open.__func__

    def spy(cls, path, channel=None):
        found = real_open(cls, path, channel)
        opened.append(found)
        return found

    monkeypatch.setattr(TiffRows, "open", classmethod(spy))
    tifffile.imwrite(tmp_path / "blank.tif", np.full((90, 70), 512, np.uint16))
    with pytest.warns(UserWarning, match="same value in every pixel"):
        counts = predict_images(model, [tmp_path / "blank.tif"], tmp_path / "out")
    assert counts == [("blank", 0)] and any(isinstance(o, TiffRows) for o in opened)
    assert not np.asarray(Image.open(tmp_path / "out" / "blank_mask.png")).any()
    assert tifffile.imread(tmp_path / "out" / "blank_labels.tif").max() == 0
    overlay = np.asarray(Image.open(tmp_path / "out" / "blank_overlay.png"))
    assert overlay.shape == (90, 70, 3)


def test_the_memory_estimate_of_a_large_image_follows_its_width(tmp_path):
    import unet.batch

    tall = unet.batch.predict_memory(((40000, 5000), 3, 1), lazy=True)
    wide = unet.batch.predict_memory(((5000, 40000), 3, 1), lazy=True)
    whole = unet.batch.predict_memory(((1200, 1000), 3, 1))  # held whole
    assert whole == unet.batch.PREDICT_FIXED_BYTES + 1200 * 1000 * (
        unet.batch.PREDICT_BYTES_PER_PIXEL + 3)
    assert tall < wide < unet.batch.predict_memory(((5000, 40000), 3, 1))  # the image itself
    # twice as tall: only the 1-bit mask grows
    assert unet.batch.predict_memory(((80000, 5000), 3, 1), lazy=True) - tall == 40000 * 5000 // 8


def test_a_strip_by_strip_predict_that_fails_midway_leaves_no_half_written_file(
        tmp_path, model, monkeypatch):
    import unet.batch
    from unet.io import is_temporary_name
    from unet.spores import render_field

    image, _ = render_field(4, (200, 150))[:2]
    tifffile.imwrite(tmp_path / "big.tif", image)
    monkeypatch.setattr(unet.batch, "STRIP_PIXELS", 1000)
    monkeypatch.setattr(unet.batch, "_STRIP_ROWS", 30)
    real = unet.batch.label_strips

    def failing(*args, **kwargs):
        for k, step in enumerate(real(*args, **kwargs)):
            if k == 3:
                raise OSError(28, "No space left on device")
            yield step

    monkeypatch.setattr(unet.batch, "label_strips", failing)
    with pytest.raises(OSError, match="No space"):
        predict_images(model, [tmp_path / "big.tif"], tmp_path / "out", split_h=0.5)
    left = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".unet.lock")
    assert left == ["big_mask.png"]  # complete: written before the failure
    assert np.asarray(Image.open(tmp_path / "out" / "big_mask.png")).shape == (200, 150)
    monkeypatch.setattr(unet.batch, "label_strips", real)
    assert predict_images(model, [tmp_path / "big.tif"], tmp_path / "out", split_h=0.5,
                          overwrite=True)[0][1] > 0
    assert not [p for p in (tmp_path / "out").iterdir() if is_temporary_name(p.name)]


def test_nan_pixels_of_a_large_tiff_read_lazily_are_refused_as_when_read_whole(tmp_path, model,
                                                                              monkeypatch):
    import unet.batch

    image = np.random.default_rng(0).random((80, 90)).astype(np.float32)
    image[3, 4] = np.nan
    image[70, 1] = np.inf
    tifffile.imwrite(tmp_path / "float.tif", image, rowsperstrip=16, compression="zlib")
    monkeypatch.setattr(unet.batch, "STRIP_PIXELS", 1000)
    with pytest.raises(UsageError, match="has 2 pixel.s. that are NaN or infinite"):
        predict_images(model, [tmp_path / "float.tif"], tmp_path / "out")
