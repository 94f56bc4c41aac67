"""Several `pp-jury serve` replicas on one PostgreSQL store (a real server started by tests/conftest.py): each
replica is a separate process opening the store as the app does (`open_store` with the URL `serve` passes in
PP_JURY_STORE); many jurors vote through them at once, and one replica is killed with SIGKILL mid-load.

- 200 jurors x 20 images through two replica processes at once (100 juror threads each, some ballots changed
  afterwards): exactly 4000 ballots, each the juror's last one, none lost or duplicated;
- SIGKILL of one replica mid-load: every ballot it acknowledged (written to its log after the commit returned)
  is in the store, the other replica finishes, and the killed replica's jurors resume on a new one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from evaluator.contracts.jury_package import load_package
from jury_app.testing.fixtures import make_demo_package
from jury_app.votes.backends import open_store

N_IMAGES = 20
RUNS = [f"run{i}" for i in range(5)]


def expected_picks(cands: list[str], juror_index: int, image_index: int, final: bool) -> tuple[list, list]:
    """A deterministic ballot per (juror, image); the non-final one differs so a replacement is visible."""
    k = (juror_index + image_index + (0 if final else 1)) % len(cands)
    order = cands[k:] + cands[:k]
    return order[:3], order[3:5]


def replica(directory: str, url: str, jurors: list[tuple[int, str]], ack_path: str) -> None:
    """One replica process: the store opened as the app opens it, one thread per connected juror. Each juror
    resumes at its first image without a ballot (as the juror page does) and appends 'juror image' to
    ack_path once the commit of its final ballot for that image returned."""
    store = open_store(load_package(directory), url)
    ids = store.package.image_ids
    lock = threading.Lock()
    with open(ack_path, "a", buffering=1) as ack:
        def vote(item: tuple[int, str]) -> None:
            j, juror = item
            done = store.done_images(juror)
            for i, image in enumerate(ids):
                if image in done:
                    continue
                cands = list(store.package.candidate_ids(image))
                if i % 4 == 0:  # changed afterwards: the later ballot must replace the earlier
                    store.save_ballot(juror, image, *expected_picks(cands, j, i, final=False))
                store.save_ballot(juror, image, *expected_picks(cands, j, i, final=True))
                with lock:
                    ack.write(f"{juror} {image}\n")

        with ThreadPoolExecutor(max_workers=len(jurors)) as pool:
            list(pool.map(vote, jurors))
    store.close()


@pytest.fixture()
def jury(tmp_path, pg_url):
    package = load_package(make_demo_package(tmp_path / "jury", RUNS, N_IMAGES, size=8))
    return package, pg_url


def start(ctx, package, url, jurors, ack):
    proc = ctx.Process(target=replica, args=(str(package.root), url, jurors, str(ack)))
    proc.start()
    return proc


def acks(path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if line.count(" ") == 1]


def check_ballots(store, index_of: dict[str, int], pairs) -> None:
    for juror, image in pairs:
        cands = list(store.package.candidate_ids(image))
        most, least = expected_picks(cands, index_of[juror], store.package.image_ids.index(image), final=True)
        ballot = store.ballot(juror, image)
        assert ballot is not None, (juror, image)
        assert (ballot.most, ballot.least) == (tuple(sorted(most)), tuple(sorted(least))), (juror, image)


def raw_counts(url: str) -> tuple[int, int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        ballots = conn.execute("SELECT COUNT(*) FROM ballots").fetchone()[0]
        picks = conn.execute("SELECT COUNT(*) FROM picks").fetchone()[0]
        doubled = conn.execute("SELECT COUNT(*) FROM (SELECT juror, image FROM picks GROUP BY juror, image "
                               "HAVING COUNT(*) <> 5) x").fetchone()[0]
    return ballots, picks, doubled


@pytest.mark.slow
def test_200_jurors_x_20_ballots_through_two_replicas_at_once(jury, tmp_path):
    package, url = jury
    store = open_store(package, url)
    jurors = [link.juror for link in store.add_jurors(200)]
    index_of = {j: k for k, j in enumerate(jurors)}
    ctx = mp.get_context("spawn")  # separate processes, as two `pp-jury serve` are
    halves = [list(enumerate(jurors))[0::2], list(enumerate(jurors))[1::2]]
    procs = [start(ctx, package, url, half, tmp_path / f"acks{k}.txt") for k, half in enumerate(halves)]
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]
    acked = acks(tmp_path / "acks0.txt") + acks(tmp_path / "acks1.txt")
    assert len(acked) == len(set(acked)) == 200 * N_IMAGES
    assert raw_counts(url) == (4000, 4000 * 5, 0)
    assert store.count_ballots() == 4000 and len(store.ballots()) == 4000
    check_ballots(store, index_of, acked)
    store.close()


@pytest.mark.slow
def test_kill_9_of_one_replica_mid_load_keeps_every_committed_ballot(jury, tmp_path):
    package, url = jury
    store = open_store(package, url)
    jurors = [link.juror for link in store.add_jurors(60)]
    index_of = {j: k for k, j in enumerate(jurors)}
    ctx = mp.get_context("spawn")
    doomed_jurors, other_jurors = list(enumerate(jurors))[0::2], list(enumerate(jurors))[1::2]
    doomed = start(ctx, package, url, doomed_jurors, tmp_path / "doomed.txt")
    other = start(ctx, package, url, other_jurors, tmp_path / "other.txt")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(acks(tmp_path / "doomed.txt")) < 150 and doomed.is_alive():
        time.sleep(0.02)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(timeout=30)
    assert doomed.exitcode == -signal.SIGKILL
    acked = acks(tmp_path / "doomed.txt")
    assert 150 <= len(acked) < 30 * N_IMAGES  # killed mid-load
    other.join(timeout=600)
    assert other.exitcode == 0
    check_ballots(store, index_of, acked)  # every acknowledged ballot of the killed replica survived
    check_ballots(store, index_of, acks(tmp_path / "other.txt"))
    assert len(acks(tmp_path / "other.txt")) == 30 * N_IMAGES
    stored = store.count_ballots()
    assert 30 * N_IMAGES + len(acked) <= stored < 60 * N_IMAGES  # at most the unacknowledged commits besides
    # the killed replica's jurors reach another replica (a new session) and resume where the store says
    again = start(ctx, package, url, doomed_jurors, tmp_path / "resumed.txt")
    again.join(timeout=600)
    assert again.exitcode == 0
    resumed = acks(tmp_path / "resumed.txt")
    assert len(resumed) == 60 * N_IMAGES - stored and not set(resumed) & set(acked)
    assert raw_counts(url) == (60 * N_IMAGES, 60 * N_IMAGES * 5, 0)
    check_ballots(store, index_of, resumed)
    # an image whose first ballot was committed but not its change when the replica died keeps that ballot (the
    # juror resumes at the first image without one, as on the juror page): every (juror, image) has one
    assert {(j, i) for j in jurors for i in package.image_ids} == {(b.juror, b.image) for b in store.ballots()}
    store.close()


def test_a_juror_resumes_on_another_replica_and_gets_the_completion_code(tmp_path, monkeypatch, pg_url):
    """The juror page on a PostgreSQL store (PP_JURY_STORE, as `pp-jury serve --store` sets it): a session that
    votes on image 1, then a new session (another replica, or a reload) that resumes at image 2 and makes the
    final submit, after which the juror's completion code is shown. Nothing goes to DIR/votes.sqlite."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from jury_app.votes.store import ENV_STORE
    from jury_app.web.context import ENV_DIR

    app = str(Path(__file__).resolve().parents[1] / "jury_app" / "app.py")
    root = make_demo_package(tmp_path / "jury", RUNS, 2, size=16)
    monkeypatch.setenv(ENV_DIR, str(root))
    monkeypatch.setenv(ENV_STORE, pg_url)
    store = open_store(load_package(root), pg_url)
    link = store.add_jurors(1, completion_prefix="STUDY42")[0]
    code = store.jurors()[0].completion_code

    def session() -> AppTest:
        at = AppTest.from_file(app, default_timeout=60)
        at.query_params["token"] = link.token
        return at.run()

    def vote(at: AppTest) -> AppTest:
        opts = at.pills[0].options
        at.pills[0].set_value(opts[:3])
        at.pills[1].set_value(opts[3:])
        next(b for b in at.button if b.label == "Save and continue").click()
        return at.run()

    first = vote(session())
    assert not first.exception and store.done_images(link.juror) == {"img00"}
    second = session()  # a new session: what a juror gets on another replica
    assert any(s.value == "Image 2 of 2" for s in second.subheader)
    second = vote(second)
    assert code not in [c.value for c in second.code]  # not before the final submit
    second.checkbox[0].check()
    next(b for b in second.button if b.label == "Final submit").click()
    second.run()
    assert store.is_final(link.juror) and [c.value for c in second.code] == [code]
    assert not (root / "votes.sqlite").exists()
    store.close()


