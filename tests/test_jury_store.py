"""The vote store on both back ends (a real SQLite file; a real PostgreSQL server started by tests/conftest.py,
skipped with the reason where it is not installed): ballots, replacement, locking, tokens, schema versions and
migrations, completion codes; bad input stores nothing."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from evaluator.contracts.jury_package import PickRule
from jury_app.votes.ballot import BallotError, BallotLockedError, validate_picks
from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.backends import open_store
from jury_app.votes.store import SCHEMA_VERSION, StoreError, VoteStore, redact_url

RUNS = [f"TEAMSECRET_run{i}" for i in range(1, 6)]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str | None:
    """The store URL of a test: None (SQLite in the jury folder, the default) or a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture()
def store(tmp_path, backend):
    return open_store(load_package(make_demo_package(tmp_path / "jury", RUNS, 3, size=16)), backend)


def url_of(store) -> str | None:
    return getattr(store, "url", None)


def reopen(store):
    """The same store opened again, as a restarted server or another replica does."""
    return open_store(store.package, url_of(store))


def sql(store, query, params=()):
    """Raw SQL on the store's database from outside the contract (to inspect it or to age it)."""
    if isinstance(store, VoteStore):
        with sqlite3.connect(store.path) as conn:
            return conn.execute(query, params).fetchall()
    import psycopg

    with psycopg.connect(store.url) as conn:
        cur = conn.execute(query.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def cands(store, image="img00"):
    return list(store.package.candidate_ids(image))


def dump(store):
    """Every row of the vote tables, to prove that rejected input left no trace."""
    return [[tuple(r) for r in sql(store, f"SELECT * FROM {t} ORDER BY 1, 2, 3")] for t in ("ballots", "picks")] + \
        [[tuple(r) for r in sql(store, "SELECT juror, finalized FROM jurors ORDER BY juror")]]


def test_pragmas_schema_version_and_wal(tmp_path):
    store = VoteStore(load_package(make_demo_package(tmp_path / "jury", RUNS, 1, size=16)))
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn = store._connect()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms
    conn.close()


def test_schema_version_mismatch_is_refused(store):
    sql(store, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99") as err:
        reopen(store)
    assert store.where in str(err.value) and "use the kit version that created it" in str(err.value)
    assert sql(store, "SELECT version FROM schema_version") == [(99,)]  # untouched


def test_a_version_1_store_is_migrated_and_keeps_its_jurors(store):
    """Schema version 1 (before completion codes): reopening adds the column and bumps the version, once."""
    link = store.add_jurors(1)[0]
    sql(store, "ALTER TABLE jurors DROP COLUMN completion_code")
    sql(store, "UPDATE schema_version SET version = 1")
    again = reopen(store)
    assert again.schema_version() == SCHEMA_VERSION == 2
    assert again.authenticate(link.token) == link.juror and again.jurors()[0].completion_code is None
    assert reopen(again).schema_version() == 2 and len(sql(store, "SELECT * FROM schema_version")) == 1


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
    stored = [r[0] for r in sql(store, "SELECT token_sha256 FROM jurors")]
    raw = repr(sql(store, "SELECT * FROM jurors")).encode() + repr(sql(store, "SELECT * FROM meta")).encode()
    if isinstance(store, VoteStore):
        raw += store.path.read_bytes()
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


def test_a_ballot_racing_the_final_submit_on_another_replica_never_lands_after_it(store):
    """Two replicas (two store objects, their own connections): one keeps saving a juror's ballot (a stale tab)
    while the other makes the final submit. Every save either returns (committed before the lock, so the stored
    ballot time is not after the final submit time) or raises BallotLockedError; none lands after the lock (with
    no row lock, READ COMMITTED lets a save that checked the juror before the final submit commit after it)."""
    import threading

    other = reopen(store)
    jurors = [j.juror for j in store.add_jurors(12)]
    for juror in jurors:
        for image in store.package.image_ids:
            c = cands(store, image)
            store.save_ballot(juror, image, c[:3], c[3:5])
    never_locked: list[str] = []

    def spam(juror: str, go: threading.Event) -> None:
        c = cands(store)
        go.set()
        for k in range(10_000):
            try:
                store.save_ballot(juror, "img00", *((c[:3], c[3:5]) if k % 2 else (c[2:5], c[:2])))
            except BallotLockedError:
                return
        never_locked.append(juror)

    for juror in jurors:
        go = threading.Event()
        t = threading.Thread(target=spam, args=(juror, go))
        t.start()
        go.wait()
        other.finalize(juror)
        t.join(timeout=60)
    late = sql(store, "SELECT b.juror, b.image FROM ballots b JOIN jurors j ON j.juror = b.juror "
                      "WHERE b.updated > j.finalized")
    assert late == [] and never_locked == []
    other.close()


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
    task = PickRule(3, 2)
    assert task.for_candidates(13) == task.for_candidates(5) == task and task.shrink_note(5) is None
    shrunk = [task.for_candidates(n) for n in (4, 3, 2, 1)]
    assert [(r.most, r.least) for r in shrunk] == [(2, 2), (2, 1), (1, 1), (1, 0)]
    assert "few versions" in task.for_candidates(3).explain(asked=task) and "few" not in task.explain(asked=task)
    assert task.shrink_note(3) == ("Only 3 candidates per image: picks shrunk from 3 most / 2 least to 2 most / "
                                   "1 least (most + least <= candidates)")
    assert PickRule(1, 3).for_candidates(0) == PickRule(1, 0)  # no candidate: the rule of one
    assert PickRule(2, 1, show_original=True).for_candidates(2) == PickRule(1, 1, show_original=True)
    most, least = validate_picks(["a", "b", "c"], task.for_candidates(3), ["b", "a"], ["c"])
    assert most == ("a", "b") and least == ("c",)


def test_revoked_juror_is_refused_at_once_and_its_ballots_kept_but_not_counted(store):
    """Item 7 of issue 10: revocation. The token stops working, every write is refused, the committed ballots
    stay in the database, and the reads that feed the ranking, the export and position bias leave them out."""
    a, b = store.add_jurors(2)
    for link in (a, b):
        store.layout(link.juror, "img00")
        store.save_ballot(link.juror, "img00", cands(store)[:3], cands(store)[3:5])
    assert store.revoke(a.juror) == (True, 1)
    assert store.authenticate(a.token) is None and store.authenticate(b.token) == b.juror
    before = dump(store)
    for write in (lambda: store.save_ballot(a.juror, "img00", cands(store)[1:4], cands(store)[:1] + cands(store)[4:]),
                  lambda: store.layout(a.juror, "img01"), lambda: store.finalize(a.juror)):
        with pytest.raises(StoreError, match="revoked"):
            write()
    assert dump(store) == before  # nothing written; the revoked juror's ballot is still there
    assert [x.juror for x in store.ballots()] == [b.juror]
    assert {v.juror for v in store.votes()} == {b.juror} and {r[0] for r in store.layouts()} == {b.juror}
    status = {j.juror: j for j in store.jurors()}
    assert status[a.juror].revoked and status[a.juror].ballots == 1 and status[b.juror].revoked is None
    assert store.revoke(a.juror) == (False, 1)  # idempotent
    with pytest.raises(StoreError, match="no juror 'juror999'.*juror001, juror002"):
        store.revoke("juror999")
    # no pp-jury version accepts the token: its hash is gone
    assert sql(store, "SELECT token_sha256 FROM jurors WHERE juror = ?", (a.juror,)) == [("revoked",)]


def test_store_from_before_revocation_gets_the_column(tmp_path):
    store = VoteStore(load_package(make_demo_package(tmp_path / "jury", RUNS, 1, size=16)))
    link = store.add_jurors(1)[0]
    with sqlite3.connect(store.path) as conn:
        conn.execute("ALTER TABLE jurors DROP COLUMN revoked")
    again = VoteStore(store.package)
    assert again.authenticate(link.token) == link.juror
    assert again.revoke(link.juror) == (True, 0) and again.authenticate(link.token) is None


def test_image_secret_survives_a_restart_and_differs_between_stores(store, tmp_path):
    secret = store.image_secret()
    assert len(secret) == 32 and reopen(store).image_secret() == secret
    other = VoteStore(load_package(make_demo_package(tmp_path / "other", RUNS, 1, size=16)))
    assert other.image_secret() != secret


def test_cli_revoke(tmp_path, capsys, store):
    from jury_app.cli import main

    where = ["--store", url_of(store)] if url_of(store) else []
    a, b = store.add_jurors(2)
    store.save_ballot(a.juror, "img00", cands(store)[:3], cands(store)[3:5])
    assert main(["jurors", str(store.package.root), "--revoke", a.juror, "nobody", *where]) == 2
    assert "no juror 'nobody'" in capsys.readouterr().err and store.authenticate(a.token) == a.juror
    assert main(["jurors", str(store.package.root), "--revoke", a.juror, *where]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{a.juror}\trevoked") and "1 ballot(s) stay" in out
    assert store.authenticate(a.token) is None and store.authenticate(b.token) == b.juror
    assert main(["jurors", str(store.package.root), "--revoke", a.juror, *where]) == 0
    assert "already revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        main(["jurors", str(store.package.root), "--add", "1", "--revoke", b.juror, *where])
    assert ex.value.code == 2


def test_login_guard_backs_off_per_client_and_forgets_the_oldest():
    from jury_app.votes.tokens import LoginGuard, log_safe

    now = [1000.0]
    guard = LoginGuard(free=3, base_s=1.0, max_s=8.0, max_clients=2, clock=lambda: now[0])
    assert [guard.failed("x") for _ in range(3)] == [1, 2, 3]
    assert guard.wait("x") == 1.0 and guard.wait("y") == 0.0  # per client
    now[0] += 1.0
    assert guard.wait("x") == 0.0 and guard.failed("x") == 4 and guard.wait("x") == 2.0
    assert [guard.delay_after(k) for k in range(2, 9)] == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # capped
    now[0] += 2.0
    assert guard.wait("x") == 0.0 and guard.failed("x") == 5  # no reset: a right token does not clear the count
    for client in ("a", "b", "c"):
        for _ in range(3):
            guard.failed(client)
    assert guard.wait("a") == 0.0 and guard.wait("c") > 0  # only max_clients remembered, the oldest dropped
    assert log_safe("juror\n001\x1b[31m\u202e") == "'juror\\n001\\x1b[31m\\u202e'" and len(log_safe("x" * 500)) == 82


def test_completion_codes_per_juror_shown_only_after_the_final_submit(store):
    a, b = store.add_jurors(2, completion_prefix="STUDY_7")
    plain = store.add_jurors(1)[0]
    codes = {j.juror: j.completion_code for j in store.jurors()}
    assert codes[a.juror] != codes[b.juror] and codes[plain.juror] is None
    assert all(codes[x.juror].startswith("STUDY_7-") and len(codes[x.juror]) == len("STUDY_7-") + 10 for x in (a, b))
    assert store.completion_code(a.juror) is None  # not before the final submit
    for image in store.package.image_ids:
        for juror in (a.juror, plain.juror):
            store.save_ballot(juror, image, cands(store, image)[:3], cands(store, image)[3:5])
    store.finalize(a.juror)
    store.finalize(plain.juror)
    assert store.completion_code(a.juror) == codes[a.juror] and store.completion_code(plain.juror) is None
    for bad in ("", "has space", "x" * 33, "semi;colon"):
        with pytest.raises(StoreError, match="completion code prefix"):
            store.add_jurors(1, completion_prefix=bad)
    assert len(store.jurors()) == 3  # nothing added by the refused calls


def test_juror_prefixes_number_separately(store):
    assert [l.juror for l in store.add_jurors(2, prefix="simulated")] == ["simulated001", "simulated002"]
    assert [l.juror for l in store.add_jurors(1)] == ["juror001"]
    for bad in ("Juror", "", "a1", "x" * 21):
        with pytest.raises(StoreError, match="prefix"):
            store.add_jurors(1, prefix=bad)


def test_store_urls_and_redaction(tmp_path):
    package = load_package(make_demo_package(tmp_path / "jury", RUNS, 1, size=16))
    assert redact_url("postgresql://pp:s3cret@db.example:5433/jury?sslmode=require") == \
        "postgresql://pp:***@db.example:5433/jury?sslmode=require"
    assert redact_url("postgresql://pp@localhost/jury") == "postgresql://pp@localhost/jury"
    # libpq also takes the password as a query parameter
    assert redact_url("postgresql://pp@db/jury?sslmode=require&Password=s3cret&x=1") == \
        "postgresql://pp@db/jury?sslmode=require&Password=***&x=1"
    assert redact_url("postgresql://pp:a@db/jury?password=b") == "postgresql://pp:***@db/jury?password=***"
    elsewhere = open_store(package, f"sqlite:///{tmp_path / 'votes-copy.sqlite'}")
    assert isinstance(elsewhere, VoteStore) and elsewhere.path == tmp_path / "votes-copy.sqlite"
    assert not package.store_path.exists()
    for bad, message in (("mysql://x@y/z", "unknown kind 'mysql'"), ("sqlite://relative", "sqlite:///"),
                         ("votes.sqlite", "unknown kind")):
        with pytest.raises(StoreError, match=message):
            open_store(package, bad)


def test_unreachable_postgresql_names_the_store_without_the_password(tmp_path):
    pytest.importorskip("psycopg")
    from jury_app.testing.devserver import free_port

    package = load_package(make_demo_package(tmp_path / "jury", RUNS, 1, size=16))
    url = f"postgresql://pp:TOPSECRETPW@127.0.0.1:{free_port()}/jury"
    with pytest.raises(StoreError, match="cannot be reached") as err:
        open_store(package, url)
    assert "TOPSECRETPW" not in str(err.value) and "postgresql://pp:***@127.0.0.1" in str(err.value)


@pytest.mark.parametrize("url", ["postgresql://pp:TOP%zzSECRETPW@127.0.0.1:5432/jury",  # bad percent-encoding
                                 "postgresql://pp:TOPSECRETPW@127.0.0.1:notaport/jury"])
def test_a_malformed_postgresql_url_is_refused_without_echoing_the_password(tmp_path, caplog, url):
    """libpq quotes the token it cannot parse (here the password) in its error: neither the StoreError nor any
    log record (the connection pool logs each failed attempt) may show it."""
    pytest.importorskip("psycopg")
    package = load_package(make_demo_package(tmp_path / "jury", RUNS, 1, size=16))
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreError) as err:
        open_store(package, url)
    shown = str(err.value) + "\n" + caplog.text
    assert "SECRETPW" not in shown and "postgresql://pp:***@127.0.0.1" in str(err.value), shown
    assert "PGPASSWORD" in str(err.value)
    assert not (package.root / "votes.store.json").exists()


def test_a_postgresql_database_serves_one_jury_only(tmp_path, pg_url):
    first = open_store(load_package(make_demo_package(tmp_path / "a", RUNS, 2, size=16, seed=1)), pg_url)
    first.add_jurors(1)
    other = load_package(make_demo_package(tmp_path / "b", RUNS, 2, size=16, seed=2))
    with pytest.raises(StoreError, match="votes of another jury package"):
        open_store(other, pg_url)
    assert open_store(load_package(tmp_path / "a"), pg_url).jurors()[0].juror == "juror001"
