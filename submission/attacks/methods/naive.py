"""Naive baselines: what plain degradation does to the BIQA score (no model in the loop).

- identity: x_adv = x (the originals as a run: the accuracy every attack starts from).
- jpeg:     x_adv = decode(JPEG_q(x)) with Pillow's libjpeg at a low quality q (default 10), 4:2:0.
- blur:     x_adv = G_sigma * x, a separable Gaussian (radius ceil(3 sigma), reflect padding) per channel.
- noise:    x_adv = clip_[0,1](x + sigma * n), n ~ N(0, 1) i.i.d., reproducible per image (run seed + image id).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import Budget, Linf
from submission.attacks.framework.driver import Attack, AttackContext
from submission.attacks.framework.params import Params, param
from submission.attacks.framework.pixels import map_uint8

NAIVE_PAPER = "baseline (Liu et al. 2020 task overview: plain degradation)"


@dataclass(frozen=True)
class NoParams(Params):
    pass


class Identity(Attack):
    name = "identity"
    paper = NAIVE_PAPER
    summary = "the original image, unchanged"
    Params = NoParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        return x.clone()

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        return Budget(Linf(), torch.zeros(x.shape[0]))


@dataclass(frozen=True)
class JpegParams(Params):
    quality: int = param(10, "JPEG quality factor (Pillow / libjpeg, 4:2:0)", min=1, max=100)


def jpeg_roundtrip_pillow(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H,W,3) uint8 with Pillow at `quality` (4:2:0) and decode it back."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


class Jpeg(Attack):
    name = "jpeg"
    paper = NAIVE_PAPER
    summary = "low-quality JPEG compression (decoded pixels are the run's image)"
    Params = JpegParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        return map_uint8(x, lambda rgb: jpeg_roundtrip_pillow(rgb, self.params.quality))


@dataclass(frozen=True)
class BlurParams(Params):
    sigma: float = param(1.5, "Gaussian standard deviation in pixels", min=0.01, max=100.0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,H,W), kernel radius ceil(3 sigma) (capped by the image size), reflect pad."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Blur(Attack):
    name = "blur"
    paper = NAIVE_PAPER
    summary = "Gaussian blur"
    Params = BlurParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        return gaussian_blur(x, self.params.sigma)


@dataclass(frozen=True)
class NoiseParams(Params):
    sigma: float = param(8 / 255, "standard deviation of the additive Gaussian noise, [0, 1] units",
                         min=0.0, max=1.0)


class Noise(Attack):
    name = "noise"
    paper = NAIVE_PAPER
    summary = "additive white Gaussian noise (seeded per image)"
    Params = NoiseParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        return (x + self.params.sigma * ctx.rand_like(x, "normal")).clamp(0.0, 1.0)
