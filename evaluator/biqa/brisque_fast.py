"""BRISQUE features without a graph: fused, compiled per-image kernels (numba), one image per thread.

The same quantities as `evaluator.biqa.brisque` (whose graph path attacks differentiate), for scoring only:
1. MSCN: mu = K * g, sigma = sqrt(max(|K * g^2 - mu^2|, 1e-20)) with the 7x7 Gaussian K (sigma 7/6) as a
   separable 'same' filter with zero padding (rows then columns), m = (g - mu) / (sigma + 1/255), float64;
   pixels where g - mu vanishes to rounding level get the package's own values
   (`brisque.match_package_where_mscn_vanishes`, called only when the kernel counted such candidates);
2. the AGGD moments of m and its four pair products (horizontal, vertical, main and secondary diagonal, cropped
   as the package does): E|x|, E[x^2], E[x^2 | x < 0], E[x^2 | x >= 0], accumulated in float64 in one pass;
3. the same at half scale (cv2 INTER_CUBIC taps, replicated borders, `brisque.half_scale`'s arithmetic).

Every image is computed by one thread with a fixed order of operations, so its features do not depend on how
many threads run (or on the batch it is in). Sums are vectorized (reassociated) inside a row in a fixed way:
the result is the same for every call on one machine, and within ~1e-16 relative of a sequential sum.
Compiled functions are cached on disk by numba (`evaluator.common.jit.njit`): the first call in a fresh checkout
compiles them (a few seconds), later processes load them; where no cache folder is writable they are compiled in
memory in each process.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evaluator.common.jit import njit

_FLAGS = {"reassoc", "nsz"}  # vectorized row sums; no change to non-finite handling


@njit(fastmath=_FLAGS)
def _abs_max(gray: np.ndarray) -> float:
    """max |g|, NaN when g holds a NaN (inf when it holds an inf)."""
    big = 0.0
    nan = 0.0
    for i in range(gray.shape[0]):
        for j in range(gray.shape[1]):
            v = gray[i, j]
            big = max(big, abs(v))
            nan += 0.0 if v == v else 1.0
    return big if nan == 0 else math.nan


@njit()
def _row_pass(gray: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """(2, H + n - 1, W): rows of g and g^2 correlated with `taps` ('same', zeros outside), with (n - 1) / 2 zero
    rows above and below (the column pass reads them as the zero padding)."""
    h, w = gray.shape
    n = taps.shape[0]
    half = (n - 1) // 2
    tmp = np.zeros((2, h + n - 1, w))
    pg = np.zeros(w + n - 1)  # one row of g and of g^2 with zero padding
    pq = np.zeros(w + n - 1)
    for i in range(h):
        row = gray[i]
        for j in range(w):
            pg[j + half] = row[j]
            pq[j + half] = row[j] * row[j]
        t0 = tmp[0, i + half]
        for k in range(n):
            t = taps[k]
            for j in range(w):
                t0[j] += t * pg[j + k]
        t1 = tmp[1, i + half]
        for k in range(n):
            t = taps[k]
            for j in range(w):
                t1[j] += t * pq[j + k]
    return tmp


@njit()
def mscn_maps(gray: np.ndarray, taps: np.ndarray, c: float, tiny: float):
    """(m, candidates) of one (H, W) float64 image: m = (g - mu) / (sigma + c); candidates = pixels with
    |g - mu| at most 1e-11 * 1.001 * sqrt(3 max g^2 + tiny) (all pixels for a non-finite image): where the package's
    own rounding may matter (`local_maps` gives mu, sigma for `brisque.match_package_where_mscn_vanishes`)."""
    h, w = gray.shape
    n = taps.shape[0]
    tmp = _row_pass(gray, taps)
    big = _abs_max(gray)
    bound = 1e-11 * 1.001 * math.sqrt(3 * big * big + tiny)
    m = np.empty((h, w))
    mu = np.empty(w)
    ex2 = np.empty(w)
    candidates = 0
    for i in range(h):
        mu[:] = 0.0
        ex2[:] = 0.0
        for k in range(n):
            t = taps[k]
            r0 = tmp[0, i + k]
            for j in range(w):
                mu[j] += t * r0[j]
        for k in range(n):
            t = taps[k]
            r1 = tmp[1, i + k]
            for j in range(w):
                ex2[j] += t * r1[j]
        row = gray[i]
        out = m[i]
        for j in range(w):
            var = abs(ex2[j] - mu[j] * mu[j])
            s = math.sqrt(max(var, tiny))
            d = row[j] - mu[j]
            out[j] = d / (s + c)
            candidates += abs(d) <= bound
    if not math.isfinite(bound):
        candidates = h * w
    return m, candidates


@njit()
def local_maps(gray: np.ndarray, taps: np.ndarray, tiny: float):
    """(mu, sigma, g - mu) maps of one image, the same arithmetic as `mscn_maps` (for the package fix-ups)."""
    h, w = gray.shape
    n = taps.shape[0]
    tmp = _row_pass(gray, taps)
    mu = np.zeros((h, w))
    ex2 = np.zeros(w)
    sigma = np.empty((h, w))
    diff = np.empty((h, w))
    for i in range(h):
        mrow = mu[i]
        ex2[:] = 0.0
        for k in range(n):
            t = taps[k]
            r0 = tmp[0, i + k]
            for j in range(w):
                mrow[j] += t * r0[j]
        for k in range(n):
            t = taps[k]
            r1 = tmp[1, i + k]
            for j in range(w):
                ex2[j] += t * r1[j]
        srow, drow, grow = sigma[i], diff[i], gray[i]
        for j in range(w):
            var = abs(ex2[j] - mrow[j] * mrow[j])
            srow[j] = math.sqrt(max(var, tiny))
            drow[j] = grow[j] - mrow[j]
    return mu, sigma, diff


@njit(fastmath=_FLAGS)
def _sums(m: np.ndarray, kind: int, acc: np.ndarray) -> None:
    """acc[kind] = [sum |x|, sum x^2, sum x^2 for x < 0, count x < 0] over the map `kind` of `aggd_moments5`."""
    h, w = m.shape
    sa = 0.0
    sq = 0.0
    lsq = 0.0
    lc = 0.0
    rows = h if kind <= 1 else h - 1
    cols = w if kind in (0, 2) else w - 1
    for i in range(rows):
        for j in range(cols):
            if kind == 0:
                v = m[i, j]
            elif kind == 1:
                v = m[i, j] * m[i, j + 1]
            elif kind == 2:
                v = m[i, j] * m[i + 1, j]
            elif kind == 3:
                v = m[i, j] * m[i + 1, j + 1]
            else:
                v = m[i + 1, j] * m[i, j + 1]
            sa += abs(v)
            sq += v * v
            left = min(v, 0.0)
            lsq += left * left
            lc += 1.0 if v < 0 else 0.0
    acc[kind, 0] = sa
    acc[kind, 1] = sq
    acc[kind, 2] = lsq
    acc[kind, 3] = lc


@njit()
def aggd_moments5(m: np.ndarray) -> np.ndarray:
    """(5, 4) [E|x|, E[x^2], E[x^2 | x < 0], E[x^2 | x >= 0]] of m and its horizontal, vertical, main- and
    secondary-diagonal pair products (cropped: m[:, :-1] m[:, 1:], m[:-1] m[1:], m[:-1, :-1] m[1:, 1:],
    m[1:, :-1] m[:-1, 1:]); zeros count on the right side, an empty side gives 0 (as `aggd_moments`)."""
    h, w = m.shape
    acc = np.zeros((5, 4))
    for kind in range(5):
        _sums(m, kind, acc)
    counts = np.array([h * w, h * (w - 1), (h - 1) * w, (h - 1) * (w - 1), (h - 1) * (w - 1)], dtype=np.float64)
    out = np.zeros((5, 4))
    for k in range(5):
        n = counts[k]
        left = acc[k, 3]
        right = n - left
        out[k, 0] = acc[k, 0] / n
        out[k, 1] = acc[k, 1] / n
        out[k, 2] = acc[k, 2] / max(left, 1.0)
        out[k, 3] = (acc[k, 1] - acc[k, 2]) / max(right, 1.0)
    return out


@njit()
def half_scale(gray: np.ndarray, taps: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """cv2.resize(fx=fy=0.5, INTER_CUBIC): output d takes inputs 2d-1 .. 2d+2 (clamped), horizontal pass first;
    the sums in `brisque.half_scale`'s order ((t0 + t1) + t2) + t3."""
    h, w = gray.shape
    rows = np.empty((h, ow))
    for i in range(h):
        for d in range(ow):
            acc = 0.0
            for k in range(4):
                j = min(max(2 * d - 1 + k, 0), w - 1)
                term = gray[i, j] * taps[k]
                acc = term if k == 0 else acc + term
            rows[i, d] = acc
    out = np.empty((oh, ow))
    for d in range(oh):
        for k in range(4):
            i = min(max(2 * d - 1 + k, 0), h - 1)
            t = taps[k]
            for j in range(ow):
                term = rows[i, j] * t
                out[d, j] = term if k == 0 else out[d, j] + term
    return out


