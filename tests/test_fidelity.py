"""The pipeline's PSNR/SSIM (`evaluator.scoring.fidelity`) against the metric definitions in `evaluator.scoring.metrics`.

SSIM is computed in float32 for speed; these tests bound its difference to `metrics.ssim` (float64) on real
photographs under the distortions attacks make, and check that PSNR and the edge cases are unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data

from evaluator.scoring import metrics
from evaluator.codec import OrganizerCodec
from evaluator.scoring.fidelity import SSIM_TOLERANCE, fidelity


def _photo_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(original, distorted) pairs: 192x256 crops of two real photos under six distortions."""
    rng = np.random.default_rng(0)
    pairs = []
    for photo in (data.astronaut(), data.coffee()):
        orig = np.ascontiguousarray(photo[64:256, 64:320])
        im = Image.fromarray(orig)
        noisy = np.clip(orig + rng.normal(0, 12, orig.shape), 0, 255).astype(np.uint8)
        dark = (orig * 0.3).astype(np.uint8)
        flat = np.full_like(orig, 7)  # constant image: the variance terms vanish
        for distorted in (noisy, dark, flat, np.asarray(im.filter(ImageFilter.GaussianBlur(3))),
                          np.asarray(im.filter(ImageFilter.UnsharpMask(2, 250))),
                          OrganizerCodec(quality=20).roundtrip(orig)):
            pairs.append((orig, np.ascontiguousarray(distorted)))
    return pairs


def test_pipeline_ssim_matches_skimage_structural_similarity_on_photos():
    """`fidelity`'s compiled SSIM against skimage's float64 `structural_similarity` (metrics.ssim), same settings."""
    pairs = _photo_pairs()
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes: the window crop at every border
    pairs.append((odd, np.clip(odd.astype(int) + rng.integers(-40, 41, odd.shape), 0, 255).astype(np.uint8)))
    diffs = [abs(fidelity(a, b)["ssim"] - metrics.ssim(a, b)) for a, b in pairs]
    assert max(diffs) <= SSIM_TOLERANCE
    assert fidelity(odd, odd[::-1].copy())["ssim"] < 0.5  # really compared: an unrelated image scores low


def test_psnr_is_exactly_the_metric_definition():
    for a, b in _photo_pairs():
        assert fidelity(a, b)["psnr"] == metrics.psnr(a, b)


def test_edge_cases_match_the_metric_definition():
    img = data.astronaut()[:64, :64].copy()
    assert fidelity(img, img) == {"psnr": math.inf, "ssim": 1.0}
    small = img[:6, :40].copy()
    assert math.isnan(metrics.ssim(small, small))
    assert math.isnan(fidelity(small, small)["ssim"]) and fidelity(small, small)["psnr"] == math.inf


@pytest.mark.parametrize("bad", [
    np.zeros((64, 64, 3), np.float32),
    np.zeros((64, 64), np.uint8),
    np.zeros((64, 64, 4), np.uint8),
    np.zeros((32, 64, 3), np.uint8),
])
def test_bad_pairs_are_refused_like_the_metric(bad):
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError):
        metrics.ssim(img, bad)
    with pytest.raises(ValueError):
        fidelity(img, bad)
