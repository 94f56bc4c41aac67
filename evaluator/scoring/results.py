"""The result types of an evaluation: one scores.csv row (`ImageScore`), one runs.csv row (`RunResult`), and the
whole `EvaluationResult` that `evaluator.pipeline.evaluate` returns and `evaluator.outputs.report` renders (here, so
that the report does not import the pipeline)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.contracts.jury_package import PickRule
from evaluator.scoring.selection import SelectedImage


@dataclass(frozen=True)
class ImageScore:
    """One row of scores.csv (plus the sha256 of the scored JPEG bytes, used for the jury package)."""

    run: str
    image: str
    score_clean: float
    score: float
    low_quality: bool
    psnr: float
    ssim: float
    jpeg_sha256: str


@dataclass(frozen=True)
class RunResult:
    """One row of runs.csv. Numbers are over the images whose original is high quality."""

    run: str
    status: str
    error: str = ""
    n_images: int = 0
    accuracy: float = math.nan
    accuracy_reduction: float = math.nan
    qualified: bool = False
    mean_score: float = math.nan
    abs_gain: float = math.nan
    rel_gain: float = math.nan
    robustness_score: float = math.nan
    wasserstein_score: float = math.nan
    energy_score: float = math.nan
    psnr: float = math.nan
    ssim: float = math.nan
    warning: str = ""


@dataclass(frozen=True)
class CacheStats:
    """Values taken from the score cache, values computed, and model calls made by one evaluation."""

    hits: int = 0
    computed: int = 0
    model_batches: int = 0


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation computed (written out by `evaluator.pipeline`, shown by `evaluator.outputs.report`)."""

    out_dir: Path
    runs: tuple[RunResult, ...]
    scores: tuple[ImageScore, ...]
    original_scores: dict[str, float]
    excluded_originals: tuple[str, ...]
    original_accuracy: float
    selection: tuple[SelectedImage, ...]
    picks: PickRule  # what jurors are asked: the task's [jury] rule shrunk to the candidates (`for_candidates`)
    jury_candidates: int
    threshold: float
    max_accuracy: float
    cache: CacheStats = field(default_factory=CacheStats)
    jury_note: str | None = None  # why the picks were shrunk (`PickRule.shrink_note`), None when they were not

    def run(self, name: str) -> RunResult:
        for r in self.runs:
            if r.run == name:
                return r
        raise KeyError(name)