@njit()
def snap_to_8bit_grid(x: np.ndarray, scale, tolerance: float) -> np.ndarray:
    """(H, W, 3) float64 of an RGB (3, H, W) float image, with values within `tolerance` of k/255 (measured as
    |x * 255 - round(x * 255)| in x's precision) set to exactly k * (1/255), as `brisque.to_float64_on_8bit_grid`
    (how skimage's img_as_float reads 8-bit images); other values are kept. `scale`: 255 in x's dtype."""
    _, h, w = x.shape
    out = np.empty((h, w, 3))
    for i in range(h):
        for j in range(w):
            for ch in range(3):
                v = x[ch, i, j]
                scaled = v * scale  # in x's own precision, as the torch version
                level = math.floor(scaled + 0.5)  # = round-half-even wherever the offset is within tolerance
                out[i, j, ch] = float(level) * (1 / 255) if abs(scaled - level) <= tolerance else float(v)
    return out


@njit()
def weighted_gray(rgb: np.ndarray, r: float, g: float, b: float) -> np.ndarray:
    """(H, W) = R r + G g + B b of an (H, W, 3) image, summed left to right (`brisque.rgb_to_gray`)."""
    h, w, _ = rgb.shape
    out = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = rgb[i, j, 0] * r + rgb[i, j, 1] * g + rgb[i, j, 2] * b
    return out


