"""Image I/O policy: every refused kind of file with a real file on disk, and the accepted ones loaded exactly."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, features

from evaluator.common import imageio
from evaluator.common.imageio import (
    AlphaChannelError,
    CMYKImageError,
    CorruptImageError,
    EmptyImageError,
    ExtensionMismatchError,
    GrayscaleImageError,
    HighBitDepthError,
    ImageError,
    ImageHeader,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    OrientationError,
    PaletteImageError,
    UnsupportedFormatError,
    load_rgb,
    probe_image,
    save_png,
    to_tensor,
    to_uint8,
)


def rgb_image(h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise: realistic enough for JPEG, distinct per pixel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def handmade_png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return imageio.PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def expect(exc_type: type[ImageError], path: Path, **kw) -> ImageError:
    """load_rgb(path) raises exactly `exc_type`, whose message names the file; return the exception."""
    with pytest.raises(exc_type) as info:
        load_rgb(path, **kw)
    assert info.value.path == path
    assert str(path) in str(info.value)
    return info.value


def save_pil(tmp_path: Path, name: str, im: Image.Image, **kw) -> Path:
    path = tmp_path / name
    im.save(path, **kw)
    return path


# ---------------------------------------------------------------------------------------------- accepted files
def test_png_loads_exactly(tmp_path):
    rgb = rgb_image()
    path = save_pil(tmp_path, "a.png", Image.fromarray(rgb))
    out = load_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (24, 40, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("name", ["a.jpg", "a.jpeg", "a.JPG"])
def test_jpeg_loads_as_pillow_decodes_it(tmp_path, name):
    path = save_pil(tmp_path, name, Image.fromarray(rgb_image()), format="JPEG", quality=90)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(load_rgb(path), expected)


def test_exif_orientation_1_is_accepted(tmp_path):
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = 1
    path = save_pil(tmp_path, "a.jpg", Image.fromarray(rgb_image()), exif=exif)
    assert load_rgb(path).shape == (24, 40, 3)


def test_probe_reads_the_header(tmp_path):
    png = save_pil(tmp_path, "a.png", Image.fromarray(rgb_image(30, 50)))
    jpg = save_pil(tmp_path, "b.jpg", Image.fromarray(rgb_image(30, 50)).convert("L"))
    assert probe_image(png) == ImageHeader("PNG", 50, 30, "RGB", 8)
    assert probe_image(jpg) == ImageHeader("JPEG", 50, 30, "L", 8)  # probe does not apply the pixel policy


def test_save_png_roundtrip_is_bit_exact_with_no_metadata(tmp_path):
    rgb = rgb_image(31, 17, seed=3)
    path = tmp_path / "out.png"
    path.write_bytes(b"old content")  # replaced atomically
    save_png(path, rgb)
    np.testing.assert_array_equal(load_rgb(path), rgb)
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append(data[pos + 4:pos + 8])
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and set(chunks[1:-1]) == {b"IDAT"}
    assert data[16:26] == struct.pack(">IIBB", 17, 31, 8, 2)  # 8-bit truecolour
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
    np.zeros((0, 4, 3), np.uint8), "not an array",
])
def test_save_png_rejects_non_rgb_uint8(tmp_path, bad):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8|zero size"):
        save_png(tmp_path / "x.png", bad)
    assert list(tmp_path.iterdir()) == []


def test_save_png_requires_png_name(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        save_png(tmp_path / "x.jpg", rgb_image())


def test_to_tensor_to_uint8_roundtrip_is_exact_for_all_levels():
    rgb = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    rgb = rgb.astype(np.uint8)
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert float(t.min()) == 0.0 and float(t.max()) == 1.0
    assert torch.equal(t[0, :, 2, 5], torch.tensor(rgb[2, 5], dtype=torch.float32) / 255)
    np.testing.assert_array_equal(to_uint8(t), rgb)
    np.testing.assert_array_equal(to_uint8(t[0]), rgb)


def test_to_uint8_rounds_half_to_even_and_clips():
    levels = torch.tensor([0.5, 1.5, 2.5, 254.5, -3.0, 300.0], dtype=torch.float64)
    values = levels / 255
    assert torch.equal(values * 255, levels)  # exact halves in float64
    t = values.view(1, 1, 6).expand(3, 1, 6)
    assert to_uint8(t)[0, :, 0].tolist() == [0, 2, 2, 254, 0, 255]


@pytest.mark.parametrize("bad", [torch.zeros(1, 1, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(4, 4, 3),
                                 torch.full((3, 2, 2), float("nan")), np.zeros((3, 2, 2))])
def test_to_uint8_rejects_bad_tensors(bad):
    with pytest.raises(ValueError):
        to_uint8(bad)


def test_to_tensor_rejects_non_rgb_uint8():
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 4, 3), np.float64))


# ---------------------------------------------------------------------------------------------- refused files
def test_missing_file(tmp_path):
    err = expect(ImageNotFoundError, tmp_path / "nope.png")
    assert "does not exist" in str(err)


def test_directory_is_not_an_image_file(tmp_path):
    (tmp_path / "dir.png").mkdir()
    expect(ImageNotFoundError, tmp_path / "dir.png")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    expect(EmptyImageError, path)
    with pytest.raises(EmptyImageError):
        probe_image(path)


def test_zero_width_png_header(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(handmade_png(0, 10, 8, 2, zlib.compress(b"")))
    expect(EmptyImageError, path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 10)
    err = expect(NotAnImageError, path)
    assert not isinstance(err, UnsupportedFormatError)


@pytest.mark.parametrize("fmt,name", [("GIF", "a.gif"), ("GIF", "a.png"), ("BMP", "a.bmp"), ("TIFF", "a.tif"),
                                      ("WEBP", "a.webp")])
def test_other_image_formats_are_unsupported(tmp_path, fmt, name):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    path = save_pil(tmp_path, name, Image.fromarray(rgb_image()), format=fmt)
    err = expect(UnsupportedFormatError, path)
    assert {"WEBP": "WebP"}.get(fmt, fmt) in str(err) and "PNG and JPEG" in str(err)


def test_png_named_jpg_is_an_extension_mismatch(tmp_path):
    path = save_pil(tmp_path, "a.jpg", Image.fromarray(rgb_image()), format="PNG")
    err = expect(ExtensionMismatchError, path)
    assert "a.png" in str(err)  # the fix: the right name
    with pytest.raises(ExtensionMismatchError):
        probe_image(path)


@pytest.mark.parametrize("name", ["a.png", "a", "a.jpg.txt"])
def test_jpeg_with_wrong_or_no_extension(tmp_path, name):
    path = save_pil(tmp_path, name, Image.fromarray(rgb_image()), format="JPEG")
    expect(ExtensionMismatchError, path)


def test_uppercase_png_extension_is_fine(tmp_path):
    path = save_pil(tmp_path, "A.PNG", Image.fromarray(rgb_image()), format="PNG")
    assert load_rgb(path).shape == (24, 40, 3)


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("cut", ["half", "iend", "one_byte"])
def test_truncated_png(tmp_path, cut):
    data = _png_bytes(rgb_image(64, 64))
    keep = {"half": len(data) // 2, "iend": len(data) - 12, "one_byte": len(data) - 1}[cut]
    path = tmp_path / "cut.png"
    path.write_bytes(data[:keep])
    expect(CorruptImageError, path)


def test_png_with_corrupt_pixel_data(tmp_path):
    data = bytearray(_png_bytes(rgb_image(64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 40] ^= 0xFF  # flip a byte inside the compressed pixels
    path = tmp_path / "flip.png"
    path.write_bytes(bytes(data))
    err = expect(CorruptImageError, path)
    assert "CRC" in str(err)


@pytest.mark.parametrize("cut", ["half", "eoi"])
def test_truncated_jpeg(tmp_path, cut):
    buf = io.BytesIO()
    Image.fromarray(rgb_image(64, 64)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-2])
    expect(CorruptImageError, path)


def test_load_truncated_images_switched_on_is_refused(tmp_path, monkeypatch):
    path = save_pil(tmp_path, "a.png", Image.fromarray(rgb_image()))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_rgb(path)


def test_16_bit_grayscale_png(tmp_path):
    im = Image.fromarray(np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 60)
    assert im.mode.startswith("I;16")
    path = save_pil(tmp_path, "g16.png", im)
    expect(HighBitDepthError, path)


def test_16_bit_rgb_png_is_refused_not_truncated(tmp_path):
    """Pillow would open a 48-bit PNG as 8-bit 'RGB', silently dropping the low bytes; the IHDR says 16."""
    h, w = 4, 5
    rows = b"".join(b"\x00" + bytes(range(w * 6)) for _ in range(h))
    path = tmp_path / "rgb16.png"
    path.write_bytes(handmade_png(w, h, 16, 2, zlib.compress(rows)))
    assert probe_image(path).bit_depth == 16
    expect(HighBitDepthError, path)


def test_palette_png(tmp_path):
    path = save_pil(tmp_path, "p.png", Image.fromarray(rgb_image()).convert("P"))
    expect(PaletteImageError, path)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_channel_png(tmp_path, mode):
    path = save_pil(tmp_path, "a.png", Image.fromarray(rgb_image()).convert(mode))
    expect(AlphaChannelError, path)


def test_rgb_png_with_trns_transparency(tmp_path):
    path = save_pil(tmp_path, "t.png", Image.fromarray(rgb_image()), transparency=(0, 0, 0))
    assert b"tRNS" in path.read_bytes()
    err = expect(AlphaChannelError, path)
    assert "tRNS" in str(err)


@pytest.mark.parametrize("mode,name", [("L", "g.png"), ("1", "b.png"), ("L", "g.jpg")])
def test_grayscale(tmp_path, mode, name):
    path = save_pil(tmp_path, name, Image.fromarray(rgb_image()).convert(mode))
    expect(GrayscaleImageError, path)


def test_cmyk_jpeg(tmp_path):
    path = save_pil(tmp_path, "c.jpg", Image.fromarray(rgb_image()).convert("CMYK"), quality=90)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    expect(CMYKImageError, path)


@pytest.mark.parametrize("name", ["o.jpg", "o.png"])
def test_exif_orientation_other_than_1(tmp_path, name):
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = 6
    path = save_pil(tmp_path, name, Image.fromarray(rgb_image()), exif=exif)
    err = expect(OrientationError, path)
    assert "orientation 6" in str(err)


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    """20000 x 20000 RGB would need 1.2 GB; the file is a few dozen bytes and never decoded."""
    path = tmp_path / "bomb.png"
    path.write_bytes(handmade_png(20000, 20000, 8, 2, zlib.compress(b"\x00" * 64)))
    assert path.stat().st_size < 200
    err = expect(ImageTooLargeError, path)  # decoding would have failed as truncated instead
    assert "400000000 pixels" in str(err)
    with pytest.raises(ImageTooLargeError):
        probe_image(path)


def _jpeg_with_size(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_image(16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("side", [8000, 20000])  # 64 Mpx: our limit; 400 Mpx: Pillow's bomb error as well
def test_huge_jpeg_header_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_jpeg_with_size(side, side))
    expect(ImageTooLargeError, path)


def test_max_pixels_is_configurable(tmp_path):
    path = save_pil(tmp_path, "a.png", Image.fromarray(rgb_image(24, 40)))
    expect(ImageTooLargeError, path, max_pixels=24 * 40 - 1)
    assert load_rgb(path, max_pixels=24 * 40).shape == (24, 40, 3)


@pytest.mark.parametrize("as_error", [False, True])
def test_jpeg_between_pillow_warning_and_error_limits_is_refused(tmp_path, as_error):
    """100 Mpx: over Pillow's MAX_IMAGE_PIXELS (warning) but under twice it (error); refused either way."""
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_jpeg_with_size(10000, 10000))
    with warnings.catch_warnings():  # test-local filter
        warnings.simplefilter("error" if as_error else "ignore", Image.DecompressionBombWarning)
        expect(ImageTooLargeError, path, max_pixels=200_000_000 if as_error else imageio.DEFAULT_MAX_PIXELS)


