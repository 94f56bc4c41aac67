"""Vote store and replicas at crowd scale: ballot commit latency with 200 concurrent jurors on SQLite and on
PostgreSQL side by side, and the juror page's time to the grid with 1, 20 and 50 connected sessions.

    python benchmarks/bench_store.py [--jurors 200] [--ballots 10] [--think 2.0] [--sessions 1,20,50]
                                     [--skip-browser]

Commits (issue 14: p95 under 50 ms with 200 concurrent jurors on PostgreSQL): the jurors are threads split over
two processes (the two replicas of a `serve` pair, each opening the store as the app does: `open_store`), all
released at once; each casts --ballots ballots, first all at once without a pause, then with a pause of
uniform(0, 2 think) s before each ballot (a human needs seconds per image). PostgreSQL is a throwaway server
started here (`jury_app.testing.postgres`, fsync on, default settings otherwise) on loopback.

Page (the grid's time must not grow with connected jurors): one `pp-jury serve` on the PostgreSQL store; for each
N in --sessions, N - 1 juror pages are opened in headless Chromium and left connected (their sessions held), then
3 more jurors open their links one after the other; the time from navigation until the grid's images are all
decoded is measured for those 3. Bounded: at most max(--sessions) pages, each wait at most 120 s, loopback only.
Prints a markdown table (paste it into docs/benchmarks.md), the machine and its load, and the command.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench_jury import pct, print_table  # benchmarks/ is on sys.path when this script runs

from evaluator.contracts.jury_package import load_package
from jury_app.testing.fixtures import make_demo_package
from jury_app.testing.postgres import PostgresServer, find_bin
from jury_app.votes.backends import open_store

GRID = 5  # candidates per image
ALL_LOADED = """(n) => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def _replica(directory: str, url: str | None, jurors: list[str], n_ballots: int, think: float, start_at: float,
             queue) -> None:
    """One replica process: the store opened as the app opens it, one thread per juror."""
    store = open_store(load_package(directory), url)
    ids = store.package.image_ids
    times: list[float] = []
    lock = threading.Lock()

    def juror(name: str) -> None:
        rng = np.random.default_rng(abs(hash(name)) % 2**32)
        own = []
        time.sleep(max(0.0, start_at - time.time()))
        for i in range(n_ballots):
            if think:
                time.sleep(rng.uniform(0, 2 * think))
            image = ids[i % len(ids)]
            c = list(store.package.candidate_ids(image))
            t0 = time.perf_counter()
            store.save_ballot(name, image, c[:3], c[3:5])
            own.append(time.perf_counter() - t0)
        with lock:
            times.extend(own)

    threads = [threading.Thread(target=juror, args=(j,)) for j in jurors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    queue.put(times)


def bench_commits(root: Path, url: str | None, n_jurors: int, n_ballots: int, think: float) -> list[float]:
    store = open_store(load_package(root), url)
    jurors = [link.juror for link in store.add_jurors(n_jurors)]
    store.close()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 8.0  # both replicas started and connected before the first ballot
    procs = [ctx.Process(target=_replica, args=(str(root), url, jurors[k::2], n_ballots, think, start_at, queue))
             for k in range(2)]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in queue.get(timeout=1800)]
    for p in procs:
        p.join()
    return times


def bench_page(root: Path, url: str, sessions: list[int]) -> dict[int, list[float]]:
    from playwright.sync_api import sync_playwright

    from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS
    from jury_app.testing.devserver import free_port, start_server

    store = open_store(load_package(root), url)
    port = free_port()
    os.environ["PP_JURY_STORE"] = url  # what `pp-jury serve --store URL` passes to the app
    server = start_server(root, port)
    base = f"http://127.0.0.1:{port}"
    out: dict[int, list[float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            held = []
            for n in sorted(sessions):
                while len(held) < n - 1:  # connected jurors, left on their grid
                    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                    page.goto(f"{base}/?token={store.add_jurors(1)[0].token}")
                    page.wait_for_function(ALL_LOADED, arg=GRID, timeout=120_000)
                    held.append(page)
                out[n] = []
                for _ in range(3):
                    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                    token = store.add_jurors(1)[0].token
                    t0 = time.perf_counter()
                    page.goto(f"{base}/?token={token}")
                    page.wait_for_function(ALL_LOADED, arg=GRID, timeout=120_000)
                    out[n].append(time.perf_counter() - t0)
                    page.context.close()
            browser.close()
    finally:
        server.kill()
        server.wait()
        store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jurors", type=int, default=200)
    ap.add_argument("--ballots", type=int, default=10, help="ballots per juror")
    ap.add_argument("--think", type=float, default=2.0, help="mean pause between a juror's ballots (s)")
    ap.add_argument("--sessions", default="1,20,50", help="connected juror pages at which the grid is timed")
    ap.add_argument("--size", type=int, default=512, help="side of the square candidate JPEGs of the page test")
    ap.add_argument("--skip-browser", action="store_true")
    args = ap.parse_args()
    if find_bin() is None:
        print("PostgreSQL server binaries not found (Debian: apt-get install postgresql)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, PostgresServer(fsync=True, max_connections=200) as pg:
        for think in (0.0, args.think):
            for backend in ("sqlite", "postgresql"):
                root = make_demo_package(Path(tmp) / f"{backend}{think}", [f"run{i}" for i in range(GRID)],
                                         args.ballots, size=8)
                url = pg.new_database() if backend == "postgresql" else None
                times = bench_commits(root, url, args.jurors, args.ballots, think)
                how = "all at once, no pause" if think == 0 else f"pause uniform(0, {2 * think:g}) s"
                rows.append((f"ballot commit, {backend}, {args.jurors} jurors in 2 replica processes ({how})",
                             len(times), statistics.median(times) * 1000, pct(times, 95) * 1000,
                             max(times) * 1000, "p95 < 50 ms"))
                print(rows[-1], file=sys.stderr, flush=True)
        if not args.skip_browser:
            root = make_demo_package(Path(tmp) / "page", [f"run{i}" for i in range(GRID)], 3, size=args.size)
            sessions = sorted({int(x) for x in args.sessions.split(",")})
            for n, values in bench_page(root, pg.new_database(), sessions).items():
                rows.append((f"juror page, time to the {GRID}-image grid ({args.size}px), {n} connected "
                             "session(s)", len(values), statistics.median(values) * 1000, pct(values, 95) * 1000,
                             max(values) * 1000, "flat in N"))
                print(rows[-1], file=sys.stderr, flush=True)
    print_table(rows, load_before, "bench_store.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
