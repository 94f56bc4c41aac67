"""The task's numbers: accuracy, the gate, the MSU-style robustness scores, and fidelity (PSNR, SSIM).

All functions are pure. Scores are BIQA scores on the kit's 0..100 scale (higher = better quality).

Task rules (liu2020, section 3):
- accuracy = share of images whose post-JPEG score is >= threshold (the BIQA still says "high quality");
- accuracy_reduction = accuracy of the originals - accuracy of the run;
- a run qualifies iff accuracy < gate.max_accuracy (2020: more than half of the images judged low quality).

Robustness scores (MSU metrics robustness benchmark, "Comparison methodology"), computed on
s = score_clean / 100 (original, no JPEG) and p = score / 100 (submitted image after the organizer JPEG):
- abs_gain         = mean(s - p)
- rel_gain         = mean((s - p) / (s + 1))
- robustness_score = mean(log10(max(1 - s, s) / max(|s - p|, 1e-6)))   (beta1 = 1, beta2 = 0)
- wasserstein_score = W1(s, p) * sign(mean(s) - mean(p))
- energy_score      = E(s, p) * sign(mean(s) - mean(p)),  E = sqrt(2 * int (F_s - F_p)^2)
Orientation: abs_gain and rel_gain average the drops s - p (rel_gain weighted by 1 / (s + 1)), and the two
distances carry the sign of mean(s) - mean(p): all four are positive when the scores fell and grow as they fall
further (stronger camouflage); a run that raised the scores gets negative values. robustness_score runs the other
way: it is MSU's robustness *of the metric*, and each image's term falls as |s - p| grows, whichever way the score
moved: from log10(max(1 - s, s) / 1e-6) (at most 6) for an unchanged score down to 0 when p reaches the far end of
the scale (|s - p| = max(1 - s, s); scores are clipped to [0, 100], so it is never negative). Stronger
camouflage gives a *lower* robustness_score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: |s - p| is floored at this value in the robustness score (an unchanged score would divide by zero).
ROBUSTNESS_FLOOR = 1e-6
#: Smallest image side for SSIM's default 7x7 uniform window (skimage's `win_size=7`).
SSIM_MIN_SIDE = 7


def _as_scores(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite scores; score every image before aggregating")
    return arr


def _paired(clean: object, attacked: object) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(clean, "clean scores")
    p = _as_scores(attacked, "attacked scores")
    if s.shape != p.shape:
        raise ValueError(f"clean and attacked scores must pair up image by image, got {s.size} and {p.size}")
    if s.size == 0:
        raise ValueError("no images to aggregate: the robustness scores need at least one (clean, attacked) pair")
    return s / 100.0, p / 100.0


def accuracy(scores: object, threshold: float) -> float:
    """Share of scores >= threshold (the BIQA calls the image high quality). NaN for no images."""
    arr = _as_scores(scores, "scores")
    if arr.size == 0:
        return math.nan
    return float(np.mean(arr >= threshold))


def accuracy_reduction(original_accuracy: float, run_accuracy: float) -> float:
    """Accuracy of the originals minus accuracy of the run (liu2020, section 3)."""
    return float(original_accuracy - run_accuracy)


def qualifies(run_accuracy: float, max_accuracy: float) -> bool:
    """The gate: a run qualifies iff its accuracy is strictly below `max_accuracy` (NaN never qualifies)."""
    return bool(run_accuracy < max_accuracy)


def abs_gain(clean: object, attacked: object) -> float:
    """mean(s - p) on scores / 100."""
    s, p = _paired(clean, attacked)
    return float(np.mean(s - p))


def rel_gain(clean: object, attacked: object) -> float:
    """mean((s - p) / (s + 1)) on scores / 100."""
    s, p = _paired(clean, attacked)
    return float(np.mean((s - p) / (s + 1.0)))


def robustness_score(clean: object, attacked: object) -> float:
    """mean(log10(max(1 - s, s) / max(|s - p|, 1e-6))) on scores / 100."""
    s, p = _paired(clean, attacked)
    change = np.maximum(np.abs(s - p), ROBUSTNESS_FLOOR)
    allowed = np.maximum(1.0 - s, s)
    return float(np.mean(np.log10(allowed / change)))


def _mean_shift_sign(s: np.ndarray, p: np.ndarray) -> float:
    return float(np.sign(np.mean(s) - np.mean(p)))


def wasserstein_score(clean: object, attacked: object) -> float:
    """W1(s, p) * sign(mean s - mean p), W1 = scipy.stats.wasserstein_distance."""
    s, p = _paired(clean, attacked)
    return float(scipy.stats.wasserstein_distance(s, p)) * _mean_shift_sign(s, p)


def energy_score(clean: object, attacked: object) -> float:
    """E(s, p) * sign(mean s - mean p), E = scipy.stats.energy_distance = sqrt(2 * int (F_s - F_p)^2)."""
    s, p = _paired(clean, attacked)
    return float(scipy.stats.energy_distance(s, p)) * _mean_shift_sign(s, p)


@dataclass(frozen=True)
class RobustnessScores:
    abs_gain: float
    rel_gain: float
    robustness_score: float
    wasserstein_score: float
    energy_score: float


def robustness_scores(clean: object, attacked: object) -> RobustnessScores:
    """All five MSU-style scores for one run (paired clean / post-JPEG scores on the 0..100 scale)."""
    return RobustnessScores(
        abs_gain=abs_gain(clean, attacked),
        rel_gain=rel_gain(clean, attacked),
        robustness_score=robustness_score(clean, attacked),
        wasserstein_score=wasserstein_score(clean, attacked),
        energy_score=energy_score(clean, attacked),
    )


def _check_pair(original: np.ndarray, candidate: np.ndarray) -> None:
    for name, img in (("original", original), ("submitted", candidate)):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
    if original.shape != candidate.shape:
        raise ValueError(f"images differ in size: original {original.shape}, submitted {candidate.shape}")


def psnr(original: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels (skimage, data_range=255); +inf for identical images."""
    _check_pair(original, candidate)
    if np.array_equal(original, candidate):
        return math.inf
    return float(peak_signal_noise_ratio(original, candidate, data_range=255))


def ssim(original: np.ndarray, candidate: np.ndarray) -> float:
    """Mean SSIM (skimage defaults: 7x7 uniform window, channel_axis=-1, data_range=255).

    NaN when a side is shorter than 7 pixels (the window does not fit).
    """
    _check_pair(original, candidate)
    if min(original.shape[:2]) < SSIM_MIN_SIDE:
        return math.nan
    return float(structural_similarity(original, candidate, channel_axis=-1, data_range=255))
