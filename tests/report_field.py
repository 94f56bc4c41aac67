"""A synthetic evaluation (runs x images) for the report gallery tests and the screenshots script: an
EvaluationResult with every row, and the callables `gallery_html` reads images through, drawing each image on the fly
(nothing held)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from evaluator.contracts.jury_package import PickRule
from evaluator.outputs.report_gallery import gallery_html
from evaluator.scoring.results import EvaluationResult, ImageScore, RunResult
from evaluator.scoring.selection import SelectedImage


@functools.lru_cache(maxsize=32)
def original_rgb(image: str, size: tuple[int, int], noise: float) -> np.ndarray:
    h, w = size
    k = int(image[3:])
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (17 + k) + c) * np.cos(y / (23 + k)) for c in (0, 1, 2)], axis=-1)
    return np.clip(base + rng.normal(0, noise, (h, w, 3)), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _perturbation(run_index: int, size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(run_index)
    return rng.normal(0, 2 + run_index, size + (3,)).astype(np.int16)


def submitted_rgb(run_index: int, image: str, size: tuple[int, int], noise: float) -> np.ndarray:
    shift = int(image[3:]) * 7
    pert = np.roll(_perturbation(run_index, size), shift, axis=1)
    return np.clip(original_rgb(image, size, noise) + pert, 0, 255).astype(np.uint8)


def field(runs: list[str], n_images: int, *, size: tuple[int, int] = (384, 512), noise: float = 30.0,
          selected: int | None = None):
    """(result, original, submitted, scored) for `gallery_html`; scores fall with the run index."""
    images = [f"img{i:03d}" for i in range(n_images)]
    index = {run: i for i, run in enumerate(runs)}
    rows = tuple(ImageScore(run=run, image=image, score_clean=70.0, score=60.0 - 3 * r - (i % 7),
                            low_quality=False, psnr=40.0 - r, ssim=0.99 - 0.01 * r, jpeg_sha256="")
                 for r, run in enumerate(runs) for i, image in enumerate(images))
    result = EvaluationResult(
        out_dir=Path("."), runs=tuple(RunResult(run=run, status="scored", n_images=n_images) for run in runs),
        scores=rows, original_scores={i: 70.0 for i in images}, excluded_originals=(), original_accuracy=1.0,
        selection=tuple(SelectedImage(image, 1.0, k + 1) for k, image in enumerate(images[:selected or n_images])),
        picks=PickRule(), jury_candidates=len(runs), threshold=50.0, max_accuracy=0.5)
    return (result, lambda image: original_rgb(image, size, noise),
            lambda run, image: submitted_rgb(index[run], image, size, noise), lambda rgb: rgb)


def gallery_for(runs: list[str], n_images: int, **kwargs) -> tuple[EvaluationResult, str]:
    result, original, submitted, scored = field(runs, n_images, **kwargs)
    return result, gallery_html(result, original=original, submitted=submitted, scored=scored)
