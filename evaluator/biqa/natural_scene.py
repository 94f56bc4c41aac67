"""Differentiable natural-scene statistics (NSS) shared by BRISQUE and NIQE.

All functions are pure torch, batched over leading dimensions, and differentiable with respect to the image:

- `gaussian_kernel1d(size, sigma)`: normalized 1-D Gaussian; the 2-D window is its outer product.
- `gaussian_filter(x, kernel, padding)`: separable 'same' filtering of the last two dims of `x`.
- `local_mean_and_deviation(x, kernel, padding)`: mu = K * x, sigma = sqrt(|K * x^2 - mu^2|)
  (the "vectorized" local deviation of the BRISQUE / NIQE reference code).
- `mscn(x, kernel, c, padding)`: mean-subtracted contrast-normalized coefficients (x - mu) / (sigma + c)
  (Mittal et al. 2012, eq. 1).
- `pair_products(m, boundary)`: products of neighbouring MSCN coefficients along the four orientations
  horizontal, vertical, main diagonal, secondary diagonal (Mittal et al. 2012, eq. 6-9).
- `aggd_moments(x, dims, valid_count)` (+ `stack_moments`) + `aggd_fit_from_moments(m)` (or `aggd_fit(x, ...)`):
  the moment-matching
  fit of an asymmetric generalized Gaussian (Lasmar et al. 2009), with the shape alpha found by inverting
  phi(alpha) = Gamma(2/alpha)^2 / (Gamma(1/alpha) Gamma(3/alpha)) and kept differentiable through an
  implicit-function Newton step (`invert_phi`).

Flat regions are guarded: square roots and ratios are floored at `TINY` so a constant image gives finite values
and finite gradients, while the values differ from the unguarded formula by less than sqrt(TINY) = 1e-10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

Padding = Literal["zeros", "replicate", "symmetric", "mirror"]
Boundary = Literal["crop", "circular"]

TINY = 1e-20
"""Floor for quantities under a square root or in a denominator (keeps flat images finite)."""

ALPHA_MIN = 0.05
ALPHA_MAX = 100.0
"""Range over which `invert_phi` looks for the AGGD shape; phi(0.05) ~ 1e-13, phi(100) ~ 0.7491 (limit 0.75)."""

_GRID_SIZE = 8192


def gaussian_kernel1d(
    size: int = 7, sigma: float = 7 / 6, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Normalized 1-D Gaussian exp(-k^2 / (2 sigma^2)) / sum, k = i - size // 2 (i = 0..size-1).

    Its outer product with itself is the normalized 2-D window of the BRISQUE package (`gaussian_kernel2d`).
    """
    if size < 1 or sigma <= 0:
        raise ValueError(f"gaussian_kernel1d: need size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    k = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(k**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _pad(x: torch.Tensor, before: int, after: int, padding: Padding) -> torch.Tensor:
    """Pad the last two dims of `x` by `before` / `after` on each side with the named boundary rule.

    zeros = constant 0 (scipy.signal.convolve2d 'same', scipy.ndimage mode='constant'); replicate = edge value
    (ndimage 'nearest'); symmetric = edge sample repeated (ndimage 'reflect'); mirror = edge not repeated
    (ndimage 'mirror', torch 'reflect').
    """
    pads = (before, after, before, after)
    if padding == "zeros":
        return F.pad(x, pads)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if padding == "replicate":
        out = F.pad(flat, pads, mode="replicate")
    elif padding == "mirror":
        out = F.pad(flat, pads, mode="reflect")
    elif padding == "symmetric":
        h, w = x.shape[-2:]
        if max(before, after) > min(h, w):
            raise ValueError(f"symmetric padding of {max(before, after)} needs an image of at least that size")
        rows = torch.cat([flat[..., :before, :].flip(-2), flat, flat[..., h - after :, :].flip(-2)], dim=-2)
        out = torch.cat([rows[..., :before].flip(-1), rows, rows[..., w - after :].flip(-1)], dim=-1)
    else:
        raise ValueError(f"unknown padding {padding!r}; use zeros, replicate, symmetric or mirror")
    return out.reshape(*lead, *out.shape[-2:])


def _correlate_valid(xp: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' correlation of the last two dims with `kernel` along rows then columns.

    Shifted, weighted sums accumulated in place (much faster on CPU than conv2d with a 1-channel kernel).
    """
    taps = kernel.detach().cpu().tolist()
    n = len(taps)
    w = xp.shape[-1] - n + 1
    tmp = xp[..., 0:w] * taps[0]
    for k in range(1, n):
        tmp.add_(xp[..., k : k + w], alpha=taps[k])
    h = tmp.shape[-2] - n + 1
    out = tmp[..., 0:h, :] * taps[0]
    for k in range(1, n):
        out.add_(tmp[..., k : k + h, :], alpha=taps[k])
    return out


def gaussian_filter(x: torch.Tensor, kernel: torch.Tensor, padding: Padding = "zeros") -> torch.Tensor:
    """'Same'-size separable filtering of the last two dims of `x` with outer(kernel, kernel).

    The kernel is symmetric, so correlation equals convolution. With padding='zeros' this is
    scipy.signal.convolve2d(x, outer(kernel, kernel), 'same') for odd kernel sizes.
    """
    n = kernel.shape[0]
    before, after = (n - 1) // 2, n // 2
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    return _correlate_valid(_pad(x, before, after, padding), kernel)


def safe_sqrt(v: torch.Tensor, tiny: float = TINY) -> torch.Tensor:
    """sqrt(max(v, tiny)): equals sqrt(v) up to sqrt(tiny) and has a finite gradient everywhere (0 below tiny)."""
    return torch.sqrt(v.clamp_min(tiny))


def local_mean_and_deviation(
    x: torch.Tensor, kernel: torch.Tensor, padding: Padding = "zeros"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean mu = K * x and deviation sigma = sqrt(|K * x^2 - mu^2|) over the last two dims.

    Computed exactly as the references do (no shift of the image before filtering): a shift would turn the
    exact zeros of MSCN maps in black regions into rounding noise of random sign, which moves coefficients
    between the left and right sides of the AGGD fit.
    """
    n = kernel.shape[0]
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    before, after = (n - 1) // 2, n // 2
    if padding == "zeros" and not (torch.is_grad_enabled() and x.requires_grad):
        # same arithmetic without the pad / stack copies and with in-place tails (no graph to keep)
        h, w = x.shape[-2:]
        both = x.new_zeros((2, *x.shape[:-2], h + before + after, w + before + after))
        both[0, ..., before : before + h, before : before + w] = x
        torch.mul(x, x, out=both[1, ..., before : before + h, before : before + w])
        both = _correlate_valid(both, kernel)
        mu, ex2 = both[0], both[1]
        var = torch.mul(mu, mu)
        return mu, torch.sub(ex2, var, out=var).abs_().clamp_min_(TINY).sqrt_()
    xp = _pad(x, before, after, padding)
    both = _correlate_valid(torch.stack([xp, xp * xp]), kernel)
    mu, ex2 = both[0], both[1]
    return mu, safe_sqrt((ex2 - mu * mu).abs())


def mscn(x: torch.Tensor, kernel: torch.Tensor, c: float, padding: Padding = "zeros") -> torch.Tensor:
    """MSCN coefficients (x - mu) / (sigma + c) of the last two dims (Mittal et al. 2012, eq. 1).

    BRISQUE package: x = gray in [0, 1], 7x7 Gaussian sigma 7/6, c = 1/255, zero padding.
    """
    mu, sigma = local_mean_and_deviation(x, kernel, padding)
    return (x - mu) / (sigma + c)


def pair_products(m: torch.Tensor, boundary: Boundary = "crop") -> list[torch.Tensor] | torch.Tensor:
    """Products of neighbouring coefficients: horizontal, vertical, main diagonal, secondary diagonal.

    boundary='crop' returns a list of 4 tensors (..., H, W-1), (..., H-1, W), (..., H-1, W-1), (..., H-1, W-1)
    exactly as the BRISQUE package (m[:, :-1] * m[:, 1:], m[:-1] * m[1:], m[:-1, :-1] * m[1:, 1:],
    m[1:, :-1] * m[:-1, 1:]). boundary='circular' returns one tensor (..., 4, H, W) with wrap-around neighbours,
    like scikit-video's NIQE (np.roll of the map by one pixel).
    """
    if boundary == "crop":
        return [
            m[..., :, :-1] * m[..., :, 1:],
            m[..., :-1, :] * m[..., 1:, :],
            m[..., :-1, :-1] * m[..., 1:, 1:],
            m[..., 1:, :-1] * m[..., :-1, 1:],
        ]
    if boundary == "circular":
        right = torch.roll(m, 1, dims=-1)
        down = torch.roll(m, 1, dims=-2)
        return torch.stack(
            [m * right, m * down, m * torch.roll(down, 1, dims=-1), m * torch.roll(down, -1, dims=-1)], dim=-3
        )
    raise ValueError(f"unknown boundary {boundary!r}; use crop or circular")


@dataclass(frozen=True)
class AGGDMoments:
    """Sample moments of a coefficient map: E|x|, E[x^2], E[x^2 | x < 0], E[x^2 | x >= 0] (each (...,))."""

    mean_abs: torch.Tensor
    mean_sq: torch.Tensor
    left_mean_sq: torch.Tensor
    right_mean_sq: torch.Tensor


@dataclass(frozen=True)
class AGGDParams:
    """AGGD fit: shape alpha, mean eta = (beta_r - beta_l) Gamma(2/a) / Gamma(1/a), left/right variances."""

    alpha: torch.Tensor
    mean: torch.Tensor
    sigma_l_sq: torch.Tensor
    sigma_r_sq: torch.Tensor


def aggd_moments(
    x: torch.Tensor, dims: Sequence[int] = (-2, -1), valid_count: torch.Tensor | float | None = None
) -> AGGDMoments:
    """Moments over `dims` of `x`; zeros count on the right (x >= 0) side, as in the BRISQUE package.

    `x` may carry zero padding outside its valid region when `valid_count` gives the number of valid entries
    (broadcastable to the reduced shape): zeros add nothing to any sum and only shift the right-side count.
    Empty sides give mean square 0 (the reference would give NaN). (torch.linalg.vector_norm would save the
    temporaries but is about 1e-5 off in float32; `sum` is cascaded, about 1e-8.)
    """
    dims = tuple(dims)
    if valid_count is None:
        valid_count = math.prod(x.shape[d] for d in dims)
    count = torch.as_tensor(valid_count, dtype=x.dtype, device=x.device)
    left = x.clamp(max=0)
    sum_sq = (x * x).sum(dim=dims)
    left_sum = (left * left).sum(dim=dims)
    # count of x < 0 as -sum(sign(min(x, 0))) (exact in float64; faster than count_nonzero's bool map)
    left_count = -torch.sign(left.detach()).sum(dim=dims, dtype=torch.float64).to(x.dtype)
    right_count = count - left_count
    return AGGDMoments(
        mean_abs=x.abs().sum(dim=dims) / count,
        mean_sq=sum_sq / count,
        left_mean_sq=left_sum / left_count.clamp_min(1),
        right_mean_sq=(sum_sq - left_sum) / right_count.clamp_min(1),
    )


def stack_moments(moments: Sequence[AGGDMoments], dim: int = -1) -> AGGDMoments:
    """Stack the moments of several maps (e.g. MSCN and its pair products) so one fit handles them all."""
    return AGGDMoments(
        *(torch.stack([getattr(m, f) for m in moments], dim=dim) for f in AGGDMoments.__dataclass_fields__)
    )


def _log_phi(alpha: torch.Tensor) -> torch.Tensor:
    return 2 * torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)


def phi(alpha: torch.Tensor) -> torch.Tensor:
    """phi(alpha) = Gamma(2/alpha)^2 / (Gamma(1/alpha) Gamma(3/alpha)), increasing from 0 to 3/4."""
    return torch.exp(_log_phi(alpha))


def phi_derivative(alpha: torch.Tensor) -> torch.Tensor:
    """phi'(alpha) = phi(alpha) (psi(1/a) + 3 psi(3/a) - 4 psi(2/a)) / a^2 (psi = digamma)."""
    a = alpha
    return phi(a) * (torch.digamma(1 / a) + 3 * torch.digamma(3 / a) - 4 * torch.digamma(2 / a)) / (a * a)


_grid_cache: dict[tuple[torch.dtype, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _phi_grid(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (dtype, str(device))
    if key not in _grid_cache:
        a = torch.logspace(math.log10(ALPHA_MIN), math.log10(ALPHA_MAX), _GRID_SIZE, dtype=torch.float64)
        _grid_cache[key] = (a.to(dtype=dtype, device=device), phi(a).to(dtype=dtype, device=device))
    return _grid_cache[key]


def invert_phi(ratio: torch.Tensor, newton_steps: int = 3) -> torch.Tensor:
    """Shape alpha with phi(alpha) = ratio (the generalized Gaussian ratio R_hat), differentiable in `ratio`.

    Without gradient: linear interpolation on a log grid of alpha in [ALPHA_MIN, ALPHA_MAX], then
    `newton_steps` safeguarded Newton steps. With gradient: one more Newton step from that root a0,
    alpha = a0 + (ratio - phi(a0)) / phi'(a0), whose value is the root and whose derivative is the
    implicit-function derivative d alpha / d ratio = 1 / phi'(alpha). Ratios outside phi's range clamp to the
    grid ends (zero gradient there). Computed in float64 whatever the input dtype; returned in ratio's dtype.
    """
    r = ratio.to(torch.float64)
    grid_a, grid_phi = _phi_grid(torch.float64, r.device)
    with torch.no_grad():
        rd = r.detach().clamp(grid_phi[0], grid_phi[-1])
        hi = torch.searchsorted(grid_phi, rd.contiguous()).clamp(1, _GRID_SIZE - 1)
        lo = hi - 1
        p0, p1 = grid_phi[lo], grid_phi[hi]
        a_lo, a_hi = grid_a[lo], grid_a[hi]
        t = ((rd - p0) / (p1 - p0).clamp_min(TINY)).clamp(0, 1)
        a = a_lo + t * (a_hi - a_lo)
        for _ in range(newton_steps):
            a = (a + (rd - phi(a)) / phi_derivative(a).clamp_min(TINY)).clamp(a_lo, a_hi)
        inside = (r.detach() > grid_phi[0]) & (r.detach() < grid_phi[-1])
    step = (r - phi(a)) / phi_derivative(a).clamp_min(TINY)
    alpha = torch.where(inside, a + step, a)
    return alpha.to(ratio.dtype)


def aggd_fit_from_moments(m: AGGDMoments) -> AGGDParams:
    """Moment-matching AGGD fit (Lasmar et al. 2009), the BRISQUE package's `asymmetric_generalized_gaussian_fit`.

    gamma = sigma_l / sigma_r, r_hat = E|x|^2 / E[x^2], R_hat = r_hat (gamma^3 + 1)(gamma + 1) / (gamma^2 + 1)^2,
    alpha = phi^-1(R_hat), mean = (sigma_r - sigma_l) sqrt(Gamma(1/a) / Gamma(3/a)) Gamma(2/a) / Gamma(1/a).
    """
    sigma_l = safe_sqrt(m.left_mean_sq)
    sigma_r = safe_sqrt(m.right_mean_sq)
    gamma = sigma_l / sigma_r
    r_hat = m.mean_abs * m.mean_abs / m.mean_sq.clamp_min(TINY)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = invert_phi(big_r)
    a = alpha.to(torch.float64)
    log_ratio = 0.5 * (torch.lgamma(1 / a) - torch.lgamma(3 / a)) + torch.lgamma(2 / a) - torch.lgamma(1 / a)
    mean = (sigma_r - sigma_l) * torch.exp(log_ratio).to(alpha.dtype)
    return AGGDParams(alpha=alpha, mean=mean, sigma_l_sq=m.left_mean_sq, sigma_r_sq=m.right_mean_sq)


def aggd_fit(
    x: torch.Tensor, dims: Sequence[int] = (-2, -1), valid_count: torch.Tensor | float | None = None
) -> AGGDParams:
    """`aggd_fit_from_moments(aggd_moments(x, dims, valid_count))`: one AGGD per remaining index of `x`."""
    return aggd_fit_from_moments(aggd_moments(x, dims, valid_count))


__all__ = [
    "ALPHA_MAX",
    "ALPHA_MIN",
    "AGGDMoments",
    "AGGDParams",
    "TINY",
    "aggd_fit",
    "aggd_fit_from_moments",
    "aggd_moments",
    "gaussian_filter",
    "gaussian_kernel1d",
    "invert_phi",
    "local_mean_and_deviation",
    "mscn",
    "pair_products",
    "stack_moments",
    "phi",
    "phi_derivative",
    "safe_sqrt",
]
