"""A Bradley-Terry view of the votes, from rank-breaking each ballot.

A ballot orders the runs on screen into three tiers: most > unpicked > least. Rank-breaking (Azari Soufiani
et al. 2013) turns it into every pairwise win between tiers; `choix.ilsr_pairwise` (Maystre & Grossglauser
2015) fits P(i beats j) = exp(t_i) / (exp(t_i) + exp(t_j)) with a small L2 prior (alpha) that keeps the fit
finite when a run never loses or never wins. Strengths are centred to mean 0 over the runs that were compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import choix
import numpy as np

from jury_app.ranking import RunBallot


def rank_break(ballot: RunBallot) -> list[tuple[str, str]]:
    """(winner, loser) pairs: most beats unpicked and least; unpicked beats least."""
    unpicked = ballot.present - ballot.most - ballot.least
    tiers = [sorted(ballot.most), sorted(unpicked), sorted(ballot.least)]
    pairs = []
    for hi in range(3):
        for lo in range(hi + 1, 3):
            pairs.extend((w, l) for w in tiers[hi] for l in tiers[lo])
    return pairs


def bradley_terry(run_ballots: Sequence[RunBallot], runs: Sequence[str], *, alpha: float = 0.01
                  ) -> dict[str, float]:
    """run -> log-strength (mean 0 over compared runs); NaN for a run in no comparison."""
    pairs = [p for b in run_ballots for p in rank_break(b)]
    compared = sorted({r for p in pairs for r in p} & set(runs))
    out = {r: math.nan for r in runs}
    if len(compared) < 2:
        return out
    index = {r: i for i, r in enumerate(compared)}
    data = [(index[w], index[l]) for w, l in pairs if w in index and l in index]
    params = np.asarray(choix.ilsr_pairwise(len(compared), data, alpha=alpha))
    params = params - params.mean()
    out.update({r: float(params[index[r]]) for r in compared})
    return out
