"""pp-attack: make a Pixel Privacy run folder by attacking the organizer's BIQA (white-box).

    pp-attack METHOD --originals DIR --out runs/RUN [--biqa NAME] [--biqa-weights PATH | --random-weights SEED]
              [--target S] [--set key=value ...] [--seed N] [--device auto] [--shard i/n] [--batch-size N]
              [--team NAME] [--task task.toml]
    pp-attack --list
    pp-attack finalize runs/RUN [--originals DIR]

The task file (--task, default the kit's 2020 rules) is the one source of the BIQA threshold and of the organizer's
JPEG (quality, subsampling, libjpeg build): run.json records both (`threshold`, `codec`) next to the whole `task`.

Exit codes: the kit's one exit-code table: README.md, section "The three command-line tools" (also in
`pp-attack --help`; `evaluator.common.errors.EXIT_CODES`).

Under torchrun (RANK and WORLD_SIZE set) each process takes shard RANK/WORLD_SIZE and the GPU LOCAL_RANK; run
`pp-attack finalize` once all are done.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from evaluator.common.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, KitError, exit_code_help

log = logging.getLogger("pp-attack")


def _list_methods() -> str:
    from submission.attacks import ATTACKS

    lines = []
    for name, cls in ATTACKS.items():
        lines.append(f"{name}: {cls.summary}")
        lines.append(f"    paper: {cls.paper}")
        for spec in cls.param_specs():
            lines.append(f"    --set {spec.describe()}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pp-attack",
        description=__doc__.split("\n\n")[0],
        epilog="`pp-attack --list` shows every method, its parameters and paper.\n\n" + exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", nargs="?", help="attack method (see --list)")
    p.add_argument("--list", action="store_true", help="list methods, parameters, defaults and papers")
    p.add_argument("--originals", type=Path, help="folder of original <id>.png images")
    p.add_argument("--out", type=Path, help="run folder to write (runs/<run>); its name is the run name")
    p.add_argument("--biqa", default=None, help="BIQA model (default: the task's, brisque)")
    p.add_argument("--biqa-weights", type=Path, default=None,
                   help="weights file of a BIQA that needs one (koncept512: the organizers' checkpoint)")
    p.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                   help="tests only: no weights file, random BIQA weights from SEED (recorded in run.json as "
                        "biqa_random_weights_seed; the attack optimizes a meaningless score)")
    p.add_argument("--target", type=float, default=None, help="target score s_a in [0, 100] (default: the "
                   "method's, usually the task's BIQA threshold, [biqa] threshold of --task)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="set one method parameter (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="run seed (per-image streams derive from it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--shard", default=None, help="process slice i/n (0-based) of the sorted originals")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (equal sizes are batched)")
    p.add_argument("--team", default="team", help="team name for run.json")
    p.add_argument("--task", type=Path, default=None,
                   help="task.toml whose [biqa] threshold and [jpeg] codec (quality, subsampling, libjpeg) the attack "
                        "aims at and optimizes for; recorded in run.json (default: the kit's 2020 rules)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    from submission.attacks import ParamError

    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"--set {item!r}: write key=value, e.g. --set eps=4/255")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise ParamError(f"--set {item!r}: empty key; write key=value")
        if k in out:
            raise ParamError(f"--set {k} given twice; keep one")
        out[k] = v
    return out


def _shard_from(args: argparse.Namespace):
    from submission.run_folder import Shard

    if args.shard is not None:
        return Shard.parse(args.shard)
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is not None and world is not None:
        try:
            return Shard(int(rank), int(world))
        except ValueError:
            from submission.run_folder import RunFolderError

            raise RunFolderError(f"RANK={rank!r} WORLD_SIZE={world!r}: not integers (set by torchrun)") from None
    return Shard(0, 1)


def _device_from(args: argparse.Namespace) -> str:
    local = os.environ.get("LOCAL_RANK")
    if args.device in ("auto", "cuda") and local is not None and os.environ.get("WORLD_SIZE"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(local) % torch.cuda.device_count()}"
    return args.device


def _run(args: argparse.Namespace) -> int:
    from evaluator.biqa import create
    from evaluator.codec import OrganizerCodec
    from evaluator.config import load_task
    from evaluator.common.device import resolve_device
    from submission.attacks import ParamError, get_attack
    from submission.run_folder import (
        RunSpec,
        attack_folder,
        check_originals,
        finalize,
        list_originals,
        open_run,
    )

    if args.originals is None or args.out is None:
        raise ParamError("give --originals DIR and --out runs/RUN (see pp-attack --help)")
    if args.batch_size < 1:
        raise ParamError(f"--batch-size {args.batch_size}: must be >= 1")
    cls = get_attack(args.method)
    values = cls.parse_params(_parse_sets(args.sets))
    if args.target is not None:
        if not 0.0 <= args.target <= 100.0:
            raise ParamError(f"--target {args.target:g} is outside [0, 100]; pick a score in [0, 100]")
        if "target" not in {s.name for s in cls.param_specs()}:
            raise ParamError(f"{cls.name}: takes no target (it does not look at the model); drop --target")
        if "target" in values:
            raise ParamError("give the target once: --target or --set target=..., not both")
        values["target"] = float(args.target)
    attack = cls(**values)
    shard = _shard_from(args)
    task = load_task(args.task)
    biqa_name = args.biqa or task.biqa.model
    originals = list_originals(args.originals)
    check_originals(shard.take(originals))
    device = resolve_device(_device_from(args))
    model = create(biqa_name, weights=args.biqa_weights, device=str(device), random_weights_seed=args.random_weights)
    if model.info.random_weights_seed is not None:
        log.warning("%s", model.info.random_weights_note())
    codec = OrganizerCodec.from_task(task)  # the one source of the JPEG settings: the task rules
    threshold = float(task.biqa.threshold)  # the one source of the threshold: the task rules
    chain_note = _chain_note(task)
    if chain_note:
        log.warning("%s", chain_note)
    params = attack.recorded_params(threshold)  # a target of None is recorded as the score actually aimed at
    spec = RunSpec(
        team=args.team,
        run=args.out.name,
        method=cls.name,
        params=params,
        biqa=biqa_name,
        seed=args.seed,
        biqa_weights_sha256=model.info.weights_sha256,
        biqa_random_weights_seed=model.info.random_weights_seed,
        # the codec the attack optimized for (through_jpeg's DiffJPEG, pgd-dct's tables and success check) and
        # that score_jpeg in the log was measured with: the task's [jpeg] rules, the one source
        extra={"paper": cls.paper, "threshold": threshold, "codec": dataclasses.asdict(codec),
               "task": task.to_dict(), **({"preprocess_note": chain_note} if chain_note else {})},
    )
    out = open_run(args.out, spec, n_images=len(originals), shard=shard, originals=args.originals.resolve())
    attack.prepare(originals, model)
    stats = attack_folder(
        attack, model, originals, out, seed=args.seed, shard=shard, batch_size=args.batch_size, codec=codec,
        threshold=threshold, progress=not args.quiet,
    )
    log.info("%s: shard %d/%d: %d attacked, %d already done", out, shard.index, shard.count,
             stats["attacked"], stats["done_before"])
    if shard.count == 1:
        meta = finalize(out, args.originals)
        log.info("%s: complete, %s", out, meta.get("summary"))
    else:
        log.info("%s: shard done; run `pp-attack finalize %s` when every shard is", out, out)
    return EXIT_OK


def _chain_note(task) -> str:
    """'' for the 2020 rule (preprocess.chain = the task's JPEG alone); else what pp-attack does not model: the
    steps the evaluator applies before its JPEG (through_jpeg, pgd-dct and score_jpeg know the JPEG only)."""
    jpeg = f"jpeg{task.jpeg.quality}"
    if task.preprocess.chain == jpeg:
        return ""
    return (f"{task.source}: preprocess.chain = {task.preprocess.chain!r}: the evaluator applies the steps before "
            f"{jpeg}, but pp-attack models the JPEG only: through_jpeg's DiffJPEG, pgd-dct and score_jpeg in the log "
            f"use {jpeg} alone; check a run under the whole chain with pp-evaluate (or --matrix)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "finalize":
        return _finalize_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.list:
        print(_list_methods())
        return EXIT_OK
    if not args.method:
        _parser().print_usage(sys.stderr)
        print("pp-attack: error: give a METHOD (see pp-attack --list)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args)
    except KitError as exc:  # each stage's error carries its exit code (evaluator.common.errors)
        print(f"pp-attack: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pp-attack: interrupted; the images written in {args.out} are kept: rerun the same command to "
              "resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _finalize_main(argv: list[str]) -> int:
    from submission.run_folder import finalize

    p = argparse.ArgumentParser(prog="pp-attack finalize",
                                description="Check that every shard's images are present and complete run.json.",
                                epilog=exit_code_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--originals", type=Path, default=None, help="originals folder (default: the one the run was made from, found by run.json's name and image-set hash)")
    args = p.parse_args(argv)
    try:
        meta = finalize(args.run, args.originals)
    except KitError as exc:  # IncompleteRunError: 5; the originals: 3; another run folder problem: 2
        print(f"pp-attack finalize: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pp-attack finalize: interrupted; {args.run} is left as it was: rerun finalize", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{args.run}: complete, {meta['n_images']} images; {meta.get('summary')}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
