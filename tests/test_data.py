"""Reading data folders, normalisation, tiles, border weights, augmentation, tf.data."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import disk

import unet
from unet import data as D


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def disks_mask(shape=(40, 50), centres=((20, 15), (20, 35)), radius=8):
    labels = np.zeros(shape, np.int32)
    for i, centre in enumerate(centres, start=1):
        labels[disk(centre, radius, shape=shape)] = i
    return labels


def make_folder(root, n=3, size=(40, 50), labels=False):
    """A small data folder: gray 8-bit images with two bright disks, 0/255 masks."""
    for i in range(n):
        lab = disks_mask(size, ((20, 12 + i), (20, 36 - i)))
        image = (40 + 150 * (lab > 0)).astype(np.uint8)
        save_png(root / "images" / f"s{i}.png", image)
        save_png(root / "masks" / f"s{i}.png", ((lab > 0) * 255).astype(np.uint8))
        if labels:
            save_png(root / "labels" / f"s{i}.png", lab.astype(np.uint16))
    return root


def only(**switches):
    """An augmentation with only the given parts switched on."""
    return unet.Augmentation(**{**vars(unet.Augmentation.none()), **switches})


# --------------------------------------------------------------------------------------
# Reading images and masks
# --------------------------------------------------------------------------------------
def test_16bit_tiff_keeps_its_values(tmp_path):
    image = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image)
    read = unet.read_image(tmp_path / "a.tif")
    assert read.dtype == np.uint16 and np.array_equal(read, image)
    loaded = D.load_image(tmp_path / "a.tif", channels=3)
    assert loaded.shape == (12, 10, 3) and loaded.dtype == np.float32
    assert np.array_equal(loaded[..., 0], loaded[..., 2])
    assert loaded.max() > 0.9 and loaded.min() < 0.1


def test_channels_first_tiff_and_stacks(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 4000, (3, 8, 9), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    assert np.array_equal(unet.read_image(tmp_path / "planar.tif"), np.moveaxis(rgb, 0, -1))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 9), np.uint16))
    with pytest.raises(ValueError, match="stack.tif"):
        unet.read_image(tmp_path / "stack.tif")


def test_16bit_png_and_gray_png(tmp_path):
    image16 = (np.arange(30).reshape(5, 6) * 2000).astype(np.uint16)
    save_png(tmp_path / "g16.png", image16)
    read = unet.read_image(tmp_path / "g16.png")
    assert read.dtype == np.uint16 and np.array_equal(read, image16)
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    save_png(tmp_path / "g8.png", gray)
    three = unet.to_channels(unet.read_image(tmp_path / "g8.png"), 3)
    assert three.shape == (5, 6, 3) and all(np.array_equal(three[..., c], gray) for c in range(3))


def test_rgba_png_to_rgb_and_gray(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    save_png(tmp_path / "a.png", rgba)
    read = unet.read_image(tmp_path / "a.png")
    assert read.shape == (4, 5, 4)
    rgb = unet.to_channels(read, 3)
    assert rgb.shape == (4, 5, 3) and np.array_equal(rgb, rgba[..., :3])
    gray = unet.to_channels(read, 1)
    assert gray.shape == (4, 5, 1)
    np.testing.assert_allclose(gray, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        unet.to_channels(rgb, 2)


def test_jpeg_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (250, 10, 10)
    rgb[:, 8:] = (10, 10, 250)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    read = unet.read_image(tmp_path / "a.jpg")
    assert read.shape == (16, 16, 3) and read.dtype == np.uint8
    assert read[8, 2, 0] > 200 and read[8, 2, 2] < 50 and read[8, 13, 2] > 200


def test_masks_are_binary_whatever_the_encoding(tmp_path):
    lab = disks_mask((20, 30))
    expected = (lab > 0).astype(np.uint8)
    save_png(tmp_path / "m01.png", expected)
    save_png(tmp_path / "m255.png", expected * 255)
    save_png(tmp_path / "mlab.png", (lab * 700).astype(np.uint16))
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = expected * 128  # green only
    save_png(tmp_path / "mrgb.png", rgb)
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])  # opaque alpha is not foreground
    save_png(tmp_path / "mrgba.png", rgba)
    pal = Image.fromarray(lab.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "mpal.png")
    tifffile.imwrite(tmp_path / "mtif.tif", expected.astype(bool))
    names = ("m01.png", "m255.png", "mlab.png", "mrgb.png", "mrgba.png", "mpal.png", "mtif.tif")
    for name in names:
        mask = unet.read_mask(tmp_path / name)
        assert mask.dtype == np.uint8, name
        assert np.array_equal(mask, expected), name


def test_label_images(tmp_path):
    lab = disks_mask((20, 30)) * 300
    save_png(tmp_path / "l.png", lab.astype(np.uint16))
    read = unet.read_labels(tmp_path / "l.png")
    assert read.dtype == np.int32 and np.array_equal(read, lab)
    colours = np.zeros((20, 30, 3), np.uint8)
    colours[lab == 300] = (255, 0, 0)
    colours[lab == 600] = (0, 0, 255)
    save_png(tmp_path / "c.png", colours)
    read = unet.read_labels(tmp_path / "c.png")
    assert read[lab == 0].max() == 0
    assert len(np.unique(read[lab == 300])) == 1 and len(np.unique(read[lab == 600])) == 1
    assert sorted(np.unique(read)) == [0, 1, 2]


def test_load_folder(tmp_path):
    make_folder(tmp_path, n=3, labels=True)
    samples = D.load_folder(tmp_path, channels=1)
    assert samples.names == ["s0", "s1", "s2"] and len(samples) == 3
    image, mask = samples.images[1], samples.masks[1]
    assert image.shape == (40, 50, 1) and image.dtype == np.float32
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    # the bright disks are the mask: normalised to 1, background to 0
    assert np.allclose(image[mask == 1], 1.0) and np.allclose(image[mask == 0], 0.0)
    assert samples.labels is not None and samples.labels[0].max() == 2
    assert D.load_folder(tmp_path / ".." / tmp_path.name, channels=3).images[0].shape[-1] == 3


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------
def test_normalize_16bit_percentiles():
    image = np.full(1000, 1000, np.uint16)
    image[500:] = 50000
    image[-1] = 65535  # one outlier above the 99.8th percentile
    out = unet.normalize(image.reshape(25, 40))
    assert out.dtype == np.float32
    assert np.allclose(out.ravel()[:500], 0.0) and np.allclose(out.ravel()[500:-1], 1.0)
    assert out.ravel()[-1] == pytest.approx((65535 - 1000) / 49000)  # not clipped
    assert unet.normalize(image, clip=True).max() == 1.0


def test_normalize_constant_and_nearly_constant():
    const = np.full((10, 10, 3), 1234, np.uint16)
    out = unet.normalize(const)
    assert np.all(np.isfinite(out)) and np.all(out == 0)
    almost = np.full((50, 50), 100.0)
    almost[3, 4] = 200.0  # the percentiles coincide; min and max are used instead
    out = unet.normalize(almost)
    assert out[3, 4] == 1.0 and out.sum() == 1.0


def test_normalize_over_all_channels():
    rgb = np.zeros((10, 10, 3), np.float32)
    rgb[..., 1] = 10.0  # the red and blue stay at the low end, green at the high end
    out = unet.normalize(rgb, 0, 100)
    assert np.all(out[..., 0] == 0) and np.all(out[..., 1] == 1)


def _uneven_brightfield(shape=(150, 200)):
    """A brightfield image: light falling off to one side, dark disks (objects) away from
    the borders (the background estimate mirrors the image there)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    light = 200.0 * (1.0 - 0.5 * cols / shape[1])  # a 2:1 gradient across the field
    disks = np.zeros(shape, bool)
    for cy, cx in ((50, 50), (75, 100), (100, 150)):
        disks |= (rows - cy) ** 2 + (cols - cx) ** 2 <= 8**2
    gray = light * np.where(disks, 0.4, 1.0)
    return np.dstack([gray, gray * 0.9, gray * 0.8]), disks


