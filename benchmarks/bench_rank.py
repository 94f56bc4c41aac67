"""`pp-jury rank --votes` scaling: wall time and peak memory against the number of jurors.

    python benchmarks/bench_rank.py [--jurors 1000 5000 20000] [--runs 13] [--images 20]

For each size it writes a jury package (runs x images tiny JPEGs) and a votes CSV of random valid ballots (every
juror judges every image: 3 most and 2 least, the 2020 rule), then runs `pp-jury rank DIR --votes FILE` in a
fresh process and reports its wall time and peak resident memory (ru_maxrss), next to the memory of a process
that only imports pp-jury. Linear scaling shows as a constant "s per 1k jurors" column; memory bounded by
jurors x runs shows as a peak that does not follow the votes file's size. Prints a markdown table and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evaluator.contracts.jury_package import JuryKey

ROOT = Path(__file__).resolve().parents[1]


def _child(args: list[str]) -> None:
    """Run in a fresh process: import pp-jury, optionally rank, print seconds and peak RSS as JSON."""
    from jury_app.cli import main

    t0 = time.perf_counter()
    code = 0
    if args:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["rank", *args])
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    print(json.dumps({"code": code, "seconds": seconds, "peak_mb": peak_mb}))


def _run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_votes(path: Path, key: JuryKey, n_jurors: int, seed: int = 0) -> int:
    """Random valid ballots (3 most, 2 least of each image's candidates) for n_jurors; returns the row count."""
    by_image: dict[str, list[str]] = {}
    for cid, entry in key.candidates.items():
        by_image.setdefault(entry.image, []).append(cid)
    images = sorted(by_image)
    rng = np.random.default_rng(seed)
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["juror", "image", "candidate", "choice", "timestamp"])
        for j in range(n_jurors):
            juror = f"juror{j + 1:06d}"
            order = rng.permuted(np.tile(np.arange(len(by_image[images[0]])), (len(images), 1)), axis=1)
            for i, image in enumerate(images):
                cands = by_image[image]
                picks = [(cands[k], "most") for k in order[i, :3]] + [(cands[k], "least") for k in order[i, 3:5]]
                for cid, choice in picks:
                    w.writerow([juror, image, cid, choice, "2020-12-01T00:00:00.000000+00:00"])
                    rows += 1
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jurors", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--runs", type=int, default=13)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--interval", default="jurors", choices=["jurors", "jurors+images"])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from evaluator.contracts.jury_package import load_key
    from evaluator.contracts.results import JURY_DIR
    from jury_app.testing.fixtures import make_demo_package

    baseline = _run_child()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        pkg = make_demo_package(Path(tmp) / JURY_DIR, [f"run{k:02d}" for k in range(args.runs)], args.images,
                                size=8)
        key = load_key(pkg)
        for n in args.jurors:
            votes = Path(tmp) / f"votes{n}.csv"
            rows = write_votes(votes, key, n)
            res = _run_child(str(pkg), "--votes", str(votes), "--interval", args.interval)
            if res["code"] != 0:
                raise SystemExit(f"pp-jury rank exited {res['code']} on {n} jurors")
            table.append((n, rows, votes.stat().st_size / 2**20, res["seconds"], res["peak_mb"]))
            votes.unlink()
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.platform()}\n")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"`pp-jury rank --votes` ({args.runs} runs, {args.images} images, every juror judges every image; "
          f"interval {args.interval}; load average {load}). A process that only imports pp-jury: "
          f"{baseline['peak_mb']:.0f} MB peak RSS.\n")
    print("| jurors | vote rows | votes file MB | seconds | s per 1k jurors | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, rows, mb, sec, peak in table:
        print(f"| {n} | {rows} | {mb:.1f} | {sec:.2f} | {sec / n * 1000:.3f} | {peak:.0f} |")
    print(f"\nCommand: python benchmarks/bench_rank.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
