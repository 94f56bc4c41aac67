"""Benchmark: CPU milliseconds per image of the NIQE and PIQE scoring paths (1 torch thread, inference_mode).

Images: 512x384 crops of the sample photos of scikit-image / scikit-learn (tests/parity_images.py), 8 of them.
Reports the best of `--repeats` calls on one image and on the batch of 8 (pp-evaluate --matrix scores batches of
up to 8 images of one size), divided by 8. Best-of-N CPU time (time.process_time), so a loaded machine inflates it
less than wall time. `--tree DIR` imports `evaluator` from another checkout (e.g. an older commit extracted with
`git archive COMMIT | tar -x -C DIR`) to compare before / after on the same images with the same script.

    python benchmarks/bench_niqe_piqe.py [--tree DIR] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "coffee", "china", "flower", "coffee", "china", "motorcycle_left", "astronaut")


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose evaluator/ is timed (default: this one)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    tree = args.tree.resolve()
    if not (tree / "evaluator" / "biqa").is_dir():
        raise SystemExit(f"--tree {tree}: no evaluator/biqa there; give the root of a checkout of the kit")
    sys.path[:0] = [str(tree), str(ROOT / "tests")]

    import torch

    from evaluator.biqa import create
    from parity_images import photo, to_tensor

    torch.set_num_threads(1)
    x = to_tensor(*(photo(n) for n in PHOTOS))
    print(f"evaluator from {tree}; {len(PHOTOS)} images of {x.shape[-1]}x{x.shape[-2]}; 1 thread; best of {args.repeats}")
    for name in ("niqe", "piqe"):
        model = create(name)
        with torch.inference_mode():
            one = _best(lambda: model(x[:1]), args.repeats)
            batch = _best(lambda: model(x), max(1, args.repeats // 4)) / len(PHOTOS)
        print(f"{name}: {1000 * one:.1f} ms CPU (1 image), {1000 * batch:.1f} ms CPU / image (batch of {len(PHOTOS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
