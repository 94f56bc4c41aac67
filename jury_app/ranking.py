"""The task's ranking rule and the best-worst score (pure functions over ballots).

Rule of MediaEval 2020 Pixel Privacy: runs are ranked by how often jurors picked their version as one of the
"most appealing"; ties are broken by fewer "least appealing" picks; runs equal on both share a rank
(competition ranking: 1, 2, 2, 4).

Best-worst score (Louviere et al.; Marley & Louviere 2005): bws = (most - least) / appearances, in [-1, 1],
where appearances counts the ballots in which the run had a version on screen. Unlike the raw count it does not
reward runs that happened to be shown more often (missing ballots, runs absent from some images).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jury_app.ballot import Ballot


@dataclass(frozen=True)
class RunBallot:
    """A ballot seen through the key: which runs were on screen and which were picked."""

    juror: str
    image: str
    present: frozenset[str]
    most: frozenset[str]
    least: frozenset[str]


@dataclass(frozen=True)
class RunScore:
    run: str
    most: int
    least: int
    appearances: int
    bws: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    rank: int = 0


def to_run_ballots(ballots: Iterable[Ballot], candidate_run: Mapping[str, str],
                   candidate_image: Mapping[str, str]) -> list[RunBallot]:
    """Translate candidate ids into runs; `present` = every run with a candidate on that image (from the key)."""
    runs_on_image: dict[str, set[str]] = {}
    for cid, image in candidate_image.items():
        runs_on_image.setdefault(image, set()).add(candidate_run[cid])
    out = []
    for b in ballots:
        out.append(RunBallot(
            juror=b.juror, image=b.image, present=frozenset(runs_on_image.get(b.image, ())),
            most=frozenset(candidate_run[c] for c in b.most), least=frozenset(candidate_run[c] for c in b.least)))
    return sorted(out, key=lambda r: (r.juror, r.image))


def count_runs(run_ballots: Sequence[RunBallot], runs: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """run -> (most, least, appearances); every run in `runs` appears, even if nobody picked or saw it."""
    counts = {r: [0, 0, 0] for r in runs}
    for b in run_ballots:
        for r in b.present:
            counts.setdefault(r, [0, 0, 0])[2] += 1
        for r in b.most:
            counts.setdefault(r, [0, 0, 0])[0] += 1
        for r in b.least:
            counts.setdefault(r, [0, 0, 0])[1] += 1
    return {r: (m, l, a) for r, (m, l, a) in counts.items()}


def bws(most: int, least: int, appearances: int) -> float:
    """(most - least) / appearances; NaN for a run never shown."""
    return (most - least) / appearances if appearances else math.nan


def task_rank(counts: Mapping[str, tuple[int, int, int]]) -> dict[str, int]:
    """Competition rank by (most desc, least asc); equal (most, least) share the rank."""
    order = sorted(counts, key=lambda r: (-counts[r][0], counts[r][1], r))
    ranks: dict[str, int] = {}
    for i, run in enumerate(order):
        prev = order[i - 1] if i else None
        if prev is not None and counts[prev][:2] == counts[run][:2]:
            ranks[run] = ranks[prev]
        else:
            ranks[run] = i + 1
    return ranks


def score_runs(run_ballots: Sequence[RunBallot], runs: Iterable[str],
               intervals: Mapping[str, tuple[float, float]] | None = None) -> list[RunScore]:
    """The ranking table, sorted by rank then run name."""
    counts = count_runs(run_ballots, runs)
    ranks = task_rank(counts)
    intervals = intervals or {}
    rows = [RunScore(run=r, most=m, least=l, appearances=a, bws=bws(m, l, a),
                     ci_low=intervals.get(r, (math.nan, math.nan))[0],
                     ci_high=intervals.get(r, (math.nan, math.nan))[1], rank=ranks[r])
            for r, (m, l, a) in counts.items()]
    return sorted(rows, key=lambda s: (s.rank, s.run))


@dataclass(frozen=True)
class ImageRunCount:
    image: str
    run: str
    most: int
    least: int
    appearances: int


def per_image_counts(run_ballots: Sequence[RunBallot]) -> list[ImageRunCount]:
    """Most / least / appearances per (image, run), sorted by image then run."""
    acc: dict[tuple[str, str], list[int]] = {}
    for b in run_ballots:
        for r in b.present:
            acc.setdefault((b.image, r), [0, 0, 0])[2] += 1
        for r in b.most:
            acc.setdefault((b.image, r), [0, 0, 0])[0] += 1
        for r in b.least:
            acc.setdefault((b.image, r), [0, 0, 0])[1] += 1
    return [ImageRunCount(i, r, *v) for (i, r), v in sorted(acc.items())]
