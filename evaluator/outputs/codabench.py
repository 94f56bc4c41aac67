"""Codabench / CodaLab scoring program: `python -m evaluator.outputs.codabench INPUT OUTPUT`.

Convention: `INPUT/ref/` holds the reference data (the original `<id>.png` images, and optionally the
`task.toml` of the competition), `INPUT/res/` holds one participant submission: the run's files
(`<id>.png|jpg` and `run.json`) at its root, or one run folder / `.zip` inside it. Writes:
- `OUTPUT/scores.json`: {"accuracy", "accuracy_reduction", "qualified" (1 or 0), "mean_score", "psnr", "ssim",
  "abs_gain", "rel_gain", "robustness_score", "wasserstein_score", "energy_score"}, plus "random_weights_seed"
  when the model scored with random weights (`--random-weights SEED`, tests only: the scores are meaningless).
  A value that is not finite (e.g. the PSNR of a run with an untouched image) is left out, and said so on stderr:
  Codabench stores each score in a NOT NULL `DecimalField(max_digits=20, decimal_places=10)`
  (`leaderboards.models.SubmissionScore`), so a null would fail the upload of every score of the submission,
  while a missing key only leaves that leaderboard cell empty;
- `OUTPUT/scores.txt`: every key as `key: value` lines, NaN for a value that is not finite (CodaLab);
- `OUTPUT/detailed_results.html`: the per-image table and the gallery of the run, or the problems of an invalid
  one (`evaluator.outputs.codabench_details`; Codabench shows it with `enable_detailed_results: true`);
- `OUTPUT/details/`: the full results of `pp-evaluate` (runs.csv, scores.csv, selection.csv, task.json,
  report.html, jury/) as plain files: the evaluation runs in a scratch results folder outside OUTPUT, and only
  its committed generation is copied, so the platform's zip of OUTPUT holds each file once and no link, no
  `.generations/`, `.cache/` or `.lock`.
An invalid submission writes its problems to stderr and exits 1, so the platform shows them to the participant.

On Codabench a result submission goes through a prediction step first (the compute worker copies the unpacked zip
to its output and adds its own status file `metadata`: `exitCode`, `elapsedTime`, `ingestionExitCode`,
`ingestionElapsedTime`), and that output becomes INPUT/res. That file is the platform's, not the participant's: the
run is scored without it (`without_worker_metadata`); any other `metadata` file is an extra file of the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from evaluator.common.errors import IntakeError, ModelError, OriginalsError
from evaluator.config import TaskConfigError, load_task
from evaluator.common.atomic import write_text_atomic
from evaluator.cli import setup_logging
from evaluator.common.text import show_name
from evaluator.contracts.run_folder import RUN_JSON

#: the status file Codabench's compute worker writes next to a result submission's files (`Run.push_output`)
WORKER_METADATA = "metadata"
WORKER_METADATA_KEYS = ("exitCode", "elapsedTime", "ingestionExitCode", "ingestionElapsedTime")
SCORE_KEYS = ("accuracy", "accuracy_reduction", "qualified", "mean_score", "psnr", "ssim", "abs_gain",
              "rel_gain", "robustness_score", "wasserstein_score", "energy_score")
EXIT_INVALID_SUBMISSION, EXIT_SETUP = 1, 2


class SubmissionLayoutError(IntakeError, ValueError):
    """INPUT/res does not hold one run (the message says what was found)."""


def locate_run(res: Path) -> Path:
    """The run inside `res`: `res` itself when it holds run.json or images, else its single folder or zip."""
    if not res.is_dir():
        raise SubmissionLayoutError(f"{res}: submission folder not found; the platform should unpack the "
                                    "submission there")
    entries = [p for p in sorted(res.iterdir()) if not p.name.startswith(".") and p.name != "__MACOSX"]
    if any(p.name == RUN_JSON or p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in entries):
        return res
    runs = [p for p in entries if p.is_dir() or p.suffix.lower() == ".zip"]
    if len(runs) == 1:
        return runs[0]
    raise SubmissionLayoutError(
        f"{res}: expected one run (its images and run.json at the top of the zip you upload, or one run "
        f"folder), found {len(runs)} folders/zips: {', '.join(p.name for p in runs) or 'nothing'}")


def is_worker_metadata(path: Path) -> bool:
    """Whether `path` is the compute worker's status file: a small YAML mapping of `WORKER_METADATA_KEYS` only."""
    import yaml

    if path.name != WORKER_METADATA or path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and bool(data) and set(data) <= set(WORKER_METADATA_KEYS)


def without_worker_metadata(run_path: Path, staging: Path) -> Path:
    """`run_path`, or, when it holds the compute worker's status file, a copy of it in `staging` without that file
    (links copied as links, so the intake still refuses them; the copy keeps the run's folder name)."""
    if not run_path.is_dir() or not is_worker_metadata(run_path / WORKER_METADATA):
        return run_path
    copy = staging / run_path.name
    shutil.copytree(run_path, copy, symlinks=True,
                    ignore=lambda folder, names: [WORKER_METADATA] if Path(folder) == run_path else [])
    return copy


def score_values(row: object) -> dict[str, float | int | None]:
    """The scores.json values of a runs.csv row (`evaluator.scoring.results.RunResult`)."""
    out: dict[str, float | int | None] = {}
    for key in SCORE_KEYS:
        value = getattr(row, key)
        if key == "qualified":
            out[key] = int(bool(value))
        else:
            out[key] = float(value) if math.isfinite(value) else None
    return out


