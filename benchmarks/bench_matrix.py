"""Benchmark: the survival matrix (`pp-evaluate --matrix`) against the official scoring of the same runs.

On a folder of originals and a folder of runs (default: the campaign of `benchmarks/survival_table.py`, the demo
runs on 8 demo images), in one call and on one empty results folder:
1. `pp-evaluate` (the official scoring: validation, JPEG-90, the task model, PSNR/SSIM, selection, jury, report);
2. `pp-evaluate --matrix --defenses <the 12 defenses of the catalogue other than none> --models brisque,niqe,piqe`
   on the same folder: the official part comes from the cache, so this call's time is the matrix's (runs x 12
   defenses x 3 models, less the official cells, which the pipeline already scored);
3. once more (everything from the cache).
Each is a fresh process; prints wall time, CPU time (user + system of the process, its threads and its worker
processes: the official scoring and the matrix both run workers, `--workers` default), peak RSS (the largest of
those processes) and the ratio matrix / official (issue 12's target: <= 4).

    python benchmarks/bench_matrix.py                                         # the survival_table.py campaign
    python benchmarks/bench_matrix.py --originals O --runs R --out /tmp/bm    # any runs
    python benchmarks/bench_matrix.py --costs                                 # where the matrix's CPU goes

Wall time on a shared machine varies a lot; the CPU time and the load average printed beside it tell whether a
difference is real.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `cmd` as a child; wall seconds, its CPU seconds and peak RSS (MiB) from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{stderr[-1500:]}")
    return {"wall": wall, "cpu_total": usage.ru_utime + usage.ru_stime, "rss_max": usage.ru_maxrss / 1024.0,
            "stderr": stderr}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--originals", type=Path, default=Path("results/survival/originals"))
    ap.add_argument("--runs", type=Path, default=Path("results/survival/runs"))
    ap.add_argument("--out", type=Path, default=Path("results/survival/bench"),
                    help="results folder (emptied first: the timings start from an empty cache)")
    ap.add_argument("--models", default="brisque,niqe,piqe")
    ap.add_argument("--threads", type=int, default=1, help="pp-evaluate --threads (torch threads)")
    ap.add_argument("--costs", action="store_true",
                    help="only print the CPU time per image of each model and of the 12 defenses (the originals)")
    args = ap.parse_args(argv)

    from evaluator.defenses import names

    if args.costs:
        return costs(args.originals, args.models.split(","), [d for d in names() if d != "none"])

    defenses = [d for d in names() if d != "none"]
    for p in (args.originals, args.runs):
        if not p.is_dir():
            raise SystemExit(f"{p}: missing; produce the runs first: python benchmarks/survival_table.py --images 8 "
                             "--spread --stage attacks")
    shutil.rmtree(args.out, ignore_errors=True)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(args.threads)
    base = ["pp-evaluate", "--originals", str(args.originals), "--runs", str(args.runs), "--out", str(args.out),
            "--no-progress", "--threads", str(args.threads)]
    matrix = base + ["--matrix", "--defenses", ",".join(defenses), "--models", args.models]
    n_runs = sum(1 for p in args.runs.iterdir() if not p.name.startswith("."))
    n_images = sum(1 for _ in args.originals.glob("*.png"))
    print(f"{n_runs} runs x {n_images} images; {len(defenses)} defenses ({','.join(defenses)}) x models {args.models}")
    print(f"load average before: {_load_average()}")
    cpu_before = 0.0
    rows = []
    for label, cmd in (("official scoring (pp-evaluate)", base), ("matrix (pp-evaluate --matrix, official cached)", matrix),
                       ("matrix again (all cached)", matrix)):
        t = _timed(cmd, env)
        cpu, cpu_before = t["cpu_total"] - cpu_before, t["cpu_total"]
        rows.append((label, t["wall"], cpu, t["rss_max"]))
        tail = [line for line in t["stderr"].splitlines() if "matrix:" in line and "score(s)" in line]
        print(f"{label}: wall {t['wall']:.1f} s, CPU {cpu:.1f} s, peak RSS so far {t['rss_max']:.0f} MiB"
              + (f"  [{tail[-1].split('matrix: ', 1)[1]}]" if tail else ""))
    print(f"load average after: {_load_average()}")
    official, mat = rows[0], rows[1]
    print(f"matrix / official: wall {mat[1] / official[1]:.1f}x, CPU {mat[2] / official[2]:.1f}x (target <= 4x)")
    print()
    print("| call | wall s | CPU s | peak RSS MiB (max so far) |")
    print("|---|---|---|---|")
    for label, wall, cpu, rss in rows:
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {rss:.0f} |")
    return 0


def costs(originals: Path, models: list[str], defenses: list[str]) -> int:
    """CPU milliseconds per image: each model's forward (batch of all originals, after one warm-up call) and the
    defenses applied one after the other (1 torch thread)."""
    import torch

    from evaluator.biqa import create
    from evaluator.codec import OrganizerCodec
    from evaluator.common.imageio import load_rgb, to_batch
    from evaluator.defenses import apply

    torch.set_num_threads(1)
    images = [load_rgb(p) for p in sorted(originals.glob("*.png"))]
    x = to_batch(images)
    print(f"{len(images)} images of {images[0].shape[1]}x{images[0].shape[0]}; load average {_load_average()}")
    for name in models:
        model = create(name)
        with torch.inference_mode():
            model(x[:1])
            start = time.process_time()
            model(x)
        print(f"{name}: {1000 * (time.process_time() - start) / len(images):.0f} ms CPU / image")
    codec = OrganizerCodec()
    start = time.process_time()
    for d in defenses:
        for im in images:
            apply(d, im, codec)
    print(f"{len(defenses)} defenses: {1000 * (time.process_time() - start) / len(images):.0f} ms CPU / image "
          "(all of them together)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
