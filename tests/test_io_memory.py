"""Images of any size: Pillow's pixel limit, the up-front memory check, sampled percentiles."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import unet.io
from unet.errors import UsageError
from unet.image import PERCENTILE_SAMPLE, normalization_range, normalize, percentile_sample
from unet.io import check_image_file, image_header, read_image, read_mask


def huge_png(path, width=20000, height=20000):
    """A tiny PNG whose header claims ``width x height`` pixels (IHDR patched, CRC fixed)."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_size_alone_is_not_refused_by_pillows_bomb_guard(tmp_path):
    path = huge_png(tmp_path / "big.png")
    limit = Image.MAX_IMAGE_PIXELS
    check_image_file(path)  # 400 megapixels: Pillow alone raises DecompressionBombError
    assert image_header(path) == ((20000, 20000), 3, 1)
    assert Image.MAX_IMAGE_PIXELS == limit  # lifted only while the header was parsed
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with pytest.raises(UsageError) as error:  # its pixel data is missing: a broken file
        read_image(path)
    assert "DecompressionBomb" not in str(error.value)


def test_an_image_that_cannot_fit_is_refused_from_its_header(tmp_path, monkeypatch):
    path = huge_png(tmp_path / "big.png")
    monkeypatch.setattr(unet.io, "available_memory", lambda: 512 << 20)
    for read in (read_image, read_mask):
        with pytest.raises(UsageError) as error:
            read(path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and "20000 x 20000" in message
        assert "1.1 GB" in message and "512.0 MB" in message  # 20000² RGB bytes, available
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(small)
    assert read_image(small).shape == (30, 40)


def test_available_memory_is_a_positive_number_of_bytes():
    available = unet.io.available_memory()
    assert available is None or available > 0


def test_header_counts_tiff_samples_and_16_bit(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((30, 40, 3), np.uint16), photometric="rgb")
    assert image_header(tmp_path / "a.tif") == ((30, 40), 3, 2)
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((2, 30, 40), np.float32),
                     metadata={"axes": "CYX"})
    assert image_header(tmp_path / "b.tif") == ((30, 40), 2, 4)


