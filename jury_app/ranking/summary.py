"""Everything the organizer reads, computed fresh from ballots and the key (no caching).

`rank_jury` consumes the ballots once (any iterable: the store's list or the streaming votes-CSV reader), counts
them with `ranking.Tally` and derives every figure from the jurors x runs, images x runs and runs x runs counts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evaluator.common.csv_safe import CsvWriter
from jury_app.ranking.agreement import Agreement, agreement
from jury_app.ranking.attention import without_checks
from jury_app.votes.ballot import Ballot
from jury_app.ranking.bradley_terry import bradley_terry
from jury_app.ranking.intervals import DEFAULT_INTERVAL, INTERVALS, bws_intervals
from evaluator.contracts.jury_package import RANKING_COLUMNS, JuryKey
from jury_app.ranking.ranking import ImageRunCount, JuryCounts, RunScore, Tally, score_table



@dataclass(frozen=True)
class JuryRanking:
    scores: list[RunScore]
    bradley_terry: dict[str, float]
    agreement: Agreement
    per_image: list[ImageRunCount]
    n_ballots: int = 0
    interval: str = DEFAULT_INTERVAL


def rank_counts(counts: JuryCounts, *, interval: str = DEFAULT_INTERVAL, seed: int = 0) -> JuryRanking:
    """The ranking of already counted ballots; `interval` is "jurors" or "jurors+images" (see `intervals`)."""
    return JuryRanking(scores=score_table(counts.totals, bws_intervals(counts, interval)),
                       bradley_terry=bradley_terry(counts), agreement=agreement(counts, seed=seed),
                       per_image=counts.per_image(), n_ballots=counts.n_ballots, interval=interval)


def rank_jury(ballots: Iterable[Ballot], key: JuryKey, *, interval: str = DEFAULT_INTERVAL,
              seed: int = 0) -> JuryRanking:
    """Count `ballots` (read once, in one pass) against `key` and rank the runs; planted attention checks
    (key.checks) are taken out of the picks first, so they never count (`attention.without_checks`)."""
    return rank_counts(Tally(key).add_all(without_checks(ballots, key)).counts(), interval=interval, seed=seed)


def _number(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def ranking_csv(scores: Sequence[RunScore], interval: str) -> str:
    """ranking.csv (RANKING_COLUMNS) through the kit's one CSV writer (`evaluator.common.csv_safe.CsvWriter`): a run named
    "=HYPERLINK(...)" stays text in a spreadsheet, a run name with a CR stays in its row; every row names
    `interval`, the method of its ci_low/ci_high (pass `JuryRanking.interval`)."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; choose one of {', '.join(INTERVALS)}")
    buf = io.StringIO(newline="")
    w = CsvWriter(buf, number=_number)
    w.writerow(RANKING_COLUMNS)
    for s in scores:
        w.writerow([getattr(s, c) for c in RANKING_COLUMNS[:-1]] + [interval])
    return buf.getvalue()