def test_oversized_file_is_refused_before_reading(tmp_path):
    """A 1x1 PNG padded with a 17 MiB ancillary chunk: over 8 bytes/pixel + 16 MiB for max_pixels=1."""
    path = tmp_path / "padded.png"
    pixels = png_chunk(b"IDAT", zlib.compress(b"\x00\x01\x02\x03"))
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    path.write_bytes(imageio.PNG_SIGNATURE + ihdr + png_chunk(b"zzZz", bytes(17 << 20)) + pixels
                     + png_chunk(b"IEND", b""))
    err = expect(ImageTooLargeError, path, max_pixels=1)
    assert "bytes" in str(err)
    assert load_rgb(path, max_pixels=4_000_000).tolist() == [[[1, 2, 3]]]


def test_progressive_jpeg_and_optimized_png_load(tmp_path):
    rgb = rgb_image(33, 47)
    jpg = save_pil(tmp_path, "p.jpg", Image.fromarray(rgb), quality=95, progressive=True)
    png = save_pil(tmp_path, "o.png", Image.fromarray(rgb), optimize=True)
    with Image.open(jpg) as im:
        np.testing.assert_array_equal(load_rgb(jpg), np.asarray(im))
    np.testing.assert_array_equal(load_rgb(png), rgb)


def test_errors_survive_pickling(tmp_path):
    import pickle

    path = tmp_path / "a.gif"
    Image.fromarray(rgb_image()).save(path)
    with pytest.raises(UnsupportedFormatError) as info:
        load_rgb(path)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is UnsupportedFormatError and again.path == path and str(again) == str(info.value)


def test_to_batch_is_to_tensor_for_a_batch():
    rng = np.random.default_rng(3)
    rgbs = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(3)]
    batch = imageio.to_batch(rgbs)
    assert batch.shape == (3, 3, 5, 7) and batch.dtype == torch.float32 and batch.is_contiguous()
    assert torch.equal(batch, torch.cat([imageio.to_tensor(rgb) for rgb in rgbs]))
    for k, rgb in enumerate(rgbs):
        np.testing.assert_array_equal(imageio.to_uint8(batch[k]), rgb)
    with pytest.raises(ValueError, match="to_batch: expected a numpy"):
        imageio.to_batch([rgbs[0].astype(np.float32)])


def test_model_device_is_where_the_first_parameter_or_buffer_is():
    from evaluator.common.device import model_device

    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.Identity()) == torch.device("cpu")  # nothing to look at: the CPU
    meta = torch.nn.Linear(2, 2, device="meta")
    assert model_device(meta) == torch.device("meta")