def test_a_database_restart_costs_no_ballot(tmp_path, pg_server):
    """The pool checks a connection before lending it: after PostgreSQL restarts (every open connection cut),
    the next ballot goes through on a fresh one. A database that cannot be reached is a StoreError saying so."""
    from jury_app.votes.store import StoreError

    package = load_package(make_demo_package(tmp_path / "jury", RUNS, 2, size=8))
    store = open_store(package, pg_server.new_database())
    juror = store.add_jurors(1)[0].juror
    c = list(package.candidate_ids("img00"))
    store.save_ballot(juror, "img00", c[:3], c[3:5])
    pg_server.restart()
    c1 = list(package.candidate_ids("img01"))
    store.save_ballot(juror, "img01", c1[:3], c1[3:5])
    assert store.done_images(juror) == {"img00", "img01"}
    store.close()
    with pytest.raises(StoreError, match="cannot be reached"):
        open_store(package, pg_server.url("no_such_database"))


def test_a_connection_lost_inside_a_ballot_does_not_claim_nothing_was_saved(tmp_path, pg_server, monkeypatch):
    """A connection cut during a ballot's transaction (here: its own backend terminated before the picks are
    written) may come after a commit landed on the server: the error must not say that nothing was saved, and
    saving the ballot again stores it once."""
    from jury_app.votes import store_postgres
    from jury_app.votes.store import StoreError

    package = load_package(make_demo_package(tmp_path / "jury", RUNS, 2, size=8))
    store = open_store(package, pg_server.new_database())
    juror = store.add_jurors(1)[0].juror
    c = list(package.candidate_ids("img00"))
    real = store_postgres._Conn.executemany

    def cut_then_write(self, sql, rows):
        self.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real(self, sql, rows)

    monkeypatch.setattr(store_postgres._Conn, "executemany", cut_then_write)
    with pytest.raises(StoreError) as err:
        store.save_ballot(juror, "img00", c[:3], c[3:5])
    assert "nothing was saved" not in str(err.value) and "may or may not have been saved" in str(err.value)
    monkeypatch.setattr(store_postgres._Conn, "executemany", real)
    store.save_ballot(juror, "img00", c[:3], c[3:5])
    assert [(b.image, sorted(b.most)) for b in store.ballots()] == [("img00", sorted(c[:3]))]
    store.close()
