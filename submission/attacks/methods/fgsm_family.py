"""FGSM, I-FGSM, MI-FGSM and AMI-FGSM as the MSU metrics-robustness benchmark runs them, toward lower quality.

MSU's loss J = 1 - score/range increases the score; the camouflage task wants the opposite, so every step goes
down the gradient of the objective L (default 'lower': L = raw score):

- FGSM (Goodfellow et al. 2015):    x_adv = clip_[0,1](x - eps * sign(grad L(x)))
- I-FGSM (Kurakin et al. 2017):     x_{t+1} = Clip_{x,eps}{x_t - alpha * sign(grad L(x_t))}, t = 0..T-1
- MI-FGSM (Dong et al. 2018):       g_t = nu * g_{t-1} + grad L(x_t) / ||grad L(x_t)||_1, g_{-1} = 0,
                                    x_{t+1} = Clip_{x,eps}{x_t - alpha * sign(g_t)}
                                    (the L1 normalization is Dong et al.'s eq. 6; `normalize=false` gives the
                                    un-normalized sum the MSU text writes)
- AMI-FGSM (MSU text, Sang et al.): x_{t+1} = Clip_{x,eps(I)}{x_t - alpha(I) * sign(g_t)}, g_t as MI-FGSM, with
                                    the per-image bound eps(I) = eps_scale / NIQE(I) in [0, 1] pixel units (MSU
                                    works on [0, 1] images: its I-FGSM bound is 10/255), NIQE(I) the raw NIQE
                                    distance of the original (lower = more natural) from the kit's `niqe` model,
                                    and the step alpha(I) = eps(I) / T. Where each part comes from: the bound
                                    1/NIQE(I) is the MSU text's; the step rule is borrowed from MSU's amifgsm
                                    code, which has no NIQE and no eps-ball clip at all: it fixes eps = 10/255
                                    and steps lr = eps / iters. Applied to the NIQE bound, the T steps span
                                    exactly eps(I), so the bound sets the distortion (with a fixed alpha = 1/255
                                    and T = 10 no pixel could move more than 10/255, the bound would never bind
                                    and AMI-FGSM would be MI-FGSM). `step` set to a number gives a fixed alpha
                                    (the bound then clips at eps(I)).
                                    The bound depends on which NIQE: the kit's is the scikit-video port
                                    (`evaluator/biqa/niqe.py`), which runs higher than the MATLAB release, so
                                    its 1/NIQE is smaller than a MATLAB-scale NIQE would give (the camera photos
                                    astronaut, chelsea, coffee, rocket of skimage.data score 8.3..11.7, eps(I)
                                    22..31/255; docs/attacks.md has the command). `eps_scale` rescales the bound
                                    (eps_scale = NIQE_kit / NIQE_ref gives the bound on another NIQE's scale).

Clip_{x,eps} keeps ||x_adv - x||_inf <= eps and x_adv in [0, 1]. MSU defaults: eps 10/255, alpha 1/255, T = 10,
nu = 1.0. With objective 'below' (or 'toward') an image is frozen from the first iterate that meets the goal
(`Objective.reached`: score `margin` under the target, or within `margin` of it), so neither the remaining steps
nor MI-FGSM's momentum move it further: the distortion is what the target needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import Budget, Linf
from submission.attacks.framework.driver import AttackContext, GradientAttack
from submission.attacks.framework.params import AttackError, GradientParams, param, redefault

MSU_PAPER = "MSU metrics robustness benchmark (Antsiferova et al.), FGSM-based attacks"


@dataclass(frozen=True)
class FGSMParams(GradientParams):
    objective: str = redefault(GradientParams, "objective", "lower")
    eps: float = param(10 / 255, "Linf bound in [0, 1] units (MSU: 10/255)", min=0.0, max=1.0)


@dataclass(frozen=True)
class IFGSMParams(FGSMParams):
    step: float = param(1 / 255, "step alpha in [0, 1] units (MSU: 1/255)", min=0.0, max=1.0)
    iters: int = param(10, "iterations T (MSU: 10)", min=1, max=100000)


@dataclass(frozen=True)
class MIFGSMParams(IFGSMParams):
    momentum: float = param(1.0, "momentum decay nu (MSU: 1.0)", min=0.0, max=100.0)
    normalize: bool = param(True, "divide each gradient by its L1 norm before accumulating (Dong et al. eq. 6)")


@dataclass(frozen=True)
class AMIFGSMParams(GradientParams):
    objective: str = redefault(GradientParams, "objective", "lower")
    eps_scale: float = param(1.0, "bound numerator: eps(I) = eps_scale / NIQE(I) in [0, 1] units, NIQE on the "
                             "kit's (scikit-video) scale (MSU: 1)",
                             min=0.0, max=100.0)
    step: float | None = param(None, "step alpha in [0, 1] units; none = eps(I) / iters (the step rule of MSU's "
                               "amifgsm code, lr = eps / iters, whose eps is a fixed 10/255)",
                               min=0.0, max=1.0, type=float)
    iters: int = param(10, "iterations T (MSU: 10)", min=1, max=100000)
    momentum: float = param(1.0, "momentum decay nu (MSU: 1.0)", min=0.0, max=100.0)
    normalize: bool = param(True, "divide each gradient by its L1 norm before accumulating (Dong et al. eq. 6)")


def iterative_linf(
    attack: GradientAttack,
    x: torch.Tensor,
    model: BIQAModel,
    ctx: AttackContext,
    *,
    eps: float | torch.Tensor,
    step: float | torch.Tensor,
    iters: int,
    momentum: float = 0.0,
    normalize: bool = False,
    start: torch.Tensor | None = None,
    stop_when: Any = None,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The shared Linf loop: x_{t+1} = Clip_{x,eps}{x_t - step * sign(g_t)}, g_t = momentum * g_{t-1} + grad_t
    (grad_t L1-normalized per image when `normalize`); `step` a float or a per-image (N,) tensor. `start` is the
    first iterate (default x), the ball is centred on x. `stop_when(raw)` is the per-image stopping rule (a (N,)
    bool tensor, default the objective's `reached`), evaluated before each step: an image that meets it is frozen
    for good (momentum included). Returns x_adv and per-image info (iterations used)."""
    linf = Linf()
    if stop_when is None:
        stop_when = ctx.objective.reached
    step_t = step.to(x).view(-1, 1, 1, 1) if isinstance(step, torch.Tensor) else step
    x_adv = (x if start is None else start).clone()
    g = torch.zeros_like(x)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    used = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(iters):
        raw, _, grad = attack.loss_and_grad(model, x_adv, ctx)
        active &= ~stop_when(raw)
        if not bool(active.any()):
            break
        if normalize:
            grad = grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        g = momentum * g + grad
        step_dir = torch.where(active.view(-1, 1, 1, 1), g.sign(), torch.zeros_like(g))
        used += active.cpu().long()
        x_adv = x + linf.project(x_adv - step_t * step_dir - x, eps)
        x_adv = x_adv.clamp(0.0, 1.0)
    return x_adv, [{"iterations": int(u)} for u in used]


