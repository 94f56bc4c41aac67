"""Compiled PSNR and SSIM of 8-bit images (numba): the numbers of `evaluator.scoring.metrics`, without the float64
copies and full-size filtered maps.

SSIM (Wang et al. 2004, eq. 13) with skimage's `structural_similarity` settings (7x7 uniform window, K1 = 0.01,
K2 = 0.03, data_range L = 255, sample covariance N/(N-1) with N = 49, per channel, mean over the window positions
that lie inside the image, i.e. skimage's crop of (7-1)/2 pixels, then the mean over channels):
    S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)),  C1 = (K1 L)^2, C2 = (K2 L)^2,
with the window sums of x, y, x^2, y^2, xy computed exactly in integers (8-bit pixels), so the only
rounding is in the formula itself: within ~1e-12 of skimage's float64 result, and the same for any thread or
worker count (one image pair is one sequential computation).
PSNR = 10 log10(L^2 / MSE) with the squared error summed exactly in int64 (skimage's float64 mean of integers
is exact too, so the value is bit for bit `metrics.psnr`'s).
"""

from __future__ import annotations

import math

import numpy as np

from evaluator.common.jit import njit

WIN = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


@njit()
def _row_window_sums(a: np.ndarray, b: np.ndarray, ch: int, i: int, out: np.ndarray) -> None:
    """out[k, j] = sum over the 7 pixels j .. j+6 of row i, channel ch, of x, y, x^2, y^2, xy (k = 0..4), exact
    (int32: at most 7 * 255^2)."""
    w = a.shape[1]
    row_x = np.empty(w, dtype=np.int32)
    row_y = np.empty(w, dtype=np.int32)
    for j in range(w):
        row_x[j] = a[i, j, ch]
        row_y[j] = b[i, j, ch]
    for j in range(w - WIN + 1):
        sx = 0
        sy = 0
        sxx = 0
        syy = 0
        sxy = 0
        for t in range(WIN):
            x = row_x[j + t]
            y = row_y[j + t]
            sx += x
            sy += y
            sxx += x * x
            syy += y * y
            sxy += x * y
        out[0, j] = sx
        out[1, j] = sy
        out[2, j] = sxx
        out[3, j] = syy
        out[4, j] = sxy


@njit(fastmath={"reassoc", "nsz"})
def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 images (both sides >= 7), skimage's settings (module docstring).

    Window sums: 7-pixel row sums, then a running sum of 7 of them down each column (exact integers)."""
    h, w = a.shape[0], a.shape[1]
    ow = w - WIN + 1
    n = WIN * WIN
    inv_n = 1.0 / n
    cov_norm = n / (n - 1.0)
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    total = 0.0
    rows = np.empty((h, 5, ow), dtype=np.int32)
    for ch in range(3):
        for i in range(h):
            _row_window_sums(a, b, ch, i, rows[i])
        box = np.zeros((5, ow), dtype=np.int64)
        for t in range(WIN - 1):
            for k in range(5):
                for j in range(ow):
                    box[k, j] += rows[t, k, j]
        acc = 0.0
        for i in range(h - WIN + 1):
            for k in range(5):
                add = rows[i + WIN - 1, k]
                bk = box[k]
                for j in range(ow):
                    bk[j] += add[j]
            for j in range(ow):
                ux = box[0, j] * inv_n
                uy = box[1, j] * inv_n
                uxx = box[2, j] * inv_n
                uyy = box[3, j] * inv_n
                uxy = box[4, j] * inv_n
                vx = cov_norm * (uxx - ux * ux)
                vy = cov_norm * (uyy - uy * uy)
                vxy = cov_norm * (uxy - ux * uy)
                a1 = 2 * ux * uy + c1
                a2 = 2 * vxy + c2
                b1 = ux * ux + uy * uy + c1
                b2 = vx + vy + c2
                acc += (a1 * a2) / (b1 * b2)
            for k in range(5):
                sub = rows[i, k]
                bk = box[k]
                for j in range(ow):
                    bk[j] -= sub[j]
        total += acc / ((h - WIN + 1) * ow)
    return total / 3


@njit()
def squared_error_sum(a: np.ndarray, b: np.ndarray) -> np.int64:
    """sum (a - b)^2 over all pixels and channels of two uint8 arrays of one shape, exact (int64)."""
    fa = a.reshape(-1)
    fb = b.reshape(-1)
    total = np.int64(0)
    for k in range(fa.size):
        d = np.int64(fa[k]) - np.int64(fb[k])
        total += d * d
    return total


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """10 log10(255^2 / MSE) of two (H, W, 3) uint8 images; +inf when identical (as `metrics.psnr`)."""
    sse = int(squared_error_sum(np.ascontiguousarray(a), np.ascontiguousarray(b)))
    if sse == 0:
        return math.inf
    mse = np.float64(sse) / np.float64(a.size)
    return float(10 * np.log10((DATA_RANGE**2) / mse))
