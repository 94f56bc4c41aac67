"""The loss a gradient attack minimizes, as a function of the raw BIQA score (`Objective`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from submission.attacks.framework.params import ParamError


@dataclass(frozen=True)
class Objective:
    """Per-image loss to MINIMIZE as a function of the raw BIQA score (higher raw = better quality).

    kind 'lower': L = raw; 'below': L = relu(raw - (target - margin)); 'toward': L = |raw - target|.
    `reached(raw)` says which images already meet the goal (below target - margin, or within margin of target
    for 'toward'; never for 'lower')."""

    kind: str = "below"
    target: float = 50.0
    margin: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("lower", "below", "toward"):
            raise ParamError(f"objective {self.kind!r} unknown; use lower, below or toward")
        if not 0.0 <= self.target <= 100.0:
            raise ParamError(f"target score {self.target:g} is outside [0, 100]; pick a target in [0, 100]")

    def loss(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "lower":
            return raw
        if self.kind == "below":
            return torch.relu(raw - (self.target - self.margin))
        return (raw - self.target).abs()

    def reached(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "lower":
            return torch.zeros_like(raw, dtype=torch.bool)
        if self.kind == "below":
            return raw <= self.target - self.margin
        return (raw - self.target).abs() <= self.margin
