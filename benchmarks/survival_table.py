"""docs/survival.md: the survival matrix of the demo runs (every kit method + through_jpeg ifgsm / pgd-l2).

Runs every method of `pp-attack --list` with its default settings, plus `ifgsm-through_jpeg` and `pgd-l2-through_jpeg` (`--set through_jpeg=true`),
on the campaign's originals, then `pp-evaluate --matrix` over all runs (every defense x every BIQA that needs no
weights), and writes the tables of `OUT/results/matrix.csv` into the doc.

    python benchmarks/survival_table.py --images 8 --spread --jobs 2          # as in docs/survival.md
    python benchmarks/survival_table.py --images 8 --spread --stage attacks   # only produce / resume the runs
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import campaign as cp  # noqa: E402

log = logging.getLogger("benchmarks.survival_table")

THROUGH_JPEG = ("ifgsm", "pgd-l2")


def spec(method: str, out: Path, settings: tuple[tuple[str, str], ...] = (), run: str | None = None) -> cp.AttackSpec:
    """`method` with its defaults (plus `settings`); the UAP methods save their perturbation under OUT/uap/."""
    if method.startswith("uap-"):
        settings += (("uap_file", str(out / "uap" / f"{method}.pt")),)
    return cp.AttackSpec(run=run or method, method=method, settings=settings)


def specs(methods: list[str], out: Path) -> list[cp.AttackSpec]:
    """Every method with its default settings, then the through_jpeg variants of THROUGH_JPEG."""
    found = [spec(m, out) for m in methods]
    found += [spec(m, out, (("through_jpeg", "true"),), run=f"{m}-through_jpeg") for m in THROUGH_JPEG if m in methods]
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = cp.campaign_parser(__doc__.split("\n\n")[0], "results/survival", "docs/survival.md")
    ap.add_argument("--stage", choices=("attacks", "all"), default="all",
                    help="'attacks': only produce (or resume) the runs; 'all': runs, matrix and doc")
    ap.add_argument("--results", type=Path, default=None,
                    help="pp-evaluate --out of the matrix (default OUT/results; reusing the folder of "
                         "bench_matrix.py reuses its cached scores)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    c = cp.open_campaign(parse_args, argv)
    args, raw, start, env, out, methods = c.args, c.raw, c.start, c.env, c.out, c.methods
    originals, runs_dir, walltimes = c.originals, c.runs_dir, c.walltimes
    all_specs = specs(methods, out)
    failures = cp.run_attacks(cp.heavy_first(all_specs), originals, runs_dir, env, walltimes, args.jobs)
    log.info("attacks done in %.0f s; failures: %s", time.perf_counter() - start, sorted(failures) or "none")
    if args.stage == "attacks":
        return 0
    results = (args.results or out / "results").resolve()
    cmd = ["pp-evaluate", "--originals", str(originals), "--runs", str(runs_dir), "--out", str(results),
           "--no-progress", "--matrix"]
    seconds = cp.run_cli(cmd, env, "evaluate --matrix")
    walltimes.record("pp-evaluate --matrix", seconds, resumed=False)
    doc = render(args, raw, all_specs, failures, results, env, seconds)
    cp.write_atomic(args.doc, doc)
    log.info("wrote %s in %.0f s", args.doc, time.perf_counter() - start)
    return 0


def _matrix(results: Path, runs_dir: Path):
    """matrix.csv and runs.csv of `results` as a MatrixResult (the report's helpers then sort and phrase it)."""
    import json

    from evaluator.contracts.results import MATRIX_CSV, TASK_JSON, read_csv
    from evaluator.contracts.run_folder import RUN_JSON
    from evaluator.scoring.matrix import Cell, MatrixResult

    rows = read_csv(results / MATRIX_CSV)
    meta = json.loads((results / TASK_JSON).read_text(encoding="utf-8"))
    order = lambda key: list(dict.fromkeys(r[key] for r in rows))  # noqa: E731 - first-seen order
    cells = tuple(Cell(r["run"], r["defense"], r["biqa"], int(r["n_images"] or 0),
                       float(r["accuracy"]) if r["accuracy"] else float("nan"),
                       float(r["mean_score"]) if r["mean_score"] else float("nan"),
                       r["qualified"] == "true", r["error"]) for r in rows)
    targets = {}
    for run in order("run"):
        run_json = runs_dir / run / RUN_JSON
        if run_json.is_file():
            targets[run] = json.loads(run_json.read_text(encoding="utf-8")).get("biqa", "")
    return MatrixResult(cells=cells, runs=tuple(order("run")), defenses=tuple(order("defense")),
                        models=tuple(order("biqa")), official_defense=meta["rules"]["preprocess"]["chain"],
                        task_model=meta["model"]["name"], max_accuracy=meta["rules"]["gate"]["max_accuracy"],
                        threshold=meta["rules"]["biqa"]["threshold"], targets=targets)


def _pct(c) -> str:
    if c.error:
        return "error"
    text = f"{100 * c.accuracy:.0f}%"
    return f"**{text}**" if c.qualified else text


def render(args: argparse.Namespace, raw: list[str], all_specs: list[cp.AttackSpec], failures: dict[str, str],
           results: Path, env: dict[str, str], seconds: float) -> str:
    from datetime import datetime, timezone

    from evaluator.outputs.report_survival import robustness_order, run_sentence

    m = _matrix(results, args.out.resolve() / "runs")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tables = []
    for model in m.models:
        rows = [[f"`{run}`"] + [_pct(m.cell(run, d, model)) for d in m.defenses]
                + [f"{sum(m.cell(run, d, model).qualified for d in m.defenses)}/{len(m.defenses)}"]
                for run in robustness_order(m, model)]
        n = next((c.n_images for c in m.cells if c.biqa == model and not c.error), 0)
        tables.append(f"### {model}{' (the task model, attacked by every run)' if model == m.task_model else ''}"
                      f"\n\n{n} eligible originals (clean score >= {m.threshold:g} with {model}).\n\n"
                      + cp.md_table(["run"] + [f"`{d}`" for d in m.defenses] + ["qualifies"], rows))
    sentences = "\n".join(f"- {run_sentence(m, run)}" for run in robustness_order(m, m.task_model))
    fails = "\n".join(f"- `{r}` failed: {e.splitlines()[-1]}" for r, e in failures.items())
    shown = [cp.AttackSpec(s.run, s.method, tuple((k, v) for k, v in s.settings if k != "uap_file")) for s in all_specs]
    settings = ", ".join(f"`{s.run}` ({s.settings_text()})" for s in shown)
    return f"""# Survival matrix of the demo runs

Produced by

    {cp.command_line('benchmarks/survival_table.py', raw)}

on {stamp}, {len(list((args.out / 'originals').glob('*.png')))} demo images (`--images {args.images}{' --spread' if args.spread else ''}` of
`python -m evaluator.demo.demo_data --out data/demo`, 512x384), {cp.machine_line(env)}. The script runs
`pp-attack` for every method of `pp-attack --list` with its default settings against the task model (brisque),
plus `ifgsm` and `pgd-l2` with `--set through_jpeg=true`, then

    pp-evaluate --originals OUT/originals --runs OUT/runs --out RESULTS --matrix

({seconds:.0f} s for that call, which reuses every score already cached in RESULTS/.cache), which scores every run under every defense of `evaluator/defenses.py` and every
embedded BIQA that needs no weights file (koncept512 is skipped with a note), and writes `RESULTS/matrix.csv`.
Runs: {settings}.

Each cell is a run's **accuracy** (share of the eligible originals' submitted images that the BIQA still scores
>= {m.threshold:g}) after that pre-processing; **bold** = qualified (accuracy < {100 * m.max_accuracy:g}%). Eligible
originals are those the model itself scores >= {m.threshold:g} (the task's definition of the test set), so the
number of images differs per model. `{m.official_defense}` with {m.task_model} is the official result (equal to
runs.csv). Rows: most robust first (most defenses it qualifies under, then lowest mean accuracy).

{(chr(10) + chr(10)).join(tables)}

### What breaks each run ({m.task_model}, the model every run attacked)

{sentences}

{fails}

{cp.NOTES_MARKER}
{cp.kept_notes(args.doc)}"""


if __name__ == "__main__":
    try:
        sys.exit(main())
    except cp.CampaignError as exc:
        print(f"{Path(__file__).name}: {exc}", file=sys.stderr)
        sys.exit(2)
