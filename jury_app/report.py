"""Everything the organizer reads, computed fresh from ballots and the key (no caching)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jury_app.agreement import Agreement, agreement
from jury_app.ballot import Ballot
from jury_app.bootstrap import bws_intervals
from jury_app.bradley_terry import bradley_terry
from jury_app.package import JuryKey
from jury_app.ranking import ImageRunCount, RunScore, per_image_counts, score_runs, to_run_ballots

RANKING_COLUMNS = ("run", "most", "least", "appearances", "bws", "ci_low", "ci_high", "rank")


@dataclass(frozen=True)
class JuryRanking:
    scores: list[RunScore]
    bradley_terry: dict[str, float]
    agreement: Agreement
    per_image: list[ImageRunCount]


def rank_jury(ballots: Sequence[Ballot], key: JuryKey, *, n_boot: int = 2000, seed: int = 0) -> JuryRanking:
    runs = list(key.runs)
    run_ballots = to_run_ballots(ballots, {c: k.run for c, k in key.candidates.items()},
                                 {c: k.image for c, k in key.candidates.items()})
    intervals = bws_intervals(run_ballots, runs, n_boot=n_boot, seed=seed)
    return JuryRanking(scores=score_runs(run_ballots, runs, intervals),
                       bradley_terry=bradley_terry(run_ballots, runs),
                       agreement=agreement(run_ballots, runs, seed=seed),
                       per_image=per_image_counts(run_ballots))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def ranking_csv(scores: Sequence[RunScore]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RANKING_COLUMNS)
    for s in scores:
        w.writerow([_fmt(getattr(s, c)) for c in RANKING_COLUMNS])
    return buf.getvalue()