def test_divide_background_takes_out_uneven_light_and_keeps_the_objects():
    from unet.image import divide_background

    image, disks = _uneven_brightfield()
    flat = divide_background(image, 31)
    assert flat.dtype == np.float32 and flat.shape == image.shape
    away = ~ndi.binary_dilation(disks, iterations=6)  # the background, off the disks' rims
    background = flat[..., 0][away]
    assert np.ptp(image[..., 0][away]) / image[..., 0][away].mean() > 0.5  # was uneven
    assert np.ptp(background) / background.mean() < 0.05  # now flat
    assert flat[..., 0][disks].max() < 0.6 * background.min()  # the objects stay dark
    np.testing.assert_allclose(flat[..., 1] / flat[..., 0], 0.9, rtol=1e-5)  # colour kept
    # what a model is given: channels, the background out, then the percentiles
    expected = unet.normalize(divide_background(image, 31))
    np.testing.assert_array_equal(unet.prepare_image(image, 3, flatten=31), expected)
    np.testing.assert_array_equal(unet.prepare_image(image, 3), unet.normalize(image))


def test_an_image_prepared_with_flatten_tile_by_tile_is_the_same():
    from unet.image import PreparedImage

    image, _ = _uneven_brightfield()
    raw = image.astype(np.uint8)
    for channels in (1, 3):
        prepared = PreparedImage(raw, channels, flatten=31)
        expected = unet.prepare_image(raw, channels, flatten=31)
        np.testing.assert_array_equal(np.asarray(prepared), expected)
        np.testing.assert_array_equal(prepared.take_rows(slice(10, 40))[5:9, 20:60],
                                      expected[10:40][5:9, 20:60])


def test_objects_darker_or_brighter_than_their_background():
    from unet.data import Samples, objects_are_darker

    image, disks = _uneven_brightfield()
    dark = Samples(["a"], [unet.normalize(image)], [disks.astype(np.uint8)], [None])
    bright = Samples(["a"], [1 - unet.normalize(image)], [disks.astype(np.uint8)], [None])
    assert objects_are_darker(dark) and not objects_are_darker(bright)


# --------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------
def test_tile_size_for():
    assert unet.tile_size_for(100) == (284, 100)
    assert unet.tile_size_for(90) == (284, 100)  # 268 -> 84 is too small
    assert unet.tile_size_for(101) == (300, 116)
    assert unet.tile_size_for(100, padding="same") == (112, 112)
    assert unet.tile_size_for(64, depth=2) == (104, 64)  # valid depth 2: output = input - 40


