"""Jury app speed: a 13-candidate page in headless Chromium, and ballot commit latency under 20 jurors.

    python benchmarks/bench_jury.py [--images 6] [--size 768] [--jurors 20] [--ballots 20] [--opens 5]
                                    [--baseline REV] [--omnibox-baseline] [--skip-commits]

Targets (issue 5, issue 16 item 4): a page of 13 candidates renders in under 1 s, from opening the private link
to every grid image decoded, in a warm browser (one that has the app's files cached: a new tab of the same
browser context); ballot commit p95 under 50 ms with 20 concurrent jurors. `--baseline REV` also measures the
pages of the kit at git revision REV (extracted with `git archive` into a temp folder and served from there), in
the same run: first both kits' warm-browser opens interleaved (one kit after the other in every round, so the
machine's load hits both alike), then each kit's full page benchmark, one server after the other.
`--omnibox-baseline` also opens the links, interleaved in the same rounds, in a Chromium launched with playwright's
own flags only (`LAUNCH_ARGS_BEFORE_ISSUE_16`, which prepares an omnibox popup page in a renderer of its own for
every page opened, `jury_app/testing/browser.py`). Prints a markdown table (paste it into docs/benchmarks.md),
the load average and the command.

Where a warm-browser open's time goes (rows "warm browser, phase ..."; not targets): from the page's own
Performance API, the milliseconds from navigation start until its scripts ran (DOMContentLoaded), until the first
candidate image was requested (after the websocket handshake, the app script's run and the render of its
elements) and until the last candidate was received; and, from /proc on Linux, the CPU milliseconds the server
process and all Chromium processes used during the open (on 2 cores, a wall time cannot be less than half their
sum).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS, LAUNCH_ARGS_BEFORE_ISSUE_16, press
from jury_app.testing.devserver import free_port, start_server
from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.store import VoteStore

IDLE = """() => !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')"""
ALL_LOADED = """() => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return imgs.length === 13 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


PHASES = """() => { const nav = performance.getEntriesByType('navigation')[0];
  const media = performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname.startsWith('/media/'));
  return [nav.domContentLoadedEventEnd, Math.min(...media.map(e => e.startTime)),
          Math.max(...media.map(e => e.responseEnd))]; }"""
PHASE_NAMES = ("phase: page scripts ran (DOMContentLoaded)", "phase: first candidate requested",
               "phase: last candidate received")
CPU_NAMES = ("CPU of the server process", "CPU of all Chromium processes")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process from /proc (None where there is no /proc or the process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chromium_cpu() -> dict[int, float]:
    """pid -> CPU seconds of every running process of this user whose executable is Chromium's and that descends
    from this process (the browser playwright started and its renderers, GPU and utility processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = {}, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            is_chromium = "chromium" in os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        seconds = cpu_seconds(pid)
        if is_chromium and seconds is not None:
            out[pid] = seconds
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def print_table(rows: list[tuple], load_before: tuple[float, float, float], script: str) -> None:
    """The machine, the load average before and after, the rows (name, n, median, p95, max ms, target) as a
    markdown table, and the command (also used by bench_store.py)."""
    print(f"\nMachine: {platform.machine()}, {mp.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.platform()}; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          "(1 min)\n")
    print("| measurement | n | median ms | p95 ms | max ms | target |")
    print("|---|---:|---:|---:|---:|---|")
    for name, n, med, p95, mx, target in rows:
        print(f"| {name} | {n} | {med:.1f} | {p95:.1f} | {mx:.1f} | {target} |")
    print(f"\nCommand: python benchmarks/{script} {' '.join(sys.argv[1:])}".rstrip())


def _open_link(page, url: str) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(ALL_LOADED, timeout=120_000)
    return time.perf_counter() - t0


def bench_page(root: Path, n_images: int, *, opens: int = 5, source: Path | None = None) -> dict[str, list[float]]:
    """Seconds from navigation (or the 'Save' click) until all 13 grid images are decoded in the page.

    Opens: the first link in a fresh browser (cold); `opens` links each in a new browser context (nothing
    cached); `opens` links each in a new tab of one context that has loaded the app before (warm browser)."""
    from playwright.sync_api import sync_playwright

    store = VoteStore(load_package(root))
    tokens = [link.token for link in store.add_jurors(2 + 2 * opens)]
    port = free_port()
    server = start_server(root, port, source=source)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {"first load (cold browser)": [], "open link (new browser context)": [],
                                   "open link (warm browser)": [], "next image after Save": []}
    out.update({f"warm browser, {name}": [] for name in PHASE_NAMES + CPU_NAMES})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            viewport = {"width": 1400, "height": 1000}
            for k, token in enumerate(tokens[:1 + opens]):
                page = browser.new_context(viewport=viewport).new_page()
                out["first load (cold browser)" if k == 0 else "open link (new browser context)"].append(
                    _open_link(page, f"{base}/?token={token}"))
                if k == 0:
                    for i in range(n_images - 1):
                        page.wait_for_function(IDLE, timeout=120_000)
                        most = page.get_by_role("toolbar", name="Most appealing (exactly 3)")
                        least = page.get_by_role("toolbar", name="Least appealing (exactly 2)")
                        for j in range(3):
                            press(most.get_by_role("button").nth(j))
                        for j in range(3, 5):
                            press(least.get_by_role("button").nth(j))
                        t0 = time.perf_counter()
                        page.get_by_role("button", name="Save and continue").click()
                        page.get_by_text(f"Image {i + 2} of {n_images}", exact=True).wait_for(timeout=60_000)
                        page.wait_for_function(ALL_LOADED, timeout=120_000)
                        out["next image after Save"].append(time.perf_counter() - t0)
                page.context.close()
            warm = browser.new_context(viewport=viewport)
            first = warm.new_page()
            _open_link(first, f"{base}/?token={tokens[1 + opens]}")  # the app's files are now in this context
            first.close()
            for token in tokens[2 + opens:]:
                page = warm.new_page()
                server_before, browser_before = cpu_seconds(server.pid), chromium_cpu()
                out["open link (warm browser)"].append(_open_link(page, f"{base}/?token={token}"))
                server_after, browser_after = cpu_seconds(server.pid), chromium_cpu()
                for name, ms in zip(PHASE_NAMES, page.evaluate(PHASES)):
                    out[f"warm browser, {name}"].append(ms / 1000)
                if server_before is not None and server_after is not None and browser_after:
                    out[f"warm browser, {CPU_NAMES[0]}"].append(server_after - server_before)
                    out[f"warm browser, {CPU_NAMES[1]}"].append(
                        sum(t - browser_before.get(pid, 0.0) for pid, t in browser_after.items()))
                page.close()
            browser.close()
    finally:
        server.kill()
        server.wait()
    return out


def bench_open_interleaved(root: Path, kits: list[tuple[str, Path | None, list[str]]], rounds: int
                           ) -> dict[str, list[float]]:
    """The warm-browser open, kit after kit within each round (so machine load hits every kit alike): per kit
    (label, kit checkout or None for this tree, Chromium launch flags) one server and one browser context (one
    Chromium per distinct flags), warmed by one open; then per round a new tab per kit opens a new link."""
    from playwright.sync_api import sync_playwright

    store = VoteStore(load_package(root))
    tokens = [link.token for link in store.add_jurors(len(kits) * (rounds + 1))]
    servers, out = [], {label: [] for label, _, _ in kits}
    try:
        for _, source, _ in kits:
            port = free_port()
            servers.append((start_server(root, port, source=source), f"http://127.0.0.1:{port}"))
        with sync_playwright() as p:
            browsers = {tuple(flags): None for _, _, flags in kits}
            for flags in browsers:
                browsers[flags] = p.chromium.launch(executable_path=CHROMIUM, args=list(flags))
            contexts = [browsers[tuple(flags)].new_context(viewport={"width": 1400, "height": 1000})
                        for _, _, flags in kits]
            for r in range(rounds + 1):
                for k, (label, _, _) in enumerate(kits):
                    page = contexts[k].new_page()
                    seconds = _open_link(page, f"{servers[k][1]}/?token={tokens.pop()}")
                    page.close()
                    if r:  # round 0 only fills the context's cache
                        out[label].append(seconds)
            for browser in browsers.values():
                browser.close()
    finally:
        for server, _ in servers:
            server.kill()
            server.wait()
    return out


def checkout(rev: str, into: Path) -> Path:
    """The kit's files at git revision `rev`, extracted into `into` (nothing else of the repository changes)."""
    repo = Path(__file__).resolve().parent.parent
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _juror_worker(directory: str, juror: str, n_ballots: int, barrier, results, think: float = 0.0) -> None:
    """Submit n ballots; `think` > 0 waits uniform(0, 2 think) seconds before each (a fast human is ~5 s)."""
    store = VoteStore(load_package(directory))
    ids = store.package.image_ids
    rng = np.random.default_rng(abs(hash(juror)) % 2**32)
    barrier.wait()
    times = []
    for i in range(n_ballots):
        if think:
            time.sleep(rng.uniform(0, 2 * think))
        image = ids[i % len(ids)]
        c = list(store.package.candidate_ids(image))
        t0 = time.perf_counter()
        store.save_ballot(juror, image, c[:3], c[3:5])
        times.append(time.perf_counter() - t0)
    results.extend(times) if isinstance(results, list) else results.put(times)


def bench_commits(root: Path, n_jurors: int, n_ballots: int, mode: str, think: float = 0.0) -> list[float]:
    store = VoteStore(load_package(root))
    jurors = [link.juror for link in store.add_jurors(n_jurors)]
    if mode == "threads":
        barrier, results = threading.Barrier(n_jurors), []
        workers = [threading.Thread(target=_juror_worker, args=(str(root), j, n_ballots, barrier, results, think))
                   for j in jurors]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return results
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(n_jurors), ctx.Queue()
    procs = [ctx.Process(target=_juror_worker, args=(str(root), j, n_ballots, barrier, queue, think)) for j in jurors]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in queue.get()]
    for p in procs:
        p.join()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6, help="images per juror in the page benchmark")
    ap.add_argument("--size", type=int, default=768, help="side of the square candidate JPEGs")
    ap.add_argument("--jurors", type=int, default=20)
    ap.add_argument("--ballots", type=int, default=20)
    ap.add_argument("--think", type=float, default=0.5, help="mean pause between a juror's ballots (s)")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--skip-commits", action="store_true")
    ap.add_argument("--opens", type=int, default=5, help="links opened per kind of browser")
    ap.add_argument("--baseline", default=None, help="git revision to measure the pages of too ('before')")
    ap.add_argument("--omnibox-baseline", action="store_true",
                    help="also open links, interleaved, in a Chromium launched with playwright's own flags only "
                         "(LAUNCH_ARGS_BEFORE_ISSUE_16: it prepares an omnibox popup page for every page opened)")
    args = ap.parse_args()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_browser:
            kits: list[tuple[str, Path | None]] = [("", None)]
            if args.baseline:
                kits.insert(0, (f"before ({args.baseline}): ", checkout(args.baseline, Path(tmp) / "baseline")))
                kits[1] = ("after (this tree): ", None)
            interleaved = [(label, source, LAUNCH_ARGS) for label, source in kits]
            if args.omnibox_baseline:
                interleaved = [(f"{label}Chromium with the omnibox popup per page: ", source,
                                LAUNCH_ARGS_BEFORE_ISSUE_16) for label, source in kits] + [
                    (f"{label}Chromium with LAUNCH_ARGS: ", source, LAUNCH_ARGS) for label, source in kits]
            if len(interleaved) > 1:
                root = make_demo_package(Path(tmp) / "interleaved", [f"run{i:02d}" for i in range(13)],
                                         args.images, size=args.size)
                for label, values in bench_open_interleaved(root, interleaved, args.opens).items():
                    rows.append((f"{label}13-candidate page, open link (warm browser, kits interleaved) "
                                 f"({args.size}px JPEGs)", len(values), statistics.median(values) * 1000,
                                 pct(values, 95) * 1000, max(values) * 1000, "< 1000 ms"))
            for label, source in kits:
                root = make_demo_package(Path(tmp) / f"page{len(rows)}", [f"run{i:02d}" for i in range(13)],
                                         args.images, size=args.size)
                for name, values in bench_page(root, args.images, opens=args.opens, source=source).items():
                    if values:
                        rows.append((f"{label}13-candidate page, {name} ({args.size}px JPEGs)", len(values),
                                     statistics.median(values) * 1000, pct(values, 95) * 1000,
                                     max(values) * 1000, "-" if name.startswith("warm browser, ") else "< 1000 ms"))
        for mode in (() if args.skip_commits else ("threads", "processes")):
            for think in (0.0, args.think):
                root = make_demo_package(Path(tmp) / f"{mode}{think}", [f"run{i}" for i in range(13)],
                                         args.ballots, size=8)
                times = bench_commits(root, args.jurors, args.ballots, mode, think)
                how = "all at once, no pause" if think == 0 else f"pause uniform(0, {2 * think:g}) s"
                rows.append((f"ballot commit, {args.jurors} concurrent jurors ({mode}, {how})", len(times),
                             statistics.median(times) * 1000, pct(times, 95) * 1000, max(times) * 1000,
                             "p95 < 50 ms"))
    print_table(rows, load_before, "bench_jury.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
