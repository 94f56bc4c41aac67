"""The interface every BIQA model of the kit follows.

A model is a `torch.nn.Module`: `forward(x)` takes RGB float `(N, 3, H, W)` in [0, 1] and returns `(N,)` quality
scores in [0, 100], higher = better, differentiable with respect to `x`. `raw_score(x)` is the same score before
the clip (same orientation, may leave [0, 100]); attacks optimize it, since the clip has zero gradient at both
ends. `info` carries the metadata (name, score range, weights hash, whether the model needs a weights file, the
seed of the random weights it scores with, if any, and `differentiable`: False for a model without a useful
gradient, such as PIQE, which gradient attacks refuse); the registered facts come from the registry
(`evaluator.biqa.register`, `ModelSpec.info`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BIQAInfo:
    """A model's facts: registered ones (`evaluator.biqa.ModelSpec.info`: name, score_range, differentiable,
    needs_weights) and those of the instance (weights_sha256, random_weights_seed). The threshold is not one: the
    task rules hold it (`task.toml` [biqa] threshold)."""

    name: str
    score_range: tuple[float, float] = (0.0, 100.0)
    weights_sha256: str | None = None  # content hash of the parameters the model scores with
    differentiable: bool = True  # False: raw_score has no useful gradient, gradient attacks refuse the model
    needs_weights: bool = False  # scores mean nothing without a weights file (KonCept512)
    random_weights_seed: int | None = None  # set: RANDOM weights from this seed (explicit opt-in), scores meaningless
    thread_independent: bool = False  # scores bit-identical for any thread count and batch (registry: what follows)

    def weights_identity(self) -> str:
        """What the model scores with, as one string: the weights file's sha256, `random-seed:N` for the random
        opt-in, or '' for a model without weights. Two models with equal identities give equal scores."""
        if self.weights_sha256:
            return self.weights_sha256
        if self.random_weights_seed is not None:
            return f"random-seed:{self.random_weights_seed}"
        return ""

    def random_weights_note(self) -> str | None:
        """The warning every output carries when the model scores with random weights; None otherwise."""
        if self.random_weights_seed is None:
            return None
        return (f"BIQA {self.name} scored with RANDOM weights (--random-weights {self.random_weights_seed}, "
                "no weights file): every score is meaningless; for real scores pass --biqa-weights")


class BIQAModel(nn.Module):
    """Base class: subclasses implement `raw_score`; `forward` clips it to the score range."""

    info: BIQAInfo

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.info.score_range
        return self.raw_score(x).clamp(lo, hi)

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        """Raise `ValueError` unless `x` is a float batch `(N, 3, H, W)`."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"BIQA input must be a float tensor (N, 3, H, W) in [0, 1], got {shape}")
