"""The organizer codec: exact agreement with Pillow and the IJG tables, lossless DCT I/O, refusal of bad input."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from PIL import Image, JpegImagePlugin

from evaluator.codec import CodecError, DCTCoefficients, OrganizerCodec, libjpeg
from evaluator.config import task_from_dict

SKIMAGE_DATA = Path(os.path.dirname(skimage.data.__file__))
SKLEARN_IMAGES = Path(os.path.dirname(sklearn.datasets.__file__)) / "images"
PHOTOS = {
    "astronaut": SKIMAGE_DATA / "astronaut.png",
    "coffee": SKIMAGE_DATA / "coffee.png",
    "china": SKLEARN_IMAGES / "china.jpg",
}
SIZES = [(384, 512), (257, 333)]  # (H, W): even, and odd (not a multiple of the 16-pixel MCU)

# ITU-T T.81 Annex K, Tables K.1 (luminance) and K.2 (chrominance), natural order.
ANNEX_K_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
])
ANNEX_K_CHROMA = np.array([
    [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99], [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4)


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """IJG jpeg_quality_scaling + jpeg_add_quant_table with force_baseline: clip((S*base + 50) // 100, 1, 255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    with Image.open(PHOTOS[name]) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = size
    assert rgb.shape[0] >= h and rgb.shape[1] >= w
    return np.ascontiguousarray(rgb[:h, :w])


def pillow_jpeg(rgb: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **kw)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def codec() -> OrganizerCodec:
    return OrganizerCodec()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_default_codec_is_byte_identical_to_pillow_quality_90(codec, name, size):
    rgb = photo(name, size)
    assert codec.compress(rgb) == pillow_jpeg(rgb, quality=90)


@pytest.mark.parametrize("quality", [1, 10, 50, 75, 95, 100])
def test_other_qualities_are_byte_identical_to_pillow(quality):
    rgb = photo("china", (257, 333))
    assert OrganizerCodec(quality=quality).compress(rgb) == pillow_jpeg(rgb, quality=quality)


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_subsampling_modes_are_written_and_match_pillow(subsampling):
    rgb = photo("coffee", (257, 333))
    data = OrganizerCodec(subsampling=subsampling).compress(rgb)
    with Image.open(io.BytesIO(data)) as im:
        assert JpegImagePlugin.get_sampling(im) == {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[subsampling]
    assert data == pillow_jpeg(rgb, quality=90, subsampling=subsampling)


def test_compress_is_deterministic(codec):
    rgb = photo("astronaut", (257, 333))
    first = codec.compress(rgb)
    assert codec.compress(rgb.copy()) == first
    assert np.array_equal(codec.decompress(first), codec.decompress(first))


def test_different_qualities_give_different_files(codec):
    rgb = photo("astronaut", (257, 333))
    assert OrganizerCodec(quality=50).compress(rgb) != codec.compress(rgb)
    assert len(OrganizerCodec(quality=50).compress(rgb)) < len(codec.compress(rgb))


@pytest.mark.parametrize("quality", [1, 10, 49, 50, 75, 90, 100])
def test_quant_tables_are_ijg_scaled_annex_k(quality):
    tables = OrganizerCodec(quality=quality).quant_tables()
    assert tables.dtype == np.uint16 and tables.shape == (2, 8, 8)
    np.testing.assert_array_equal(tables[0], ijg_table(ANNEX_K_LUMA, quality))
    np.testing.assert_array_equal(tables[1], ijg_table(ANNEX_K_CHROMA, quality))


def test_quant_tables_at_90_first_row_and_copy_semantics(codec):
    tables = codec.quant_tables()
    assert tables[0, 0].tolist() == [3, 2, 2, 3, 5, 8, 10, 12]
    assert tables[1, 0].tolist() == [3, 4, 5, 9, 20, 20, 20, 20]
    tables[:] = 0  # the caller's copy; the codec's tables are unchanged
    assert codec.quant_tables()[0, 0, 0] == 3


def test_written_file_carries_the_codec_tables(codec, tmp_path):
    path = tmp_path / "x.jpg"
    codec.write_jpeg(path, photo("china", (384, 512)))
    np.testing.assert_array_equal(codec.read_dct(path).qt, codec.quant_tables())
    assert [p.name for p in tmp_path.iterdir()] == ["x.jpg"]  # no temporary file left


def test_written_files_get_the_mode_of_every_result_file(codec, tmp_path):
    """write_jpeg and write_dct go through the kit's one atomic write (`evaluator.common.atomic`): mode 0666 less
    the umask, like any file open() creates (a private 0600 temporary file renamed into place would keep 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    codec.write_jpeg(tmp_path / "a.jpg", photo("china", (64, 64)))
    codec.write_dct(tmp_path / "b.jpg", codec.read_dct(tmp_path / "a.jpg"))
    for name in ("a.jpg", "b.jpg"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
@pytest.mark.parametrize("size", SIZES + [(5, 7)])
def test_dct_read_write_roundtrip_is_exact(tmp_path, subsampling, size):
    codec = OrganizerCodec(subsampling=subsampling)
    rgb = photo("astronaut", size)
    src, dst = tmp_path / "src.jpg", tmp_path / "dst.jpg"
    codec.write_jpeg(src, rgb)
    coeffs = codec.read_dct(src)
    h, w = size
    assert (coeffs.height, coeffs.width) == (h, w)
    assert coeffs.Y.dtype == np.int16 and coeffs.Y.shape == (-(-h // 8), -(-w // 8), 8, 8)
    codec.write_dct(dst, coeffs)
    again = codec.read_dct(dst)
    for name in ("Y", "Cb", "Cr", "qt"):
        np.testing.assert_array_equal(getattr(again, name), getattr(coeffs, name))
    assert (again.height, again.width) == (h, w)
    # decoding the coefficients is exactly decoding the file
    decoded = codec.decode_dct(coeffs)
    np.testing.assert_array_equal(decoded, codec.decompress(src.read_bytes()))
    np.testing.assert_array_equal(decoded, codec.roundtrip(rgb))


def test_changed_coefficients_change_the_decoded_image(codec, tmp_path):
    path = tmp_path / "x.jpg"
    codec.write_jpeg(path, photo("coffee", (384, 512)))
    coeffs = codec.read_dct(path)
    y = coeffs.Y.copy()
    y[0, 0, 0, 0] += 4  # +4 DC steps of 3 in block (0, 0): a flat change of 4*3/8 = 1.5 grey levels
    changed = codec.decode_dct(DCTCoefficients(y, coeffs.Cb, coeffs.Cr, coeffs.qt, coeffs.height, coeffs.width))
    diff = changed.astype(int) - codec.decode_dct(coeffs).astype(int)
    assert np.abs(diff[:8, :8]).max() >= 1
    assert not diff[16:, 16:].any()


def test_decompress_matches_pillow_decoder(codec):
    rgb = photo("china", (257, 333))
    data = codec.compress(rgb)
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(codec.decompress(data), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_roundtrip_psnr_at_quality_90_is_high(codec, name):
    rgb = photo(name, (384, 512))
    out = codec.roundtrip(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert 35.0 < psnr(rgb, out) < 60.0


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_roundtrip_psnr_grows_with_quality(name):
    """china.jpg is busy foliage already JPEG-compressed once: about 34 dB at QF 90, still ordered by quality."""
    rgb = photo(name, (384, 512))
    values = [psnr(rgb, OrganizerCodec(quality=q).roundtrip(rgb)) for q in (50, 90, 100)]
    assert 25.0 < values[0] < values[1] < values[2]


def test_from_task_uses_the_jpeg_rules():
    cfg = task_from_dict({"jpeg": {"quality": 75, "subsampling": "4:4:4", "libjpeg": "6b"}})
    assert OrganizerCodec.from_task(cfg) == OrganizerCodec(quality=75, subsampling="4:4:4", libjpeg="6b")
    assert OrganizerCodec.from_task(task_from_dict({})) == OrganizerCodec()


@pytest.mark.parametrize("kwargs", [
    {"quality": 0}, {"quality": 101}, {"quality": 90.0}, {"quality": True}, {"quality": "90"},
    {"libjpeg": "turbo999"}, {"libjpeg": "libjpeg-turbo"}, {"libjpeg": ""},
    {"subsampling": "4:1:1"}, {"subsampling": "420"},
])
def test_bad_settings_raise(kwargs):
    with pytest.raises(CodecError):
        OrganizerCodec(**kwargs)


@pytest.mark.parametrize("bad", [
    np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 1), np.uint8),
    np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint16), np.zeros((0, 8, 3), np.uint8),
    [[[0, 0, 0]]],
])
def test_compress_rejects_non_rgb_uint8(codec, bad):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8|zero size"):
        codec.compress(bad)
    with pytest.raises(ValueError):
        codec.roundtrip(bad)


def test_decompress_rejects_truncated_or_foreign_data(codec):
    data = codec.compress(photo("coffee", (64, 64)))
    for bad in (data[: len(data) // 2], b"", b"not a jpeg at all", pillow_png(photo("coffee", (8, 8)))):
        with pytest.raises(CodecError):
            codec.decompress(bad)
    with pytest.raises(CodecError):
        codec.decompress("a string")  # type: ignore[arg-type]


def pillow_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_decompress_rejects_garbage_between_markers(codec):
    with pytest.raises(CodecError, match="cannot decode"):
        codec.decompress(b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9")


def test_write_dct_refuses_foreign_tables_and_bad_shapes(codec, tmp_path):
    path = tmp_path / "x.jpg"
    OrganizerCodec(quality=75).write_jpeg(path, photo("coffee", (64, 80)))
    coeffs75 = OrganizerCodec(quality=75).read_dct(path)
    with pytest.raises(CodecError, match="quantization tables"):
        codec.write_dct(tmp_path / "y.jpg", coeffs75)
    ok = DCTCoefficients(coeffs75.Y, coeffs75.Cb, coeffs75.Cr, codec.quant_tables(), 64, 80)
    codec.write_dct(tmp_path / "y.jpg", ok)  # same coefficients, this codec's tables: fine
    for bad in (
        DCTCoefficients(coeffs75.Y[:-1], coeffs75.Cb, coeffs75.Cr, None, 64, 80),
        DCTCoefficients(coeffs75.Y.astype(np.int32), coeffs75.Cb, coeffs75.Cr, None, 64, 80),
        DCTCoefficients(coeffs75.Y, coeffs75.Y, coeffs75.Cr, None, 64, 80),  # 4:4:4 chroma for a 4:2:0 codec
        DCTCoefficients(coeffs75.Y, coeffs75.Cb, coeffs75.Cr, None, 72, 80),
    ):
        with pytest.raises(CodecError, match="expected int16"):
            codec.decode_dct(bad)
    assert not (tmp_path / "z.jpg").exists()


def test_read_dct_refuses_missing_grayscale_and_non_jpeg(codec, tmp_path):
    with pytest.raises(CodecError, match="no such"):
        codec.read_dct(tmp_path / "missing.jpg")
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(gray, "JPEG")
    with pytest.raises(CodecError, match="YCbCr"):
        codec.read_dct(gray)
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    with pytest.raises(CodecError):
        codec.read_dct(text)


def test_codecs_with_different_builds_are_thread_safe():
    """mozjpeg writes other tables than libjpeg-turbo; interleaved use from threads must not mix them up."""
    rgb = photo("coffee", (64, 96))
    codecs = [OrganizerCodec(libjpeg="turbo210"), OrganizerCodec(libjpeg="mozjpeg403")]
    expected = [c.compress(rgb) for c in codecs]
    assert expected[0] != expected[1]
    results: list[list[bytes]] = [[], []]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(15):
                results[i].append(codecs[i].compress(rgb))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected[0] for r in results[0])
    assert all(r == expected[1] for r in results[1])


def test_libjpeg_context_selects_the_build():
    import jpeglib

    with libjpeg("6b"):
        assert jpeglib.version.get() == "6b"
    with libjpeg("turbo210"):
        assert jpeglib.version.get() == "turbo210"


@pytest.mark.parametrize("where,value", [("dc", 1024), ("dc", -1025), ("ac", 1024), ("ac", -30000)])
def test_coefficients_outside_baseline_range_are_refused(codec, tmp_path, where, value):
    """libjpeg-turbo would silently write a corrupt entropy-coded stream for these."""
    path = tmp_path / "x.jpg"
    codec.write_jpeg(path, photo("coffee", (16, 16)))
    coeffs = codec.read_dct(path)
    y = coeffs.Y.copy()
    y[0, 0, 0, 0 if where == "dc" else 1] = value
    bad = DCTCoefficients(y, coeffs.Cb, coeffs.Cr, coeffs.qt, 16, 16)
    with pytest.raises(CodecError, match="baseline range"):
        codec.decode_dct(bad)
    with pytest.raises(CodecError, match="baseline range"):
        codec.write_dct(tmp_path / "y.jpg", bad)
    y[0, 0, 0, 0 if where == "dc" else 1] = 1023 if value > 0 else -1023  # the extremes are fine
    codec.decode_dct(DCTCoefficients(y, coeffs.Cb, coeffs.Cr, coeffs.qt, 16, 16))


# -- scratch files: one private folder per process, nothing left behind, removed at exit -------------------------
def test_scratch_folder_is_private_memory_backed_and_left_empty(codec, tmp_path):
    import stat

    from evaluator.codec import SHM_DIR, scratch_dir

    d = scratch_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    if SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK):
        assert d.parent == SHM_DIR
    rgb = photo("coffee", (64, 80))
    data = codec.compress(rgb)
    np.testing.assert_array_equal(codec.decompress(data), codec.roundtrip(rgb))
    codec.write_jpeg(tmp_path / "a.jpg", rgb)
    coeffs = codec.read_dct(tmp_path / "a.jpg")
    codec.write_dct(tmp_path / "b.jpg", coeffs)
    codec.decode_dct(coeffs)
    with pytest.raises(CodecError):
        codec.decompress(b"\xff\xd8garbage\xff\xd9")
    assert scratch_dir() == d and list(d.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]


def test_scratch_folder_is_recreated_when_removed(codec):
    import shutil

    from evaluator.codec import scratch_dir

    shutil.rmtree(scratch_dir())
    rgb = photo("astronaut", (32, 32))
    assert codec.decompress(codec.compress(rgb)).shape == rgb.shape
    assert scratch_dir().is_dir()


def test_scratch_folder_is_removed_at_exit():
    import subprocess
    import sys

    code = ("import numpy as np; from evaluator.codec import OrganizerCodec, scratch_dir; "
            "OrganizerCodec().compress(np.zeros((16, 16, 3), np.uint8)); print(scratch_dir())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    used = Path(proc.stdout.strip())
    assert used.name.startswith("pp-codec-") and not used.exists()


def test_threads_sharing_the_scratch_folder_get_their_own_results(codec):
    images = [np.ascontiguousarray(photo("china", (96, 64))[i * 8:i * 8 + 48]) for i in range(6)]
    expected = [codec.roundtrip(im) for im in images]
    got: dict[int, list[np.ndarray]] = {}

    def work(t: int) -> None:
        got[t] = [codec.decompress(codec.compress(im)) for im in images for _ in range(3)][::3]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in range(4):
        for a, b in zip(got[t], expected):
            np.testing.assert_array_equal(a, b)


def test_scratch_folder_replaced_by_a_foreign_one_is_not_used(codec, tmp_path):
    from evaluator.codec import scratch_dir

    d = scratch_dir()
    d.rmdir()
    d.symlink_to(tmp_path, target_is_directory=True)  # someone puts a link where our folder was
    try:
        codec.compress(photo("coffee", (16, 16)))
        assert scratch_dir() != d and list(tmp_path.iterdir()) == []
    finally:
        d.unlink()
