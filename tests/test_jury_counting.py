"""The streamed, vectorised counting (`Tally` -> `JuryCounts`) gives what the straightforward per-ballot code gave.

The reference functions below are the previous implementations (per-ballot loops; quadratic in jurors), kept
here verbatim as the oracle for small data.
"""

from __future__ import annotations

import math
import random

import choix
import numpy as np
import pytest
from scipy.stats import rankdata

from jury_app.ranking.agreement import agreement, juror_scores, kendall_w, split_half
from evaluator.contracts.jury_package import PickRule
from jury_app.votes.ballot import Ballot
from jury_app.ranking.bradley_terry import bradley_terry, rank_break
from evaluator.contracts.jury_package import CandidateKey, JuryKey, PackageError
from jury_app.ranking.ranking import (JuryCounts, Tally, count_runs, per_image_counts, score_runs, to_run_ballots)
from jury_app.ranking.summary import rank_jury


# ---- the previous straightforward implementations (oracle) ----
def ref_juror_scores(run_ballots, runs):
    jurors = sorted({b.juror for b in run_ballots})
    mat = np.full((len(jurors), len(runs)), np.nan)
    for j, juror in enumerate(jurors):
        counts = count_runs([b for b in run_ballots if b.juror == juror], runs)
        for r, run in enumerate(runs):
            m, l, a = counts[run]
            if a:
                mat[j, r] = (m - l) / a
    return jurors, mat


def ref_kendall_w(scores):
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


def ref_split_half(run_ballots, runs, *, n_splits=200, seed=0):
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


def ref_bradley_terry(run_ballots, runs, *, alpha=0.01):
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


# ---- a random jury: runs absent from some images, missing ballots, more ballots than one counting chunk ----
def random_jury(seed: int, n_jurors: int = 21, n_images: int = 6, n_runs: int = 7):
    rnd = random.Random(seed)
    runs = [f"run{k}" for k in range(n_runs)]
    key: dict[str, CandidateKey] = {}
    by_image: dict[str, list[str]] = {}
    for i in range(n_images):
        image = f"img{i}"
        shown = runs if i % 3 else rnd.sample(runs, rnd.randint(2, n_runs - 1))  # some runs missing
        for run in shown:
            cid = f"{rnd.getrandbits(40):010x}"
            key[cid] = CandidateKey(run, image)
            by_image.setdefault(image, []).append(cid)
    ballots = []
    for j in range(n_jurors):
        for image, cands in by_image.items():
            if rnd.random() < 0.15:
                continue  # a missing ballot
            rule = PickRule(3, 2).for_candidates(len(cands))
            order = rnd.sample(cands, len(cands))
            ballots.append(Ballot(f"juror{j:03d}", image, tuple(sorted(order[: rule.most])),
                                  tuple(sorted(order[len(order) - rule.least:] if rule.least else ()))))
    return JuryKey(key), ballots


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_counts_equal_the_straightforward_computation(seed):
    key, ballots = random_jury(seed)
    runs = list(key.runs)
    cand_run = {c: k.run for c, k in key.candidates.items()}
    cand_img = {c: k.image for c, k in key.candidates.items()}
    run_ballots = to_run_ballots(ballots, cand_run, cand_img)
    shuffled = random.Random(seed).sample(ballots, len(ballots))
    counts = Tally(key, chunk=5).add_all(iter(shuffled)).counts()  # a generator, in several chunks
    assert counts.n_ballots == len(ballots)
    assert counts.totals == count_runs(run_ballots, runs)
    assert counts.per_image() == per_image_counts(run_ballots)
    jurors, mat = juror_scores(counts)
    ref_jurors, ref_mat = ref_juror_scores(run_ballots, runs)
    assert list(jurors) == ref_jurors and np.array_equal(np.isnan(mat), np.isnan(ref_mat))
    assert np.allclose(mat[~np.isnan(mat)], ref_mat[~np.isnan(ref_mat)], rtol=0, atol=1e-15)
    assert split_half(counts, n_splits=50, seed=seed) == pytest.approx(
        ref_split_half(run_ballots, runs, n_splits=50, seed=seed), abs=1e-12)
    full = np.random.default_rng(seed).integers(-3, 4, size=(9, 6)).astype(float)  # with ties
    assert kendall_w(full) == pytest.approx(ref_kendall_w(full), abs=1e-12)
    complete = ref_mat[:, np.isfinite(ref_mat).all(axis=0)]
    assert agreement(counts, seed=seed).kendall_w == pytest.approx(ref_kendall_w(complete), abs=1e-12)
    bt, ref_bt = bradley_terry(counts), ref_bradley_terry(run_ballots, runs)
    assert bt.keys() == ref_bt.keys()
    assert all(bt[r] == pytest.approx(ref_bt[r], abs=1e-6) for r in runs)
    # the whole ranking (task rule, bws) through rank_jury equals the per-ballot table
    expected = [(s.run, s.most, s.least, s.appearances, s.bws, s.rank) for s in score_runs(run_ballots, runs)]
    got = [(s.run, s.most, s.least, s.appearances, s.bws, s.rank) for s in rank_jury(iter(shuffled), key).scores]
    assert got == expected
    # the hand-made-fixture constructor agrees with the streaming one
    hand = JuryCounts.from_run_ballots(run_ballots, runs)
    for name in ("juror_most", "juror_least", "juror_appear", "image_most", "image_least", "image_appear",
                 "wins"):
        assert np.array_equal(getattr(hand, name), getattr(counts, name)), name


def test_tally_refuses_votes_that_do_not_belong_to_the_key():
    key, ballots = random_jury(0)
    other_image = next(c for c, k in key.candidates.items() if k.image != ballots[0].image)
    with pytest.raises(PackageError, match="no such candidate for that image"):
        Tally(key).add(Ballot("j", ballots[0].image, (other_image,), ()))
    with pytest.raises(PackageError, match="no candidate for image 'nope'"):
        Tally(key).add(Ballot("j", "nope", (), ()))


def test_no_ballots_gives_an_empty_but_complete_table():
    key, _ = random_jury(0)
    result = rank_jury([], key)
    assert [s.run for s in result.scores] == sorted(key.runs) and result.n_ballots == 0
    assert all(s.appearances == 0 and math.isnan(s.ci_low) for s in result.scores)
    assert math.isnan(result.agreement.kendall_w) and all(math.isnan(v) for v in result.bradley_terry.values())
