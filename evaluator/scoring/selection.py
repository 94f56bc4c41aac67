"""Jury image selection (liu2020, section 3): the images whose post-JPEG scores vary most across runs.

variance(image) = population variance (ddof = 0) of that image's post-JPEG BIQA scores over all scored runs;
the `k` images with the highest variance are selected, ties broken by image id (ascending), and ranked 1..k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SelectedImage:
    image: str
    variance: float
    rank: int


def score_variances(scores_by_run: Mapping[str, Mapping[str, float]], images: Sequence[str]) -> dict[str, float]:
    """Population variance of each image's scores across the runs in `scores_by_run` (run -> image -> score).

    Every run must have a score for every image in `images`.
    """
    variances: dict[str, float] = {}
    for image in images:
        values = []
        for run, by_image in scores_by_run.items():
            if image not in by_image:
                raise ValueError(f"run {run!r} has no score for image {image!r}; selection needs every run's score")
            values.append(float(by_image[image]))
        variances[image] = float(np.var(np.asarray(values, dtype=np.float64), ddof=0)) if values else 0.0
    return variances


def select_images(variances: Mapping[str, float], k: int) -> list[SelectedImage]:
    """The `k` images with the highest variance (ties: smaller image id first), ranked from 1."""
    if k < 0:
        raise ValueError(f"cannot select a negative number of images ({k})")
    order = sorted(variances.items(), key=lambda item: (-item[1], item[0]))
    return [SelectedImage(image=image, variance=var, rank=i + 1) for i, (image, var) in enumerate(order[:k])]