def test_pad_to_tile_valid_geometry():
    h, w = 60, 80
    crop = np.arange(h * w, dtype=np.float32).reshape(h, w, 1)
    mask = (np.arange(h * w).reshape(h, w) % 3 == 0).astype(np.uint8)
    image, m, wt = D.pad_to_tile(crop, mask, None, tile=284, out=100)
    assert image.shape == (284, 284, 1) and m.shape == wt.shape == (100, 100)
    top, left = 92 + 20, 92 + 10  # margin (284-100)/2 plus centring in the window
    assert np.array_equal(image[top : top + h, left : left + w], crop)
    assert np.array_equal(image[top - 1, left : left + w], crop[1])  # mirror, no edge repeat
    assert np.array_equal(image[top : top + h, left - 3], crop[:, 3])
    assert np.array_equal(m[20:80, 10:90], mask) and m.sum() == mask.sum()
    assert np.all(wt[20:80, 10:90] == 1) and wt.sum() == h * w
    # padding far wider than the crop still mirrors
    image, m, wt = D.pad_to_tile(np.ones((1, 3, 3)), None, None, tile=284, out=100)
    assert image.shape == (284, 284, 3) and np.all(image == 1) and wt.sum() == 3


def test_pad_to_tile_same_padding_and_weights():
    crop = np.random.default_rng(0).random((100, 100, 3)).astype(np.float32)
    weight = np.full((100, 100), 2.5, np.float32)
    image, m, wt = D.pad_to_tile(crop, np.ones((100, 100)), weight, tile=112, out=112)
    assert image.shape == (112, 112, 3)
    assert np.array_equal(image[6:106, 6:106], crop)
    assert np.all(wt[6:106, 6:106] == 2.5) and wt.sum() == 2.5 * 100 * 100
    assert m.sum() == 100 * 100


def test_pad_to_tile_rejects_big_crops():
    with pytest.raises(ValueError, match="bigger tile"):
        D.pad_to_tile(np.zeros((101, 50, 1)), tile=284, out=100)
    with pytest.raises(ValueError, match="tile"):
        D.pad_to_tile(np.zeros((10, 10, 1)), tile=100, out=284)


# --------------------------------------------------------------------------------------
# Border weights
# --------------------------------------------------------------------------------------
def brute_force_weights(labels, w0=10.0, sigma=5.0):
    """Eq. 2 of the paper with one full distance transform per object."""
    ids = [i for i in np.unique(labels) if i]
    dist = np.sort(np.stack([ndi.distance_transform_edt(labels != i) for i in ids]), axis=0)
    fg = labels > 0
    wc = np.where(fg, fg.size / (2 * fg.sum()), fg.size / (2 * (~fg).sum()))
    return wc + w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2)) * ~fg


def test_border_weights_two_disks():
    # disks of radius 10 at x = 30 and 52 span x 21..39 and 43..61: a 3-pixel gap
    labels = disks_mask((60, 100), ((30, 30), (30, 52)), radius=10)
    w = D.border_weight_map(labels)
    fg = labels > 0
    wc_bg, wc_fg = fg.size / (2 * (~fg).sum()), fg.size / (2 * fg.sum())
    assert w.dtype == np.float32
    assert np.allclose(w[fg], wc_fg)
    # in the gap d1 + d2 = 4 (e.g. x = 41: 2 pixels to each disk)
    gap = wc_bg + 10 * np.exp(-(4**2) / 50)
    assert w[30, 40] == pytest.approx(gap, rel=1e-5) and w[30, 41] == pytest.approx(gap, rel=1e-5)
    # outside the pair, d1 + d2 is large: the weight falls back to w_c
    assert w[30, 5] == pytest.approx(wc_bg + 10 * np.exp(-((16 + 38) ** 2) / 50), abs=1e-6)
    assert w[0, 99] == pytest.approx(wc_bg, abs=1e-3)
    np.testing.assert_allclose(w, brute_force_weights(labels), atol=1e-5)


def test_border_weights_many_objects_and_options():
    rng = np.random.default_rng(1)
    labels = np.zeros((100, 100), np.int32)
    for i in range(15):
        labels[disk(tuple(rng.integers(5, 95, 2)), 7, shape=labels.shape)] = 10 * i + 5
    np.testing.assert_allclose(D.border_weight_map(labels), brute_force_weights(labels), atol=1e-5)
    one = disks_mask((40, 40), ((20, 20),))
    w = D.border_weight_map(one, balance=False)
    assert np.all(w == 1.0)  # one object: no second-nearest, no class balancing
    w = D.border_weight_map(one, balance=(0.5, 3.0))
    assert np.all(w[one > 0] == 3.0) and np.all(w[one == 0] == 0.5)
    w = D.border_weight_map(np.zeros((8, 8), int))
    assert np.all(w == 1.0)


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------
def pattern(size=100):
    """An asymmetric shape (an L and a disk) away from the borders."""
    p = np.zeros((size, size), np.float32)
    p[25:75, 25:35] = 1
    p[65:75, 25:60] = 1
    p[disk((35, 62), 8)] = 1
    return p


