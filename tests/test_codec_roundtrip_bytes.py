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
