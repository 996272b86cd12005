"""The input layer: containers, conversion to RGB, content keys, bad input."""

from __future__ import annotations

import hashlib
import os
import re
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from skorchlite import files, images
from skorchlite.images import check_images, content_key, describe, load_rgb
from skorchlite.pixels import deep_to_uint8

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RNG = np.random.default_rng(0)
WHITE = [255, 255, 255]


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def rgb(sample, index: int = 0) -> np.ndarray:
    return np.asarray(load_rgb(sample, index))


def noise(height: int, width: int, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def count_reads(monkeypatch) -> list[object]:
    """Record every read of a file's bytes by skorchlite.images from now on."""
    reads: list[object] = []
    read_limited = images.read_limited

    def counting(file, max_bytes=None) -> bytes:
        reads.append(file)
        return read_limited(file, max_bytes)

    monkeypatch.setattr(images, "read_limited", counting)
    return reads


def raises_naming(error: type[Exception], *parts: object):
    """pytest.raises whose message must contain every part, in order."""
    return pytest.raises(error, match=".*".join(re.escape(str(part)) for part in parts))


# Small uint8 batches (N, H, W) or (N, H, W, C): C is None for no channel axis.
batches = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.sampled_from([None, 1, 3, 4])).flatmap(
    lambda s: hnp.arrays(np.uint8, s[:3] if s[3] is None else s)
)
file_names = st.lists(st.from_regex(r"[a-z0-9 ()_-]{1,12}\.png", fullmatch=True), min_size=1, max_size=5)


def composited(rgba: np.ndarray) -> np.ndarray:
    """RGBA over white, in floats (Pillow's integer version may differ by 1)."""
    alpha = rgba[..., 3:] / 255
    return rgba[..., :3] * alpha + 255 * (1 - alpha)


# -------------------------------------------------------------- containers
@PROPERTY
@given(file_names)
def test_containers_of_the_same_paths_give_the_same_samples(names):
    expected = [Path(name) for name in names]
    containers = [
        names,
        tuple(names),
        [Path(name) for name in names],
        np.array(names),
        np.array(names, dtype=object),
        pd.Series(names),
    ]
    for X in containers:
        assert check_images(X) == expected


def test_check_images_does_not_open_files(tmp_path):
    assert check_images([tmp_path / "missing (1).png"]) == [tmp_path / "missing (1).png"]


def test_stacked_arrays_become_one_sample_per_image():
    gray, color = noise(8, 8, 1)[..., 0], noise(8, 8, 4)
    for X, shape in [(np.stack([gray, gray]), (8, 8)), (np.stack([color] * 3), (8, 8, 4))]:
        samples = check_images(X)
        assert len(samples) == len(X)
        assert all(s.shape == shape and s.dtype == np.uint8 for s in samples)
        np.testing.assert_array_equal(np.stack(samples), X)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_are_rounded_to_uint8(dtype):
    X = np.array([0, 0.2, 0.999, 1], dtype=dtype).reshape(1, 2, 2)
    np.testing.assert_array_equal(check_images(X)[0], [[0, 51], [255, 255]])


def test_arrays_of_different_sizes_and_mixed_kinds(tmp_path):
    path = save(Image.fromarray(noise(5, 6)), tmp_path / "benign (12).png")
    small, large = noise(3, 4), np.float32(noise(20, 9, 1)) / 255
    pil = Image.new("L", (7, 2))
    samples = check_images([str(path), small, large, pil])
    assert samples[0] == path and samples[1] is small and samples[3] is pil
    np.testing.assert_array_equal(samples[2], np.float32(large * 255).round())
    objects = np.empty(2, dtype=object)
    objects[:] = [small, large]
    assert [s.shape for s in check_images(objects)] == [(3, 4, 3), (20, 9, 1)]
    assert [s.shape for s in check_images(pd.Series([small, noise(2, 2)]))] == [(3, 4, 3), (2, 2, 3)]


