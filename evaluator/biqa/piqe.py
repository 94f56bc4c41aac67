"""PIQE (Venkatanath N, Praneeth D, Bh M C, Channappayya S S, Medasani S S, "Blind image quality evaluation
using perception based features", NCC 2015) in torch, training-free, as MATLAB's `piqe` and the PyPI port
`pypiqe` 1.2 compute it.

The paper's steps and equations, with the constants of MATLAB / pypiqe:

1. gray Y: the RGB image quantised to 8 bits, then OpenCV 5's fixed-point luma
   Y = (9798 R + 19235 G + 3735 B + 2^14) >> 15 (0.299 R + 0.587 G + 0.114 B, rounded), bit for bit what pypiqe
   gets from `cv2.cvtColor(img, COLOR_BGR2GRAY)` on a BGR image (OpenCV 4's 14-bit weights and MATLAB's
   rgb2gray weights 0.2989 / 0.5870 / 0.1140 differ from it by one gray level on a fraction of the colours);
2. pad bottom / right to multiples of the block size B = 16, symmetric (the edge row repeated, MATLAB padarray
   'symmetric'), then I = round(255 Y / max Y) (round half to even; an all-black image stays 0);
3. MSCN: I_hat = (I - mu) / (nu + C), C = 1, mu = w * I and nu = sqrt(|w * I^2 - mu^2|), w the 7x7
   Gaussian of sigma 7/6 (cv2.GaussianBlur, replicated borders);
4. per non-overlapping 16x16 block k of I_hat: nu_k = sample variance (ddof 1). The block is spatially active
   (salient) when nu_k > T_A = 0.1; only active blocks are scored, N_SA of them;
5. noticeable-artifact criterion: each of the four block edges (top row, right column, bottom row,
   left column) is cut into the 11 segments of 6 contiguous pixels; the block is distorted when any segment
   has sample standard deviation sigma_seg < T_STD = 0.1 (a flat edge inside a busy block: blockiness);
6. noise criterion: sigma_blk = sqrt(nu_k); the center-surround ratio
   r = sigma_cen / sigma_sur (ddof 1; a NaN ratio counts as 0), beta = |sigma_blk - r| / max(sigma_blk, r);
   the block is noisy when sigma_blk > 2 beta. Center = columns 8 and 9 (1-based) of the block; surround = the
   block with column 8 deleted and then column 9 *of what is left* deleted, i.e. without original columns 8 and
   10: MATLAB's quirk, which pypiqe keeps and so does this port;
7. pooling: D_k = (1 - nu_k) [artifact] + nu_k [noise] (so 1 when both, 0 when neither), and
   PIQE = 100 (sum_k D_k + C_1) / (N_SA + C_1), C_1 = 1, over the active blocks. A flat image has N_SA = 0 and
   PIQE = 100 (bad).

Score map (the kit wants 0..100, higher = better): quality = 100 - PIQE; `raw_score` is that line (PIQE may in
principle leave [0, 100], since a block with nu_k > 1 adds nu_k or 1 - nu_k), `forward` clips it. MATLAB's
quality bands are PIQE 0-20 excellent, 21-35 good, 36-50 fair, 51-80 poor, 81-100 bad, so the kit's threshold
50 is the fair / poor border.

Not differentiable: steps 1, 4-6 are thresholds and roundings (zero gradient almost everywhere), so
`info.differentiable` is False, gradient attacks refuse the model, and `raw_score` raises
`PiqeGradientError` when asked to build a graph (an input that requires grad with grad mode on). Everything is
computed in float64 on the CPU, whatever the input's device, so scores are the same on every machine.

Minimum size: 16 x 16 (one block); smaller images raise `PiqeSizeError` (a `ValueError`), as NIQE and BRISQUE
do below their own minimum. Parity with pypiqe 1.2 (fed the BGR image): `tests/test_piqe.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evaluator.biqa.base import BIQAModel
from evaluator.biqa.registry import BIQAError, spec

BLOCK = 16
MIN_SIZE = BLOCK
ACTIVITY_THRESHOLD = 0.1  # T_A: a block is spatially active when its MSCN variance exceeds it
SEGMENT_THRESHOLD = 0.1  # T_STD: an edge segment this flat marks a noticeable artifact
SEGMENT = 6  # pixels per edge segment
MSCN_C = 1.0
POOL_C = 1.0
GAUSS_SIZE = 7
GAUSS_SIGMA = 7.0 / 6.0
# OpenCV 5's RGB -> gray for 8-bit images: fixed point with 15 fractional bits, rounded (OpenCV 4 used 14 bits,
# weights 4899, 9617, 1868: one gray level apart on 43864 of the 2^24 colours).
_GRAY_SHIFT = 15
_GRAY_WEIGHTS = (9798, 19235, 3735)  # R, G, B; they sum to 2^15


class PiqeSizeError(BIQAError):
    """The image is smaller than one 16 x 16 PIQE block."""


class PiqeGradientError(BIQAError):
    """PIQE was asked for a gradient; it has none (thresholds and roundings)."""


def check_size(h: int, w: int) -> None:
    """Raise `PiqeSizeError` unless both sides are at least MIN_SIZE."""
    if h < MIN_SIZE or w < MIN_SIZE:
        raise PiqeSizeError(
            f"piqe: image is {w}x{h} (WxH); PIQE needs at least {MIN_SIZE}x{MIN_SIZE} pixels (one {BLOCK}x{BLOCK} "
            "block); use a larger image"
        )


def gray_u8(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, H, W) int64 gray 0..255 (step 1: 8-bit quantisation, OpenCV's luma)."""
    q = torch.empty(x.shape, dtype=torch.float64, device=x.device).copy_(x.detach())  # never x itself
    q = q.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.int64)
    wr, wg, wb = _GRAY_WEIGHTS
    y = q[:, 0] * wr
    y.add_(q[:, 1], alpha=wg).add_(q[:, 2], alpha=wb).add_(1 << (_GRAY_SHIFT - 1))
    return y.bitwise_right_shift_(_GRAY_SHIFT)


