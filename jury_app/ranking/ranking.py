"""The task's ranking rule and the best-worst score (pure functions over ballots).

Rule of MediaEval 2020 Pixel Privacy: runs are ranked by how often jurors picked their version as one of the
"most appealing"; ties are broken by fewer "least appealing" picks; runs equal on both share a rank
(competition ranking: 1, 2, 2, 4).

Best-worst score (Louviere et al.; Marley & Louviere 2005): bws = (most - least) / appearances, in [-1, 1],
where appearances counts the ballots in which the run had a version on screen. Unlike the raw count it does not
reward runs that happened to be shown more often (missing ballots, runs absent from some images).

Two ways to count, with the same results:
- `Tally` (what `pp-jury rank` and the organizer page use): ballots are consumed one at a time (a generator is
  fine) and counted in vectorised chunks into `JuryCounts`, arrays of jurors x runs, images x runs and
  runs x runs. Time is linear in the number of ballots and memory is bounded by (jurors + images + runs) x runs,
  whatever the size of the votes file. Intervals, agreement and Bradley-Terry are computed from these arrays.
- `RunBallot`, `count_runs`, `per_image_counts`: the plain per-ballot definitions, kept as the readable reference
  (the tests check `Tally` against them) and for hand-made fixtures (`JuryCounts.from_run_ballots`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from jury_app.votes.ballot import Ballot
from evaluator.contracts.jury_package import JuryKey, PackageError


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
    return score_table(count_runs(run_ballots, runs), intervals)


def score_table(counts: Mapping[str, tuple[int, int, int]],
                intervals: Mapping[str, tuple[float, float]] | None = None) -> list[RunScore]:
    """The ranking table from run -> (most, least, appearances), sorted by rank then run name."""
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


@dataclass(frozen=True, eq=False)
class JuryCounts:
    """What every figure of the ranking is computed from: counts per (juror, run), (image, run), (run, run).

    juror_most[j, r] / juror_least[j, r] = "most" / "least" picks of run r by juror j; juror_appear[j, r] =
    ballots of juror j with a version of r on screen. image_* the same per image. wins[a, b] = rank-broken
    pairwise wins of run a over run b (tiers most > unpicked > least, see `bradley_terry`). Jurors and images
    are sorted by name; only jurors with at least one ballot are listed. A run has at most one version per
    image (`load_key` checks it), so a ballot's score for a run, d = most - least, is -1, 0 or 1 and d^2 =
    most + least.
    """

    runs: tuple[str, ...]
    jurors: tuple[str, ...]
    images: tuple[str, ...]
    juror_most: np.ndarray
    juror_least: np.ndarray
    juror_appear: np.ndarray
    image_most: np.ndarray
    image_least: np.ndarray
    image_appear: np.ndarray
    wins: np.ndarray
    n_ballots: int

    @property
    def totals(self) -> dict[str, tuple[int, int, int]]:
        """run -> (most, least, appearances), as `count_runs`."""
        m, l, a = (x.sum(axis=0) for x in (self.juror_most, self.juror_least, self.juror_appear))
        return {r: (int(m[k]), int(l[k]), int(a[k])) for k, r in enumerate(self.runs)}

    def per_image(self) -> list[ImageRunCount]:
        """As `per_image_counts`: (image, run) pairs whose run was on screen, sorted by image then run."""
        order = sorted(range(len(self.runs)), key=lambda k: self.runs[k])
        return [ImageRunCount(image, self.runs[k], int(self.image_most[i, k]), int(self.image_least[i, k]),
                              int(self.image_appear[i, k]))
                for i, image in enumerate(self.images) for k in order if self.image_appear[i, k] > 0]

    @classmethod
    def from_cells(cls, d: np.ndarray, present: np.ndarray, runs: Sequence[str] | None = None,
                   jurors: Sequence[str] | None = None, images: Sequence[str] | None = None) -> JuryCounts:
        """Counts of a complete crossed design: d[j, i, r] in {-1, 0, 1} (1 = most, -1 = least) for juror j,
        image i, run r; present[j, i, r] (or present[i, r]) whether r was on screen. For simulations."""
        d = np.asarray(d)
        n_j, n_i, n_r = d.shape
        present = np.broadcast_to(np.asarray(present, bool), d.shape)
        most, least, pres = (d == 1) & present, (d == -1) & present, present.astype(np.int64)
        m, l, p = (x.reshape(n_j * n_i, n_r).astype(np.float64) for x in (most, least, pres))
        return cls(runs=tuple(runs) if runs is not None else tuple(f"run{k}" for k in range(n_r)),
                   jurors=tuple(jurors) if jurors is not None else tuple(f"j{k:05d}" for k in range(n_j)),
                   images=tuple(images) if images is not None else tuple(f"i{k:05d}" for k in range(n_i)),
                   juror_most=most.sum(axis=1), juror_least=least.sum(axis=1), juror_appear=pres.sum(axis=1),
                   image_most=most.sum(axis=0), image_least=least.sum(axis=0), image_appear=pres.sum(axis=0),
                   wins=_wins(m, l, p), n_ballots=n_j * n_i)

    @classmethod
    def from_run_ballots(cls, run_ballots: Sequence[RunBallot], runs: Sequence[str]) -> JuryCounts:
        """Counts of hand-made ballots (straightforward loop; runs outside `runs` are ignored)."""
        runs = tuple(runs)
        index = {r: k for k, r in enumerate(runs)}
        jurors = sorted({b.juror for b in run_ballots})
        images = sorted({b.image for b in run_ballots})
        jx, ix = {j: k for k, j in enumerate(jurors)}, {i: k for k, i in enumerate(images)}
        n = len(run_ballots)
        m, l, p = (np.zeros((n, len(runs))) for _ in range(3))
        for b, ballot in enumerate(run_ballots):
            for arr, group in ((m, ballot.most), (l, ballot.least), (p, ballot.present)):
                for r in group:
                    if r in index:
                        arr[b, index[r]] = 1
        bj = np.array([jx[b.juror] for b in run_ballots], dtype=np.int64)
        bi = np.array([ix[b.image] for b in run_ballots], dtype=np.int64)
        return cls(runs=runs, jurors=tuple(jurors), images=tuple(images),
                   juror_most=_group_sum(m, bj, len(jurors)), juror_least=_group_sum(l, bj, len(jurors)),
                   juror_appear=_group_sum(p, bj, len(jurors)), image_most=_group_sum(m, bi, len(images)),
                   image_least=_group_sum(l, bi, len(images)), image_appear=_group_sum(p, bi, len(images)),
                   wins=_wins(m, l, p), n_ballots=n)


def _group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums of `values` (ballots x runs) per group -> (n_groups, runs) int64, by one bincount."""
    n_runs = values.shape[1]
    flat = (groups[:, None] * n_runs + np.arange(n_runs)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=n_groups * n_runs).reshape(
        n_groups, n_runs).round().astype(np.int64)


