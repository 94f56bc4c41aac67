"""MAD competition (Wang & Simoncelli 2008) as the MSU benchmark runs it: change the attacked score while the MSE
to the original stays fixed. Here the score goes DOWN (camouflage).

Start: x_0 = clip(x + n), n white noise scaled to the MSE budget (seeded per image). Each iteration:
  g1 = grad L(x_t)            (L the objective, default 'lower': the raw score)
  g2 = grad MSE(x_t, x) = 2 (x_t - x) / D
  pg = g1 - (g2 . g1) / (g2 . g2) g2          (MSU text: g1 projected orthogonal to the MSE gradient)
  x' = x_t - step * sqrt(D) * pg / ||pg||     (a step of RMS size `step` per value)
then the search back to the budget: along the MSE gradient, i.e. scaling the perturbation by s, a bisection on s
finds clip(x + s (x' - x)) with |MSE / budget - 1| <= `mse_tol` (MSU: precision 0.04).
The budget is `mse` in [0, 1] units (default 3e-4, PSNR 35.2 dB). The last search measures the 8-bit image the
run writes, so the written file holds the budget to `mse_tol`. With objective 'below' / 'toward' an image is frozen
from the first iterate that meets the goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import MSE, Budget
from submission.attacks.framework.driver import AttackContext, GradientAttack
from submission.attacks.framework.params import GradientParams, param, redefault


@dataclass(frozen=True)
class MADCParams(GradientParams):
    objective: str = redefault(GradientParams, "objective", "lower")
    mse: float = param(3e-4, "fixed MSE budget, [0, 1] units (3e-4 = PSNR 35.2 dB)", min=1e-9, max=1.0)
    step: float = param(1 / 255, "RMS size of each projected-gradient step, [0, 1] units", min=0.0, max=1.0)
    iters: int = param(20, "projected-gradient iterations", min=1, max=100000)
    mse_tol: float = param(0.04, "relative precision of the search back to the MSE budget (MSU: 0.04)",
                           min=1e-6, max=1.0)
    search_steps: int = param(30, "maximum bisection steps of that search", min=1, max=200)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(1)


def back_to_budget(x: torch.Tensor, x_new: torch.Tensor, budget: float, tol: float, steps: int,
                   eight_bit: bool = False) -> torch.Tensor:
    """clip(x + s (x_new - x)) with s >= 0 chosen per image by bisection so that MSE is within tol of budget
    (as close as possible when clipping makes the budget unreachable); with `eight_bit` the candidates are
    rounded to 8 bits before measuring, and the result is the largest s found whose MSE is <= budget (1 + tol)."""
    d = x_new - x
    n = x.shape[0]
    view = (-1, 1, 1, 1)

    def at(s: torch.Tensor) -> torch.Tensor:
        c = (x + s.view(view) * d).clamp(0, 1)
        return torch.round(c * 255.0) / 255.0 if eight_bit else c

    lo = torch.zeros(n, device=x.device, dtype=x.dtype)
    hi = torch.ones(n, device=x.device, dtype=x.dtype)
    for _ in range(60):  # grow hi until it overshoots the budget (or stops growing)
        under = _mse(x, at(hi)) < budget
        if not bool(under.any()):
            break
        hi = torch.where(under, hi * 2, hi)
        if float(hi.max()) > 1e6:
            break
    for _ in range(steps):
        mid = (lo + hi) / 2
        rel = _mse(x, at(mid)) / budget - 1
        ok = rel.abs() <= tol  # converged images: lo = hi = mid from here on
        lo = torch.where(ok | (rel < 0), mid, lo)
        hi = torch.where(ok | (rel >= 0), mid, hi)
        if bool((hi - lo <= 0).all()):
            break
    best = (lo + hi) / 2
    if eight_bit:  # the midpoint may round above the budget: fall back to lo, which never overshoots
        over = _mse(x, at(best)) > budget * (1 + tol)
        best = torch.where(over, lo, best)
    return at(best)


class MADC(GradientAttack):
    name = "madc"
    paper = "MSU metrics robustness benchmark; Wang & Simoncelli 2008 (MAD competition at fixed MSE)"
    summary = "lower the score at a fixed MSE: gradient projected orthogonal to the MSE gradient, then rescaled"
    Params = MADCParams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        dim = x[0].numel()
        noise = ctx.rand_like(x, "normal")
        x_t = back_to_budget(x, x + noise * (p.mse**0.5), p.mse, p.mse_tol, p.search_steps)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(p.iters):
            raw, _, g1 = self.loss_and_grad(model, x_t, ctx)
            active &= ~ctx.objective.reached(raw)
            if not bool(active.any()):
                break
            g2 = 2 * (x_t - x) / dim
            g1f, g2f = g1.flatten(1), g2.flatten(1)
            coef = (g1f * g2f).sum(1) / (g2f * g2f).sum(1).clamp_min(1e-30)
            pg = g1 - coef.view(-1, 1, 1, 1) * g2
            norm = pg.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            x_new = x_t - p.step * dim**0.5 * pg / norm
            x_new = back_to_budget(x, x_new, p.mse, p.mse_tol, p.search_steps)
            x_t = torch.where(active.view(-1, 1, 1, 1), x_new, x_t)
        x_t = back_to_budget(x, x_t, p.mse, p.mse_tol, p.search_steps, eight_bit=True)
        info = [{"mse": float(m)} for m in _mse(x, x_t)]
        return x_t, info

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """MSE = `mse` to the search's relative precision `mse_tol` (an upper bound here)."""
        return Budget(MSE(), torch.full((x.shape[0],), self.params.mse), rel_tol=self.params.mse_tol)