def publish_details(results: Path, details: Path) -> None:
    """Copy the committed generation of the results folder `results` to `details` as plain files and folders
    (`OUT/current` resolved; never its links, `.generations/`, `.cache/` or `.lock`), replacing what was there."""
    from evaluator.outputs.results_io import committed_generation

    gen = committed_generation(results)
    if gen is None:
        return
    if details.is_symlink() or details.is_file():
        details.unlink()
    elif details.exists():
        shutil.rmtree(details)
    shutil.copytree(gen, details, ignore=_links)  # a generation holds no link; one would be left out


def _links(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if os.path.islink(os.path.join(folder, n))]


def scores_json(values: dict[str, float | int | None]) -> dict[str, float | int]:
    """scores.json's content: `values` without the keys whose value is not finite (None)."""
    return {k: v for k, v in values.items() if v is not None}


def build_parser() -> argparse.ArgumentParser:
    """The scorer's arguments (also read by `pp-evaluate codabench-check` to check a bundle's command)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluator.outputs.codabench",
        description="Codabench/CodaLab scoring program: INPUT/ref = originals (+ optional task.toml), "
        "INPUT/res = one run; writes OUTPUT/scores.json, OUTPUT/scores.txt and OUTPUT/detailed_results.html. "
        "Exit 1: the submission is invalid (problems on stderr); 2: the scoring setup is broken (originals, task "
        "file, model).",
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--task", type=Path, default=None, help="task.toml (default: INPUT/ref/task.toml if any)")
    parser.add_argument("--biqa-weights", type=Path, default=None,
                        help="weights file of a model that needs one (koncept512: the organizers' checkpoint)")
    parser.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                        help="tests only: no weights file, random weights from SEED (meaningless scores, marked in "
                             "scores.json as random_weights_seed and in every file of details/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, as pp-evaluate: the same float reductions, so the same "
                             "numbers as the organizer's pp-evaluate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.threads < 1:
        print(f"scoring setup: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return EXIT_SETUP
    import torch

    torch.set_num_threads(args.threads)

    ref, res, out = args.input / "ref", args.input / "res", args.output
    task_path = args.task or (ref / "task.toml" if (ref / "task.toml").is_file() else None)
    try:
        task = load_task(task_path)
    except TaskConfigError as exc:
        print(f"scoring setup: {exc}", file=sys.stderr)
        return EXIT_SETUP
    from evaluator.biqa import create

    try:  # the scorer's own setup first: a broken setup must not be reported as the participant's fault
        model = create(task.biqa.model, weights=args.biqa_weights, device=args.device,
                       random_weights_seed=args.random_weights)
    except ModelError as exc:  # missing weights, weights that do not load, a device: the message names which
        print(f"scoring setup: {exc}", file=sys.stderr)
        return EXIT_SETUP
    try:
        run_path = locate_run(res)
    except SubmissionLayoutError as exc:
        print(f"invalid submission: {exc}", file=sys.stderr)
        from evaluator.outputs.codabench_details import DETAILED_RESULTS_HTML, render_invalid, write_page

        out.mkdir(parents=True, exist_ok=True)
        write_page(out / DETAILED_RESULTS_HTML, render_invalid(res.name, [str(exc)]))
        return EXIT_INVALID_SUBMISSION
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pp-codabench-res-") as staging:
        return _score(args, task, model, ref, without_worker_metadata(run_path, Path(staging)), out)


def _score(args: argparse.Namespace, task: object, model: object, ref: Path, run_path: Path, out: Path) -> int:
    """Score the run at `run_path` into `out` (scores.json, scores.txt, detailed_results.html, details/)."""
    from evaluator.pipeline import evaluate_runs
    from evaluator.outputs import codabench_details as details

    page = out / details.DETAILED_RESULTS_HTML
    details.write_page(page, details.render_pending(run_path.name))
    with tempfile.TemporaryDirectory(prefix="pp-codabench-") as scratch:
        try:
            result = evaluate_runs(ref, [run_path], Path(scratch) / "results", task, model,
                                   batch_size=args.batch_size, progress=False)
        except OriginalsError as exc:
            print(f"scoring setup: {exc}", file=sys.stderr)
            page.unlink(missing_ok=True)
            return EXIT_SETUP
        publish_details(Path(scratch) / "results", out / "details")
    (row,) = result.runs
    if row.status != "scored":
        print(f"invalid submission ({show_name(row.run)}):", file=sys.stderr)
        for problem in row.error.split(" | "):
            print(f"  - {show_name(problem)}", file=sys.stderr)
        details.write_page(page, details.render_invalid(row.run, row.error.split(" | ")))
        return EXIT_INVALID_SUBMISSION
    values = score_values(row)
    note = model.info.random_weights_note()
    if note is not None:  # never published silently: the platform shows stderr, and the seed is in scores.json
        print(f"WARNING: {note}", file=sys.stderr)
        values["random_weights_seed"] = model.info.random_weights_seed
    left_out = [k for k, v in values.items() if v is None]
    if left_out:
        print(f"note: {', '.join(left_out)} not finite (e.g. PSNR of an unchanged image): left out of scores.json, "
              "so its leaderboard cell stays empty", file=sys.stderr)
    write_text_atomic(out / "scores.json", json.dumps(scores_json(values), indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "scores.txt", "".join(f"{k}: {'NaN' if v is None else v}\n" for k, v in values.items()))
    from evaluator.codec import OrganizerCodec

    rows = [r for r in result.scores if r.run == row.run]
    thumbs = details.gallery_thumbnails(run_path, ref, [r.image for r in rows], OrganizerCodec.from_task(task))
    details.write_page(page, details.render_scored(row.run, scores_json(values), rows, task.biqa.threshold,
                                                   task.jpeg.quality, thumbs, note))
    print(f"scored {show_name(row.run)}: accuracy {row.accuracy:.3f}, qualified {row.qualified}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
