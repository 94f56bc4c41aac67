"""KonCept512 throughput at 384x512 (random weights: speed does not depend on the values): the kit's model against
the plain eager model, forward (scoring) and forward + backward w.r.t. the input (an attack iteration).

    python benchmarks/bench_koncept512.py [--batches 1 4] [--repeats 3] [--threads 2] [--device cpu]
                                          [--compile] [--bf16]

Peer ("plain eager"): `KonCept512` in the default NCHW layout, called under `torch.no_grad()` (forward) or with a
gradient on the input (forward + backward). Rows: the kit's `KonCept512BIQA` (channels_last weights and inputs) under
`torch.inference_mode()` and with a gradient; with `--compile`, `torch.compile` of the kit's net (compile time
printed separately, timed after warm-up); with `--bf16`, bfloat16 autocast (the largest score change printed: it
is used only if within 0.1 points). Settings are timed in interleaved rounds after one warm-up each (load from
other processes hits all alike); the best round is reported, with the load average, because the machine may be
shared. `--device cuda` runs the same rows on a GPU (synchronizing before each clock read).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluator.biqa.koncept512 import KonCept512, KonCept512BIQA  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the kit's net")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast (forward)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    kit = KonCept512BIQA(random_seed=0).eval().to(device)
    for p in kit.parameters():
        p.requires_grad_(False)
    plain = KonCept512().eval()
    plain.load_state_dict(kit.net.state_dict())
    plain = plain.to(device)
    for p in plain.parameters():
        p.requires_grad_(False)
    compiled = None
    compile_s = None

    def plain_forward(x: torch.Tensor) -> torch.Tensor:
        return plain(KonCept512BIQA.preprocess(x).contiguous())

    rows = []
    for batch in args.batches:
        x = torch.rand(batch, 3, 384, 512, generator=torch.Generator().manual_seed(batch)).to(device)

        def fwd_plain() -> torch.Tensor:
            with torch.no_grad():
                return plain_forward(x)

        def fwd_kit() -> torch.Tensor:
            with torch.inference_mode():
                return kit.raw_score(x)

        def fb_plain() -> None:
            xg = x.detach().clone().requires_grad_(True)
            plain_forward(xg).sum().backward()

        def fb_kit() -> None:
            xg = x.detach().clone().requires_grad_(True)
            kit.raw_score(xg).sum().backward()

        settings: dict[str, Callable[[], object]] = {
            "plain eager, no_grad (peer)": fwd_plain,
            "kit: channels_last, inference_mode": fwd_kit,
            "plain eager, forward + backward (peer)": fb_plain,
            "kit: channels_last, forward + backward": fb_kit,
        }
        notes = [f"kit vs plain: max abs score diff {float((fwd_kit() - fwd_plain()).abs().max()):.2e}"]
        if args.compile:
            if compiled is None:
                t = time.perf_counter()
                compiled = torch.compile(kit.net)
                with torch.inference_mode():
                    compiled(KonCept512BIQA.preprocess(x))
                sync()
                compile_s = time.perf_counter() - t

            def fwd_compiled() -> torch.Tensor:
                with torch.inference_mode():
                    return compiled(KonCept512BIQA.preprocess(x))

            settings["kit + torch.compile, inference_mode"] = fwd_compiled
            notes.append(f"torch.compile: first call (compile) {compile_s:.1f} s; max abs score diff "
                         f"{float((fwd_compiled() - fwd_plain()).abs().max()):.2e}")
        if args.bf16:
            def fwd_bf16() -> torch.Tensor:
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                    return kit.raw_score(x).float()

            settings["kit + bf16 autocast, inference_mode"] = fwd_bf16
            notes.append(f"bf16 autocast: max abs score diff {float((fwd_bf16() - fwd_plain()).abs().max()):.2e} "
                         "(random weights; used only if within 0.1 points with the real ones)")
        for fn in settings.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in settings}
        for _ in range(args.repeats):
            for name, fn in settings.items():
                sync()
                t = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            peer = "plain eager, no_grad (peer)" if "backward" not in name else "plain eager, forward + backward (peer)"
            rows.append((batch, name, min(ts), batch / min(ts), min(times[peer]) / min(ts)))
        for note in notes:
            rows.append((batch, f"({note})", None, None, None))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    print("| batch | setting | best s / batch | images/s | speed vs its peer |")
    print("|---|---|---|---|---|")
    for batch, name, t, ips, rel in rows:
        if t is None:
            print(f"| {batch} | {name} | | | |")
        else:
            print(f"| {batch} | {name} | {t:.3f} | {ips:.2f} | {rel:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
