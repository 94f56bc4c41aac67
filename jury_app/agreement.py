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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from jury_app.ranking import RunBallot, count_runs

#: below this many jurors the bootstrap intervals and agreement figures are shown with a warning.
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


def juror_scores(run_ballots: Sequence[RunBallot], runs: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(jurors, matrix jurors x runs) of each juror's bws; NaN where the juror never saw the run."""
    jurors = sorted({b.juror for b in run_ballots})
    mat = np.full((len(jurors), len(runs)), np.nan)
    for j, juror in enumerate(jurors):
        counts = count_runs([b for b in run_ballots if b.juror == juror], runs)
        for r, run in enumerate(runs):
            m, l, a = counts[run]
            if a:
                mat[j, r] = (m - l) / a
    return jurors, mat


def kendall_w(scores: np.ndarray) -> float:
    """Kendall's W (tie-corrected) of a complete jurors x items score matrix (higher score = better)."""
    m, n = scores.shape
    if m < 2 or n < 2:
        return math.nan
    ranks = np.vstack([rankdata(row) for row in scores])
    rank_sums = ranks.sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    ties = 0.0
    for row in scores:
        _, t = np.unique(row, return_counts=True)
        ties += float((t ** 3 - t).sum())
    denom = m ** 2 * (n ** 3 - n) - m * ties
    return 12 * s / denom if denom > 0 else math.nan


def split_half(run_ballots: Sequence[RunBallot], runs: Sequence[str], *, n_splits: int = 200,
               seed: int = 0) -> float:
    """Mean Spearman-Brown corrected correlation of run bws between random halves of the jurors."""
    jurors = sorted({b.juror for b in run_ballots})
    if len(jurors) < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_splits):
        perm = rng.permutation(len(jurors))
        half = {jurors[i] for i in perm[: len(jurors) // 2]}
        sides = []
        for side in (True, False):
            counts = count_runs([b for b in run_ballots if (b.juror in half) == side], runs)
            sides.append(np.array([(m - l) / a if a else np.nan for m, l, a in (counts[r] for r in runs)]))
        ok = np.isfinite(sides[0]) & np.isfinite(sides[1])
        x, y = sides[0][ok], sides[1][ok]
        if len(x) < 3 or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        values.append(2 * r / (1 + r) if r > -1 else math.nan)
    return float(np.nanmean(values)) if values else math.nan


def agreement(run_ballots: Sequence[RunBallot], runs: Sequence[str], *, seed: int = 0) -> Agreement:
    jurors, mat = juror_scores(run_ballots, runs)
    complete = mat[:, np.isfinite(mat).all(axis=0)] if len(jurors) else mat
    return Agreement(n_jurors=len(jurors), kendall_w=kendall_w(complete),
                     split_half=split_half(run_ballots, runs, seed=seed),
                     too_few_jurors=len(jurors) < MIN_JURORS)
