"""Benchmark: `pp-evaluate`'s pipeline vs a plain per-image loop (Pillow JPEG + the `brisque` package).

Scores N images x R runs (default 550 x 13 at 512x384, the 2020 field) with the default BIQA (brisque):
1. builds N originals from the demo photos (the 512x384 crops of `evaluator.demo.demo_data`, mirrored/flipped and
   given +-1 level noise so every image is distinct) and R synthetic runs (noise, blur, contrast, gamma,
   sharpening, ... at run-specific strengths), all PNG;
2. in a fresh process: `evaluator.pipeline.evaluate` on an empty results folder (validation with full decode,
   clean originals, JPEG + scoring, PSNR/SSIM, selection, jury package, report), then once more on the same
   folder (everything from the cache);
3. in a fresh process: the plain loop: for every original and every submitted image, Pillow decode, Pillow
   JPEG quality 90 to memory, decode, and the `brisque` package's own feature functions + libsvm prediction
   (its `score()` fails on NumPy 2); no validation, no fidelity, no outputs;
4. prints wall time and peak RSS of each process, and the largest score difference between the two paths.

    python benchmarks/bench_evaluate.py                       # 550 x 13 (takes a while to generate)
    python benchmarks/bench_evaluate.py --images 40 --runs 3  # quick check

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


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (less sensitive to other load than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# -- the two measured paths (each in its own process) -----------------------------------------------------------
def phase_pipeline(work: Path, batch_size: int, fidelity_threads: int) -> dict:
    import logging

    from evaluator.biqa import create
    from evaluator.config import TaskConfig
    from evaluator.pipeline import evaluate

    logging.basicConfig(level=logging.ERROR)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    model = create("brisque", device="cpu")
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = evaluate(work / "originals", work / "runs", out, TaskConfig(), model, batch_size=batch_size,
                      progress=False, fidelity_threads=fidelity_threads)
    first, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    t0 = time.perf_counter()
    again = evaluate(work / "originals", work / "runs", out, TaskConfig(), model, batch_size=batch_size,
                     progress=False, fidelity_threads=fidelity_threads)
    rerun = time.perf_counter() - t0
    return {"seconds": first, "cpu_seconds": cpu, "rerun_seconds": rerun, "peak_rss_mib": _peak_rss_mib(),
            "computed": result.cache.computed, "rerun_computed": again.cache.computed,
            "qualified": sum(r.qualified for r in result.runs)}


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
    t0, c0 = time.perf_counter(), _cpu_seconds()
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
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    (work / "baseline_scores.json").write_text(json.dumps(scores))
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": _peak_rss_mib(), "images": len(scores)}


def _child(phase: str, work: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--workdir", str(work), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--fidelity-threads", str(args.fidelity_threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: with the PSNR/SSIM worker thread that fills the 2 cores of "
                             "the target machine; 2 torch threads + the worker oversubscribe them and the OpenMP "
                             "threads spin: 2-8x more CPU time under load)")
    parser.add_argument("--fidelity-threads", type=int, default=1, help="PSNR/SSIM worker threads (0 = inline)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data here (reused between calls)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--phase", choices=("pipeline", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        import torch

        torch.set_num_threads(args.threads)
        if args.phase == "pipeline":
            measured = phase_pipeline(args.workdir, args.batch_size, args.fidelity_threads)
        else:
            measured = phase_baseline(args.workdir)
        print(json.dumps(measured))
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
        print(f"load average before: {_load_average()}")
        pipe = _child("pipeline", work, args)
        print(f"pipeline (torch threads {args.threads}, fidelity threads {args.fidelity_threads}, batch "
              f"{args.batch_size}): {args.images} images x {args.runs} runs (+ originals = {n} scored) in "
              f"{pipe['seconds']:.1f} s ({1000 * pipe['seconds'] / n:.1f} ms/image; CPU {pipe['cpu_seconds']:.1f} s = "
              f"{1000 * pipe['cpu_seconds'] / n:.1f} ms/image), peak RSS "
              f"{pipe['peak_rss_mib']:.0f} MiB; rerun from cache {pipe['rerun_seconds']:.1f} s "
              f"({pipe['rerun_computed']} recomputed); {pipe['qualified']} qualified run(s)")
        if not args.skip_baseline:
            base = _child("baseline", work, args)
            print(f"baseline (Pillow JPEG + brisque package, per image): {base['images']} images in "
                  f"{base['seconds']:.1f} s ({1000 * base['seconds'] / base['images']:.1f} ms/image; CPU "
                  f"{1000 * base['cpu_seconds'] / base['images']:.1f} ms/image), peak RSS "
                  f"{base['peak_rss_mib']:.0f} MiB")
            print(f"speed-up {base['seconds'] / pipe['seconds']:.2f}x; largest score difference "
                  f"{_score_agreement(work):.4f} points")
        print(f"load average after: {_load_average()}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
