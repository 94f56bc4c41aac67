"""A Bradley-Terry view of the votes, from rank-breaking each ballot.

A ballot orders the runs on screen into three tiers: most > unpicked > least. Rank-breaking (Azari Soufiani
et al. 2013) turns it into every pairwise win between tiers; `choix.ilsr_pairwise` (Maystre & Grossglauser
2015) fits P(i beats j) = exp(t_i) / (exp(t_i) + exp(t_j)) with a small L2 prior (alpha) that keeps the fit
finite when a run never loses or never wins. Strengths are centred to mean 0 over the runs that were compared.

The wins are counted, not listed: `JuryCounts.wins[a, b]` = rank-broken wins of a over b, summed over ballots
with one matrix product per chunk of ballots (M^T (U + L) + U^T L for 0/1 ballots x runs matrices of most,
unpicked, least), and fitted by `choix.ilsr_pairwise_dense`, the same estimator on the runs x runs count matrix.
Time is linear in the ballots, memory runs x runs.
"""

from __future__ import annotations

import math

import choix
import numpy as np

from jury_app.ranking.ranking import JuryCounts, RunBallot


def rank_break(ballot: RunBallot) -> list[tuple[str, str]]:
    """(winner, loser) pairs: most beats unpicked and least; unpicked beats least."""
    unpicked = ballot.present - ballot.most - ballot.least
    tiers = [sorted(ballot.most), sorted(unpicked), sorted(ballot.least)]
    pairs = []
    for hi in range(3):
        for lo in range(hi + 1, 3):
            pairs.extend((w, l) for w in tiers[hi] for l in tiers[lo])
    return pairs


def bradley_terry(counts: JuryCounts, *, alpha: float = 0.01) -> dict[str, float]:
    """run -> log-strength (mean 0 over compared runs); NaN for a run in no comparison."""
    wins = np.asarray(counts.wins, dtype=np.float64)
    out = {r: math.nan for r in counts.runs}
    compared = np.flatnonzero((wins.sum(axis=0) + wins.sum(axis=1)) > 0)
    if len(compared) < 2:
        return out
    params = np.asarray(choix.ilsr_pairwise_dense(wins[np.ix_(compared, compared)], alpha=alpha))
    params = params - params.mean()
    out.update({counts.runs[k]: float(p) for k, p in zip(compared, params)})
    return out
