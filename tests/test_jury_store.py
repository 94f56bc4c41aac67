"""The vote store (real SQLite files): ballots, replacement, locking, tokens, bad input stores nothing."""

from __future__ import annotations

import sqlite3

import pytest

from jury_app.ballot import BallotError, BallotLockedError, pick_rule, validate_picks
from jury_app.fixtures import make_demo_package
from jury_app.package import load_package
from jury_app.store import SCHEMA_VERSION, StoreError, VoteStore

RUNS = [f"TEAMSECRET_run{i}" for i in range(1, 6)]


@pytest.fixture()
def store(tmp_path):
    return VoteStore(load_package(make_demo_package(tmp_path / "jury", RUNS, 3, size=16)))


def cands(store, image="img00"):
    return list(store.package.candidate_ids(image))


def dump(store):
    """Every row of the vote tables, to prove that rejected input left no trace."""
    with sqlite3.connect(store.path) as conn:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in ("ballots", "picks")] + \
            [conn.execute("SELECT juror, finalized FROM jurors ORDER BY juror").fetchall()]


def test_pragmas_schema_version_and_wal(store):
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn = store._connect()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms
    conn.close()


def test_schema_version_mismatch_is_refused(store):
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        VoteStore(store.package)


def test_ballot_saved_replaced_and_read_back(store):
    (juror,) = [j.juror for j in store.add_jurors(1)]
    c = cands(store)
    store.save_ballot(juror, "img00", c[:3], c[3:5])
    store.save_ballot(juror, "img00", c[1:4], [c[0], c[4]])  # replaces
    b = store.ballot(juror, "img00")
    assert b.most == tuple(sorted(c[1:4])) and b.least == tuple(sorted([c[0], c[4]]))
    assert store.count_ballots() == 1 and len(store.votes()) == 5
    assert store.done_images(juror) == {"img00"}


def test_tokens_hashed_and_checked(store):
    links = store.add_jurors(2)
    assert [l.juror for l in links] == ["juror001", "juror002"]
    assert store.authenticate(links[0].token) == "juror001"
    assert store.add_jurors(1)[0].juror == "juror003"
    with sqlite3.connect(store.path) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_sha256 FROM jurors")]
    raw = store.path.read_bytes()
    for link in links:
        assert link.token.encode() not in raw and link.token.split(".")[1].encode() not in raw
    assert all(len(h) == 64 for h in stored)
    tok = links[0].token
    tampered = tok[:-1] + ("A" if tok[-1] != "A" else "B")
    swapped = "juror002." + tok.split(".")[1]  # juror001's secret under juror002's name
    for bad in (tampered, swapped, "", "juror001", "nobody.abcdefghijklmnopqrstuvwxyz", tok + "x", "a.b.c"):
        assert store.authenticate(bad) is None, bad
    admin = store.new_admin_token()
    assert store.verify_admin(admin) and not store.verify_admin(tok) and store.authenticate(admin) is None
    assert not store.verify_admin(admin[:-1] + "x")
    new_admin = store.new_admin_token()
    assert store.verify_admin(new_admin) and not store.verify_admin(admin)  # rotated


@pytest.mark.parametrize("case, most, least, message", [
    ("too few most", lambda c: c[:2], lambda c: c[3:5], "picked 2 as most appealing, exactly 3"),
    ("too many most", lambda c: c[:4], lambda c: c[4:5], "picked 4 as most appealing"),
    ("too few least", lambda c: c[:3], lambda c: c[3:4], "picked 1 as least appealing, exactly 2"),
    ("overlap", lambda c: c[:3], lambda c: c[2:4], "in both lists"),
    ("unknown id", lambda c: c[:2] + ["deadbeefdeadbeef"], lambda c: c[3:5], "Unknown image choice"),
    ("other image's id", lambda c: c[:3], lambda c: c[3:4] + ["OTHER"], "Unknown image choice"),
    ("duplicate", lambda c: [c[0], c[0], c[1]], lambda c: c[3:5], "picked twice"),
])
def test_bad_ballots_rejected_and_nothing_stored(store, case, most, least, message):
    (juror,) = [j.juror for j in store.add_jurors(1)]
    c = cands(store)
    store.save_ballot(juror, "img01", cands(store, "img01")[:3], cands(store, "img01")[3:5])
    before = dump(store)
    other = cands(store, "img01")[0]
    m, l = most(c), [other if x == "OTHER" else x for x in least(c)]
    with pytest.raises(BallotError, match=message):
        store.save_ballot(juror, "img00", m, l)
    assert dump(store) == before, case


def test_unknown_juror_and_image_rejected(store):
    c = cands(store)
    before = dump(store)
    with pytest.raises(StoreError, match="unknown juror"):
        store.save_ballot("juror999", "img00", c[:3], c[3:5])
    (juror,) = [j.juror for j in store.add_jurors(1)]
    with pytest.raises(BallotError, match="Unknown image"):
        store.save_ballot(juror, "nope", c[:3], c[3:5])
    assert dump(store)[:2] == before[:2]


def test_final_submit_locks_and_replay_is_rejected(store):
    (juror,) = [j.juror for j in store.add_jurors(1)]
    with pytest.raises(BallotError, match="still need a ballot"):
        store.finalize(juror)
    for image in store.package.image_ids:
        c = cands(store, image)
        store.save_ballot(juror, image, c[:3], c[3:5])
    store.finalize(juror)
    assert store.is_final(juror)
    before = dump(store)
    c = cands(store)
    with pytest.raises(BallotLockedError, match="final and locked"):
        store.save_ballot(juror, "img00", c[2:5], c[:2])  # a replayed / stale form
    assert dump(store) == before


def test_layout_is_stored_seeded_and_differs_between_jurors(store):
    a, b = (l.juror for l in store.add_jurors(2))
    la = store.layout(a, "img00")
    assert store.layout(a, "img00") == la  # read back, not redrawn
    assert sorted(s.candidate for s in la) == sorted(cands(store))
    assert [s.letter for s in la] == sorted(s.letter for s in la) and len({s.letter for s in la}) == 5
    draws = {tuple((s.candidate, s.letter) for s in store.layout(j, i))
             for j in (a, b) for i in store.package.image_ids}
    assert len(draws) > 1
    assert len(store.layouts()) == 5 * 6


def test_pick_rule_shrinks_and_says_so():
    assert pick_rule(13, 3, 2) == pick_rule(5, 3, 2)
    assert not pick_rule(5, 3, 2).shrunk
    assert [(r.most, r.least) for r in (pick_rule(n, 3, 2) for n in (4, 3, 2, 1))] == [(2, 2), (2, 1), (1, 1), (1, 0)]
    assert pick_rule(3, 3, 2).shrunk and "few versions" in pick_rule(3, 3, 2).explain()
    most, least = validate_picks(["a", "b", "c"], pick_rule(3, 3, 2), ["b", "a"], ["c"])
    assert most == ("a", "b") and least == ("c",)