def gradient_image(height, width, seed=0):
    """A 16-bit image whose brightness changes from top to bottom, with noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(100, 3000, height)[:, None]
    return (ramp + rng.gamma(2.0, 200.0, (height, width))).astype(np.uint16)


def test_percentiles_of_a_large_image_come_from_a_sample_close_to_all_pixels():
    image = gradient_image(2500, 2000)  # 5 megapixels > PERCENTILE_SAMPLE
    sample = percentile_sample(image)
    assert sample.size <= PERCENTILE_SAMPLE < image.size
    full = np.percentile(image.astype(np.float32), [1.0, 99.8])
    lo, hi = normalization_range(image)
    assert abs(lo - full[0]) < 0.005 * (full[1] - full[0])
    assert abs(hi - full[1]) < 0.005 * (full[1] - full[0])
    np.testing.assert_allclose(normalize(image), (image - np.float32(lo)) / np.float32(hi - lo),
                               rtol=1e-6)


def test_percentiles_of_a_small_image_use_every_pixel():
    image = gradient_image(300, 200).astype(np.float32)
    before = image.copy()
    assert percentile_sample(image) is image
    lo, hi = np.percentile(image, [1.0, 99.8])
    out = normalize(image)
    np.testing.assert_array_equal(out, (image - np.float32(lo)) / np.float32(hi - lo))
    np.testing.assert_array_equal(image, before)  # computed in a new array, never in place
    assert out.dtype == np.float32


def test_a_tiff_that_cannot_fit_is_refused_before_its_pixels_are_read(tmp_path, monkeypatch):
    import tifffile

    from unet.imagefile import read_image_channels

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, shape=(10000, 12000, 3), dtype=np.uint8, photometric="rgb")  # empty
    monkeypatch.setattr(unet.io, "available_memory", lambda: 100 << 20)
    for read in (read_image, read_image_channels):
        with pytest.raises(UsageError, match=r"big.tif is 12000 x 10000 pixels; decoding it "
                                             r"would need about 343.3 MB"):
            read(path)


# --------------------------------------------------------------------------------------
# Reading and writing a block of rows at a time
# --------------------------------------------------------------------------------------
_RNG = np.random.default_rng(3)


@pytest.mark.parametrize("name, array, options", [
    ("plain_rgb", (_RNG.random((120, 97, 3)) * 255).astype(np.uint8), {}),
    ("zlib_strips_16bit", (_RNG.random((120, 97)) * 65535).astype(np.uint16),
     {"rowsperstrip": 17, "compression": "zlib"}),
    ("tiles_rgb", (_RNG.random((120, 97, 3)) * 255).astype(np.uint8),
     {"tile": (32, 32), "compression": "zlib"}),
    ("big_endian_float", _RNG.random((120, 97)).astype(np.float32), {"byteorder": ">"}),
    ("predictor", (_RNG.random((120, 97)) * 65535).astype(np.uint16),
     {"compression": "zlib", "predictor": True, "rowsperstrip": 50}),
    ("rgba", (_RNG.random((120, 97, 4)) * 255).astype(np.uint8), {"extrasamples": ["unassalpha"]}),
])
def test_a_tiff_read_block_by_block_gives_the_pixels_read_whole(tmp_path, name, array, options):
    import tifffile

    from unet.image import PreparedImage, prepare_image
    from unet.imagefile import read_image_channels
    from unet.io import TiffRows

    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, array, **options)
    lazy, whole = TiffRows.open(path), read_image_channels(path)
    assert lazy.shape == whole.shape and lazy.dtype == whole.dtype
    np.testing.assert_array_equal(np.asarray(lazy), whole)
    np.testing.assert_array_equal(lazy[31:107:3], whole[31:107:3])
    rows, cols = np.array([3, 2, 1, 0, 1, 2, 40]), np.array([0, 1, 96, 95, 50])
    np.testing.assert_array_equal(lazy[np.ix_(rows, cols)], whole[np.ix_(rows, cols)])
    for channels in (1, 3):
        prepared, expected = PreparedImage(lazy, channels), prepare_image(whole, channels)
        np.testing.assert_array_equal(np.asarray(prepared), expected)
        band = np.ix_(rows[:-1], cols)
        np.testing.assert_array_equal(prepared.take_rows(slice(10, 40))[band],
                                      expected[10:40][band])
        flat = PreparedImage(lazy, channels, flatten=5)  # needs the whole image: read whole
        np.testing.assert_array_equal(np.asarray(flat), prepare_image(whole, channels, flatten=5))
    if array.ndim == 3:
        picked = TiffRows.open(path, (1,))
        np.testing.assert_array_equal(np.asarray(picked), whole[..., 1])


def test_tiffs_of_several_images_are_not_read_block_by_block(tmp_path):
    import tifffile

    from unet.io import TiffRows

    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 20, 20), np.uint8))
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((20, 20), np.uint8))
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((20, 20), np.uint8), append=True)
    assert TiffRows.open(tmp_path / "stack.tif") is None
    assert TiffRows.open(tmp_path / "pages.tif") is None


@pytest.mark.parametrize("channels", [1, 3])
def test_a_png_written_row_by_row_reads_back(tmp_path, channels):
    from unet.io import PngRows

    shape = (45, 31) if channels == 1 else (45, 31, 3)
    array = (_RNG.random(shape) * 255).astype(np.uint8)
    with PngRows(tmp_path / "a.png", array.shape[:2], channels) as png:
        for top in range(0, 45, 20):
            png.write(array[top : top + 20])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), array)
    with pytest.raises(UsageError, match="45 rows for a PNG of 40"):
        with PngRows(tmp_path / "b.png", (40, 31), channels) as png:
            png.write(array[:45])
    with pytest.raises(UsageError, match="20 rows written of 40"):
        with PngRows(tmp_path / "c.png", (40, 31), channels) as png:
            png.write(array[:20])


def test_raw_rows_keep_what_is_appended_and_scratch_files_go(tmp_path):
    from unet.io import RawRows, is_temporary_name, scratch_path

    array = (_RNG.random((50, 13)) * 1e6).astype(np.uint32)
    with scratch_path(tmp_path, "labels.raw") as path:
        assert is_temporary_name(path.name)
        raw = RawRows(path, 13, np.uint32)
        raw.append(array[:20])
        raw.append(array[20:])
        assert raw.shape == (50, 13)
        np.testing.assert_array_equal(raw[5:33], array[5:33])
        with pytest.raises(IndexError):
            raw[::2]
        raw.close()
    assert not list(tmp_path.iterdir())
