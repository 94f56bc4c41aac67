"""docs/attacks.md: every method of `pp-attack --list` on the demo set with the default model (brisque).

For each method: `pp-attack METHOD --originals OUT/originals --out OUT/runs/METHOD` with the settings below, then
one `pp-evaluate` over all runs. Columns (Bonnet et al. 2020, Tables 1-2, for P_PNG / P_JPEG):
    P_PNG    share of images whose written file scores below the threshold (log.csv score_after < 50)
    P_JPEG   the same after the organizer's JPEG-90 (log.csv score_jpeg < 50)
    accuracy share of images the BIQA still calls high quality after JPEG-90 (runs.csv accuracy)
    qualified accuracy < 0.5 (runs.csv qualified); PSNR, SSIM: runs.csv (submitted image vs original)
    s/img    mean of log.csv `seconds` (the attack's wall time per image, batch time / batch size)

    python benchmarks/attack_table.py                                   # every method, every demo image
    python benchmarks/attack_table.py --images 8 --spread --jobs 3      # as in docs/attacks.md (~10 min, 2 cores)
    python benchmarks/attack_table.py --images 4 --methods ifgsm,pgd-dct --doc /tmp/attacks.md   # quick look
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import campaign as cp  # noqa: E402

log = logging.getLogger("benchmarks.attack_table")

# Settings per method. Defaults everywhere except where a default run costs minutes per image on 2 shared cores:
# those get the iteration counts below (stated in the table). The UAP methods train once on the campaign's
# originals and save the perturbation in OUT/uap/, so reproduction.py applies the same delta at other amplitudes.
REDUCED: dict[str, tuple[tuple[str, str], ...]] = {
    "pgd-dct": (("iters", "10"), ("search_steps", "5"), ("lambda_steps", "6")),
    "pgd-l2": (("iters", "10"), ("search_steps", "5")),
    "cw-sensitivity": (("iters", "50"), ("lr", "0.02")),
}


def table_spec(method: str, out: Path, settings: tuple[tuple[str, str], ...] | None = None,
               target: float | None = None, run: str | None = None) -> cp.AttackSpec:
    """The attack-table setting of `method` (REDUCED or defaults), optionally extended; UAPs get a shared file."""
    base = REDUCED.get(method, ())
    extra = tuple(settings or ())
    keys = {k for k, _ in extra}
    merged = tuple((k, v) for k, v in base if k not in keys) + extra
    if method.startswith("uap-") and "uap_file" not in keys:
        merged += (("uap_file", str(out / "uap" / f"{method}.pt")),)
    return cp.AttackSpec(run=run or method, method=method, settings=merged, target=target)


def settings_shown(spec: cp.AttackSpec, out: Path) -> str:
    text = spec.settings_text()
    return text.replace(str(out / "uap") + "/", "OUT/uap/")


def parse_args(argv: list[str]) -> argparse.Namespace:
    return cp.campaign_parser(__doc__.split("\n\n")[0], "results/benchmarks", "docs/attacks.md").parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    c = cp.open_campaign(parse_args, argv)
    args, raw, start, env, out, methods = c.args, c.raw, c.start, c.env, c.out, c.methods
    originals, images, runs_dir, walltimes = c.originals, c.images, c.runs_dir, c.walltimes
    specs = [table_spec(m, out) for m in methods]
    failures = cp.run_attacks(cp.heavy_first(specs), originals, runs_dir, env, walltimes, args.jobs)
    cp.evaluate(originals, runs_dir, out / "results-brisque", "brisque", env, walltimes)
    doc = render(args, raw, specs, failures, images, out, env, walltimes, time.perf_counter() - start)
    cp.write_atomic(args.doc, doc)
    log.info("wrote %s in %.0f s", args.doc, time.perf_counter() - start)
    return 0


def render(args: argparse.Namespace, raw: list[str], specs: list[cp.AttackSpec], failures: dict[str, str],
           images: list[str], out: Path, env: dict[str, str], walltimes: cp.WallTimes, seconds: float) -> str:
    runs = cp.read_runs_csv(out / "results-brisque")
    rows, notes, mismatches = [], [], []
    for spec in specs:
        if spec.run in failures:
            rows.append([f"`{spec.method}`", settings_shown(spec, out)] + ["failed"] * 8)
            notes.append(f"- `{spec.run}` failed: {failures[spec.run].splitlines()[-1]}")
            continue
        stats = cp.attack_stats(cp.done_log_rows(out / "runs", spec.run), cp.task_threshold())
        r = runs.get(spec.run, {})
        if r.get("status") != "scored":
            notes.append(f"- `{spec.run}`: pp-evaluate status {r.get('status')!r}: {r.get('error', '')}")
        acc = r.get("accuracy")
        if acc not in (None, "") and abs((1 - float(acc)) - stats.p_jpeg) > 1e-9:
            mismatches.append(spec.run)
            notes.append(f"- `{spec.run}`: the attack log's P_JPEG ({cp.pct(stats.p_jpeg)}) and pp-evaluate's "
                         f"1 - accuracy ({cp.pct(1 - float(acc))}) disagree")
        rows.append([
            f"`{spec.method}`", settings_shown(spec, out), cp.pct(stats.p_png), cp.pct(stats.p_jpeg), cp.pct(acc),
            "yes" if r.get("qualified") == "true" else "no", cp.num(r.get("psnr")), cp.num(r.get("ssim"), 3),
            cp.num(stats.mean_jpeg, 1), cp.num(stats.seconds, 1),
        ])
    checked = [row for row in rows if row[2] != "failed"]
    consistency = (f"Consistency check: for {'all' if not mismatches else 'all but ' + str(len(mismatches)) + ' of'} the "
                   f"{len(checked)} scored runs, the attack log's P_JPEG equals pp-evaluate's 1 - accuracy (the "
                   f"attack's own JPEG-90 round trip and the evaluator's give the same decisions).")
    table = cp.md_table(["method", "settings (--set)", "P_PNG", "P_JPEG", "accuracy after JPEG-90", "qualified",
                         "PSNR dB", "SSIM", "mean score after JPEG-90", "s / image"], rows)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    walls = "\n".join(f"| `{k}` | {v:.0f} |" for k, v in sorted(walltimes.times.items())
                      if k.startswith("pp-evaluate") or k.split(" ", 1)[-1] in {s.run for s in specs})
    subset = cp.subset_text(args.data, images, args.images, args.spread)
    return f"""# Attacks on the demo set (default model: brisque)

