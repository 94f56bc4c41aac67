"""20 jurors x 20 ballots at once, from threads and from processes: exactly 400 ballots, none lost or doubled."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading

import pytest

from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.store import VoteStore

N_JURORS = 20
N_IMAGES = 20
RUNS = [f"run{i}" for i in range(5)]


def expected_picks(cands: list[str], juror_index: int, image_index: int, final: bool) -> tuple[list, list]:
    """A deterministic ballot per (juror, image); the non-final one differs so a replacement is visible."""
    k = (juror_index + image_index + (0 if final else 1)) % len(cands)
    order = cands[k:] + cands[:k]
    return order[:3], order[3:5]


def vote_all(directory: str, juror: str, juror_index: int, barrier) -> None:
    store = VoteStore(load_package(directory))
    barrier.wait()
    for i, image in enumerate(store.package.image_ids):
        cands = list(store.package.candidate_ids(image))
        if i % 4 == 0:  # some ballots are changed afterwards: the later one must replace the earlier
            store.save_ballot(juror, image, *expected_picks(cands, juror_index, i, final=False))
        store.save_ballot(juror, image, *expected_picks(cands, juror_index, i, final=True))


@pytest.fixture()
def jury(tmp_path):
    pkg = load_package(make_demo_package(tmp_path / "jury", RUNS, N_IMAGES, size=8))
    store = VoteStore(pkg)
    jurors = [link.juror for link in store.add_jurors(N_JURORS)]
    return store, jurors


def check_exact(store: VoteStore, jurors: list[str]) -> None:
    assert store.count_ballots() == N_JURORS * N_IMAGES
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM picks").fetchone()[0] == N_JURORS * N_IMAGES * 5
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for j, juror in enumerate(jurors):
        assert store.done_images(juror) == set(store.package.image_ids)
        for i, image in enumerate(store.package.image_ids):
            most, least = expected_picks(list(store.package.candidate_ids(image)), j, i, final=True)
            ballot = store.ballot(juror, image)
            assert (ballot.most, ballot.least) == (tuple(sorted(most)), tuple(sorted(least)))


@pytest.mark.slow
def test_twenty_jurors_in_threads(jury):
    store, jurors = jury
    barrier = threading.Barrier(N_JURORS)
    errors: list[BaseException] = []

    def run(j: int) -> None:
        try:
            vote_all(str(store.package.root), jurors[j], j, barrier)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(N_JURORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    check_exact(store, jurors)


@pytest.mark.slow
def test_twenty_jurors_in_processes(jury):
    store, jurors = jury
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(N_JURORS)
    procs = [ctx.Process(target=vote_all, args=(str(store.package.root), jurors[j], j, barrier))
             for j in range(N_JURORS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_JURORS
    check_exact(store, jurors)


def _vote_and_acknowledge(directory: str, juror: str, ack_path: str) -> None:
    """Save ballots forever (round-robin over images), appending 'image' to ack_path after each commit."""
    store = VoteStore(load_package(directory))
    ids = store.package.image_ids
    with open(ack_path, "a", buffering=1) as ack:
        k = 0
        while True:
            image = ids[k % len(ids)]
            cands = list(store.package.candidate_ids(image))
            store.save_ballot(juror, image, *expected_picks(cands, 0, k, final=True))
            ack.write(f"{k}\n")
            k += 1


def test_kill_9_mid_session_keeps_every_committed_ballot(jury, tmp_path):
    import os
    import signal
    import time

    store, jurors = jury
    ack = tmp_path / "acks.txt"
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_vote_and_acknowledge, args=(str(store.package.root), jurors[0], str(ack)))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not ack.exists() or len(ack.read_text().split()) < 30):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    acknowledged = [int(x) for x in ack.read_text().split()]
    assert len(acknowledged) >= 30
    reopened = VoteStore(load_package(store.package.root))  # a restart
    with sqlite3.connect(reopened.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = reopened.package.image_ids
    last_per_image = {}
    for k in acknowledged:
        last_per_image[ids[k % len(ids)]] = k
    for image, k in last_per_image.items():  # the last acknowledged ballot of each image, or a later one
        ballot = reopened.ballot(jurors[0], image)
        cands = list(reopened.package.candidate_ids(image))
        later = [expected_picks(cands, 0, k2, final=True) for k2 in (k, k + len(ids))]
        assert (list(ballot.most), list(ballot.least)) in [(sorted(m), sorted(l)) for m, l in later]
    assert reopened.count_ballots() >= min(len(acknowledged), len(ids))