GEOMETRY = {
    "flip": only(flip=True),
    "rotate90": only(rotate90=True),
    "rotation": only(rotation=45.0),
    "elastic": only(elastic=True),
    "all": unet.Augmentation(brightness=0, contrast=0, gamma=0, noise=0),
}


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_augmentation_keeps_image_and_mask_aligned(name):
    p = pattern()
    image = np.dstack([p, 1 - p, np.full_like(p, 0.5)])
    changed = 0
    for seed in range(6):
        tile, mask, weight = D.make_tile(image, p, None, 284, 100, GEOMETRY[name], seed)
        assert tile.shape == (284, 284, 3) and mask.shape == weight.shape == (100, 100)
        window = tile[92:192, 92:192]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        inside = weight > 0  # outside the real crop the image shows mirrored content
        assert inside.mean() > 0.5
        np.testing.assert_array_equal((window[..., 0] >= 0.5)[inside], (mask == 1)[inside])
        assert np.all(mask[~inside] == 0)
        np.testing.assert_allclose(window[..., 0] + window[..., 1], 1.0, atol=1e-5)
        assert abs(mask.sum() - p.sum()) < 0.3 * p.sum()  # elastic stretches a little
        changed += not np.array_equal(mask, p)
    assert changed >= 3  # the transform really moved the pattern


def test_flips_and_quarter_turns_are_exact():
    p = pattern()
    expected = [np.rot90(q, k) for q in (p, p[::-1]) for k in range(4)]
    aug = only(flip=True, rotate90=True)
    seen = set()
    for seed in range(30):
        _, mask, weight = D.make_tile(p, p, None, 284, 100, aug, seed)
        matches = [i for i, e in enumerate(expected) if np.array_equal(mask, e)]
        assert matches and np.all(weight == 1)
        seen.add(matches[0])
    assert len(seen) == 8  # all eight symmetries of the square occur


def test_warp_path_uses_the_same_flips_and_turns_as_the_array_path():
    p = pattern()
    image = np.dstack([p, np.random.default_rng(0).random(p.shape)])
    exact = only(flip=True, rotate90=True)
    warped = only(flip=True, rotate90=True, rotation=1e-7)  # resampling, angle ~ 0
    for seed in range(8):
        a = D.make_tile(image, p, None, 284, 100, exact, seed)
        b = D.make_tile(image, p, None, 284, 100, warped, seed)
        np.testing.assert_allclose(a[0], b[0], atol=1e-4)
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def test_gray_images_stay_gray_and_colour_stays_colour():
    p = pattern()
    gray = np.repeat(p[..., None], 3, axis=-1)
    tile, _, _ = D.make_tile(gray, p, None, 284, 100, unet.Augmentation(), 3)
    assert np.array_equal(tile[..., 0], tile[..., 2])  # the same noise in every channel
    colour = np.dstack([p, p, 1 - p])
    tile, _, _ = D.make_tile(colour, p, None, 284, 100, unet.Augmentation(), 3)
    assert not np.array_equal(tile[..., 0], tile[..., 1])  # independent noise


def test_elastic_keeps_masks_binary_and_weights_consistent():
    labels = disks_mask((80, 80), ((40, 28), (40, 52)), radius=10)
    weight = D.border_weight_map(labels)
    values = set(np.unique(weight).tolist()) | {0.0}
    aug = only(elastic=True, elastic_sigma=10.0)
    for seed in range(5):
        _, mask, w = D.make_tile(np.zeros((80, 80, 1)), labels > 0, weight, 284, 100, aug, seed)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert set(np.unique(w).tolist()) <= values  # nearest-neighbour: no new values
        # the weights moved with the mask: object pixels carry the object weight
        fg_weight = weight[labels > 0][0]
        agree = np.mean(np.isclose(w[mask == 1], fg_weight))
        assert agree > 0.97
        # high border weights stay in the gap between the two deformed disks
        lab = ndi.label(mask)[0]
        assert lab.max() == 2 and w[mask == 0].max() > 5
        # weight is 0 where the pixel came from outside the real 80x80 crop
        assert np.all(mask[w == 0] == 0) and abs(np.sum(w > 0) - 6400) < 0.25 * 6400


def test_warped_edges_keep_the_mask_wherever_the_weight_does():
    # an all-foreground crop: every tile pixel that carries loss must be foreground,
    # right up to the crop's rotated edges and corners
    full = np.ones((60, 70))
    aug = only(rotation=45.0, elastic=True)
    for seed in range(6):
        _, mask, weight = D.make_tile(np.zeros((60, 70, 1)), full, None, 284, 100, aug, seed)
        assert np.all(mask[weight > 0] == 1) and np.all(mask[weight == 0] == 0)
        assert 0.8 * 4200 < np.sum(weight > 0) < 1.2 * 4200


def test_intensity_changes_only_the_image_and_seed_is_reproducible():
    p = pattern()
    image = p[..., None]
    aug = unet.Augmentation(flip=False, rotate90=False, rotation=0, elastic=False)
    t1, m1, w1 = D.make_tile(image, p, None, 284, 100, aug, 7)
    t2, m2, w2 = D.make_tile(image, p, None, 284, 100, aug, 7)
    t3, _, _ = D.make_tile(image, p, None, 284, 100, aug, 8)
    assert np.array_equal(t1, t2) and not np.array_equal(t1, t3)
    assert np.array_equal(m1, p) and np.all(w1 == 1)
    assert not np.allclose(t1[92:192, 92:192, 0], p)
    # switched off, augmentation is exactly the mirror padding, even far beyond small crops
    for crop in (image, image[10:40, 20:45]):
        plain = D.pad_to_tile(crop, crop[..., 0], None, 284, 100)
        none = D.make_tile(crop, crop[..., 0], None, 284, 100, unet.Augmentation.none(), 0)
        for a, b in zip(none, plain):
            assert a.shape == b.shape and np.array_equal(a, b)


