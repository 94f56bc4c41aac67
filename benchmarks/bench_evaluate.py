"""Benchmark: `pp-evaluate`'s pipeline vs a plain per-image loop (Pillow JPEG + the `brisque` package).

Scores N images x R runs (default 550 x 13 at 512x384, the 2020 field) with the default BIQA (brisque):
1. builds N originals from the demo photos (the 512x384 crops of `evaluator.demo.demo_data`, mirrored/flipped and
   given +-1 level noise so every image is distinct) and R synthetic runs (noise, blur, contrast, gamma,
   sharpening, ... at run-specific strengths), all PNG;
2. the whole command `pp-evaluate --originals O --runs R --out OUT --no-progress` (its defaults: worker
   processes on every core) on an empty results folder, timed from outside (start-up included: interpreter,
   imports, validation, clean originals, JPEG + scoring, PSNR/SSIM, selection, jury package, report), then once
   more on the same folder (everything from the cache);
3. the plain loop as a whole command (`--phase baseline`, start-up included): for every original and every
   submitted image, Pillow decode, Pillow JPEG quality 90 to memory, decode, and the `brisque` package's own
   feature functions + libsvm prediction (its `score()` fails on NumPy 2); no validation, no fidelity, no outputs;
4. prints wall time, CPU time (all processes) and peak memory (summed PSS of the command's process tree, sampled
   every 50 ms; for pp-evaluate in a third, untimed fresh run, because reading the PSS of its three processes 20
   times a second slows them on 2 cores; the one-process loop is sampled while timed, the sampler using the core
   it leaves idle) of each, the largest score difference between the two paths, and whether the tables agree: the
   accuracy and gate of every run and the jury selection recomputed from the loop's scores against runs.csv and
   selection.csv.

    python benchmarks/bench_evaluate.py                       # 550 x 13 (takes a while to generate)
    python benchmarks/bench_evaluate.py --images 64 --runs 8  # the small field

Wall time on a shared machine varies a lot; the CPU time (user + system, all threads) and the load average
printed beside it tell whether a difference is real.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN_METHODS = ("noise", "blur", "contrast", "gamma", "sharpen", "darken", "pixelate")


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- data ------------------------------------------------------------------------------------------------------
def _variant(rgb: np.ndarray, v: int, rng: np.random.Generator) -> np.ndarray:
    out = [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1]][v % 4]
    if v:
        out = np.clip(out.astype(np.int16) + rng.integers(-1, 2, out.shape), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _transform(rgb: np.ndarray, run: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageFilter

    method = RUN_METHODS[run % len(RUN_METHODS)]
    k = 1 + run // len(RUN_METHODS)
    x = rgb.astype(np.float32)
    if method == "noise":
        x = x + rng.normal(0, 10.0 * k, x.shape)
    elif method == "blur":
        return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(2.5 * k)))
    elif method == "contrast":
        x = (x - x.mean()) * (0.55 / k) + x.mean()
    elif method == "gamma":
        x = 255.0 * (x / 255.0) ** (1.0 + 0.6 * k)
    elif method == "sharpen":
        return np.asarray(Image.fromarray(rgb).filter(ImageFilter.UnsharpMask(radius=2 * k, percent=250)))
    elif method == "darken":
        x = x * (0.6 / k)
    elif method == "pixelate":
        im = Image.fromarray(rgb)
        small = im.resize((im.width // (4 * k), im.height // (4 * k)), Image.Resampling.BILINEAR)
        return np.asarray(small.resize(im.size, Image.Resampling.NEAREST))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def build_data(work: Path, n_images: int, n_runs: int) -> tuple[Path, Path]:
    """originals/ and runs/ under `work` (reused when a previous call built the same sizes)."""
    from evaluator.demo.demo_data import candidate_crops
    from evaluator.common.imageio import save_png
    from evaluator.contracts.run_folder import RUN_JSON

    stamp = work / "stamp.json"
    want = {"images": n_images, "runs": n_runs}
    originals, runs = work / "originals", work / "runs"
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return originals, runs
    shutil.rmtree(originals, ignore_errors=True)
    shutil.rmtree(runs, ignore_errors=True)
    originals.mkdir(parents=True)
    crops = candidate_crops()
    t0 = time.perf_counter()
    for r in range(n_runs):
        (runs / f"run{r:02d}").mkdir(parents=True)
    for i in range(n_images):
        rng = np.random.default_rng(i)
        crop = crops[i % len(crops)]
        rgb = _variant(crop.pixels, i // len(crops), rng)
        image = f"img{i:04d}"
        save_png(originals / f"{image}.png", rgb)
        for r in range(n_runs):
            save_png(runs / f"run{r:02d}" / f"{image}.png", _transform(rgb, r, np.random.default_rng((i, r))))
    for r in range(n_runs):
        meta = {"team": "bench", "run": f"run{r:02d}", "method": RUN_METHODS[r % len(RUN_METHODS)],
                "params": {"strength": 1 + r // len(RUN_METHODS)}, "biqa": "brisque",
                "created": "2026-01-01T00:00:00Z", "kit_version": "0.1.0", "seed": r}
        (runs / f"run{r:02d}" / RUN_JSON).write_text(json.dumps(meta))
    stamp.write_text(json.dumps(want))
    print(f"generated {n_images} originals x {n_runs} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return originals, runs


# -- the two measured paths (each a whole command, timed from outside) ------------------------------------------
def _tree_rss_mib(pid: int) -> float:
    """Summed proportional set size (PSS: shared pages split between their processes, so forked workers are not
    counted twice) of `pid` and its descendants (Linux /proc), MiB; 0 when it is gone."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def timed_command(cmd: list[str], env: dict | None = None, sample_memory: bool = True) -> dict:
    """Run `cmd`; wall seconds, CPU seconds of it and its children, peak summed PSS of its process tree (0 unless
    `sample_memory`: the sampler reads every process's /proc/PID/smaps_rollup 20 times a second, which walks its
    page tables under its memory lock and takes CPU, so a multi-process command is timed without it)."""
    import threading

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss_mib(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    stop.set()
    if sample_memory:
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak[0], "stdout": out}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def pipeline_command(work: Path) -> list[str]:
    """`pp-evaluate` with its defaults (as `python -m evaluator.cli`, the entry point's module)."""
    return [sys.executable, "-m", "evaluator.cli", "--originals", str(work / "originals"), "--runs",
            str(work / "runs"), "--out", str(work / "out"), "--no-progress"]


