"""pp-evaluate: score Pixel Privacy runs exactly as the organizer does (thin CLI over `evaluator.pipeline`)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from evaluator.common.device import DEVICE_CHOICES
from evaluator.common.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, KitError, exit_code_help
from evaluator.config import load_task
from evaluator.contracts.results import REPORT_HTML

EPILOG = """\
results (in --out):
  runs.csv, scores.csv, selection.csv, task.json, report.html, jury/ (manifest.json, key.json, images/),
  with --matrix also matrix.csv (run, defense, biqa, n_images, accuracy, mean_score, qualified, error) and a
  survival section in report.html, and .cache/ (scores reused by the next run; delete it to rescore everything). The results are links into
  current/, itself a link to the committed generation in .generations/: a new evaluation switches that one
  link only when it fully succeeded, so an interrupted run leaves the previous results as they were and a
  reader never sees old and new files mixed. A generation whose jury is being served or holds votes is left in
  place (its path is logged); a retired jury's key.json and manifest.json are kept in jury-previous-<id>/.

random weights:
  --random-weights SEED builds a model that needs weights (koncept512) with random weights from SEED instead of
  a weights file: the same network in every process, for tests only. Its scores are meaningless, and task.json
  (model.random_weights_seed), runs.csv (column random_weights_seed) and report.html (a banner) say so.

subcommands:
  pp-evaluate codabench-bundle --originals DIR --out bundle.zip [--task T] [--title T] [--image I]
      write a results-only Codabench competition bundle (docs/codabench.md)
  pp-evaluate codabench-check bundle.zip [--submission run.zip] [--keep DIR]
      check a bundle offline; with --submission, score a run with the bundle's own command

""" + exit_code_help() + """
  pp-evaluate: 2 also for an --out in use by another pp-evaluate or whose .cache is unusable (delete it); 130
  leaves the previous results in --out as they were.