class LinfEpsAttack(GradientAttack):
    """Base of the attacks bounded by their `eps` setting: ||x_adv - x||_inf <= eps (not registered: no name)."""

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        return Budget(Linf(), torch.full((x.shape[0],), self.params.eps))


class FGSM(LinfEpsAttack):
    name = "fgsm"
    paper = MSU_PAPER + "; Goodfellow et al. 2015"
    summary = "one signed-gradient step of size eps toward lower quality"
    Params = FGSMParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        """One step; an image that already meets the objective's goal is not moved."""
        raw, _, grad = self.loss_and_grad(model, x, ctx)
        move = (~ctx.objective.reached(raw)).view(-1, 1, 1, 1)
        return torch.where(move, (x - self.params.eps * grad.sign()).clamp(0.0, 1.0), x)


class IFGSM(LinfEpsAttack):
    name = "ifgsm"
    paper = MSU_PAPER + "; Kurakin et al. 2017"
    summary = "I-FGSM: T signed steps of size alpha inside the Linf ball eps"
    Params = IFGSMParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        return iterative_linf(self, x, model, ctx, eps=p.eps, step=p.step, iters=p.iters)


class MIFGSM(LinfEpsAttack):
    name = "mifgsm"
    paper = MSU_PAPER + "; Dong et al. 2018"
    summary = "MI-FGSM: I-FGSM on a momentum-accumulated gradient"
    Params = MIFGSMParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        return iterative_linf(
            self, x, model, ctx, eps=p.eps, step=p.step, iters=p.iters, momentum=p.momentum, normalize=p.normalize
        )


class AMIFGSM(GradientAttack):
    name = "amifgsm"
    paper = MSU_PAPER + " (AMI-FGSM: bound 1/NIQE(I)); Sang et al. 2022"
    summary = "MI-FGSM with a per-image Linf bound eps_scale / NIQE(I) of the original, steps of eps(I) / iters"
    Params = AMIFGSMParams

    def __init__(self, params: Any | None = None, /, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self._niqe: torch.nn.Module | None = None

    def niqe_distance(self, x: torch.Tensor) -> torch.Tensor:
        """Raw NIQE (Mittal et al. 2013 distance, lower = more natural) of each image, (N,)."""
        if self._niqe is None:
            from evaluator.biqa import create

            self._niqe = create("niqe", device=str(x.device))
        niqe = self._niqe
        for attr in ("niqe_distance", "niqe", "distance"):
            fn = getattr(niqe, attr, None)
            if callable(fn):
                with torch.no_grad():
                    return fn(x).detach().to(x.device).reshape(-1)
        raise AttackError(
            "amifgsm: the niqe model exposes no raw NIQE distance method (expected niqe_distance(x)); "
            "this kit's evaluator/biqa/niqe.py must provide it"
        )

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        d = self.niqe_distance(x).float().clamp_min(1e-6)
        eps = (p.eps_scale / d).clamp(max=1.0)
        step = eps / p.iters if p.step is None else p.step
        x_adv, info = iterative_linf(
            self, x, model, ctx, eps=eps, step=step, iters=p.iters, momentum=p.momentum, normalize=p.normalize
        )
        for i, row in enumerate(info):
            row["niqe"] = float(d[i])
            row["eps"] = float(eps[i])
        return x_adv, info

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """eps(I) per image, as `perturb` recorded it."""
        return Budget(Linf(), torch.tensor([float(row["eps"]) for row in info]))
