"""PSNR and SSIM of submitted images against their originals, computed beside the scoring.

PSNR is `evaluator.scoring.metrics.psnr` (exact). SSIM is skimage's `structural_similarity` with the settings of
`evaluator.scoring.metrics.ssim` (7x7 uniform window, per channel, data_range=255, sample covariance), but on float32
copies of the uint8 pixels (values 0..255, exact in float32) instead of the float64 copies skimage makes itself:
about 40 % less time. The arithmetic is the same in single precision; against `metrics.ssim` the mean SSIM
differs by at most 1.2e-7 over 120 photo pairs of the 40x3 benchmark (mean 4e-8), bounded by
`SSIM_FLOAT32_TOLERANCE` = 1e-6 in the tests. (Scaling to x/255 with data_range=1 is no faster and drifts ten
times more, up to 1.4e-6, because x/255 is not exact in float32.) Identical images still give exactly 1.0.

`fidelity` (what the pipeline stores) uses the compiled `evaluator.scoring.fidelity_fast` instead: PSNR bit for bit,
SSIM from exact integral images, within `SSIM_TOLERANCE` = 1e-10 of `metrics.ssim` in the tests (measured ~1e-13),
about 5x faster than the float32 skimage call.

SSIM with skimage costs more than the BIQA itself on a 512x384 image. `FidelityWorker` runs it on
worker threads (numpy's and scipy.ndimage's loops release the GIL) while the main thread decodes, compresses and
scores; with `threads=0` it computes inline. The values do not depend on the threads. At most `max_pending`
image pairs are in flight, so memory stays bounded; results are handed to `on_done` on the caller's thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import math

import numpy as np
from skimage.metrics import structural_similarity

from evaluator.scoring import metrics

#: Largest |ssim_float32 - metrics.ssim| accepted by the tests (measured: 1.2e-7 on photos).
SSIM_FLOAT32_TOLERANCE = 1e-6
#: Largest |fidelity(...)["ssim"] - metrics.ssim| accepted by the tests (measured: ~1e-13 on photos).
SSIM_TOLERANCE = 1e-10


def ssim_float32(original: np.ndarray, submitted: np.ndarray) -> float:
    """`metrics.ssim` computed in float32 (same skimage call on exact float32 pixel values, data_range=255).

    NaN when a side is shorter than `metrics.SSIM_MIN_SIDE`; ValueError for a pair `metrics.ssim` refuses.
    """
    metrics._check_pair(original, submitted)
    if min(original.shape[:2]) < metrics.SSIM_MIN_SIDE:
        return math.nan
    return float(structural_similarity(original.astype(np.float32), submitted.astype(np.float32),
                                       channel_axis=-1, data_range=255.0))


def fidelity(original: np.ndarray, submitted: np.ndarray) -> dict[str, float]:
    """{"psnr": dB (inf when identical), "ssim": mean SSIM} of `submitted` against `original`: the compiled
    `evaluator.scoring.fidelity_fast` versions (PSNR bit for bit `metrics.psnr`, SSIM within ~1e-12 of
    `metrics.ssim`); NaN SSIM when a side is shorter than `metrics.SSIM_MIN_SIDE`; ValueError for a bad pair."""
    from evaluator.scoring import fidelity_fast

    metrics._check_pair(original, submitted)
    a, b = np.ascontiguousarray(original), np.ascontiguousarray(submitted)
    ssim = math.nan if min(a.shape[:2]) < metrics.SSIM_MIN_SIDE else float(fidelity_fast.ssim_uint8(a, b))
    return {"psnr": fidelity_fast.psnr_uint8(a, b), "ssim": ssim}


class FidelityWorker:
    """Computes `fidelity` for keyed image pairs, inline or on `threads` worker threads."""

    def __init__(self, on_done: Callable[[dict[str, dict[str, float]]], None], threads: int = 1,
                 max_pending: int = 32):
        self.on_done = on_done
        self.max_pending = max(1, max_pending)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fidelity") if threads > 0 else None
        self._pending: deque[tuple[str, Future[dict[str, float]]]] = deque()
        self._keys: set[str] = set()

    def __contains__(self, key: str) -> bool:
        """True while `key` is being computed."""
        return key in self._keys

    def submit(self, key: str, original: np.ndarray, submitted: np.ndarray) -> None:
        if self._pool is None:
            self.on_done({key: fidelity(original, submitted)})
            return
        self._keys.add(key)
        self._pending.append((key, self._pool.submit(fidelity, original, submitted)))
        self.collect()

    def collect(self, wait_all: bool = False) -> None:
        """Hand over the finished results (in submission order); wait while too many are in flight."""
        done: dict[str, dict[str, float]] = {}
        while self._pending:
            key, future = self._pending[0]
            if not (future.done() or wait_all or len(self._pending) > self.max_pending):
                break
            self._pending.popleft()
            done[key] = future.result()
            self._keys.discard(key)
        if done:
            self.on_done(done)

    def close(self) -> None:
        """Wait for everything in flight, hand it over, and stop the threads."""
        try:
            self.collect(wait_all=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        """Stop without handing anything over (after an error in the caller)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._keys.clear()