def gray_image(x: np.ndarray, weights: tuple[float, float, float], numpy_matmul: bool) -> np.ndarray:
    """(H, W) float64 gray of one RGB (3, H, W) float image in [0, 1], on the 8-bit grid where it lies on it;
    `numpy_matmul`: numpy's own `rgb @ weights` (skimage's rgb2gray, bit for bit), else `weighted_gray`."""
    tolerance = 3e-5 if x.dtype == np.float32 else 1e-9
    rgb = snap_to_8bit_grid(x, x.dtype.type(255), tolerance)
    if numpy_matmul:
        return rgb @ np.asarray(weights, dtype=np.float64)
    return weighted_gray(rgb, *weights)


def image_moments(gray: np.ndarray, taps: np.ndarray, half_taps: np.ndarray, c: float, tiny: float,
                  match_package) -> np.ndarray:
    """(2, 5, 4) moments (full scale, half scale) of one (H, W) float64 gray image. `match_package(m, gray, mu,
    sigma, diff)` (numpy arrays) returns m with the package's values where the MSCN vanishes, or None to skip."""
    out = np.empty((2, 5, 4))
    h, w = gray.shape
    scales = (gray, None)
    for s in range(2):
        g = scales[0] if s == 0 else half_scale(gray, half_taps, round(h / 2), round(w / 2))
        m, candidates = mscn_maps(g, taps, c, tiny)
        if candidates and match_package is not None:
            m = match_package(m, g, *local_maps(g, taps, tiny))
        out[s] = aggd_moments5(m)
    return out


def batch_moments(images: np.ndarray, weights: tuple[float, float, float], taps: np.ndarray,
                  half_taps: np.ndarray, c: float, tiny: float, match_package, threads: int = 1) -> np.ndarray:
    """(N, 2, 5, 4) moments of (N, 3, H, W) RGB float images, `threads` images at a time (the values do not
    depend on it). `match_package` None: plain weighted gray, no package rounding."""
    n = images.shape[0]
    out = np.empty((n, 2, 5, 4))

    def one(x: np.ndarray) -> np.ndarray:
        gray = gray_image(x, weights, numpy_matmul=match_package is not None)
        return image_moments(gray, taps, half_taps, c, tiny, match_package)

    if threads <= 1 or n <= 1:
        for i in range(n):
            out[i] = one(images[i])
        return out
    with ThreadPoolExecutor(min(threads, n), thread_name_prefix="brisque") as pool:
        for i, value in enumerate(pool.map(one, list(images))):
            out[i] = value
    return out


@njit()
def vanishing_pixels(gray: np.ndarray, mu: np.ndarray, sigma: np.ndarray, diff: np.ndarray, tiny: float):
    """(flat indices, flat-window flags) of the pixels where g - mu vanishes to rounding level, as
    `brisque.vanishing_mscn_pixels` defines them: |g - mu| <= 1e-11 * 1.001 * sqrt(3 max g^2 + tiny) and
    |g - mu| <= 1e-11 sqrt(sigma^2 + mu^2), except exact zeros (g = mu = 0); a pixel's flag says whether its
    7x7 window lies inside the image and holds a single value (`brisque.flat_window_map`)."""
    h, w = gray.shape
    big = _abs_max(gray)
    bound = 1e-11 * 1.001 * math.sqrt(3 * big * big + tiny)
    test_all = not math.isfinite(bound)
    found = np.empty(h * w, dtype=np.int64)
    flat = np.zeros(h * w, dtype=np.bool_)
    n = 0
    for i in range(h):
        for j in range(w):
            d = diff[i, j]
            if not (test_all or abs(d) <= bound):
                continue
            x = gray[i, j]
            m = mu[i, j]
            s = sigma[i, j]
            rms = math.sqrt(s * s + m * m)
            if abs(x - m) <= 1e-11 * rms and (x != 0 or m != 0):
                found[n] = i * w + j
                if 3 <= i < h - 3 and 3 <= j < w - 3:
                    same = True
                    for a in range(i - 3, i + 4):
                        for b in range(j - 3, j + 4):
                            if gray[a, b] != x:
                                same = False
                    flat[n] = same
                n += 1
    return found[:n].copy(), flat[:n].copy()