def _wins(most: np.ndarray, least: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rank-broken wins of ballots x runs 0/1 matrices: most beats unpicked and least, unpicked beats least."""
    unpicked = present - most - least
    return most.T @ (unpicked + least) + unpicked.T @ least


class Tally:
    """Streaming counter of ballots into `JuryCounts` (linear time, memory O((jurors + images + runs) x runs)).

    `add` keeps a ballot as a few small integers; every `chunk` ballots they are counted at once with numpy
    (bincount and one ballots x runs matrix product for the pairwise wins).
    """

    def __init__(self, key: JuryKey, runs: Sequence[str] | None = None, *, chunk: int = 8192) -> None:
        self.runs = tuple(runs) if runs is not None else key.runs
        run_index = {r: k for k, r in enumerate(self.runs)}
        self.images = tuple(sorted({c.image for c in key.candidates.values()}))
        self._image_index = {im: k for k, im in enumerate(self.images)}
        # candidate -> (image index, run index or -1 for a run outside `runs`)
        self._cand = {cid: (self._image_index[c.image], run_index.get(c.run, -1))
                      for cid, c in key.candidates.items()}
        self._present = np.zeros((len(self.images), len(self.runs)))
        for i, r in self._cand.values():
            if r >= 0:
                self._present[i, r] = 1
        self._chunk = chunk
        self._juror_index: dict[str, int] = {}
        n_i, n_r = len(self.images), len(self.runs)
        self._juror = np.zeros((3, 16, n_r), dtype=np.int64)  # most, least, appearances per juror (grows)
        self._image = np.zeros((3, n_i, n_r), dtype=np.int64)
        self._wins = np.zeros((n_r, n_r))
        self._n_ballots = 0
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        self._bj: list[int] = []
        self._bi: list[int] = []
        self._pick_ballot: list[int] = []
        self._pick_run: list[int] = []
        self._pick_most: list[bool] = []

    def add(self, ballot: Ballot) -> None:
        image = self._image_index.get(ballot.image)
        if image is None:
            raise PackageError(f"key.json has no candidate for image {ballot.image!r}, which juror "
                               f"{ballot.juror!r} judged; rank the votes with the package they were cast in.")
        j = self._juror_index.setdefault(ballot.juror, len(self._juror_index))
        pos = len(self._bj)
        self._bj.append(j)
        self._bi.append(image)
        for group, is_most in ((ballot.most, True), (ballot.least, False)):
            for cid in group:
                where = self._cand.get(cid)
                if where is None or where[0] != image:
                    raise PackageError(f"juror {ballot.juror!r} picked {cid!r} for image {ballot.image!r}, "
                                       "but key.json has no such candidate for that image; rank the votes "
                                       "with the package they were cast in.")
                if where[1] >= 0:
                    self._pick_ballot.append(pos)
                    self._pick_run.append(where[1])
                    self._pick_most.append(is_most)
        if len(self._bj) >= self._chunk:
            self._flush()

    def add_all(self, ballots: Iterable[Ballot]) -> Tally:
        for ballot in ballots:
            self.add(ballot)
        return self

    def _flush(self) -> None:
        if not self._bj:
            return
        n_r = len(self.runs)
        bj, bi = np.asarray(self._bj, dtype=np.int64), np.asarray(self._bi, dtype=np.int64)
        n = len(bj)
        need = len(self._juror_index)
        if need > self._juror.shape[1]:
            grown = np.zeros((3, max(need, 2 * self._juror.shape[1]), n_r), dtype=np.int64)
            grown[:, : self._juror.shape[1]] = self._juror
            self._juror = grown
        most, least = np.zeros((n, n_r)), np.zeros((n, n_r))
        pb, pr = np.asarray(self._pick_ballot, dtype=np.int64), np.asarray(self._pick_run, dtype=np.int64)
        is_most = np.asarray(self._pick_most, dtype=bool)
        most[pb[is_most], pr[is_most]] = 1
        least[pb[~is_most], pr[~is_most]] = 1
        present = self._present[bi]
        jurors, local = np.unique(bj, return_inverse=True)  # only the jurors of this chunk: O(chunk) work
        for k, values in enumerate((most, least, present)):
            self._juror[k, jurors] += _group_sum(values, local.ravel(), len(jurors))
            self._image[k] += _group_sum(values, bi, len(self.images))
        self._wins += _wins(most, least, present)
        self._n_ballots += n
        self._reset_buffer()

    def counts(self) -> JuryCounts:
        """The counts of every ballot added so far (jurors sorted by name)."""
        self._flush()
        names = sorted(self._juror_index)
        rows = np.asarray([self._juror_index[j] for j in names], dtype=np.int64)
        juror = self._juror[:, rows] if len(rows) else np.zeros((3, 0, len(self.runs)), dtype=np.int64)
        return JuryCounts(runs=self.runs, jurors=tuple(names), images=self.images,
                          juror_most=juror[0], juror_least=juror[1], juror_appear=juror[2],
                          image_most=self._image[0].copy(), image_least=self._image[1].copy(),
                          image_appear=self._image[2].copy(), wins=self._wins.copy(), n_ballots=self._n_ballots)