def test_mirror_folds_like_numpy_reflect_at_any_distance():
    from unet.augment import _mirror
    from unet.predict import mirror_indices

    positions = np.arange(-700, 700)
    for length in (1, 2, 3, 7, 100):
        folded = _mirror(tf.constant(positions, tf.float32), tf.constant(length)).numpy()
        assert np.array_equal(folded, mirror_indices(positions, length)), length
        padded = np.pad(np.arange(length), 5 * length, mode="reflect")  # numpy's own
        assert np.array_equal(padded, mirror_indices(np.arange(-5 * length, 6 * length), length))
    # between whole positions mirroring is linear: bilinear weights carry over
    assert _mirror(tf.constant([-0.25, 9.5]), tf.constant(10)).numpy() == pytest.approx([0.25, 8.5])


def test_noise_is_gaussian_with_its_own_spread_per_tile():
    crop = np.ones((100, 100, 3), np.float32) * np.float32([0.2, 0.5, 0.7])  # colour
    aug = only(noise=0.05)
    spreads, residuals = [], []
    for seed in range(6):
        tile, _, _ = D.make_tile(crop, None, None, 284, 100, aug, seed)
        r = tile - crop[0, 0]
        spreads.append(r.std())
        residuals.append(r / r.std())
        assert abs(r.mean()) < 5 * r.std() / np.sqrt(r.size)
        # independent channels (colour) and pixels: no correlation with the neighbours
        assert abs(np.corrcoef(r[..., 0].ravel(), r[..., 1].ravel())[0, 1]) < 0.02
        assert abs(np.corrcoef(r[:, :-1, 0].ravel(), r[:, 1:, 0].ravel())[0, 1]) < 0.02
    assert all(0 < s <= 0.05 for s in spreads) and len({round(s, 6) for s in spreads}) == 6
    z = np.concatenate([r.ravel() for r in residuals])
    assert np.mean(z**4) == pytest.approx(3.0, abs=0.1)  # a normal's kurtosis
    assert not np.allclose(residuals[0], residuals[1])


def test_augmentation_rejects_negative_values():
    with pytest.raises(ValueError, match="rotation"):
        unet.Augmentation(rotation=-1)


# --------------------------------------------------------------------------------------
# tf.data pipeline
# --------------------------------------------------------------------------------------
def toy_samples(n=5, size=(60, 70), labels=False):
    images, masks, labs = [], [], []
    for i in range(n):
        lab = disks_mask(size, ((30, 20 + i), (30, 45)), radius=9)
        images.append(np.full(size + (3,), float(i), np.float32))
        masks.append((lab > 0).astype(np.uint8))
        labs.append(lab)
    return D.Samples([f"s{i}" for i in range(n)], images, masks, labs if labels else None)


def test_dataset_shapes_and_validation_order():
    samples = toy_samples(5)
    ds = D.make_dataset(samples, 284, 100, batch_size=2, shuffle=False)
    spec = ds.element_spec
    assert [tuple(s.shape) for s in spec] == [
        (None, 284, 284, 3),
        (None, 100, 100, 1),
        (None, 100, 100, 1),
    ]
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1] and len(ds) == 3
    images = np.concatenate([b[0].numpy() for b in batches])
    masks = np.concatenate([b[1].numpy() for b in batches])
    weights = np.concatenate([b[2].numpy() for b in batches])
    assert images.dtype == masks.dtype == weights.dtype == np.float32
    for i in range(5):  # in order, exactly the padded crops
        tile, mask, weight = D.pad_to_tile(samples.images[i], samples.masks[i], None, 284, 100)
        assert np.array_equal(images[i], tile)
        assert np.array_equal(masks[i, ..., 0], mask) and np.array_equal(weights[i, ..., 0], weight)
    again = np.concatenate([b[0].numpy() for b in ds])
    assert np.array_equal(images, again)


def test_dataset_is_deterministic_and_varies_by_epoch():
    samples = toy_samples(6)

    def run(ds):
        batches = list(ds)
        return tuple(np.concatenate([b[k].numpy() for b in batches]) for k in (0, 1))

    ds1 = D.make_dataset(samples, 284, 100, batch_size=4, augment=True, seed=5)
    ds2 = D.make_dataset(samples, 284, 100, batch_size=4, augment=True, seed=5)
    ds3 = D.make_dataset(samples, 284, 100, batch_size=4, augment=True, seed=6)
    first, second = run(ds1), run(ds1)  # two epochs of the same dataset
    assert np.array_equal(first[0], run(ds2)[0])  # same seed, same epoch: identical
    assert not np.array_equal(first[0], second[0])  # the next epoch draws new ones
    assert np.array_equal(second[0], run(ds2)[0])
    assert not np.array_equal(first[0], run(ds3)[0])
    assert set(np.unique(first[1])) <= {0.0, 1.0}
    # shuffling: each epoch is a new permutation of all samples (image i is constant i)
    plain = D.make_dataset(samples, 284, 100, batch_size=4, seed=5)
    orders = [np.concatenate([b[0].numpy()[:, 0, 0, 0] for b in plain]) for _ in range(3)]
    assert all(sorted(order.tolist()) == list(range(6)) for order in orders)
    assert len({tuple(order.tolist()) for order in orders}) > 1


