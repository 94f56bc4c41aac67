"""KonCept512 throughput on CPU at 384x512: images/s of the kit's eager model under a few execution settings.

    python benchmarks/bench_koncept512.py [--batches 1 4] [--repeats 3] [--threads 2]

The kit's `KonCept512BIQA` is a plain eager torch module (the checkpoint layout), so the baseline "plain eager"
row IS our model under `torch.no_grad()`. The other rows change only how it runs: `torch.inference_mode()`,
then that plus channels_last memory format (model and input), and a forward + backward pass w.r.t. the input
(what an attack iteration costs). torch.compile is not tried (it needs a C++ toolchain at run time and its
compile time dwarfs these runs). Random weights: speed does not depend on the values. Settings are timed in
interleaved rounds after one warm-up each (so load from other processes hits all alike); the best round is
reported, and the 1-minute load average is printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import torch

from evaluator.biqa.koncept512 import KonCept512BIQA


def _no_grad(model: KonCept512BIQA, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model.raw_score(x)

    return run


def _inference_mode(model: KonCept512BIQA, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model.raw_score(x)

    return run


def _forward_backward(model: KonCept512BIQA, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        xg = x.detach().clone().requires_grad_(True)
        model.raw_score(xg).sum().backward()

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = KonCept512BIQA(random_seed=0).eval()  # speed only: seeded random weights, no checkpoint needed
    for p in model.parameters():
        p.requires_grad_(False)
    model_cl = KonCept512BIQA(random_seed=0).eval().to(memory_format=torch.channels_last)
    model_cl.load_state_dict(model.state_dict())
    for p in model_cl.parameters():
        p.requires_grad_(False)

    rows = []
    for batch in args.batches:
        x = torch.rand(batch, 3, 384, 512)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = model.raw_score(x)
            got = model_cl.raw_score(x_cl)
        max_diff = float((ref - got).abs().max())
        settings = {
            "plain eager, no_grad (baseline)": _no_grad(model, x),
            "inference_mode": _inference_mode(model, x),
            "inference_mode + channels_last": _inference_mode(model_cl, x_cl),
            "forward + backward w.r.t. input": _forward_backward(model, x),
        }
        for fn in settings.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in settings}
        for _ in range(args.repeats):
            for name, fn in settings.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        base = min(times["plain eager, no_grad (baseline)"])
        for name, ts in times.items():
            rows.append((batch, name, min(ts), batch / min(ts), base / min(ts)))
        rows.append((batch, f"(channels_last vs default: max abs score diff {max_diff:.2e})", None, None, None))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average (1 min) {load:.2f}")
    print()
    print("| batch | setting | best s / batch | images/s | speed vs baseline |")
    print("|---|---|---|---|---|")
    for batch, name, t, ips, rel in rows:
        if t is None:
            print(f"| {batch} | {name} | | | |")
        else:
            print(f"| {batch} | {name} | {t:.3f} | {ips:.2f} | {rel:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