@pytest.mark.parametrize(
    "X, error, parts",
    [
        ([], ValueError, ["X is empty"]),
        (np.zeros((0, 4, 4, 3), np.uint8), ValueError, ["X is empty"]),
        ("cat.png", TypeError, ["single path", "cat.png", "[X]"]),
        (Path("cat.png"), TypeError, ["single path", "cat.png", "[X]"]),
        ({"a": 1}, TypeError, ["dict"]),
        (np.zeros(5, np.uint8), ValueError, ["1-D"]),
        (np.zeros((4, 4), np.uint8), ValueError, ["single image", "X[None]"]),
        (np.zeros((1, 2, 2, 3, 1), np.uint8), ValueError, ["(1, 2, 2, 3, 1)", "5 dimensions"]),
        (np.array([["a.png", "b.png"]]), ValueError, ["(1, 2)", "1-D"]),
        (np.zeros((2, 4, 4, 2), np.uint8), ValueError, ["sample 0", "2 channels"]),
        (np.zeros((2, 3, 8, 8), np.uint8), ValueError, ["sample 0", "8 channels", "np.moveaxis"]),
        (np.zeros((2, 0, 4), np.uint8), ValueError, ["sample 0", "zero size"]),
        ([noise(2, 2), np.zeros((4, 0, 3), np.uint8)], ValueError, ["sample 1", "(4, 0, 3)", "zero size"]),
        ([noise(2, 2), Image.new("RGB", (0, 3))], ValueError, ["sample 1", "zero size"]),
        ([noise(2, 2), np.zeros((2, 2, 2, 3), np.uint8)], ValueError, ["sample 1", "(H, W) or (H, W, C)"]),
        ([noise(2, 2), np.zeros((2, 2), np.int64)], TypeError, ["sample 1", "int64", "uint8", "[0, 1]"]),
        (np.zeros((2, 2, 2), np.uint16), TypeError, ["sample 0", "uint16", "uint8"]),
        (np.zeros((2, 2, 2), bool), TypeError, ["sample 0", "bool", "uint8"]),
        (np.zeros((2, 2, 2), complex), TypeError, ["sample 0", "complex128", "uint8"]),
        (["a.png", 3], TypeError, ["sample 1", "int", "path"]),
        (["a.png", "b.png", None], TypeError, ["sample 2", "NoneType"]),
        (["a.png", ""], ValueError, ["sample 1", "empty"]),
        ([b"a.png"], TypeError, ["sample 0", "bytes"]),
    ],
)
def test_bad_containers_and_samples(X, error, parts):
    with raises_naming(error, *parts):
        check_images(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1, 1.5])
def test_bad_float_values_name_the_sample(bad):
    X = np.full((4, 3, 3), 0.5, dtype=np.float32)
    X[2, 1, 1] = bad
    cause = "NaN or infinite" if not np.isfinite(bad) else "[0, 1]"
    with raises_naming(ValueError, "sample 2", cause):
        check_images(X)


# ------------------------------------------------------ decoding to RGB
@PROPERTY
@given(batches)
def test_load_rgb_of_uint8_arrays_is_the_pixels(batch):
    for i, sample in enumerate(check_images(batch)):
        image = load_rgb(sample, i)
        assert image.mode == "RGB" and image.size == (batch.shape[2], batch.shape[1])
        pixels, out = batch[i], np.asarray(image)
        if pixels.ndim == 2 or pixels.shape[2] == 1:
            np.testing.assert_array_equal(out, np.repeat(pixels.reshape(out.shape[:2] + (1,)), 3, axis=2))
        elif pixels.shape[2] == 3:
            np.testing.assert_array_equal(out, pixels)
        else:
            np.testing.assert_allclose(out, composited(pixels), atol=1)


@PROPERTY
@given(batches)
def test_array_and_png_of_the_same_pixels_decode_identically(tmp_path, batch):
    pixels = batch[0]
    image = Image.fromarray(pixels.squeeze(axis=2) if pixels.shape[2:] == (1,) else pixels)
    path = save(image, tmp_path / "a (1).png")
    np.testing.assert_array_equal(rgb(path), rgb(pixels))


def test_grayscale_and_bilevel_files_are_replicated(tmp_path):
    gray = noise(4, 5, 1)[..., 0]
    path = save(Image.fromarray(gray), tmp_path / "gray (1).png")
    np.testing.assert_array_equal(rgb(path), np.stack([gray] * 3, axis=2))
    bilevel = Image.new("1", (3, 1))
    bilevel.putpixel((1, 0), 1)
    assert rgb(save(bilevel, tmp_path / "bilevel.png")).tolist() == [[[0, 0, 0], WHITE, [0, 0, 0]]]


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 257 * 100, 32896, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep (16).png")
    # A 16-bit grey PNG: Pillow 10.1 opens it as 32-bit "I", newer releases as "I;16".
    assert Image.open(path).mode in ("I;16", "I")
    assert rgb(path)[..., 0].tolist() == [[0, 4, 100, 128, 255]]
    assert (rgb(path) == rgb(path)[..., :1]).all()