def test_dataset_border_weights_and_repeat():
    samples = toy_samples(3, labels=True)
    n_fg = sum(int(m.sum()) for m in samples.masks)
    n = 3 * 60 * 70
    balance = (n / (2 * (n - n_fg)), n / (2 * n_fg))  # pooled over the three crops
    assert D.class_balance(samples.masks) == pytest.approx(balance)
    ds = D.make_dataset(samples, 284, 100, batch_size=3, shuffle=False, weights="border")
    _, _, weight = next(iter(ds))
    for i in range(3):
        border = D.border_weight_map(samples.labels[i], balance=balance)
        expected = D.pad_to_tile(samples.images[i], None, border)[2]
        np.testing.assert_allclose(weight[i, ..., 0].numpy(), expected, rtol=1e-6)
    # without labels, the connected components of the mask are the objects
    no_labels = D.Samples(samples.names, samples.images, samples.masks)
    (w,) = D.sample_weights(no_labels, "border")[:1]
    np.testing.assert_allclose(w, D.border_weight_map(samples.labels[0], balance=balance))
    repeated = D.make_dataset(samples, 284, 100, batch_size=2, repeat=True)
    assert repeated.cardinality() == tf.data.INFINITE_CARDINALITY
    assert len(list(repeated.take(5))) == 5


def test_dataset_feeds_keras_fit():
    tile, out = unet.tile_size_for(40, depth=2)
    samples = toy_samples(4, size=(30, 40))
    ds = D.make_dataset(samples, tile, out, batch_size=2, augment=True)
    model = unet.unet_model((None, None, 3), num_classes=1, filters=2, depth=2)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "your input ran out of data"
        history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))


def test_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        D.make_dataset(toy_samples(2), 284, 100, weights="paper")
    with pytest.raises(ValueError, match="no samples"):
        D.make_dataset(D.Samples([], [], []), 284, 100)
    mixed = toy_samples(2)
    mixed.images[1] = mixed.images[1][..., :1]
    with pytest.raises(ValueError, match="channels"):
        D.make_dataset(mixed, 284, 100)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def test_missing_or_wrong_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_folder(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="file.txt"):
        D.load_folder(tmp_path / "file.txt")
    (tmp_path / "d" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="masks/"):
        D.load_folder(tmp_path / "d")
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        D.load_folder(tmp_path / "d")


