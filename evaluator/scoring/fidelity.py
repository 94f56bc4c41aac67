"""PSNR and SSIM of submitted images against their originals, computed beside the scoring.

`fidelity` (what the pipeline stores) uses the compiled `evaluator.scoring.fidelity_fast`: PSNR bit for bit
`evaluator.scoring.metrics.psnr`, SSIM with the settings of `evaluator.scoring.metrics.ssim` (skimage's
`structural_similarity`: 7x7 uniform window, per channel, data_range=255, sample covariance) from exact integer
window sums, within `SSIM_TOLERANCE` = 1e-10 of `metrics.ssim` in the tests. The pipeline runs it in its worker
processes (`evaluator.pipeline`); the values do not depend on them.
"""

from __future__ import annotations

import math

import numpy as np

from evaluator.scoring import metrics

#: Largest |fidelity(...)["ssim"] - metrics.ssim| accepted by the tests (measured: ~1e-13 on photos).
SSIM_TOLERANCE = 1e-10


def fidelity(original: np.ndarray, submitted: np.ndarray) -> dict[str, float]:
    """{"psnr": dB (inf when identical), "ssim": mean SSIM} of `submitted` against `original`: the compiled
    `evaluator.scoring.fidelity_fast` versions (PSNR bit for bit `metrics.psnr`, SSIM within ~1e-12 of
    `metrics.ssim`); NaN SSIM when a side is shorter than `metrics.SSIM_MIN_SIDE`; ValueError for a bad pair."""
    from evaluator.scoring import fidelity_fast

    metrics._check_pair(original, submitted)
    a, b = np.ascontiguousarray(original), np.ascontiguousarray(submitted)
    ssim = math.nan if min(a.shape[:2]) < metrics.SSIM_MIN_SIDE else float(fidelity_fast.ssim_uint8(a, b))
    return {"psnr": fidelity_fast.psnr_uint8(a, b), "ssim": ssim}