def _pad_symmetric(y: torch.Tensor) -> torch.Tensor:
    """Pad (N, H, W) at the bottom / right to multiples of BLOCK, mirroring with the edge row repeated."""
    h, w = y.shape[-2:]
    ph, pw = (-h) % BLOCK, (-w) % BLOCK
    if ph:
        y = torch.cat([y, y[:, h - ph :, :].flip(-2)], dim=-2)
    if pw:
        y = torch.cat([y, y[:, :, w - pw :].flip(-1)], dim=-1)
    return y


def _gauss_window() -> torch.Tensor:
    """cv2.getGaussianKernel(7, 7/6): exp(-k^2 / (2 sigma^2)), k = -3..3, normalised (float64)."""
    k = torch.arange(GAUSS_SIZE, dtype=torch.float64) - GAUSS_SIZE // 2
    g = torch.exp(-(k * k) / (2 * GAUSS_SIGMA**2))
    return g / g.sum()


def _blur_pair(img: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w * I, w * I^2) of (N, H, W) float64, w the separable 7x7 Gaussian with replicated borders
    (cv2.GaussianBlur, BORDER_REPLICATE): one padded buffer of both, filtered as shifted, weighted slices summed in
    place, rows then columns (no conv2d with one channel; per-pixel float64 sums, the same for any thread count)."""
    r = GAUSS_SIZE // 2
    taps = window.tolist()
    p = F.pad(img.unsqueeze(1), (r, r, r, r), mode="replicate").squeeze(1)
    both = torch.stack([p, p * p])  # (2, N, H + 2r, W + 2r)
    h, w = img.shape[-2:]
    rows = both[..., 0:w] * taps[0]
    for k in range(1, GAUSS_SIZE):
        rows.add_(both[..., k : k + w], alpha=taps[k])
    out = rows[..., 0:h, :] * taps[0]
    for k in range(1, GAUSS_SIZE):
        out.add_(rows[..., k : k + h, :], alpha=taps[k])
    return out[0], out[1]


def mscn(img: torch.Tensor) -> torch.Tensor:
    """MSCN (step 3): (I - mu) / (sqrt(|w * I^2 - mu^2|) + 1) of (N, H, W) float64 images in 0..255."""
    mu, ex2 = _blur_pair(img, _gauss_window())
    nu = torch.sub(ex2, mu * mu, out=ex2).abs_().sqrt_()
    return (img - mu).div_(nu.add_(MSCN_C))


def normalised_image(x: torch.Tensor) -> torch.Tensor:
    """Steps 1-2: (N, 3, H, W) RGB in [0, 1] -> (N, H', W') float64 round(255 Y / max Y), padded to 16 | H', W'."""
    y = _pad_symmetric(gray_u8(x)).to(torch.float64)
    peak = y.amax(dim=(-2, -1), keepdim=True)
    # an all-black image (peak 0) is all zeros and stays 0: 0 / 1 * 255
    return y.div_(peak.clamp_min(1.0)).mul_(255.0).round_()


def _blocks(m: torch.Tensor) -> torch.Tensor:
    """(N, H, W), H and W multiples of BLOCK -> (N, K, BLOCK, BLOCK) in row-major block order."""
    n, h, w = m.shape
    return m.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK).permute(0, 1, 3, 2, 4).reshape(n, -1, BLOCK, BLOCK)


def _sample_var(v: torch.Tensor) -> torch.Tensor:
    """Sample variance (ddof 1) over the last dim, two-pass: sum((v - mean)^2) / (n - 1), float64 sums over
    that dim only (the same for any thread count; torch.var / std on short rows cost more than the arithmetic)."""
    n = v.shape[-1]
    d = v - v.sum(-1, keepdim=True) / n
    return d.mul_(d).sum(-1) / (n - 1)


def block_decisions(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 16, 16) MSCN blocks -> (variance nu_k, active, artifact, noise) per block (steps 4-6)."""
    var = _sample_var(blocks.flatten(-2))
    active = var > ACTIVITY_THRESHOLD
    edges = torch.stack([blocks[..., 0, :], blocks[..., :, -1], blocks[..., -1, :], blocks[..., :, 0]], dim=-2)
    segments = edges.unfold(-1, SEGMENT, 1)  # (..., 4, 11, 6)
    artifact = (_sample_var(segments).sqrt_() < SEGMENT_THRESHOLD).flatten(-2).any(dim=-1)
    sigma = var.sqrt()
    c1 = BLOCK // 2 - 1  # 0-based center columns 7 and 8 (MATLAB's center1 = 8, center2 = 9)
    center = blocks[..., :, c1 : c1 + 2].transpose(-1, -2).flatten(-2)
    keep = [j for j in range(BLOCK) if j not in (c1, c1 + 2)]  # MATLAB deletes col 8, then col 9 of the rest
    surround = blocks[..., :, keep].flatten(-2)
    ratio = _sample_var(center).sqrt_() / _sample_var(surround).sqrt_()
    ratio = torch.nan_to_num(ratio, nan=0.0, posinf=float("inf"))
    beta = (sigma - ratio).abs() / torch.maximum(sigma, ratio)
    noise = sigma > 2 * beta
    return var, active, artifact & active, noise & active


