"""Attack-loop overhead: per-iteration cost of the I-FGSM / MI-FGSM / PGD-L2 loops vs a bare forward + backward of
the same model on the same batch (target: at most 1.3x).

    python benchmarks/bench_attack_loop.py [--task task.toml] [--biqa NAME] [--batch 4] [--size 384x512] [--iters 10]
                                           [--device cpu]

The bare pass is `model.raw_score(x).sum().backward()` with x requiring grad; the attack loop is the kit's
`iterative_linf` (what ifgsm / mifgsm / enhance-ifgsm run) and PGD-L2's inner loop, both through
`GradientAttack.loss_and_grad`. After a warm-up, the bare pass and the loops are timed in turn (interleaved, so
load from other processes hits all of them alike) `--repeats` times; the minimum of each is reported. The loops
aim at the BIQA threshold and use the codec of `--task` (default: the kit's task.toml), as pp-attack does.
"""

from __future__ import annotations

import argparse
import time

from pathlib import Path

import torch

from evaluator.biqa import create
from evaluator.codec import OrganizerCodec
from evaluator.config import load_task
from submission.attacks import get_attack
from submission.attacks.framework.driver import AttackContext, image_seed
from submission.attacks.methods.fgsm_family import iterative_linf


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_interleaved(fns: dict, repeats: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """(min wall time, min CPU time of this process) of each function over `repeats` interleaved rounds, after
    one warm-up call each. CPU time is the fair cost on a shared CPU machine (other processes inflate wall time
    unevenly); on a GPU the wall time is the one that counts."""
    for fn in fns.values():
        fn()
    _sync(device)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: (min(wall[k]), min(cpu[k])) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", type=Path, default=None,
                    help="task.toml: BIQA threshold, codec and default model (default: the kit's 2020 rules)")
    ap.add_argument("--biqa", default=None, help="BIQA model (default: the task's)")
    ap.add_argument("--biqa-weights", default=None)
    ap.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                    help="a model that needs weights (koncept512) without a file: random weights from SEED")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", default="192x256", help="HxW")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    task = load_task(args.task)
    args.biqa = args.biqa or task.biqa.model
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    model = create(args.biqa, weights=args.biqa_weights, device=args.device, random_weights_seed=args.random_weights)
    device = next(iter(model.buffers()), torch.empty(0)).device if list(model.buffers()) else torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, h, w, generator=g).to(device)
    ids = [str(i) for i in range(args.batch)]

    def bare() -> None:
        for _ in range(args.iters):
            xg = x.detach().requires_grad_(True)
            model.raw_score(xg).sum().backward()

    ifgsm = get_attack("ifgsm")(iters=args.iters)
    mifgsm = get_attack("mifgsm")(iters=args.iters)
    pgd = get_attack("pgd-l2")(iters=args.iters)
    threshold, codec = float(task.biqa.threshold), OrganizerCodec.from_task(task)
    ctx = AttackContext(ifgsm.objective(threshold), codec, tuple(image_seed(0, i) for i in ids), tuple(ids))

    def loop_ifgsm() -> None:
        p = ifgsm.params
        iterative_linf(ifgsm, x, model, ctx, eps=p.eps, step=p.step, iters=p.iters)

    def loop_mifgsm() -> None:
        p = mifgsm.params
        iterative_linf(mifgsm, x, model, ctx, eps=p.eps, step=p.step, iters=p.iters, momentum=p.momentum,
                       normalize=p.normalize)

    pctx = AttackContext(pgd.objective(threshold), codec, ctx.seeds, ctx.ids)

    def loop_pgd() -> None:
        pgd.pgd(model, x, torch.full((args.batch,), 500.0, device=device), pctx)

    fns = {"bare": bare, "ifgsm loop": loop_ifgsm, "mifgsm loop": loop_mifgsm, "pgd-l2 inner loop": loop_pgd}
    t = {k: (w / args.iters, c / args.iters) for k, (w, c) in timed_interleaved(fns, args.repeats, device).items()}
    use = 0 if device.type == "cuda" else 1  # the verdict: wall time on a GPU, CPU time on a CPU
    print(f"model {args.biqa}, batch {args.batch} x 3 x {h} x {w}, device {device}, threads {args.threads}, "
          f"{args.iters} iterations, min of {args.repeats}")
    print(f"{'':22s} {'wall ms/it':>11s} {'ratio':>6s} {'cpu ms/it':>10s} {'ratio':>6s}")
    bw, bc = t["bare"]
    print(f"{'bare forward+backward':22s} {1000 * bw:11.2f} {1.0:6.3f} {1000 * bc:10.2f} {1.0:6.3f}")
    worst = 0.0
    for name in ("ifgsm loop", "mifgsm loop", "pgd-l2 inner loop"):
        w_, c_ = t[name]
        worst = max(worst, (w_ / bw, c_ / bc)[use])
        print(f"{name:22s} {1000 * w_:11.2f} {w_ / bw:6.3f} {1000 * c_:10.2f} {c_ / bc:6.3f}")
    print(f"worst {'wall' if use == 0 else 'cpu'}-time ratio {worst:.3f} (target <= 1.3): "
          f"{'OK' if worst <= 1.3 else 'OVER'}")

if __name__ == "__main__":
    main()
