"""95% intervals of the best-worst score by a two-stage (cluster) bootstrap.

Jurors are the clusters: a replicate draws J jurors with replacement, then for every drawn juror draws that
juror's n_j ballots with replacement (Davison & Hinkley 1997, sec. 3.8, "resampling both stages"). A juror
drawn c times contributes Multinomial(c * n_j, 1/n_j) ballot weights, so one replicate is
bws*_r = sum_b w_b (most_br - least_br) / sum_b w_b present_br. Percentile interval over the replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jury_app.ranking import RunBallot


def _matrices(run_ballots: Sequence[RunBallot], runs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    index = {r: i for i, r in enumerate(runs)}
    diff = np.zeros((len(run_ballots), len(runs)))
    present = np.zeros((len(run_ballots), len(runs)))
    for b, ballot in enumerate(run_ballots):
        for r in ballot.present:
            if r in index:
                present[b, index[r]] = 1
        for r in ballot.most:
            if r in index:
                diff[b, index[r]] += 1
        for r in ballot.least:
            if r in index:
                diff[b, index[r]] -= 1
    return diff, present


def bootstrap_weights(jurors: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_ballots) weights of a two-stage bootstrap; `jurors[b]` is the juror of ballot b."""
    names = sorted(set(jurors))
    groups = [np.flatnonzero(np.asarray(jurors) == j) for j in names]
    weights = np.zeros((n_boot, len(jurors)))
    cluster_counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot)
    for j, idx in enumerate(groups):
        n_j = len(idx)
        weights[:, idx] = rng.multinomial(cluster_counts[:, j] * n_j, np.full(n_j, 1 / n_j))
    return weights


def bws_intervals(run_ballots: Sequence[RunBallot], runs: Sequence[str], *, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """run -> (low, high) percentile interval of bws; (nan, nan) for a run never shown or no ballots."""
    runs = list(runs)
    if not run_ballots:
        return {r: (math.nan, math.nan) for r in runs}
    rng = np.random.default_rng(seed)
    diff, present = _matrices(run_ballots, runs)
    weights = bootstrap_weights([b.juror for b in run_ballots], n_boot, rng)
    num, den = weights @ diff, weights @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    alpha = (1 - level) / 2
    out = {}
    for i, r in enumerate(runs):
        col = reps[:, i]
        if present[:, i].sum() == 0 or np.isnan(col).all():
            out[r] = (math.nan, math.nan)
        else:
            lo, hi = np.nanquantile(col, [alpha, 1 - alpha])
            out[r] = (float(lo), float(hi))
    return out