def piqe_from_mscn(m: torch.Tensor) -> torch.Tensor:
    """Pooling (step 7) on (N, H, W) MSCN maps (H, W multiples of 16): (N,) PIQE scores, float64."""
    var, active, artifact, noise = block_decisions(_blocks(m))
    dist = torch.where(artifact, 1.0 - var, 0.0) + torch.where(noise, var, 0.0)
    n_active = active.sum(dim=-1).to(torch.float64)
    return 100.0 * (dist.sum(dim=-1) + POOL_C) / (n_active + POOL_C)


class Piqe(BIQAModel):
    """PIQE (training-free); score = 100 - PIQE (higher = better), not differentiable. See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.info = spec("piqe").info()  # not differentiable (block thresholds): gradient attacks refuse it

    def piqe(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) PIQE scores (0 = excellent, 100 = bad) of RGB (N, 3, H, W) in [0, 1], float64 on the CPU."""
        self.check_input(x)
        if torch.is_grad_enabled() and x.requires_grad:
            raise PiqeGradientError(
                "piqe: is not differentiable (its block decisions are thresholds), so it cannot be attacked with "
                "gradients; use a naive attack (identity, jpeg, blur, noise, enhance) or a differentiable model "
                "(brisque, niqe, koncept512)"
            )
        check_size(*x.shape[-2:])
        x = x.detach().cpu()
        return torch.cat([piqe_from_mscn(mscn(normalised_image(xi.unsqueeze(0)))) for xi in x])

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        """Unclipped quality 100 - PIQE, in x's dtype and on x's device (higher = better)."""
        return (100.0 - self.piqe(x)).to(dtype=x.dtype, device=x.device)


__all__ = [
    "BLOCK",
    "MIN_SIZE",
    "Piqe",
    "PiqeGradientError",
    "PiqeSizeError",
    "block_decisions",
    "gray_u8",
    "mscn",
    "normalised_image",
    "piqe_from_mscn",
]
