"""The differentiable JPEG approximation against the real codec (Pillow's libjpeg at the same quality)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from evaluator.codec import OrganizerCodec
from submission.diff_jpeg import DiffJPEG, codec_tables, dct_matrix, round_cubic


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def real_jpeg(rgb: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[64:321, 40:373])  # 257 x 333: not a multiple of the MCU


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def to_rgb(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).detach().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(("mode", "pil_subsampling"), [("4:2:0", 2), ("4:2:2", 1), ("4:4:4", 0)])
@pytest.mark.parametrize("quality", [90, 50])
def test_forward_is_close_to_the_real_codec(photo, mode, pil_subsampling, quality):
    real = real_jpeg(photo, quality, pil_subsampling)
    approx = to_rgb(DiffJPEG(quality, subsampling=mode)(to_tensor(photo)))
    # the approximation sits far closer to the real decode than the real decode sits to the original
    assert psnr(approx, real) > 42.0
    assert psnr(approx, real) > psnr(real, photo) + 6.0


def test_tables_are_the_organizer_codecs_at_every_quality():
    """One source: DiffJPEG quantizes with exactly the tables the organizer codec writes, also below quality 50
    where libjpeg's integer scale 5000 // q differs from 5000 / q (e.g. q = 33: 151, not 151.5)."""
    for quality in range(1, 101):
        np.testing.assert_array_equal(DiffJPEG(quality).tables.numpy(), OrganizerCodec(quality=quality).quant_tables())
    t = codec_tables(90)
    assert t.shape == (2, 8, 8)
    assert t[0, 0, 0] == 3 and t[0, 7, 7] == 20 and t[1, 0, 0] == 3 and t[1, 7, 7] == 20
    assert (codec_tables(100) == 1).all()
    with pytest.raises(ValueError, match="1..100"):
        codec_tables(0)
    with pytest.raises(ValueError, match="quality"):
        DiffJPEG(101)


@pytest.mark.parametrize("quality", [10, 33])
def test_forward_matches_libjpegs_coefficients_below_quality_50(photo, tmp_path, quality):
    """At q < 50 the rounded coefficients land on what libjpeg writes (+-1 of its integer DCT), as at q = 90."""
    from submission.diff_jpeg import jpeg_forward

    codec = OrganizerCodec(quality=quality)
    path = tmp_path / "a.jpg"
    codec.write_jpeg(path, photo)
    real = codec.read_dct(path)
    ours = jpeg_forward(to_tensor(photo), DiffJPEG(quality).tables)
    for plane, coef in zip((real.Y, real.Cb, real.Cr), ours):
        rounded = torch.round(coef[0]).numpy()
        assert np.abs(rounded - plane).max() <= 1
        assert (rounded == plane).mean() > 0.97


def test_dct_matrix_is_orthonormal():
    c = dct_matrix()
    assert torch.allclose(c @ c.T, torch.eye(8), atol=1e-6)


def test_gradient_flows_and_output_shape_matches(photo):
    x = to_tensor(photo).requires_grad_(True)
    y = DiffJPEG(90)(x)
    assert y.shape == x.shape
    y.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_cubic_rounding_is_exact_at_integers_and_smooth_between():
    x = torch.tensor([-2.0, 0.0, 3.0, 0.25], requires_grad=True)
    y = round_cubic(x)
    assert torch.allclose(y[:3], x[:3].detach())
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.0, 0.0, 0.0, 3 * 0.25**2]))


@pytest.mark.parametrize("kwargs", [{"subsampling": "4:1:1"}, {"rounding": "floor"}, {"tables": np.ones((8, 8))}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        DiffJPEG(90, **kwargs)


def test_forward_transform_lands_on_libjpegs_coefficients(photo, tmp_path):
    """Rounded jpeg_forward equals libjpeg's quantized DCT coefficients up to its integer-DCT rounding (+-1)."""
    import jpeglib

    from submission.diff_jpeg import jpeg_forward

    jpeglib.version.set("turbo210")
    path = str(tmp_path / "a.jpg")
    jpeglib.from_spatial(photo).write_spatial(path, qt=90)
    real = jpeglib.read_dct(path)
    ours = jpeg_forward(to_tensor(photo), torch.from_numpy(codec_tables(90)))
    for plane, coef in zip((real.Y, real.Cb, real.Cr), ours):
        rounded = torch.round(coef[0]).numpy()
        assert rounded.shape == plane.shape
        assert np.abs(rounded - plane).max() <= 1
        assert (rounded == plane).mean() > 0.95


def test_inverse_transform_decodes_like_libjpeg(photo, tmp_path):
    import jpeglib

    from submission.diff_jpeg import jpeg_inverse

    jpeglib.version.set("turbo210")
    path = str(tmp_path / "a.jpg")
    jpeglib.from_spatial(photo).write_spatial(path, qt=90)
    real = jpeglib.read_dct(path)
    coefs = [torch.from_numpy(p.astype(np.float32))[None] for p in (real.Y, real.Cb, real.Cr)]
    ours = to_rgb(jpeg_inverse(coefs, torch.from_numpy(codec_tables(90)), photo.shape[:2]))
    assert psnr(ours, jpeglib.read_spatial(path).spatial) > 48.0
