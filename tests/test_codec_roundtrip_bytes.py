"""`OrganizerCodec.roundtrip_bytes` (what the pipeline scores) equals `compress` then `decompress` bit for bit,
through Pillow where Pillow reproduces the pinned build and through jpeglib where it does not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data

from evaluator.codec import CodecError, OrganizerCodec, pillow_reproduces


def _images() -> list[np.ndarray]:
    photo = np.ascontiguousarray(data.astronaut()[:190, :253])  # odd sizes: partial MCUs
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(3)))
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    return [photo, blurred, noisy, np.ascontiguousarray(data.coffee()[100:228, 50:306])]


@pytest.mark.parametrize("codec", [OrganizerCodec(), OrganizerCodec(quality=20, subsampling="4:4:4"),
                                   OrganizerCodec(libjpeg="mozjpeg403"), OrganizerCodec(libjpeg="9f")])
def test_roundtrip_bytes_equals_compress_then_decompress(codec):
    for rgb in _images():
        data_, pixels = codec.roundtrip_bytes(rgb)
        expected = codec.compress(rgb)
        assert data_ == expected
        assert np.array_equal(pixels, codec.decompress(expected))


def test_pillow_is_used_only_for_builds_it_reproduces():
    assert pillow_reproduces(OrganizerCodec())  # the task default: turbo210, the libjpeg-turbo Pillow bundles
    assert not pillow_reproduces(OrganizerCodec(libjpeg="mozjpeg403"))  # other tables and encoder
    assert not pillow_reproduces(OrganizerCodec(libjpeg="9f"))


def test_roundtrip_bytes_refuses_what_compress_refuses():
    with pytest.raises(ValueError):
        OrganizerCodec().roundtrip_bytes(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        OrganizerCodec().roundtrip_bytes(np.zeros((8, 8, 3), np.float32))
    assert issubclass(CodecError, ValueError)


def _strip(rgb: np.ndarray) -> bool:
    return min(rgb.shape[:2]) == 1


def _pixel_checkerboard(rgb: np.ndarray) -> bool:
    g = rgb[..., 0].astype(int)
    return min(g.shape) > 1 and np.abs(np.diff(g, axis=0)).min() == 255 and np.abs(np.diff(g, axis=1)).min() == 255


def _saturated_chroma_stripes(rgb: np.ndarray) -> bool:
    return rgb.shape[1] > 100 and set(np.unique(rgb[..., 1])) == {0} and 255 in rgb[..., 0]


@pytest.mark.parametrize("differs_on", [_strip, _pixel_checkerboard, _saturated_chroma_stripes])
def test_the_probes_catch_a_pillow_that_differs_only_on_hard_images(monkeypatch, differs_on):
    """A Pillow whose libjpeg differs from the pinned build only on one kind of hard image (a SIMD tail, the
    inverse DCT's clamping, chroma at its limits) must not be trusted: the probe set holds each kind."""
    import evaluator.codec as codec_module

    real = codec_module._pillow_compress

    def fake(rgb, quality, subsampling):
        data = real(rgb, quality, subsampling)
        return data[:-3] + bytes([data[-3] ^ 1]) + data[-2:] if differs_on(rgb) else data

    monkeypatch.setattr(codec_module, "_pillow_compress", fake)
    monkeypatch.setattr(codec_module, "_PILLOW_OK", {})
    assert not pillow_reproduces(OrganizerCodec())


@pytest.mark.parametrize("codec", [OrganizerCodec(), OrganizerCodec(quality=100, subsampling="4:4:4"),
                                   OrganizerCodec(quality=1, subsampling="4:2:2")])
def test_roundtrip_bytes_equals_the_pinned_build_on_adversarial_images(codec):
    rng = np.random.default_rng(3)
    for h, w in [(1, 17), (17, 1), (15, 31), (33, 65), (97, 255)]:
        yy, xx = np.mgrid[0:h, 0:w]
        checker = (((yy + xx) % 2) * 255).astype(np.uint8)
        for rgb in (rng.integers(0, 256, (h, w, 3), dtype=np.uint8), np.stack([checker, 255 - checker, checker], -1),
                    (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)):
            data_, pixels = codec.roundtrip_bytes(rgb)
            assert data_ == codec.compress(rgb)
            assert np.array_equal(pixels, codec.decompress(data_))
