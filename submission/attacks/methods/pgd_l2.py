"""Bonnet, Furon & Bas (Pixel Privacy 2020), pixel domain: L2 PGD with a binary search over the distortion budget,
then the quantization of "What if adversarial samples were digital images?" (IH&MMSec 2020) adapted to a regressor.

Adversarial means L(x) = BIQA(x) - s_a < 0 (their eq. 5), s_a = target - margin.

1. PGD-L2 (Madry et al. 2018) at budget eps (L2 in 8-bit units, ||255 (x_adv - x)||_2 <= eps): `iters` steps
   x <- Proj_eps(x - (2.5 eps / iters) g / ||g||) on the objective (default 'below': relu(raw - s_a), so an
   image stops once adversarial), clipped to [0, 1].
2. Binary search over eps in (0, eps_max] (eps_max = 2000 as in the paper) for `search_steps` runs (paper: 7),
   per image: the smallest budget found that gives an adversarial x_a.
3. Quantization in the pixel domain (their eq. 6-7 with quantization step Delta = 1): with P = 255 (x_a - x) and
   G = grad L at x_a in 8-bit units, Q*(lambda) = -P - lambda G / 2 minimizes ||P + Q||^2 + lambda L(Q) to first
   order; Q is bounded to [-1, 1] (one quantization step) and x_q = clip(round(255 x + P + Q*), 0, 255).
   lambda = 0 pulls x_a to the nearest integers toward x; a bisection on lambda finds the smallest lambda whose
   x_q is still adversarial. If none is, x_q = round(x_a) when that is adversarial, else the largest lambda tried.
Output: the integer image x_q / 255 (a PNG), adversarial in the image domain whenever step 2 succeeded.
Declared bound, per image: ||255 (x_q - x)||_2 <= sqrt(sum_i b_i^2) with b_i = max(|r(X_i + P_i - 1) - X_i|,
|r(X_i + P_i + 1) - X_i|), X = 255 x, r = clip(round(.), 0, 255): every candidate is r(X + P + Q) with Q in
[-1, 1] and r is monotone, so each value ends between the two ends (with `quantize=false`, Q = 0 and b_i is the
rounding of P itself). It is at most ||P||_2 + 1.5 sqrt(D) <= eps + 1.5 sqrt(D) (the looser bound this
replaces), and it fails as soon as the quantization moves a value more than one step beyond the PGD output.
With objective 'toward', "adversarial" means within `margin` of the target (`Objective.reached`); 'lower' only
changes the PGD loss (the search still asks raw < target - margin).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evaluator.biqa.base import BIQAModel
from submission.attacks.framework.budget import L2, Budget
from submission.attacks.framework.driver import AttackContext, GradientAttack
from submission.attacks.framework.params import GradientParams, param
from submission.attacks.framework.search import search_budget


@dataclass(frozen=True)
class PGDL2Params(GradientParams):
    margin: float = param(0.0, "adversarial once raw < target - margin (Bonnet: margin 0)", min=0.0, max=100.0)
    eps_max: float = param(2000.0, "largest L2 budget, 8-bit units (Bonnet: 2000)", min=0.0, max=1e7)
    search_steps: int = param(7, "PGD runs of the binary search over the budget (Bonnet: 7)", min=1, max=64)
    iters: int = param(10, "PGD iterations per budget", min=1, max=100000)
    quantize: bool = param(True, "quantize to integers keeping the adversarial property (else plain rounding)")
    lambda_steps: int = param(12, "bisection steps on the quantization's Lagrange multiplier", min=1, max=64)


class PGDL2(GradientAttack):
    name = "pgd-l2"
    paper = "Bonnet, Furon & Bas at Pixel Privacy 2020 (PGD-L2, binary search, spatial quantization)"
    summary = "L2 PGD with a binary search over the budget, then adversarial-preserving integer quantization"
    Params = PGDL2Params
    target_without_objective = True  # the budget search tests raw < target - margin under any objective

    def pgd(self, model: BIQAModel, x: torch.Tensor, eps: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """PGD-L2 at per-image budgets eps ((N,), 8-bit units)."""
        l2 = L2()
        e = eps / 255.0
        step = 2.5 * e / self.params.iters
        x_adv = x.clone()
        for _ in range(self.params.iters):
            _, _, g = self.loss_and_grad(model, x_adv, ctx)
            x_adv = x_adv - step.view(-1, 1, 1, 1) * l2.direction(g)
            x_adv = (x + l2.project(x_adv - x, e)).clamp(0.0, 1.0)
        return x_adv

    def adversarial(self, model: BIQAModel, x: torch.Tensor, goal: float, ctx: AttackContext) -> torch.Tensor:
        with torch.no_grad():
            raw = self.raw(model, x, ctx)
        return ctx.objective.reached(raw) if ctx.objective.kind == "toward" else raw < goal

    def quantize(self, model: BIQAModel, x: torch.Tensor, x_a: torch.Tensor, goal: float,
                 ctx: AttackContext) -> tuple[torch.Tensor, list[float | None]]:
        n = x.shape[0]
        view = (-1, 1, 1, 1)
        x255, p = x * 255.0, (x_a - x) * 255.0
        xg = x_a.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.raw(model, xg, ctx).sum(), xg)
        g255 = g / 255.0

        def candidate(lam: torch.Tensor) -> torch.Tensor:
            q = (-p - lam.view(view) * g255 / 2).clamp(-1.0, 1.0)
            return (torch.round(x255 + p + q).clamp(0, 255)) / 255.0

        rounded = torch.round(x_a * 255.0) / 255.0
        # find an upper lambda that works, doubling
        hi = torch.ones(n, device=x.device)
        ok_hi = self.adversarial(model, candidate(hi), goal, ctx)
        for _ in range(40):
            if bool(ok_hi.all()):
                break
            hi = torch.where(ok_hi, hi, hi * 4)
            ok_hi = self.adversarial(model, candidate(hi), goal, ctx)
        lo = torch.zeros(n, device=x.device)
        ok0 = self.adversarial(model, candidate(lo), goal, ctx)
        hi = torch.where(ok0, lo, hi)
        for _ in range(self.params.lambda_steps):
            mid = (lo + hi) / 2
            ok = self.adversarial(model, candidate(mid), goal, ctx) & ok_hi
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        x_q = candidate(hi)
        good = self.adversarial(model, x_q, goal, ctx)
        round_ok = self.adversarial(model, rounded, goal, ctx)
        x_q = torch.where((~good & round_ok).view(view), rounded, x_q)
        lams = [float(h) if bool(gd) else None for h, gd in zip(hi, good)]
        return x_q, lams

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        goal = ctx.objective.target - ctx.objective.margin
        n = x.shape[0]

        def attempt(eps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            x_eps = self.pgd(model, x, eps, ctx)
            return [x_eps], self.adversarial(model, x_eps, goal, ctx)

        (best,), best_eps, found = search_budget(attempt, p.eps_max, p.search_steps, n, x.device, late_success=True)
        bound = self.quantization_bound(x, best, 1.0 if p.quantize else 0.0)
        if p.quantize:
            x_q, lams = self.quantize(model, x, best, goal, ctx)
        else:
            x_q, lams = torch.round(best * 255.0) / 255.0, [None] * n
        l2 = ((x_q - x) * 255).flatten(1).norm(dim=1)
        info = [
            {"eps": (float(e) if bool(f) else None), "lambda": lam, "l2_8bit": float(d), "l2_bound_8bit": float(b)}
            for e, f, lam, d, b in zip(best_eps, found, lams, l2, bound)
        ]
        return x_q, info

    @staticmethod
    def quantization_bound(x: torch.Tensor, x_a: torch.Tensor, q: float) -> torch.Tensor:
        """(N,) sqrt(sum_i b_i^2), b_i = max(|r(X_i + P_i - q) - X_i|, |r(X_i + P_i + q) - X_i|) in 8-bit units:
        the L2 distance to x of any clip(round(X + P + Q)) with |Q| <= q (module docstring)."""
        x255, p = x * 255.0, (x_a - x) * 255.0
        lo = torch.round(x255 + p - q).clamp(0, 255) - x255
        hi = torch.round(x255 + p + q).clamp(0, 255) - x255
        return torch.maximum(lo.abs(), hi.abs()).flatten(1).norm(dim=1)

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """L2 <= l2_bound_8bit / 255 in [0, 1] units (the quantization's reach from the PGD output, per image)."""
        return Budget(L2(), torch.tensor([row["l2_bound_8bit"] for row in info], dtype=torch.float64).float() / 255.0)