"""


class EscapingFormatter(logging.Formatter):
    """Log lines with every non-printable character escaped (`evaluator.common.text.escape_text`): a submitted name
    with a newline or an escape sequence cannot forge a log line or drive the organizer's terminal. Tracebacks
    keep their line breaks and are indented, so none of their lines can pass for a log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from evaluator.common.text import escape_text

        return escape_text(super().formatMessage(record))

    def formatException(self, ei) -> str:  # noqa: ANN001 - logging's exc_info tuple
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        from evaluator.common.text import escape_text

        return "\n".join("    " + escape_text(line) for line in text.split("\n"))


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr through `EscapingFormatter` (pp-evaluate and the Codabench scoring program)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pp-evaluate",
        description="Score Pixel Privacy runs as the organizer does: JPEG-compress every submitted image with "
        "the organizer codec, score it with the BIQA, compute accuracy, the gate, the robustness and "
        "fidelity scores, select the jury images and write the blinded jury package.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--originals", required=True, type=Path, help="folder of original <id>.png images")
    parser.add_argument("--runs", required=True, type=Path, help="folder holding one folder or .zip per run")
    parser.add_argument("--out", required=True, type=Path, help="results folder (created if missing)")
    parser.add_argument("--task", type=Path, default=None, help="task rules (task.toml); default: the 2020 rules")
    parser.add_argument("--biqa", default=None, help="BIQA model name (default: the task's biqa.model)")
    parser.add_argument("--biqa-weights", type=Path, default=None,
                        help="weights file of a model that needs one (koncept512: the organizers' checkpoint)")
    parser.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                        help="tests only: no weights file, random weights from SEED (scores are meaningless and "
                             "every output says so)")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} or cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call (default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of the model in the main process (default 1: the --workers "
                             "processes use the other cores, and 2 torch threads on 2 busy cores busy-wait)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that decode, JPEG-compress, compute PSNR/SSIM and make the report's images "
                             "beside the model (default: one per CPU, at most 8; 0 = all in this process; at most 4 "
                             "per CPU); the numbers do not depend on it")
    parser.add_argument("--matrix", action="store_true",
                        help="also write matrix.csv: every scored run under every defense (pre-processing) and every "
                             "BIQA, and a survival section in report.html (see README: the survival matrix)")
    parser.add_argument("--defenses", default=None, metavar="A,B",
                        help="with --matrix: defenses or chains to use (default: the whole catalogue of "
                             "evaluator/defenses.py: none, jpeg95, jpeg90, jpeg75, jpeg50, webp80, resize50, resize75, "
                             "blur0.5, blur1, median3, bits5, social)")
    parser.add_argument("--models", default=None, metavar="M1,M2",
                        help="with --matrix: BIQA models (default: every registered one; a model that needs weights "
                             "is skipped with a note unless it is the scoring model with --biqa-weights)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _fail(code: int, message: str) -> int:
    print(f"pp-evaluate: error: {' '.join(message.split())}", file=sys.stderr)
    return code


#: `pp-evaluate SUBCOMMAND ...`: module whose main(argv) runs it (the scoring form above takes no subcommand)
SUBCOMMANDS = {"codabench-bundle": "evaluator.outputs.codabench_bundle",
               "codabench-check": "evaluator.outputs.codabench_check"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 1:
        return _fail(EXIT_USAGE, f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 1:
        return _fail(EXIT_USAGE, f"--threads must be >= 1, got {args.threads}")
    if args.workers is not None and args.workers < 0:
        return _fail(EXIT_USAGE, f"--workers must be >= 0, got {args.workers}")
    from evaluator.common.worker_pool import cpu_count, max_workers

    if args.workers is not None and args.workers > max_workers():
        return _fail(EXIT_USAGE, f"--workers {args.workers} is more than {max_workers()} (4 per CPU this process may "
                                 f"use, {cpu_count()} here): each worker holds a process and its images; leave "
                                 "--workers out for one per CPU")
    import torch

    torch.set_num_threads(args.threads)
    try:
        return _evaluate(args)
    except KitError as exc:  # each stage's error carries its exit code (evaluator.common.errors)
        return _fail(exc.exit_code, str(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, f"interrupted; the previous results in {args.out} are left as they were")


def _evaluate(args: argparse.Namespace) -> int:
    task = load_task(args.task)
    if not args.runs.is_dir():
        return _fail(EXIT_USAGE, f"{args.runs}: runs folder not found; pass --runs a folder holding one folder "
                                 "or .zip per run")

    from evaluator.intake.runs import index_originals

    index_originals(args.originals)

    from evaluator.biqa import create

    name = args.biqa or task.biqa.model
    # its errors name the problem (unknown name: 2; weights, device: 4) and reach main's KitError handler as they are
    model = create(name, weights=args.biqa_weights, device=args.device, random_weights_seed=args.random_weights)

    from evaluator.pipeline import evaluate

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(EXIT_USAGE, f"{args.out}: cannot create the results folder ({exc}); pass a writable --out")
    if name != task.biqa.model:
        import dataclasses

        task = dataclasses.replace(task, biqa=dataclasses.replace(task.biqa, model=name))
    step = None
    if args.matrix or args.defenses is not None or args.models is not None:
        if not args.matrix:
            return _fail(EXIT_USAGE, "--defenses and --models choose the cells of --matrix; add --matrix")
        from evaluator.outputs.survival import build_matrix_step

        step = build_matrix_step(args.defenses, args.models, task, name, model, device=args.device,
                                 batch_size=args.batch_size, workers=args.workers,
                                 progress=None if args.no_progress else lambda m: print(m, file=sys.stderr))
        for note in step.notes:
            print(f"pp-evaluate: matrix: {note}", file=sys.stderr)
    # the imported libraries and the model live until exit: moved out of the garbage collector's view, they are
    # not traversed by its collections during the run (nor copied into forked workers by them), nor at exit
    gc.freeze()
    result = evaluate(args.originals, args.runs, args.out, task, model, batch_size=args.batch_size,
                      progress=not args.no_progress, extra=step,
                      workers=args.workers)
    gc.freeze()  # what the run left alive is freed at exit without a last full collection over it
    if step is not None and step.result is not None:
        from evaluator.contracts.results import MATRIX_CSV

        m = step.result
        print(f"pp-evaluate: matrix: {len(m.runs)} run(s) x {len(m.defenses)} defense(s) x {len(m.models)} model(s), "
              f"{m.computed} score(s) computed, {m.reused} reused from the cache; {args.out / MATRIX_CSV}",
              file=sys.stderr)
    n_q = sum(r.qualified for r in result.runs)
    n_inv = sum(r.status == "invalid" for r in result.runs)
    print(f"pp-evaluate: {len(result.runs)} run(s), {n_inv} invalid, {n_q} qualified; "
          f"report: {args.out / REPORT_HTML}", file=sys.stderr)
    note = model.info.random_weights_note()
    if note is not None:
        print(f"pp-evaluate: WARNING: {note}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