def test_unmatched_names(tmp_path):
    make_folder(tmp_path, n=2)
    for i in range(7):
        save_png(tmp_path / "images" / f"extra{i}.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match=r"7 image\(s\).*extra0.png|extra0.*and 2 more"):
        unet.find_pairs(tmp_path)
    for i in range(7):
        (tmp_path / "images" / f"extra{i}.png").unlink()
    save_png(tmp_path / "masks" / "orphan.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="orphan"):
        unet.find_pairs(tmp_path)


def test_duplicate_stems(tmp_path):
    make_folder(tmp_path, n=2)
    tifffile.imwrite(tmp_path / "images" / "s0.tif", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="s0.png and s0.tif|s0.tif and s0.png"):
        unet.find_pairs(tmp_path)


def test_mask_of_another_size(tmp_path):
    make_folder(tmp_path, n=2)
    save_png(tmp_path / "masks" / "s1.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"s1.png is 10x10 .* is 50x40"):
        D.load_folder(tmp_path)


def test_labels_must_match(tmp_path):
    make_folder(tmp_path, n=2, labels=True)
    (tmp_path / "labels" / "s1.png").unlink()
    with pytest.raises(ValueError, match="labels.*s1|s1.*labels"):
        unet.find_pairs(tmp_path)
    save_png(tmp_path / "labels" / "s1.png", np.zeros((3, 3), np.uint16))
    with pytest.raises(ValueError, match="s1.png is 3x3"):
        D.load_folder(tmp_path)


def test_corrupt_files(tmp_path):
    make_folder(tmp_path, n=2)
    (tmp_path / "images" / "s1.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"Cannot read .*s1.png"):
        D.load_folder(tmp_path)
    good = (tmp_path / "masks" / "s0.png").read_bytes()
    (tmp_path / "masks" / "s0.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"s0.png"):
        unet.read_mask(tmp_path / "masks" / "s0.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        unet.read_image(tmp_path / "missing.png")


def test_hidden_and_non_image_files(tmp_path):
    make_folder(tmp_path, n=2)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "masks" / "._s0.png").write_bytes(b"\0\0")
    (tmp_path / "images" / "subfolder").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ignored silently
        assert [p.name for p in unet.find_pairs(tmp_path)] == ["s0", "s1"]
    (tmp_path / "images" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="notes.txt"):
        pairs = unet.find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["s0", "s1"]


def test_constant_masks(tmp_path):
    make_folder(tmp_path, n=3)
    save_png(tmp_path / "masks" / "s0.png", np.zeros((40, 50), np.uint8))
    assert len(D.load_folder(tmp_path)) == 3  # one empty mask is fine
    for i in range(3):
        save_png(tmp_path / "masks" / f"s{i}.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        D.load_folder(tmp_path)
    assert len(D.load_folder(tmp_path, check_masks=False)) == 3
    for i in range(3):
        save_png(tmp_path / "masks" / f"s{i}.png", np.full((40, 50), 255, np.uint8))
    with pytest.raises(ValueError, match="single value"):
        D.load_folder(tmp_path)


def test_jpeg_masks_warn(tmp_path):
    make_folder(tmp_path, n=2)
    mask = unet.read_mask(tmp_path / "masks" / "s1.png") * 255
    (tmp_path / "masks" / "s1.png").unlink()
    Image.fromarray(mask).save(tmp_path / "masks" / "s1.jpg", quality=95)
    with pytest.warns(UserWarning, match="JPEG"):
        D.load_folder(tmp_path)


def test_lazy_exports():
    assert unet.make_dataset is D.make_dataset and unet.normalize is unet.normalize
    assert unet.Augmentation is unet.Augmentation


# ------------------------------------------------------------- images larger than the window
def coordinate_image(height, width):
    """An image whose channels are its own row and column (and 0): tiles tell where they came from."""
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    return np.stack([rows, cols, np.zeros_like(rows)], axis=-1)


def test_large_images_are_tiled_in_order_with_their_real_context():
    tile, out = unet.tile_size_for(20, depth=2)  # (60, 20): a context of 20 px per side
    image = coordinate_image(50, 70)
    mask = (np.indices((50, 70)).sum(0) % 7 == 0).astype(np.uint8)
    samples = D.Samples(["big"], [image], [mask])
    batches = list(D.make_dataset(samples, tile, out, batch_size=100, shuffle=False))
    x, y, w = (b.numpy() for b in batches[0])
    assert x.shape[0] == 3 * 4  # ceil(50 / 20) x ceil(70 / 20) windows cover the image
    context = (tile - out) // 2
    padded = np.pad(image, ((context, context + 20), (context, context + 20), (0, 0)),
                    mode="reflect")  # numpy's own mirror, independent of the pipeline
    padded_mask = np.pad(mask, ((0, 20), (0, 20)))
    for k in range(x.shape[0]):
        top, left = 20 * (k // 4), 20 * (k % 4)
        np.testing.assert_array_equal(x[k], padded[top : top + tile, left : left + tile])
        np.testing.assert_array_equal(y[k, ..., 0], padded_mask[top : top + 20, left : left + 20])
        inside = np.zeros((70, 90), np.float32)
        inside[:50, :70] = 1
        np.testing.assert_array_equal(w[k, ..., 0], inside[top : top + 20, left : left + 20])


def test_random_windows_cover_a_large_image_about_evenly():
    tile, out = unet.tile_size_for(20, depth=2)
    image = coordinate_image(60, 60)
    samples = D.Samples(["big"], [image], [np.ones((60, 60), np.uint8)])
    ds = D.make_dataset(samples, tile, out, batch_size=64, shuffle=True, repeat=True, seed=3)
    seen = np.zeros((60, 60))
    context = (tile - out) // 2
    for x, _, w in ds.take(40):
        for tile_image, weight in zip(x.numpy(), w.numpy()[..., 0]):
            window = tile_image[context : context + out, context : context + out]
            rows, cols = window[..., 0].astype(int), window[..., 1].astype(int)
            # contiguous real image inside (no mirror there), weight 1 exactly on it
            real = weight > 0
            assert np.all(np.diff(rows, axis=0)[real[1:] & real[:-1]] == 1)
            np.add.at(seen, (rows[real], cols[real]), 1)
    # a corner pixel 9/16 as often as the middle (3/4 per axis), never much less
    assert seen.min() >= 0.45 * seen.max()


def windows_with_foreground(samples, tile, out, fraction, seed=0, take=20):
    """Share of the training windows that hold a foreground pixel, and where they were."""
    ds = D.make_dataset(samples, tile, out, batch_size=32, shuffle=True, repeat=True,
                        seed=seed, foreground_fraction=fraction)
    context, hits, total, tops = (tile - out) // 2, 0, 0, []
    for x, y, _ in ds.take(take):
        hits += int((y.numpy().reshape(len(y), -1).max(axis=1) > 0).sum())
        total += len(y)
        tops += [tuple(t[context, context, :2]) for t in x.numpy()]
    return hits / total, tops


def test_foreground_windows_find_sparse_objects():
    tile, out = unet.tile_size_for(20, depth=2)
    mask = np.zeros((200, 300), np.uint8)
    mask[120:124, 40:45] = 1  # one small object: 20 of 60,000 pixels
    samples = D.Samples(["sparse"], [coordinate_image(200, 300)], [mask])
    uniform, _ = windows_with_foreground(samples, tile, out, 0.0)
    half, _ = windows_with_foreground(samples, tile, out, 0.5)
    every, tops = windows_with_foreground(samples, tile, out, 1.0)
    assert uniform < 0.05 and 0.4 < half < 0.6 and every == 1.0
    # the object is not always at the same place in the window
    assert len(set(tops)) > 10


def test_foreground_windows_leave_crops_and_empty_images_alone():
    tile, out = unet.tile_size_for(20, depth=2)
    samples = D.Samples(["empty"], [coordinate_image(80, 80)], [np.zeros((80, 80), np.uint8)])
    share, tops = windows_with_foreground(samples, tile, out, 1.0, take=5)
    assert share == 0 and len(set(tops)) > 5  # no foreground to aim at: uniform windows
    crops = toy_samples(4, size=(16, 16))
    plain = D.make_dataset(crops, tile, out, batch_size=4, shuffle=True, seed=2)
    aimed = D.make_dataset(crops, tile, out, batch_size=4, shuffle=True, seed=2,
                           foreground_fraction=1.0)
    for a, b in zip(next(iter(plain)), next(iter(aimed))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(unet.UsageError, match="foreground_fraction"):
        D.make_dataset(crops, tile, out, foreground_fraction=1.5)


def test_mixed_crops_and_large_images_train_together():
    tile, out = unet.tile_size_for(24, depth=2)
    samples = toy_samples(3, size=(20, 16))
    samples.names.append("big")
    samples.images.append(np.random.default_rng(0).random((90, 130, 3), np.float32))
    samples.masks.append(np.zeros((90, 130), np.uint8))
    ds = D.make_dataset(samples, tile, out, batch_size=4, augment=True, repeat=True)
    x, y, w = next(iter(ds))
    assert x.shape[1:] == (tile, tile, 3) and y.shape[1:] == (out, out, 1)
    assert np.all(np.isfinite(x.numpy())) and set(np.unique(y.numpy())) <= {0.0, 1.0}
    ordered = D.make_dataset(samples, tile, out, batch_size=1, shuffle=False)
    assert ordered.cardinality().numpy() == 3 + 4 * 6  # crops once, the field by windows


def test_instance_id_masks_are_labels_and_reused_ids_are_split(tmp_path):
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    ids = np.zeros((30, 40), np.uint16)
    ids[2:8, 2:8], ids[2:8, 8:14] = 1, 2  # two touching objects with their own ids
    ids[20:26, 30:36] = 1  # id 1 again, far away: a second object
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(ids).save(tmp_path / "masks" / "a.png")
    binary = (ids > 0).astype(np.uint8) * 255
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / "images" / "b.png")
    Image.fromarray(binary).save(tmp_path / "masks" / "b.png")
    with pytest.warns(UserWarning, match="one id for separate regions"):
        samples = D.load_folder(tmp_path, channels=1)
    a, b = samples.labels
    assert unet.count_labels(a) == 3  # touching objects kept apart, the reused id split
    assert unet.count_labels(b) == 2  # a binary mask among id masks: its components
    np.testing.assert_array_equal(samples.masks[0], ids > 0)


# ------------------------------------------------------- files that are not one image
def test_a_tiff_of_several_images_is_refused_not_read_as_its_first_page(tmp_path):
    from unet.imagefile import read_image_channels

    pages = tmp_path / "pages.tif"
    tifffile.imwrite(pages, np.zeros((8, 9), np.uint8))
    tifffile.imwrite(pages, np.ones((8, 9), np.uint8), append=True)
    planes = tmp_path / "planes.tif"  # a plain 3-page TIFF: a z-stack or channels?
    tifffile.imwrite(planes, np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    for read in (unet.read_image, read_image_channels):
        with pytest.raises(ValueError, match="2 separate images"):
            read(pages)
        with pytest.raises(ValueError, match="planes.tif"):
            read(planes)
    assert read_image_channels(planes, [0, 1, 2]).shape == (8, 9, 3)  # said explicitly


def test_nan_or_infinite_pixels_are_refused_with_their_number(tmp_path):
    from unet.imagefile import read_image_channels

    image = np.ones((8, 9), np.float32)
    image[1, 2], image[3, 4] = np.nan, np.inf
    tifffile.imwrite(tmp_path / "nan.tif", image)
    for read in (unet.read_image, read_image_channels):
        with pytest.raises(ValueError, match="2 pixel.s. that are NaN or infinite"):
            read(tmp_path / "nan.tif")


def test_jpeg_and_png_are_turned_upright_by_their_exif_orientation(tmp_path):
    from PIL import Image

    stored = np.zeros((4, 6), np.uint8)
    stored[0, 0] = 255  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    shown = unet.read_image(tmp_path / "turned.png")
    assert shown.shape == (6, 4) and shown[0, -1] == 255  # as a viewer shows it
    assert unet.read_mask(tmp_path / "turned.png").shape == (6, 4)  # masks alike


def test_the_smallest_object_is_chosen_from_the_training_objects():
    rows, cols = np.mgrid[:200, :200]
    big = ((rows - 60) ** 2 + (cols - 60) ** 2 <= 30**2)  # 2821 px
    labels = big * 1 + ((rows - 140) ** 2 + (cols - 140) ** 2 <= 30**2) * 2
    image = np.zeros((200, 200, 3), np.float32)
    with_labels = D.Samples(["a"], [image], [labels > 0], [labels.astype(np.int32)])
    assert D.choose_min_area(with_labels) == int(0.1 * big.sum()) == 282
    # without labels the objects are the mask's components: two disks touching merge
    touching = big | ((rows - 60) ** 2 + (cols - 119) ** 2 <= 30**2)
    merged = D.Samples(["b"], [image], [touching.astype(np.uint8)])
    assert D.choose_min_area(merged) == int(0.1 * touching.sum())
    assert D.choose_min_area(D.Samples(["c"], [image], [np.zeros((200, 200), np.uint8)])) == 16


def test_object_widths_are_the_widest_inscribed_disks_whatever_the_length():
    labels = np.zeros((60, 120), np.int32)
    labels[10:20, 10:110] = 1   # a rod 100 px long and 10 px wide
    labels[30:50, 10:30] = 2    # two 20 px squares that touch
    labels[30:50, 30:50] = 3
    image = np.full((60, 120, 3), 0.9, np.float32)
    image[labels > 0] = 0.2     # dark objects: brightfield
    samples = D.Samples(["a"], [image], [labels > 0], [labels])
    # each touching square keeps its own width (the union of the two would be 20 x 40)
    assert sorted(D.object_widths(samples).tolist()) == [10.0, 20.0, 20.0]
    # the window follows the width, not the rod's 100 px or its equivalent diameter (36 px)
    assert D.choose_flatten(samples) == 60  # 3 x the 95th percentile of (10, 20, 20)
    bright = D.Samples(["b"], [1 - image], [labels > 0], [labels])
    assert D.choose_flatten(bright) is None
