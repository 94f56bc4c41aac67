"""Ranking functions against small hand-computed fixtures (ties, a run nobody picked, missing ballots)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jury_app.ranking.agreement import MIN_JURORS, agreement, kendall_w, split_half
from jury_app.votes.ballot import Ballot
from jury_app.ranking.bradley_terry import bradley_terry, rank_break
from jury_app.ranking.intervals import bws_intervals
from evaluator.contracts.jury_package import CandidateKey, JuryKey
from jury_app.ranking.position_bias import position_bias
from jury_app.ranking.ranking import (JuryCounts, RunBallot, count_runs, per_image_counts, score_runs, task_rank,
                              to_run_ballots)
from jury_app.ranking.summary import rank_jury, ranking_csv

RUNS = ["runA", "runB", "runC", "runD", "runE", "runF", "runG"]
ALL = frozenset(RUNS)


def rb(juror, image, most, least, present=ALL):
    return RunBallot(juror, image, frozenset(present), frozenset(most), frozenset(least))


def counts(run_ballots, runs):
    return JuryCounts.from_run_ballots(run_ballots, runs)


# 2 jurors, 2 images, 7 runs on every image; juror j2 never judged image i2 (a missing ballot).
FIXTURE = [
    rb("j1", "i1", {"runA", "runB"}, {"runE"}),
    rb("j1", "i2", {"runA", "runC"}, {"runD"}),
    rb("j2", "i1", {"runB", "runA"}, {"runD"}),
]


def test_counts_bws_and_task_rank_by_hand():
    scores = {s.run: s for s in score_runs(FIXTURE, RUNS)}
    # most, least, appearances (3 ballots; every run on screen in each)
    assert [(scores[r].most, scores[r].least, scores[r].appearances) for r in RUNS] == [
        (3, 0, 3), (2, 0, 3), (1, 0, 3), (0, 2, 3), (0, 1, 3), (0, 0, 3), (0, 0, 3)]
    assert scores["runA"].bws == pytest.approx(1.0)
    assert scores["runB"].bws == pytest.approx(2 / 3)
    assert scores["runD"].bws == pytest.approx(-2 / 3)
    # F and G: nobody picked them, equal on most and least -> shared rank 4; E (one least) 6; D (two) 7
    assert {r: scores[r].rank for r in RUNS} == {
        "runA": 1, "runB": 2, "runC": 3, "runF": 4, "runG": 4, "runE": 6, "runD": 7}
    ordered = [s.run for s in score_runs(FIXTURE, RUNS)]
    assert ordered == ["runA", "runB", "runC", "runF", "runG", "runE", "runD"]


def test_tie_on_most_broken_by_fewer_least():
    counts = {"x": (5, 3, 10), "y": (5, 1, 10), "z": (6, 9, 10)}
    assert task_rank(counts) == {"z": 1, "y": 2, "x": 3}


def test_run_never_shown_has_no_bws_and_zero_counts():
    scores = {s.run: s for s in score_runs(FIXTURE, RUNS + ["runZ"])}
    assert (scores["runZ"].most, scores["runZ"].least, scores["runZ"].appearances) == (0, 0, 0)
    assert math.isnan(scores["runZ"].bws)
    assert scores["runZ"].rank == 4  # same (most, least) as F and G


def test_appearances_follow_presence_not_ballot_count():
    ballots = [rb("j1", "i1", {"runA"}, {"runB"}, present={"runA", "runB", "runC"}),
               rb("j1", "i2", {"runB"}, {"runC"}, present={"runB", "runC"})]
    counts = count_runs(ballots, ["runA", "runB", "runC"])
    assert counts == {"runA": (1, 0, 1), "runB": (1, 1, 2), "runC": (0, 1, 2)}


def test_to_run_ballots_uses_key_for_presence():
    cand_run = {"c1": "runA", "c2": "runB", "c3": "runA", "c4": "runB"}
    cand_img = {"c1": "i1", "c2": "i1", "c3": "i2", "c4": "i2"}
    out = to_run_ballots([Ballot("j", "i2", ("c3",), ("c4",))], cand_run, cand_img)
    assert out == [RunBallot("j", "i2", frozenset({"runA", "runB"}), frozenset({"runA"}), frozenset({"runB"}))]


def test_per_image_counts():
    rows = per_image_counts(FIXTURE)
    i1a = next(r for r in rows if (r.image, r.run) == ("i1", "runA"))
    i2d = next(r for r in rows if (r.image, r.run) == ("i2", "runD"))
    assert (i1a.most, i1a.least, i1a.appearances) == (2, 0, 2)
    assert (i2d.most, i2d.least, i2d.appearances) == (0, 1, 1)


def test_juror_interval_resamples_jurors_not_ballots():
    # j1 always picks A most, j2 always picks A least, 10 ballots each: juror-level scores +1 and -1, so the
    # t interval on 2 jurors (t_1 = 12.7) spans nearly the whole range [-1, 1] (its score form reaches a bound
    # only when bws is at it). A ballot-level interval would give about +-0.45: the wide interval shows the
    # juror is the unit.
    runs = ["runA", "runB"]
    ballots = [rb("j1", f"i{k}", {"runA"}, {"runB"}, present=runs) for k in range(10)]
    ballots += [rb("j2", f"i{k}", {"runB"}, {"runA"}, present=runs) for k in range(10)]
    lo, hi = bws_intervals(counts(ballots, runs))["runA"]
    assert -1 < lo < -0.99 and 0.99 < hi < 1 and lo == pytest.approx(-hi)


def test_interval_of_unanimous_jurors_is_not_a_point_and_deterministic():
    # every juror gives each run the same score: the variance floor keeps the interval open on the side away
    # from the bound (before: (1, 1), (0, 0), (-1, -1)); see tests/test_jury_intervals.py for the values
    runs = ["runA", "runB", "runC"]
    ballots = [rb(f"j{j}", f"i{k}", {"runA"}, {"runC"}, present=runs) for j in range(3) for k in range(4)]
    for method in ("jurors", "jurors+images"):
        iv = bws_intervals(counts(ballots, runs), method)
        assert 0.5 < iv["runA"][0] < 1 and iv["runA"][1] == 1
        assert -0.5 < iv["runB"][0] < 0 < iv["runB"][1] < 0.5 and iv["runB"][0] == pytest.approx(-iv["runB"][1])
        assert iv["runC"] == (pytest.approx(-iv["runA"][1]), pytest.approx(-iv["runA"][0]))
    mixed = FIXTURE + [rb("j3", "i1", {"runC", "runD"}, {"runA"})]
    assert bws_intervals(counts(mixed, RUNS)) == bws_intervals(counts(mixed, RUNS))
    lo, hi = bws_intervals(counts(mixed, RUNS))["runA"]
    point = next(s.bws for s in score_runs(mixed, RUNS) if s.run == "runA")
    assert lo <= point <= hi and lo < hi


def test_rank_break_pairs_by_hand():
    pairs = rank_break(rb("j", "i", {"runA"}, {"runC"}, present={"runA", "runB", "runC"}))
    assert sorted(pairs) == [("runA", "runB"), ("runA", "runC"), ("runB", "runC")]


def test_bradley_terry_orders_runs_and_marks_uncompared():
    runs = ["runA", "runB", "runC", "runZ"]
    present = {"runA", "runB", "runC"}
    ballots = [rb(f"j{j}", "i", {"runA"}, {"runC"}, present=present) for j in range(6)]
    ballots += [rb("j9", "i", {"runB"}, {"runA"}, present=present)]
    bt = bradley_terry(counts(ballots, runs))
    assert bt["runA"] > bt["runB"] > bt["runC"]
    assert math.isnan(bt["runZ"])
    assert sum(bt[r] for r in ("runA", "runB", "runC")) == pytest.approx(0.0, abs=1e-9)


def test_kendall_w_by_hand():
    # rank sums 4, 6, 8; S = 8; W = 12*8 / (9*(27-3)) = 0.4444
    assert kendall_w(np.array([[1, 2, 3], [1, 3, 2], [2, 1, 3]], float)) == pytest.approx(96 / 216)
    # ties: second rater ranks (1.5, 1.5, 3); S = 6.5; T = 6; W = 12*6.5 / (4*24 - 2*6) = 0.92857
    assert kendall_w(np.array([[1, 2, 3], [1, 1, 3]], float)) == pytest.approx(78 / 84)
    assert kendall_w(np.array([[3, 1, 2]] * 4, float)) == pytest.approx(1.0)
    assert math.isnan(kendall_w(np.array([[1, 2, 3]], float)))


def test_split_half_and_agreement_flags():
    runs = ["runA", "runB", "runC", "runD"]
    present = set(runs)
    same = [rb(f"j{j}", f"i{k}", {"runA", "runB"} if k % 2 else {"runA"}, {"runD"}, present=present)
            for j in range(6) for k in range(4)]
    assert split_half(counts(same, runs), n_splits=50) == pytest.approx(1.0)
    assert math.isnan(split_half(counts(same[:4], runs)))  # one juror only
    a = agreement(counts(same, runs))
    assert a.n_jurors == 6 and a.kendall_w == pytest.approx(1.0) and not a.too_few_jurors
    assert a.warning() is None
    few = agreement(counts(same[: 4 * (MIN_JURORS - 1)], runs))
    assert few.too_few_jurors and "fewer than" in few.warning()


def test_position_bias_by_hand():
    layouts = [("j1", "i1", 0, "c1", "B"), ("j1", "i1", 1, "c2", "K"), ("j1", "i1", 2, "c3", "Q"),
               ("j2", "i1", 0, "c3", "A"), ("j2", "i1", 1, "c1", "D"), ("j2", "i1", 2, "c2", "X")]
    ballots = [Ballot("j1", "i1", ("c1",), ("c3",)), Ballot("j2", "i1", ("c3",), ("c2",))]
    rows = position_bias(ballots, layouts)
    assert [(r.position, r.shown, r.most) for r in rows] == [(1, 2, 2), (2, 2, 0), (3, 2, 0)]
    assert rows[0].share == 1.0 and rows[0].expected == pytest.approx(1 / 3)


def test_rank_jury_end_to_end_and_csv():
    key = JuryKey({"c1": CandidateKey("runA", "i1"), "c2": CandidateKey("runB", "i1"),
                   "c3": CandidateKey("runC", "i1"), "c4": CandidateKey("runA", "i2"),
                   "c5": CandidateKey("runB", "i2"), "c6": CandidateKey("runC", "i2")})
    ballots = [Ballot("j1", "i1", ("c1",), ("c3",)), Ballot("j1", "i2", ("c5",), ("c6",)),
               Ballot("j2", "i1", ("c1",), ("c2",))]  # j2 skipped i2
    result = rank_jury(ballots, key)
    table = {s.run: (s.most, s.least, s.appearances, s.rank) for s in result.scores}
    assert table == {"runA": (2, 0, 3, 1), "runB": (1, 1, 3, 2), "runC": (0, 2, 3, 3)}
    text = ranking_csv(result.scores, result.interval).splitlines()
    assert text[0] == "run,most,least,appearances,bws,ci_low,ci_high,rank,interval"
    assert text[1].startswith("runA,2,0,3,0.6667,") and text[1].endswith(",1,jurors")
    assert all(t.endswith(",jurors") for t in text[1:]) and len(text) == 4
    two_way = rank_jury(ballots, key, interval="jurors+images")
    assert all(t.endswith(",jurors+images") for t in ranking_csv(two_way.scores, two_way.interval).splitlines()[1:])
    with pytest.raises(ValueError, match="unknown interval 'images'"):
        ranking_csv(result.scores, "images")
    assert result.agreement.too_few_jurors
