"""Korhonen & You (2022), as the MSU benchmark runs it: gradient descent whose gradient is multiplied elementwise
by a spatial activity map, so the perturbation lands in textured regions.

Spatial activity (MSU text): A = sqrt(S_h^2 + S_v^2) of the luma Y = .299 R + .587 G + .114 B, with the 3x3
Sobel filters S_h = [[1,0,-1],[2,0,-2],[1,0,-1]] and S_v = S_h^T (replicate padding), divided by its per-image
maximum so A is in [0, 1] and shared by the three channels.

Optimizer: Adam (lr 0.005) on the perturbation delta, with the masked gradient A * grad L. Adam's update
m / sqrt(v) is invariant to a per-coordinate scale, so the mask alone would barely act; with `mask_step` (default)
the update is multiplied by A as well, which keeps the intent (no change where there is no texture).
x_adv = clip_[0,1](x + delta); optional Linf bound `eps` (0 = none). With objective 'below' / 'toward' an image is
frozen from the first iterate that meets the goal (Adam's moment estimates would otherwise keep moving it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import Budget, Linf
from submission.attacks.framework.driver import AttackContext, GradientAttack
from submission.attacks.framework.params import GradientParams, param, redefault

SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def spatial_activity(x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0,1] -> (N,1,H,W) Sobel gradient magnitude of the luma, normalized to max 1 per image."""
    y = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    k = SOBEL.to(x)
    yp = F.pad(y, (1, 1, 1, 1), mode="replicate")
    gh = F.conv2d(yp, k.view(1, 1, 3, 3))
    gv = F.conv2d(yp, k.t().contiguous().view(1, 1, 3, 3))
    a = torch.sqrt(gh**2 + gv**2)
    return a / a.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)


@dataclass(frozen=True)
class KorhonenParams(GradientParams):
    objective: str = redefault(GradientParams, "objective", "lower")
    lr: float = param(0.005, "Adam learning rate, [0, 1] units (MSU: 0.005)", min=0.0, max=1.0)
    iters: int = param(10, "Adam steps", min=1, max=100000)
    eps: float = param(0.0, "optional Linf bound in [0, 1] units (0 = unbounded)", min=0.0, max=1.0)
    mask_step: bool = param(True, "also multiply Adam's update by the activity map (see module docstring)")


class Korhonen(GradientAttack):
    name = "korhonen"
    paper = "MSU metrics robustness benchmark; Korhonen & You 2022 (spatial-activity-weighted gradient)"
    summary = "Adam on a perturbation whose gradient is weighted by a Sobel spatial-activity map"
    Params = KorhonenParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        act = spatial_activity(x)
        delta = torch.zeros_like(x, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=p.lr)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        used = [0] * x.shape[0]
        for _ in range(p.iters):
            x_adv = (x + delta.detach()).clamp(0.0, 1.0)
            raw, _, grad = self.loss_and_grad(model, x_adv, ctx)
            active &= ~ctx.objective.reached(raw)
            if not bool(active.any()):
                break
            opt.zero_grad(set_to_none=False)
            delta.grad = act * grad
            before = delta.detach().clone()
            opt.step()
            with torch.no_grad():
                if p.mask_step:
                    delta.copy_(before + act * (delta - before))
                if p.eps > 0:
                    delta.clamp_(-p.eps, p.eps)
                delta.copy_((x + delta).clamp(0.0, 1.0) - x)
                delta.copy_(torch.where(active.view(-1, 1, 1, 1), delta, before))
            used = [u + int(a) for u, a in zip(used, active.tolist())]
        return (x + delta.detach()).clamp(0.0, 1.0), [{"iterations": u} for u in used]

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget | None:
        if self.params.eps <= 0:
            return None
        return Budget(Linf(), torch.full((x.shape[0],), self.params.eps))
