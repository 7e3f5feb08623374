"""Tests for floatalk.io.image: decoding any image file to upright 8-bit RGB, and tensor conversion."""

from __future__ import annotations

import pathlib
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from floatalk.errors import InputError
from floatalk.io.image import image_to_tensor, load_image

# ---------------------------------------------------------------------------- helpers


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(
        np.uint8
    )


def _check_one_line(excinfo: pytest.ExceptionInfo[InputError], *needles: str) -> None:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and msg.strip() == msg
    assert ";" in msg, f"message should name the fix after a semicolon: {msg}"
    for needle in needles:
        assert needle in msg, msg


def _write_png_rgb16(path: pathlib.Path, rgb16: np.ndarray) -> None:
    """Writes a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    path.write_bytes(png)


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "suffix", "kwargs"),
    [
        ("PNG", "png", {}),
        ("BMP", "bmp", {}),
        ("TIFF", "tiff", {}),
        ("WEBP", "webp", {"lossless": True}),
        ("PPM", "ppm", {}),
    ],
)
def test_lossless_formats_roundtrip_exactly(
    tmp_path: pathlib.Path, fmt: str, suffix: str, kwargs: dict
) -> None:
    img = _gradient()
    path = tmp_path / f"a.{suffix}"
    Image.fromarray(img).save(path, fmt, **kwargs)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, img)


def test_jpeg(tmp_path: pathlib.Path) -> None:
    img = _gradient(64, 64)
    path = tmp_path / "a.jpg"
    Image.fromarray(img).save(path, quality=95)
    out = load_image(path)
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - img).mean() < 3


def test_gif_uses_first_frame(tmp_path: pathlib.Path) -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    out = load_image(path)
    assert out.shape == (16, 16, 3)
    assert (out == [255, 0, 0]).all()


def test_exif_orientation_is_applied(tmp_path: pathlib.Path) -> None:
    # Stored 40 wide x 20 high with a red block at the top-left. Orientation 6 means "rotate 90 degrees
    # clockwise to display", so the displayed image is 20 wide x 40 high with the block at the top-right.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[1:5, -5:-1].mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=20)
    assert out[1:5, 1:5].max() < 20
    assert out[-5:, -5:].max() < 20


def test_rgba_is_composited_over_white(tmp_path: pathlib.Path) -> None:
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[0, :, 3] = 0  # fully transparent row -> white
    rgba[1, :, 3] = 255  # opaque row -> the colour
    rgba[2, :, 3] = 128  # half transparent -> blend
    rgba[3, :, 3] = 51
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    out = load_image(path)
    assert (out[0] == 255).all()
    assert (out[1] == [200, 0, 0]).all()
    a = 128 / 255
    np.testing.assert_allclose(
        out[2], np.broadcast_to([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)], (3, 3)), atol=1
    )
    a = 51 / 255
    np.testing.assert_allclose(out[3, 0], [200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)], atol=1)


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_with_transparency(tmp_path: pathlib.Path, suffix: str) -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    pal.paste(1, (0, 0, 8, 4))  # top half colour 1, bottom half colour 0 (transparent)
    path = tmp_path / f"p.{suffix}"
    pal.save(path, transparency=0)
    out = load_image(path)
    assert (out[:4] == [10, 20, 30]).all()
    assert (out[4:] == 255).all()


def test_palette_opaque(tmp_path: pathlib.Path) -> None:
    img = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = tmp_path / "p.png"
    img.save(path)
    np.testing.assert_array_equal(load_image(path), np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_gray_modes(tmp_path: pathlib.Path, mode: str) -> None:
    gray = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    im = Image.fromarray(gray).convert(mode)
    path = tmp_path / f"{mode}.png"
    im.save(path)
    out = load_image(path)
    assert out.shape == (8, 8, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if mode != "1":  # LA saved from L is fully opaque
        np.testing.assert_array_equal(out[..., 0], gray)
    else:
        assert set(np.unique(out)) <= {0, 255}


def test_16bit_gray_png_is_scaled(tmp_path: pathlib.Path) -> None:
    v = np.array([[0, 257, 128, 65535], [32768, 65278, 1000, 60000]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(v).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    expected = np.round(v / 257).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 3, 0] == 255 and out[0, 1, 0] == 1


def test_16bit_rgb_png(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, size=(6, 5, 3), dtype=np.uint16)
    rgb16[0, 0] = (65535, 0, 32896)
    path = tmp_path / "rgb16.png"
    _write_png_rgb16(path, rgb16)
    out = load_image(path)
    assert out.shape == (6, 5, 3)
    # Pillow keeps the high byte of 16-bit RGB; that is within one level of round(v / 257).
    assert np.abs(out.astype(int) - np.round(rgb16 / 257)).max() <= 1
    assert tuple(out[0, 0]) == (255, 0, 128)


def test_cmyk_jpeg(tmp_path: pathlib.Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan/black, full magenta+yellow -> red
    cmyk.paste((0, 0, 0, 255), (0, 8, 16, 16))  # full black in the bottom half
    path = tmp_path / "print.jpg"
    cmyk.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.shape == (16, 16, 3)
    assert out[1:7].mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=6)
    assert out[10:].max() < 10


def test_float_and_int32_modes(tmp_path: pathlib.Path) -> None:
    unit = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    path = tmp_path / "f01.tiff"
    Image.fromarray(unit).save(path)
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(load_image(path)[..., 0], np.round(unit * 255).astype(np.uint8))

    path = tmp_path / "f255.tiff"
    Image.fromarray(unit * 300).save(path)  # > 1: treated as 0..255, clipped
    np.testing.assert_array_equal(load_image(path)[..., 1], np.clip(np.round(unit * 300), 0, 255))

    i32 = (np.arange(16, dtype=np.int32) * 4369).reshape(4, 4)  # 0 .. 65535
    path = tmp_path / "i32.tiff"
    Image.fromarray(i32).save(path)
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(load_image(path)[..., 2], np.round(i32 / 257).astype(np.uint8))


def test_string_path_and_uppercase_suffix(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "A.PNG"
    Image.fromarray(_gradient()).save(path, "PNG")
    np.testing.assert_array_equal(load_image(str(path)), _gradient())


# ---------------------------------------------------------------------------- errors


def test_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        load_image(tmp_path / "face.png")
    _check_one_line(e, "does not exist", "face.png")


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        load_image(tmp_path)
    _check_one_line(e, "directory")


def test_zero_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e, "empty")


def test_not_an_image(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is a text file\nwith two lines\n")
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e, "could not be decoded", "PNG")


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_truncated(tmp_path: pathlib.Path, fmt: str, suffix: str) -> None:
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # incompressible: data spans the file
    path = tmp_path / f"cut.{suffix}"
    Image.fromarray(noisy).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e)


def test_corrupt_header(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.png"
    Image.fromarray(_gradient()).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = b"\xff" * 8  # absurd IHDR width/height
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e)


def test_unreadable(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(_gradient()).save(path)
    real_open = pathlib.Path.open

    def deny(self: pathlib.Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    # Root ignores file modes, so simulate the failure instead of chmod 000.
    monkeypatch.setattr(pathlib.Path, "open", deny)
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e, "permission denied")


def test_decompression_bomb(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10000 px > 2 * 1000: refused
    with pytest.raises(InputError) as e:
        load_image(path)
    _check_one_line(e, "too large")


# ---------------------------------------------------------------------------- image_to_tensor


def test_tensor_same_size_is_exact() -> None:
    img = _gradient(16, 16)
    t = image_to_tensor(img, 16)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(t[0], expected)
    assert t.min() >= -1 and t.max() <= 1
    assert image_to_tensor(np.zeros((2, 2, 3), np.uint8), 2).eq(-1).all()
    assert image_to_tensor(np.full((2, 2, 3), 255, np.uint8), 2).eq(1).all()


def test_tensor_downscale_is_box_average() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    t = image_to_tensor(img, 4)
    block_mean = img.reshape(4, 2, 4, 2, 3).astype(np.float64).mean(axis=(1, 3))
    got = (t[0].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255
    assert np.abs(got - block_mean).max() <= 1.0


def test_tensor_upscale_and_squash() -> None:
    img = _gradient(10, 20)  # non-square: squashed to a square, not cropped
    t = image_to_tensor(img, 32)
    assert t.shape == (1, 3, 32, 32)
    ref = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BICUBIC))
    got = np.round((t[0].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255)
    np.testing.assert_array_equal(got, ref)
    # The left and right edges of the input stay at the left and right edges.
    assert got[:, 0, 0].mean() < 10 and got[:, -1, 0].mean() > 245


def test_tensor_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32), 4)
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((4, 4), np.uint8), 4)
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((4, 4, 3), np.uint8), 0)
