"""Distortion measures (`Distortion`: Linf, L2, MSE), the bound an attack declares on its output (`Budget`), the
8-bit rounding that keeps it (`to_8bit`); PSNR is the evaluator's (`evaluator.scoring.metrics.psnr`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class Distortion:
    """A norm on perturbations delta (N, 3, H, W): `measure`, the steepest-descent `direction` of a gradient
    under that norm, and `project` onto the ball of radius eps (eps a float or a per-image (N,) tensor)."""

    name: ClassVar[str] = ""

    def measure(self, delta: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def direction(self, grad: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def measure_output(self, x_adv: torch.Tensor, center: torch.Tensor, jpeg_bytes: Sequence[bytes] | None
                       ) -> torch.Tensor:
        """(N,) distortion of an attack's output from `center`: measure(x_adv - center) for the pixel norms; a
        norm of the written JPEG's coefficients (pgd-dct's `JPEGSteps`) reads `jpeg_bytes` instead."""
        return self.measure(x_adv - center)


class Linf(Distortion):
    """||delta||_inf; direction = sign(g) (FGSM); projection = clamp to [-eps, eps]."""

    name = "linf"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(dim=1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        if isinstance(eps, torch.Tensor):
            e = _view(eps.to(delta), delta)
            return torch.maximum(torch.minimum(delta, e), -e)
        return delta.clamp(-eps, eps)


class L2(Distortion):
    """||delta||_2 over all pixels and channels ([0, 1] units); direction = g / ||g||; projection = rescale."""

    name = "l2"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(dim=1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        n = _flat(grad).norm(dim=1).clamp_min(1e-12)
        return grad / _view(n, grad)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        n = self.measure(delta).clamp_min(1e-12)
        e = eps.to(delta) if isinstance(eps, torch.Tensor) else torch.full_like(n, float(eps))
        return delta * _view(torch.clamp(e / n, max=1.0), delta)


class MSE(L2):
    """mean(delta^2) ([0, 1] units); same direction as L2; eps is an MSE, projected via radius sqrt(eps * D)."""

    name = "mse"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).pow(2).mean(dim=1)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        d = _flat(delta).shape[1]
        radius = (eps * d) ** 0.5 if not isinstance(eps, torch.Tensor) else (eps * d).sqrt()
        return L2().project(delta, radius)


@dataclass(frozen=True)
class Budget:
    """A distortion bound an attack guarantees: norm.measure(x_adv - center) <= eps * (1 + rel_tol) per image.

    eps: (N,) in the norm's [0, 1] units (Linf, L2, or MSE = mean squared; for a JPEG-writing attack possibly a
    norm of its coefficients, measured on the bytes it wrote); center: the image the ball is centred on (None =
    the original x); rel_tol: the relative slack the method states (e.g. MADC's search precision)."""

    norm: Distortion
    eps: torch.Tensor
    center: torch.Tensor | None = None
    rel_tol: float = 0.0

    def cpu(self) -> Budget:
        center = None if self.center is None else self.center.detach().cpu()
        return Budget(self.norm, self.eps.detach().cpu(), center, self.rel_tol)

    def excess(self, x: torch.Tensor, x_adv: torch.Tensor, jpeg_bytes: Sequence[bytes] | None = None
               ) -> torch.Tensor:
        """(N,) measured / allowed - 1 (<= 0 when the bound holds); `jpeg_bytes`: `AttackResult.jpeg_bytes`."""
        c = x if self.center is None else self.center.to(x_adv)
        allowed = self.eps.to(x_adv) * (1.0 + self.rel_tol)
        return self.norm.measure_output(x_adv, c, jpeg_bytes).to(x_adv) / allowed.clamp_min(1e-30) - 1.0


def to_8bit(x_adv: torch.Tensor, budget: Budget | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
    """round(255 x_adv) / 255; under a Linf budget each value is then clamped to the 8-bit levels within eps of
    the centre (ceil(255 (c - eps)) .. floor(255 (c + eps))), so rounding never leaves the ball."""
    q = torch.round(x_adv * 255.0)
    if budget is not None and isinstance(budget.norm, Linf):
        c = budget.center if budget.center is not None else x
        if c is not None:
            e = _view(budget.eps.to(q), q) * 255.0
            c255 = c.to(q) * 255.0
            q = torch.minimum(torch.maximum(q, torch.ceil(c255 - e - 1e-4)), torch.floor(c255 + e + 1e-4))
    return q.clamp(0.0, 255.0) / 255.0
