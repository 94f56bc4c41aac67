"""Benchmark: our torch BRISQUE (batched) vs the PyPI `brisque` package's feature-and-predict path, one run.

Images: the sample photos that ship with scikit-image and scikit-learn, cropped to 512x384 (W x H), 16 crops.
Reports images/s of both, the max |difference| in BRISQUE points, and peak memory of scoring:
ours = growth of the process's peak RSS (resource.getrusage) while scoring, measured first in a fresh process;
package = tracemalloc peak (numpy allocations) while scoring. Prints a markdown table and the exact command.

    python benchmarks/bench_biqa.py [--threads 2] [--dtype float32] [--repeats 3] [--images 32]

Ours scores without a graph (the compiled per-image kernels of `evaluator.biqa.brisque_fast`, one image per
thread, `--threads` threads); the package runs one image at a time (it is single-threaded). Also prints the largest
difference to the package on the parity tests' images (clean, blurred, noisy and JPEG-20 versions).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluator.biqa.brisque import Brisque  # noqa: E402

WIDTH, HEIGHT = 512, 384


def sample_crops(count: int = 16) -> list[tuple[str, np.ndarray]]:
    """`count` 512x384 RGB crops of the scikit-image / scikit-learn sample photos (several crops of big ones)."""
    import skimage.data
    import sklearn.datasets

    data_dir = Path(skimage.data.data_dir)
    paths = [
        data_dir / name
        for name in [
            "astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
            "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
        ]
    ] + [Path(p) for p in sklearn.datasets.load_sample_images().filenames]
    photos = [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    crops: list[tuple[str, np.ndarray]] = []
    corners = [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.0, 1.0)]
    for corner in corners:
        for name, rgb in photos:
            h, w = rgb.shape[:2]
            if h < HEIGHT or w < WIDTH or (corner != (0.0, 0.0) and (h - HEIGHT) * (w - WIDTH) < 10_000):
                continue
            top, left = int(corner[0] * (h - HEIGHT)), int(corner[1] * (w - WIDTH))
            crops.append((f"{name}@{top},{left}", np.ascontiguousarray(rgb[top : top + HEIGHT, left : left + WIDTH])))
            if len(crops) == count:
                return crops
    return crops


def package_scores(crops: list[np.ndarray]) -> list[float]:
    """The package's path per image: rgb2gray, features at full and cv2 half scale, scaling, libsvm."""
    import cv2
    import skimage.color

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brisque import BRISQUE

        reference = BRISQUE()
        scores = []
        for rgb in crops:
            gray = skimage.color.rgb2gray(rgb)
            half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
            raw = list(reference.calculate_brisque_features(gray, 7, 7 / 6))
            raw += list(reference.calculate_brisque_features(half, 7, 7 / 6))
            # score() itself fails on NumPy 2 (float() of 1-element arrays): flatten those first
            features = np.array([np.ravel(np.asarray(v, dtype=np.float64))[0] for v in raw])
            scores.append(float(reference.calculate_image_quality_score(features)))
    return scores


def parity_check(model: Brisque) -> tuple[int, float]:
    """(photos, max |ours - package|) over the parity tests' photos in their four versions."""
    sys.path.insert(0, str(ROOT / "tests"))
    from parity_images import VERSIONS, photo

    names = ["astronaut", "coffee", "chelsea", "motorcycle_left", "china", "flower"]
    rgbs = [VERSIONS[v](photo(n)) for n in names for v in VERSIONS]
    worst = 0.0
    for rgb in rgbs:
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            ours = float(model.brisque(x)[0])
        worst = max(worst, abs(ours - package_scores([rgb])[0]))
    return len(names), worst


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_growth_mib(rss_before: float) -> float:
    """Peak RSS since the last reset (VmHWM, else getrusage's lifetime peak) minus the RSS before scoring."""
    try:
        peak = _status_mib("VmHWM")
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak - rss_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads = images scored at once by ours")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of ours (best is reported)")
    parser.add_argument(
        "--no-match-package", action="store_true", help="skip the exact-rounding emulation where the MSCN vanishes"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    crops = sample_crops(args.images)
    names = [name for name, _ in crops]
    images = [rgb for _, rgb in crops]
    batch = torch.stack([torch.from_numpy(np.array(rgb)).permute(2, 0, 1) for rgb in images]).float() / 255
    model = Brisque(dtype=getattr(torch, args.dtype), match_package=not args.no_match_package)

    reset_peak_rss()
    rss_before = _status_mib("VmRSS")
    with torch.no_grad():
        ours = model.brisque(batch).numpy()  # warm-up, and the peak-memory measurement
        rss_ours = peak_rss_growth_mib(rss_before)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.brisque(batch)
            times.append(time.perf_counter() - start)
    ours_per_s = len(images) / min(times)

    tracemalloc.start()
    start = time.perf_counter()
    reference = np.array(package_scores(images))
    package_s = time.perf_counter() - start
    _, package_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    package_per_s = len(images) / package_s

    diff = np.abs(ours - reference)
    parity = parity_check(model)
    command = " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
    print(
        f"`{command}`  ({len(images)} crops {WIDTH}x{HEIGHT}, torch threads {args.threads}, dtype {args.dtype}, "
        f"match_package {not args.no_match_package}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())})"
    )
    print()
    print("| implementation | images/s | ms/image | peak memory of scoring | max abs diff (BRISQUE points) |")
    print("|---|---|---|---|---|")
    print(
        f"| evaluator.biqa.brisque (batch of {len(images)}) | {ours_per_s:.1f} | {1000 / ours_per_s:.1f} | "
        f"{rss_ours:.0f} MiB (peak RSS growth) | {diff.max():.2e} |"
    )
    print(
        f"| brisque 0.2.0 package, per image | {package_per_s:.1f} | {1000 / package_per_s:.1f} | "
        f"{package_peak / 2**20:.0f} MiB (tracemalloc peak) | reference |"
    )
    print()
    print(f"speed-up: {ours_per_s / package_per_s:.1f}x; worst image: {names[int(diff.argmax())]}; "
          f"BRISQUE range of the set: {reference.min():.1f} .. {reference.max():.1f}")
    print(f"parity images of the tests (tests/parity_images.py: {parity[0]} photos x clean, blur, noise, JPEG-20): "
          f"max abs diff to the package {parity[1]:.2e} BRISQUE points (target <= 0.01)")
    if not parity[1] <= 0.01:
        print(f"FAILED: parity {parity[1]:.2e} > 0.01 BRISQUE points; the speed-up above does not count",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
