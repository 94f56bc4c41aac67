"""Where one `pp-evaluate` run spends its wall time: the CLI run in this process with its pipeline stages timed.

    python benchmarks/evaluate_stages.py --originals O --runs R --out OUT [any pp-evaluate option]

Prints, per stage (scoring the originals, scoring the runs, the report gallery, writing the results), its wall
time and the CPU time of the main process during it (the worker processes' CPU is not included), then the
start-up (interpreter and imports until the CLI starts) and the whole run. A profiling aid, not a benchmark with a
peer: `bench_evaluate.py` times the command against the plain loop.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluator.pipeline as pipeline  # noqa: E402
from evaluator import cli  # noqa: E402

STAGES = ("_score_originals", "_score_runs", "gallery_html", "_write_results")


def timed(name: str, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            print(f"{name:>18}: wall {time.perf_counter() - wall:6.2f} s, main-process CPU "
                  f"{time.process_time() - cpu:6.2f} s (ends at {time.perf_counter() - T0:6.2f} s)", file=sys.stderr)
    return run


def main() -> int:
    print(f"{'start-up':>18}: {time.perf_counter() - T0:6.2f} s (interpreter and imports)", file=sys.stderr)
    for name in STAGES:
        setattr(pipeline, name, timed(name, getattr(pipeline, name)))
    try:
        return cli.main(sys.argv[1:])
    finally:
        print(f"{'whole run':>18}: {time.perf_counter() - T0:6.2f} s (until the CLI returned)", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
