"""evaluator.scoring.metrics: the task's accuracy and gate, the five MSU-style scores, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluator.scoring import metrics


# -- accuracy and the gate -------------------------------------------------------------------------------------
def test_accuracy_counts_scores_at_or_above_the_threshold_as_high_quality():
    assert metrics.accuracy([50.0, 49.999, 80.0, 10.0], 50) == pytest.approx(0.5)
    assert metrics.accuracy([50.0], 50) == 1.0
    assert math.isnan(metrics.accuracy([], 50))


def test_accuracy_refuses_nan_scores_and_matrices():
    with pytest.raises(ValueError, match="NaN"):
        metrics.accuracy([60.0, float("nan")], 50)
    with pytest.raises(ValueError, match="1-D"):
        metrics.accuracy([[60.0, 40.0]], 50)


def test_accuracy_reduction_and_gate_follow_the_2020_rules():
    assert metrics.accuracy_reduction(1.0, 0.25) == pytest.approx(0.75)
    assert metrics.qualifies(0.4999, 0.5)
    assert not metrics.qualifies(0.5, 0.5)  # "more than half" low quality: exactly half does not qualify
    assert not metrics.qualifies(float("nan"), 0.5)


# -- robustness scores: hand-computed example -------------------------------------------------------------------
CLEAN, AFTER = [80.0, 60.0], [40.0, 60.0]  # s = [.8, .6], p = [.4, .6]


def test_abs_and_rel_gain_on_a_hand_computed_pair():
    assert metrics.abs_gain(CLEAN, AFTER) == pytest.approx((0.4 + 0.0) / 2)
    assert metrics.rel_gain(CLEAN, AFTER) == pytest.approx((0.4 / 1.8 + 0.0) / 2)


def test_robustness_score_floors_an_unchanged_score_at_1e_minus_6():
    expected = (math.log10(max(0.2, 0.8) / 0.4) + math.log10(max(0.4, 0.6) / 1e-6)) / 2
    assert metrics.robustness_score(CLEAN, AFTER) == pytest.approx(expected)
    assert math.isfinite(metrics.robustness_score([70.0], [70.0]))
    assert metrics.robustness_score([70.0], [70.0]) == pytest.approx(math.log10(0.7 / 1e-6))


def test_wasserstein_and_energy_scores_on_a_hand_computed_pair():
    # sorted s = [.6, .8], sorted p = [.4, .6]: W1 = mean |.6-.4|, |.8-.6| = .2
    assert metrics.wasserstein_score(CLEAN, AFTER) == pytest.approx(0.2)
    # F_p - F_s = .5 on [.4, .6) and .5 on [.6, .8): E = sqrt(2 * (.25*.2 + .25*.2)) = sqrt(.2)
    assert metrics.energy_score(CLEAN, AFTER) == pytest.approx(math.sqrt(0.2))


def _energy_from_cdfs(s: np.ndarray, p: np.ndarray) -> float:
    """sqrt(2 * int (F_s - F_p)^2 dx), integrated exactly over the piecewise-constant empirical CDFs."""
    xs = np.sort(np.concatenate([s, p]))
    f_s = np.searchsorted(np.sort(s), xs[:-1], side="right") / s.size
    f_p = np.searchsorted(np.sort(p), xs[:-1], side="right") / p.size
    return math.sqrt(2 * float(np.sum((f_s - f_p) ** 2 * np.diff(xs))))


def _w1_from_cdfs(s: np.ndarray, p: np.ndarray) -> float:
    xs = np.sort(np.concatenate([s, p]))
    f_s = np.searchsorted(np.sort(s), xs[:-1], side="right") / s.size
    f_p = np.searchsorted(np.sort(p), xs[:-1], side="right") / p.size
    return float(np.sum(np.abs(f_s - f_p) * np.diff(xs)))


def test_distance_scores_match_the_msu_cdf_definitions_on_random_scores():
    rng = np.random.default_rng(3)
    clean = rng.uniform(50, 95, 40)
    after = np.clip(clean - rng.uniform(-5, 40, 40), 0, 100)
    s, p = clean / 100, after / 100
    sign = np.sign(s.mean() - p.mean())
    assert sign == 1
    assert metrics.wasserstein_score(clean, after) == pytest.approx(_w1_from_cdfs(s, p), rel=1e-9)
    assert metrics.energy_score(clean, after) == pytest.approx(_energy_from_cdfs(s, p), rel=1e-9)


def test_scores_are_negative_when_the_attack_raised_the_quality_score():
    up = [90.0, 70.0]
    base = [60.0, 50.0]
    r = metrics.robustness_scores(base, up)
    assert r.abs_gain < 0 and r.rel_gain < 0 and r.wasserstein_score < 0 and r.energy_score < 0
    assert r.wasserstein_score == pytest.approx(-0.25)


def test_orientation_stated_in_the_module_docstring():
    """Gains and distances grow as the scores fall further; robustness_score falls, in either direction."""
    clean = [80.0, 60.0, 70.0]
    mild = metrics.robustness_scores(clean, [70.0, 50.0, 60.0])
    strong = metrics.robustness_scores(clean, [20.0, 10.0, 15.0])
    for key in ("abs_gain", "rel_gain", "wasserstein_score", "energy_score"):
        assert 0 < getattr(mild, key) < getattr(strong, key), key
    assert strong.robustness_score < mild.robustness_score
    up_mild, up_strong = (metrics.robustness_score(clean, [c + d for c in clean]) for d in (5.0, 20.0))
    assert up_strong < up_mild  # |s - p| grows: robustness falls whichever way the score moved
    assert metrics.robustness_score([100.0], [100.0]) == pytest.approx(6.0)  # the largest value
    for s, p in ((50.0, 0.0), (0.0, 100.0), (80.0, 0.0), (30.0, 100.0)):  # p at the far end: the smallest term, 0
        assert metrics.robustness_score([s], [p]) == pytest.approx(0.0, abs=1e-12)
        assert metrics.robustness_score([s], [(s + p) / 2]) > 0


def test_no_change_gives_zero_gains_and_distances():
    r = metrics.robustness_scores([70.0, 55.0], [70.0, 55.0])
    assert (r.abs_gain, r.rel_gain, r.wasserstein_score, r.energy_score) == (0.0, 0.0, 0.0, 0.0)


def test_robustness_inputs_must_pair_up_and_be_nonempty():
    with pytest.raises(ValueError, match="pair up"):
        metrics.abs_gain([70.0, 60.0], [10.0])
    with pytest.raises(ValueError, match="at least one"):
        metrics.energy_score([], [])
    with pytest.raises(ValueError, match="NaN"):
        metrics.wasserstein_score([70.0], [float("inf")])


# -- fidelity --------------------------------------------------------------------------------------------------
def _img(seed: int = 0, shape=(20, 24, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, shape, dtype=np.uint8)


def test_psnr_of_a_one_level_change_everywhere_is_20_log10_255():
    a = _img()
    assert metrics.psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert metrics.psnr(a, a) == math.inf


def test_ssim_is_one_for_identical_images_symmetric_and_drops_with_noise():
    a = _img(1).astype(np.uint8)
    rng = np.random.default_rng(2)
    noisy = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(a.astype(int) + rng.integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, noisy) == pytest.approx(metrics.ssim(noisy, a))
    assert 0 < metrics.ssim(a, noisier) < metrics.ssim(a, noisy) < 1


def test_ssim_is_nan_when_the_7x7_window_does_not_fit():
    a = _img(shape=(6, 30, 3))
    assert math.isnan(metrics.ssim(a, a))


def test_fidelity_refuses_mismatched_or_non_rgb_images():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(_img(shape=(20, 24, 3)), _img(shape=(24, 20, 3)))
    with pytest.raises(ValueError, match="uint8"):
        metrics.ssim(_img().astype(np.float32), _img())
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        metrics.psnr(_img(shape=(20, 24, 4)), _img(shape=(20, 24, 4)))