Produced by

    {cp.command_line('benchmarks/attack_table.py', raw)}

on {stamp}, {subset} (512x384 crops; `python -m evaluator.demo.demo_data --out data/demo`), {cp.machine_line(env)}.
Each method ran as `pp-attack METHOD --originals OUT/originals --out OUT/runs/METHOD --quiet [--set k=v ...]`, then
`pp-evaluate --originals OUT/originals --runs OUT/runs --out OUT/results-brisque --biqa brisque` scored every run
(OUT = `{args.out}`). Threshold 50, organizer JPEG quality 90 (4:2:0, libjpeg-turbo 2.1.0 via jpeglib).

- **P_PNG**: share of images whose submitted file scores < 50 (attack log `score_after`: the PNG as written, or the
  decoded JPEG for methods that write `.jpg`). **P_JPEG**: the same after the organizer's JPEG-90 (log `score_jpeg`).
  Bonnet et al.'s Tables 1-2 measure exactly these two.
- **accuracy after JPEG-90**: `runs.csv` accuracy (share still >= 50 after the organizer's JPEG-90; 1 - P_JPEG).
  **qualified**: accuracy < 50 %. **PSNR, SSIM**: `runs.csv`, submitted image vs original, mean over images.
- **s / image**: mean of the log's `seconds` (attack wall time per image, {args.threads} torch thread(s) per call, {args.jobs} calls at a
  time, on a 2-core machine shared with other jobs: compare methods with each other, not with other machines).
- Settings: the defaults of `pp-attack --list`, except the iteration counts shown for the three slowest methods
  (their defaults cost minutes per image here). UAPs train on these same originals (the default) and save the
  perturbation under `OUT/uap/` (reused by `benchmarks/reproduction.py` at the other amplitudes); their s / image
  is the application only, the training is in the call's wall time below. The log's seconds include the attack's
  two scoring passes (before / after) and, for the first image of a call, one-off warm-up.

{table}

{chr(10).join(notes)}

{consistency}

Wall time of each CLI call (seconds; a resumed call keeps the time of its first full run):

| call | s |
|---|---|
{walls}

This script's total wall time on this call: {seconds:.0f} s.

{cp.NOTES_MARKER}
{cp.kept_notes(args.doc)}"""


if __name__ == "__main__":
    try:
        sys.exit(main())
    except cp.CampaignError as exc:  # a CLI call failed in a way that leaves no table to write
        print(f"{Path(__file__).name}: {exc}", file=sys.stderr)
        sys.exit(2)