def phase_baseline(work: Path) -> dict:
    import cv2
    import skimage.color
    from brisque import BRISQUE
    from PIL import Image

    package = BRISQUE()

    def quality(rgb: np.ndarray) -> float:
        gray = skimage.color.rgb2gray(rgb)
        full = package.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
        half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        feats = np.concatenate((full, package.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)))
        values = [float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in feats]
        return float(np.clip(100.0 - package.calculate_image_quality_score(values), 0, 100))

    scores: dict[str, float] = {}
    for path in sorted((work / "originals").glob("*.png")):
        with Image.open(path) as im:
            scores[f"clean/{path.stem}"] = quality(np.asarray(im.convert("RGB")))
    for run in sorted((work / "runs").iterdir()):
        for path in sorted(run.glob("*.png")):
            with Image.open(path) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="JPEG", quality=90)
            with Image.open(io.BytesIO(buf.getvalue())) as jp:
                scores[f"{run.name}/{path.stem}"] = quality(np.asarray(jp.convert("RGB")))
    (work / "baseline_scores.json").write_text(json.dumps(scores))
    return {"images": len(scores)}


def _tables_agree(work: Path, threshold: float = 50.0, max_accuracy: float = 0.5, k: int = 20) -> str:
    """'identical' when every run's accuracy and gate and the jury selection recomputed from the loop's scores
    equal runs.csv / selection.csv (the task defaults), else what differs."""
    from evaluator.contracts.results import RUNS_CSV, SELECTION_CSV, read_csv

    baseline = json.loads((work / "baseline_scores.json").read_text())
    images = sorted(k2.split("/", 1)[1] for k2 in baseline if k2.startswith("clean/"))
    eligible = [i for i in images if baseline[f"clean/{i}"] >= threshold]
    runs = sorted({k2.split("/", 1)[0] for k2 in baseline} - {"clean"})
    problems = []
    for row in read_csv(work / "out" / RUNS_CSV):
        acc = float(np.mean([baseline[f"{row['run']}/{i}"] >= threshold for i in eligible]))
        if abs(float(row["accuracy"]) - acc) > 1e-12 or (row["qualified"] == "true") != (acc < max_accuracy):
            problems.append(f"run {row['run']}: accuracy {row['accuracy']} vs {acc}")
    variances = {i: float(np.var([baseline[f"{r}/{i}"] for r in runs])) for i in eligible}
    chosen = [i for i, _ in sorted(variances.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    if [r["image"] for r in read_csv(work / "out" / SELECTION_CSV)] != chosen:
        problems.append("jury selection differs")
    return "identical" if not problems else "; ".join(problems)


#: Largest score difference (points) to the plain loop a speed figure may come with (issue 16).
MAX_SCORE_DIFFERENCE = 0.01


def verdict(score_difference: float, tables: str) -> str | None:
    """None when the pipeline's numbers are the loop's (scores within MAX_SCORE_DIFFERENCE, tables identical),
    else why the speed figure must not be used. A NaN difference (a score missing or not a number) fails."""
    problems = []
    if not score_difference <= MAX_SCORE_DIFFERENCE:
        problems.append(f"largest score difference {score_difference:.4f} > {MAX_SCORE_DIFFERENCE} points")
    if tables != "identical":
        problems.append(f"tables differ: {tables}")
    return "; ".join(problems) or None


def _score_agreement(work: Path) -> float:
    from evaluator.contracts.results import SCORES_CSV, read_csv  # text cells are spreadsheet-safe: read_csv undoes it

    baseline = json.loads((work / "baseline_scores.json").read_text())
    worst = 0.0
    for row in read_csv(work / "out" / SCORES_CSV):
        worst = max(worst, abs(float(row["score"]) - baseline[f"{row['run']}/{row['image']}"]),
                    abs(float(row["score_clean"]) - baseline[f"clean/{row['image']}"]))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=550)
    parser.add_argument("--runs", type=int, default=13)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data here (reused between calls)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--phase", choices=("baseline",), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        print(json.dumps(phase_baseline(args.workdir)))
        return 0

    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.mkdtemp(prefix="pp-bench-")
        work = Path(tmp)
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_data(work, args.images, args.runs)
        n = args.images * (args.runs + 1)
        print(f"machine: {os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print(f"load average before: {_load_average()}")
        shutil.rmtree(work / "out", ignore_errors=True)
        cmd = pipeline_command(work)
        pipe = timed_command(cmd, _env(), sample_memory=False)  # timed alone (see timed_command)
        again = timed_command(cmd, _env(), sample_memory=False)
        shutil.rmtree(work / "out-memory", ignore_errors=True)  # the same command once more, fresh, for its memory
        memory = timed_command([*cmd[:cmd.index("--out") + 1], str(work / "out-memory"),
                                *cmd[cmd.index("--out") + 2:]], _env())
        shutil.rmtree(work / "out-memory", ignore_errors=True)
        print(f"pipeline `pp-evaluate` (defaults, fresh --out; {' '.join(cmd[3:])}): {args.images} images x "
              f"{args.runs} runs (+ originals = {n} scored) in {pipe['seconds']:.1f} s "
              f"({1000 * pipe['seconds'] / n:.1f} ms/image; CPU of all its processes {pipe['cpu_seconds']:.1f} s = "
              f"{1000 * pipe['cpu_seconds'] / n:.1f} ms/image); rerun from cache {again['seconds']:.1f} s; peak "
              f"memory (process tree, in a third, untimed fresh run) {memory['peak_rss_mib']:.0f} MiB")
        if not args.skip_baseline:
            base = timed_command([sys.executable, __file__, "--phase", "baseline", "--workdir", str(work)], _env())
            print(f"baseline (Pillow JPEG + brisque package, per image, one process): {n} images in "
                  f"{base['seconds']:.1f} s ({1000 * base['seconds'] / n:.1f} ms/image; CPU "
                  f"{1000 * base['cpu_seconds'] / n:.1f} ms/image), peak memory {base['peak_rss_mib']:.0f} MiB")
            difference, tables = _score_agreement(work), _tables_agree(work)
            print(f"speed-up {base['seconds'] / pipe['seconds']:.2f}x (whole commands, wall time); largest score "
                  f"difference {difference:.4f} points; tables: {tables}")
            failed = verdict(difference, tables)
            if failed:
                print(f"FAILED: the pipeline's numbers are not the loop's ({failed}); the speed-up above does not "
                      "count", file=sys.stderr)
                return 1
        print(f"load average after: {_load_average()}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