@pytest.mark.parametrize("dtype", ["<u2", ">u2", np.int32])
def test_deep_pil_modes_are_scaled_like_16_bit(dtype):
    image = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=dtype))
    assert image.mode in ("I;16", "I;16B", "I")
    assert rgb(image)[..., 0].tolist() == [[0, 100, 255]]


def test_every_16_bit_value_scales_to_the_nearest_8_bit_value():
    """All 65,536 values of a 16-bit image against round(v * 255 / 65535) in exact integers."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = rgb(Image.fromarray(values))
    assert got.dtype == np.uint8
    v = values.astype(np.int64)
    nearest = (2 * 255 * v + 65535) // (2 * 65535)  # no ties: 65535 is odd
    np.testing.assert_array_equal(got[..., 0], nearest)


@pytest.mark.parametrize(
    "array", [np.array([[0, 40000]], np.uint16), np.array([[-3, 7e4]], np.int32), np.ones((1, 2), np.float32)]
)
def test_deep_images_become_8_bit_arrays(array):
    assert deep_to_uint8(Image.fromarray(array), "sample 0").dtype == np.uint8


def test_32_bit_integers_are_clipped_to_the_16_bit_range_before_scaling():
    image = Image.fromarray(np.array([[-70000, -1, 0, 65535, 65536, 2**31 - 1]], dtype=np.int32))
    assert image.mode == "I"
    assert rgb(image)[..., 0].tolist() == [[0, 0, 0, 255, 255, 255]]


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (1, 8), elements=st.floats(0, 1, width=32)), st.floats(1.0078125, 255, width=32))
def test_float_images_are_unit_intensities_up_to_1_and_0_255_above(unit, peak):
    """At most 1: intensities times 255; any larger value: already 0-255; rounded to nearest."""
    got = rgb(Image.fromarray(unit))[..., 0]
    np.testing.assert_array_equal(got, np.rint(unit * np.float32(255)).astype(np.uint8))
    wide = np.concatenate([unit, [[peak]]], axis=1).astype(np.float32)
    got = rgb(Image.fromarray(wide))[..., 0]
    np.testing.assert_array_equal(got, np.rint(np.clip(wide, 0, 255)).astype(np.uint8))


def test_float_mode_images():
    unit = Image.fromarray(np.array([[0, 0.2, 1]], dtype=np.float32))
    assert rgb(unit)[..., 0].tolist() == [[0, 51, 255]]
    wide = Image.fromarray(np.array([[-5, 100.4, 300]], dtype=np.float32))
    assert rgb(wide)[..., 0].tolist() == [[0, 100, 255]]
    with raises_naming(ValueError, "sample 4", "NaN"):
        load_rgb(Image.fromarray(np.array([[np.nan]], dtype=np.float32)), 4)


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = np.array([[[0, 0, 0, 0], [200, 10, 10, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    path = save(Image.fromarray(rgba), tmp_path / "alpha (2).png")
    for sample in [path, rgba, Image.fromarray(rgba)]:
        np.testing.assert_allclose(rgb(sample), composited(rgba), atol=1)
    assert rgb(path)[0, :2].tolist() == [WHITE, [200, 10, 10]]
    la = Image.fromarray(rgba[..., [0, 3]])
    assert la.mode == "LA"
    np.testing.assert_allclose(rgb(la), composited(rgba[..., [0, 0, 0, 3]]), atol=1)


def test_palette_images_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    assert rgb(save(palette, tmp_path / "p.png")).tolist() == [[[0, 0, 0], [255, 0, 0]]]
    assert rgb(save(palette, tmp_path / "t.png", transparency=0)).tolist() == [[WHITE, [255, 0, 0]]]
    assert rgb(save(palette, tmp_path / "t.gif", transparency=0)).tolist() == [[WHITE, [255, 0, 0]]]


def test_a_transparent_colour_of_an_rgb_image_becomes_white():
    image = Image.fromarray(np.array([[[0, 0, 0], [10, 20, 30]]], dtype=np.uint8))
    image.info["transparency"] = (0, 0, 0)  # as an RGB PNG's tRNS chunk reads
    assert rgb(image).tolist() == [[WHITE, [10, 20, 30]]]


def test_a_mode_pillow_cannot_convert_names_the_sample():
    with raises_naming(ValueError, "sample 3", "'La'", "Pillow cannot convert"):
        load_rgb(Image.new("La", (2, 2)), 3)


def test_cmyk_jpeg_is_converted_by_pillow(tmp_path):
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk (1).jpg")
    assert Image.open(path).mode == "CMYK"
    np.testing.assert_array_equal(rgb(path), np.asarray(Image.open(path).convert("RGB")))
    np.testing.assert_allclose(rgb(path), np.full((8, 8, 3), (255, 0, 0)), atol=8)


@pytest.mark.parametrize("orientation, stored_as", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_rotated_jpeg_comes_out_upright(tmp_path, orientation, stored_as):
    # Upright: 48 wide, 32 high, red top-left quadrant on blue; large flat
    # areas keep JPEG's error small.
    upright = np.zeros((32, 48, 3), np.uint8)
    upright[...] = (0, 0, 255)
    upright[:16, :24] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = Image.fromarray(upright).transpose(stored_as)
    path = save(stored, tmp_path / "photo (3).jpg", exif=exif, quality=95)
    assert Image.open(path).size == (32, 48)
    out = rgb(path).astype(int)
    assert out.shape == upright.shape
    assert np.abs(out - upright).mean() < 4
    # The same photo as an opened PIL image is turned upright too.
    np.testing.assert_array_equal(rgb(Image.open(path)), out)


def test_load_rgb_reads_a_file_once_and_returns_a_new_loaded_image(tmp_path, monkeypatch):
    path = save(Image.fromarray(noise(4, 4)), tmp_path / "x (1).png")
    reads = count_reads(monkeypatch)
    image = load_rgb(path, 0)
    assert len(reads) == 1
    path.unlink()
    assert image.getpixel((0, 0)) is not None
    mine = Image.fromarray(noise(4, 4))
    assert load_rgb(mine, 0) is not mine


# ------------------------------------------------------------- bad files
def test_missing_file_directory_and_non_image(tmp_path):
    missing = tmp_path / "benign (404).png"
    text = tmp_path / "notes (1).png"
    text.write_text("not pixels")
    for read in (load_rgb, content_key):
        with raises_naming(ValueError, "sample 3", str(missing), "does not exist") as info:
            read(missing, 3)
        assert isinstance(info.value.__cause__, FileNotFoundError)
        with raises_naming(ValueError, "sample 1", str(tmp_path), "directory"):
            read(tmp_path, 1)
    with raises_naming(ValueError, "sample 2", str(text), "not an image Pillow can read"):
        load_rgb(text, 2)


def test_truncated_file(tmp_path):
    path = save(Image.fromarray(noise(64, 64)), tmp_path / "cut (1).png")
    path.write_bytes(path.read_bytes()[:400])
    with raises_naming(ValueError, "sample 5", str(path), "truncated or corrupt") as info:
        load_rgb(path, 5)
    assert isinstance(info.value.__cause__, OSError)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = save(Image.new("L", (20, 20)), tmp_path / "bomb (1).png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 400 pixels: over twice the limit
    with raises_naming(ValueError, "sample 7", str(path), "decompression-bomb limit", "150") as info:
        load_rgb(path, 7)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


def test_zero_size_image_given_directly():
    with raises_naming(ValueError, "sample 0", "zero size"):
        load_rgb(Image.new("RGB", (3, 0)), 0)


def test_describe():
    assert describe(Path("/data/benign (1).png"), 3) == "sample 3 ('/data/benign (1).png')"
    assert describe(np.zeros((32, 32, 3)), 3) == "sample 3 (array of shape (32, 32, 3))"
    assert describe(Image.new("L", (4, 2)), 0) == "sample 0 (PIL image, mode 'L', size 4x2)"
    assert describe(None, 1) == "sample 1 (NoneType)"


# ------------------------------------------------------------ content keys
def test_content_keys_are_the_cache_formats_digests(tmp_path):
    """The keys name cache entries on disk: any change orphans every user's cache, so they are
    pinned to their definition (blake2b-256 of a kind prefix and the content)."""

    def blake(*parts: bytes) -> str:
        return hashlib.blake2b(b"".join(parts), digest_size=32).hexdigest()

    pixels = noise(5, 7)
    path = save(Image.fromarray(pixels), tmp_path / "a.png")
    assert content_key(path, 0) == blake(b"file:", path.read_bytes())
    image = Image.fromarray(pixels[..., 0])  # grey: keyed by the RGB pixels load_rgb makes of it
    assert content_key(image, 0) == blake(b"pil:(7, 5):", np.repeat(pixels[..., :1], 3, axis=2).tobytes())
    strided = np.asfortranarray(pixels.astype("<u2"))
    assert content_key(strided, 0) == blake(b"array:<u2:(5, 7, 3):", np.ascontiguousarray(strided).tobytes())


@PROPERTY
@given(batches, st.data())
def test_content_key_is_deterministic_and_sees_every_pixel(batch, data):
    pixels = check_images(batch)[0]
    key = content_key(pixels, 0)
    assert re.fullmatch("[0-9a-f]{64}", key)
    assert content_key(pixels.copy(), 9) == key
    changed = pixels.copy()
    flat = data.draw(st.integers(0, changed.size - 1))
    changed.flat[flat] ^= 1 << data.draw(st.integers(0, 7))
    assert content_key(changed, 0) != key


def test_content_keys_of_different_kinds_never_collide(tmp_path):
    pixels = noise(3, 4)
    path = save(Image.fromarray(pixels), tmp_path / "same (1).png")
    copy = tmp_path / "copy.png"
    copy.write_bytes(path.read_bytes())
    keys = {content_key(pixels, 0), content_key(Image.fromarray(pixels), 0), content_key(path, 0)}
    assert len(keys) == 3
    assert content_key(copy, 0) == content_key(path, 0)
    assert content_key(path, 0) == hashlib.blake2b(b"file:" + path.read_bytes(), digest_size=32).hexdigest()
    # Same buffer, another shape: another image.
    assert content_key(pixels.reshape(4, 3, 3), 0) != content_key(pixels, 0)


def test_pil_keys_follow_the_pixels_load_rgb_makes():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    repainted = palette.copy()
    repainted.putpalette([0, 0, 0, 0, 255, 0])
    assert content_key(palette, 0) != content_key(repainted, 0)
    assert content_key(palette, 0) == content_key(palette.convert("RGB"), 0)


def test_content_key_fast_path_never_serves_a_stale_key(tmp_path, monkeypatch):
    path = tmp_path / "benign (1).png"
    path.write_bytes(b"first")
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    reads = count_reads(monkeypatch)
    first = content_key(path, 0)
    assert content_key(path, 0) == first
    assert len(reads) == 1  # the second call used the fast path
    # Same size, still an old mtime: only the content differs.
    path.write_bytes(b"fir5t")
    os.utime(path, ns=(old + 10**9, old + 10**9))
    assert content_key(path, 0) == hashlib.blake2b(b"file:fir5t", digest_size=32).hexdigest()


def test_content_key_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"first")
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    first = content_key(path, 0)
    time.sleep(0.05)  # past the kernel's coarse ctime tick
    path.write_bytes(b"fir5t")
    os.utime(path, ns=(old, old))  # as cp -p or rsync -t would
    assert content_key(path, 0) != first


def test_a_file_modified_while_it_was_hashed_is_not_remembered(tmp_path, monkeypatch):
    """Its mtime is later than the hashing's start, however old it is by
    the time the digest is kept: the bytes hashed may predate the change."""
    path = tmp_path / "a.png"
    path.write_bytes(b"first")
    changed = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(changed, changed))
    # The hashing began a second before that change (the kept digest's clock, memo's, is now).
    monkeypatch.setattr(images, "time", types.SimpleNamespace(time_ns=lambda: changed - 10**9))
    reads = count_reads(monkeypatch)
    content_key(path, 0)
    content_key(path, 0)
    assert len(reads) == 2


def test_a_file_over_the_size_cap_is_refused_before_its_bytes_are_hashed(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 99)
    with pytest.raises(ValueError, match=r"sample 3 .*100 bytes.*over the limit of 99 bytes"):
        content_key(path, 3)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    assert content_key(path, 3) == hashlib.blake2b(b"file:" + b"x" * 100, digest_size=32).hexdigest()


def test_a_file_that_grows_past_the_size_cap_while_it_is_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "growing.png"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 99)
    # As if the file had held fewer bytes when it was opened (checked) and grown since.
    monkeypatch.setattr(images, "open_regular", lambda path, max_bytes: files.open_regular(path))
    for read in (content_key, load_rgb):
        with pytest.raises(ValueError, match=r"sample 3 .*over the limit of 99 bytes"):
            read(path, 3)


def test_recently_modified_files_are_always_rehashed(tmp_path, monkeypatch):
    path = tmp_path / "new.png"
    path.write_bytes(b"fresh")
    reads = count_reads(monkeypatch)
    content_key(path, 0)
    content_key(path, 0)
    assert len(reads) == 2
