"""The BIQA registry itself: `register` (the decorator), `ModelSpec` (a model's metadata), `spec`, `available`, and
the errors of building a model. Its own module so that the model modules (brisque, niqe, piqe, koncept512) import
it without importing the `evaluator.biqa` package that builds them (no import cycle); `evaluator.biqa` re-exports
every name and registers the kit's models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evaluator.biqa.base import BIQAInfo, BIQAModel
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
    no useful gradient (gradient attacks refuse the model); `score_range`: what `forward` clips the raw score to;
    `thread_independent`: its scores are bit-identical for any torch thread count and any batch composition
    (tested for every model that says so), so pp-evaluate scores it inside its per-image jobs, in the worker
    processes (`evaluator.pipeline.scores_in_jobs`); otherwise the score cache keys its scores by the thread count
    (`evaluator.scoring.score_cache`) and pp-evaluate scores it in the main process.
    """

    name: str
    build: Callable[[Path | None, int | None], BIQAModel]
    needs_weights: bool = False
    weights_help: str = ""
    differentiable: bool = True
    score_range: tuple[float, float] = (0.0, 100.0)
    thread_independent: bool = False

    def info(self, **details: Any) -> BIQAInfo:
        """The `BIQAInfo` of a model built from this entry; `details`: its weights_sha256, random_weights_seed."""
        return BIQAInfo(name=self.name, score_range=self.score_range, differentiable=self.differentiable,
                        needs_weights=self.needs_weights, thread_independent=self.thread_independent, **details)


_REGISTRY: dict[str, ModelSpec] = {}
Builder = Callable[[Path | None, int | None], BIQAModel]


def register(name: str, *, needs_weights: bool = False, weights_help: str = "", differentiable: bool = True,
             score_range: tuple[float, float] = SCORE_RANGE, thread_independent: bool = False
             ) -> Callable[[Builder], Builder]:
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
                                    differentiable=differentiable, score_range=(lo, hi),
                                    thread_independent=thread_independent)
        return build

    return decorate


def missing_weights_message(spec: ModelSpec) -> str:
    """What is missing and how to pass it (the CLI flags and the Python keyword)."""
    return (f"BIQA {spec.name!r} needs a weights file and none was given (without one its network is untrained "
            f"and its scores mean nothing). Pass --biqa-weights PATH (Python: create({spec.name!r}, weights=PATH)): "
            f"{spec.weights_help}. For tests only, --random-weights SEED (Python: random_weights_seed=SEED) scores "
            "with a seeded random network; every output then says its scores are meaningless.")


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


__all__ = ["BIQAError", "Builder", "MAX_SEED", "MissingWeightsError", "ModelSpec", "SCORE_RANGE", "UnknownBIQAError",
           "available", "check_seed", "missing_weights_message", "register", "spec"]
