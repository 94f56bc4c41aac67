"""How much the jurors agree: Kendall's W and split-half reliability.

Each juror's view of a run is that juror's best-worst score for it, s_jr = (most - least) / appearances over
the juror's own ballots. Only runs every counted juror has seen enter W.

Kendall's W with tie correction (Kendall & Babington Smith 1939; Siegel & Castellan 1988, eq. 9.16), m jurors
ranking n runs, R_r the rank sum of run r: W = 12 S / (m^2 (n^3 - n) - m sum_j T_j), S = sum_r (R_r - mean R)^2,
T_j = sum over tie groups of juror j of (t^3 - t). 0 = no agreement, 1 = all jurors give the same order.

Split-half reliability: split the jurors at random into two halves, compute every run's bws in each half,
correlate the halves (Pearson r over runs) and step up with Spearman-Brown, 2r / (1 + r); averaged over
seeded random splits. It estimates the correlation of the run scores with those of another jury of this size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from jury_app.ranking.ranking import JuryCounts

#: below this many jurors the intervals and agreement figures are shown with a warning.
MIN_JURORS = 5


@dataclass(frozen=True)
class Agreement:
    n_jurors: int
    kendall_w: float
    split_half: float
    too_few_jurors: bool

    def warning(self) -> str | None:
        if not self.too_few_jurors:
            return None
        return (f"Only {self.n_jurors} juror(s) voted: with fewer than {MIN_JURORS} jurors the intervals and "
                "agreement figures rest on too few people to mean much.")


def juror_scores(counts: JuryCounts) -> tuple[tuple[str, ...], np.ndarray]:
    """(jurors, matrix jurors x runs) of each juror's bws; NaN where the juror never saw the run."""
    a = counts.juror_appear
    with np.errstate(invalid="ignore", divide="ignore"):
        mat = np.where(a > 0, (counts.juror_most - counts.juror_least) / np.where(a > 0, a, 1), np.nan)
    return counts.jurors, mat


def kendall_w(scores: np.ndarray) -> float:
    """Kendall's W (tie-corrected) of a complete jurors x items score matrix (higher score = better)."""
    scores = np.asarray(scores, dtype=np.float64)
    m, n = scores.shape
    if m < 2 or n < 2:
        return math.nan
    rank_sums = rankdata(scores, axis=1).sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    # tie groups of every row at once: a new group starts where the sorted row changes value
    ordered = np.sort(scores, axis=1)
    starts = np.ones((m, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    t = np.bincount(np.cumsum(starts.ravel()) - 1).astype(np.float64)
    ties = float((t ** 3 - t).sum())
    denom = m ** 2 * (n ** 3 - n) - m * ties
    return 12 * s / denom if denom > 0 else math.nan


def split_half(counts: JuryCounts, *, n_splits: int = 200, seed: int = 0) -> float:
    """Mean Spearman-Brown corrected correlation of run bws between random halves of the jurors.

    Each half's bws is sum(most - least) / sum(appearances) over its jurors: two matrix-vector products of the
    jurors x runs counts per split (linear in jurors).
    """
    n_jurors = len(counts.jurors)
    if n_jurors < 2:
        return math.nan
    diff = (counts.juror_most - counts.juror_least).astype(np.float64)
    appear = counts.juror_appear.astype(np.float64)
    total_d, total_a = diff.sum(axis=0), appear.sum(axis=0)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_splits):
        perm = rng.permutation(n_jurors)
        half = np.zeros(n_jurors)
        half[perm[: n_jurors // 2]] = 1
        d1, a1 = half @ diff, half @ appear
        d2, a2 = total_d - d1, total_a - a1
        with np.errstate(invalid="ignore", divide="ignore"):
            x_all = np.where(a1 > 0, d1 / np.where(a1 > 0, a1, 1), np.nan)
            y_all = np.where(a2 > 0, d2 / np.where(a2 > 0, a2, 1), np.nan)
        ok = np.isfinite(x_all) & np.isfinite(y_all)
        x, y = x_all[ok], y_all[ok]
        if len(x) < 3 or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        values.append(2 * r / (1 + r) if r > -1 else math.nan)
    return float(np.nanmean(values)) if values else math.nan


def agreement(counts: JuryCounts, *, seed: int = 0) -> Agreement:
    jurors, mat = juror_scores(counts)
    complete = mat[:, np.isfinite(mat).all(axis=0)] if len(jurors) else mat
    return Agreement(n_jurors=len(jurors), kendall_w=kendall_w(complete),
                     split_half=split_half(counts, seed=seed),
                     too_few_jurors=len(jurors) < MIN_JURORS)
