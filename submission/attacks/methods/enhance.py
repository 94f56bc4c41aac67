"""HCMUS (Pixel Privacy 2020): Pillow enhancement, alone or followed by I-FGSM toward a target score.

enhance: x_e = Contrast_c(Brightness_b(Sharpness_s(Color_k(x)))) with Pillow's ImageEnhance and HCMUS's factors
colour k = 1.51, sharpness s = 3.01, brightness b = 1.01, contrast c = 1.51 (applied in the order the paper lists
them), on the 8-bit image.

enhance-ifgsm: then HCMUS's modified I-FGSM (their eq. 1-2) from X_0 = x_e with an L2 loss toward the attacking
score y' (default 30): X_{t+1} = Clip_{X_0,eps}{X_t - alpha * sign(grad (raw(X_t) - y')^2)}, stopping per image as
soon as raw(X_t) < y' (or after `iters` steps). Above y' the sign of that gradient is the sign of grad raw, which
is also the step of the kit's objective 'below' with margin 0 (L = relu(raw - y'), frozen once raw <= y'), so
that objective is the default: one rule, the kit's `Objective`, for the loss and the stop. Their eps = alpha =
0.05 are in the network's [-1, 1] input range, i.e. 0.025 in the kit's [0, 1] units (the defaults below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import Budget, Linf
from submission.attacks.framework.driver import Attack, AttackContext, GradientAttack
from submission.attacks.framework.params import GradientParams, Params, param
from submission.attacks.framework.pixels import map_uint8
from submission.attacks.methods.fgsm_family import iterative_linf

HCMUS_PAPER = "HCMUS at Pixel Privacy 2020 (I-FGSM + Pillow enhancement)"


@dataclass(frozen=True)
class EnhanceParams(Params):
    color: float = param(1.51, "ImageEnhance.Color factor (1 = unchanged)", min=0.0, max=10.0)
    sharpness: float = param(3.01, "ImageEnhance.Sharpness factor", min=0.0, max=10.0)
    brightness: float = param(1.01, "ImageEnhance.Brightness factor", min=0.0, max=10.0)
    contrast: float = param(1.51, "ImageEnhance.Contrast factor", min=0.0, max=10.0)


def pillow_enhance(rgb: np.ndarray, color: float, sharpness: float, brightness: float, contrast: float) -> np.ndarray:
    """HCMUS's enhancement of one (H,W,3) uint8 image: Color, Sharpness, Brightness, Contrast in that order."""
    im = Image.fromarray(rgb)
    im = ImageEnhance.Color(im).enhance(color)
    im = ImageEnhance.Sharpness(im).enhance(sharpness)
    im = ImageEnhance.Brightness(im).enhance(brightness)
    im = ImageEnhance.Contrast(im).enhance(contrast)
    return np.asarray(im)


def enhance_batch(x: torch.Tensor, p: "EnhanceParams | EnhanceIFGSMParams") -> torch.Tensor:
    """pillow_enhance on each image of the (N,3,H,W) batch, with p's four factors."""
    return map_uint8(x, lambda rgb: pillow_enhance(rgb, p.color, p.sharpness, p.brightness, p.contrast))


class Enhance(Attack):
    name = "enhance"
    paper = HCMUS_PAPER
    summary = "Pillow enhancement only (colour 1.51, sharpness 3.01, brightness 1.01, contrast 1.51)"
    Params = EnhanceParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        return enhance_batch(x, self.params)


@dataclass(frozen=True)
class EnhanceIFGSMParams(EnhanceParams, GradientParams):
    """GradientParams' fields (HCMUS's defaults for three of them), then EnhanceParams' four factors, then the
    I-FGSM settings (the field order --list and run.json show)."""


    objective: str = param("below", "below with margin 0: HCMUS's L2 loss toward y', stopped once raw <= y'; "
                           "toward: |raw - target|; lower: the raw score", choices=("lower", "below", "toward"))
    target: float | None = param(30.0, "attacking score y' (HCMUS: 30); none = the task's threshold",
                                 min=0.0, max=100.0, type=float)
    margin: float = param(0.0, "objective 'below': stop this many points under y' (HCMUS: 0)", min=0.0, max=100.0)
    eps: float = param(0.025, "Linf bound around the enhanced image, [0, 1] units (HCMUS: 0.05 in [-1, 1])",
                       min=0.0, max=1.0)
    step: float = param(0.025, "step alpha, [0, 1] units (HCMUS: 0.05 in [-1, 1])", min=0.0, max=1.0)
    iters: int = param(20, "maximum iterations (stops earlier once raw < target)", min=1, max=100000)


class EnhanceIFGSM(GradientAttack):
    name = "enhance-ifgsm"
    paper = HCMUS_PAPER
    summary = "Pillow enhancement, then I-FGSM toward target 30 until the score is at or below it"
    Params = EnhanceIFGSMParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        x_e = enhance_batch(x, p)
        return iterative_linf(self, x_e, model, ctx, eps=p.eps, step=p.step, iters=p.iters)

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """Linf eps around the enhanced image x_e (not around the original)."""
        return Budget(Linf(), torch.full((x.shape[0],), self.params.eps), center=enhance_batch(x, self.params))
