"""The results contract: the files `pp-evaluate --out OUT` writes, their names and columns, and their writer and
reader. `evaluator/pipeline.py` writes them through this module; readers (the demo, benchmarks, the Codabench
adapter, participants' scripts) read them through it.

    OUT/runs.csv        one row per run (`RUNS_COLUMNS`; invalid runs have status `invalid` and an `error`)
    OUT/scores.csv      one row per (run, image) of the scored runs (`SCORES_COLUMNS`)
    OUT/selection.csv   the jury images (`SELECTION_COLUMNS`)
    OUT/task.json       the rules, model, codec, library versions, originals and jury note of the evaluation
    OUT/report.html     the self-contained report (`evaluator.outputs.report`)
    OUT/jury/           the jury package (`evaluator.contracts.jury_package`)
    OUT/matrix.csv      with `pp-evaluate --matrix` only: the survival matrix, one row per (run, defense, BIQA)
                        (`MATRIX_COLUMNS`, `evaluator.scoring.matrix`); not in `RESULT_NAMES` (an evaluation
                        without --matrix has none: the link OUT/matrix.csv then points at nothing)

CSV cells: '' for None/NaN, `true`/`false`, `inf`/`-inf`, the shortest round-trip repr of a float; every text
cell through `evaluator.common.csv_safe` (a cell that a spreadsheet would run as a formula gets a leading `'`;
`read_csv` removes it). task.json is strict JSON: NaN and infinities are written as null.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluator.common.csv_safe import CsvWriter, safe_text, unsafe_text

RUNS_CSV = "runs.csv"
SCORES_CSV = "scores.csv"
SELECTION_CSV = "selection.csv"
TASK_JSON = "task.json"
REPORT_HTML = "report.html"
JURY_DIR = "jury"
MATRIX_CSV = "matrix.csv"
#: everything one evaluation writes (each a link into the committed generation, `evaluator.outputs.results_io`)
RESULT_NAMES = (RUNS_CSV, SCORES_CSV, SELECTION_CSV, TASK_JSON, REPORT_HTML, JURY_DIR)

RUNS_COLUMNS = (
    "run", "status", "error", "n_images", "accuracy", "accuracy_reduction", "qualified", "mean_score",
    "abs_gain", "rel_gain", "robustness_score", "wasserstein_score", "energy_score", "psnr", "ssim", "warning",
    "random_weights_seed",  # empty, or the seed of the RANDOM BIQA weights the scores come from (meaningless)
)
SCORES_COLUMNS = ("run", "image", "score_clean", "score", "low_quality", "psnr", "ssim")
SELECTION_COLUMNS = ("image", "variance", "rank")
#: matrix.csv: accuracy / qualified as in runs.csv, under pre-processing `defense` (a name or chain of
#: `evaluator.defenses`) and model `biqa`, over the originals that model calls high quality; `error` (last) is
#: empty, or why the cell has no numbers (a defense or the model failed on one of the run's images; then
#: n_images is 0 and accuracy, mean_score and qualified are empty)
MATRIX_COLUMNS = ("run", "defense", "biqa", "n_images", "accuracy", "mean_score", "qualified", "error")


# -- CSV ---------------------------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """One CSV cell: '' for None/NaN, 'true'/'false', 'inf', shortest round-trip repr for floats; text through
    `evaluator.common.csv_safe.safe_text` (a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`: never a formula)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return safe_text(str(value))


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write `rows` (dicts with exactly `columns`) as UTF-8 CSV with a header line (flushed to disk), through the
    kit's one writer `evaluator.common.csv_safe.CsvWriter` (text cells spreadsheet-safe, a cell with CR kept in its
    row); values that are not text are formatted by `cell`."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = CsvWriter(f, number=cell)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
        f.flush()
        os.fsync(f.fileno())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV `write_csv` wrote, with every cell's original text (`unsafe_text`)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{unsafe_text(k): unsafe_text(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plain_json(value: Any) -> Any:
    """`value` with NaN and infinities replaced by null (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def write_task_json(path: Path, meta: Mapping[str, Any]) -> None:
    """Write task.json: `meta` as strict JSON (`plain_json`), indented, one trailing newline."""
    Path(path).write_text(json.dumps(plain_json(meta), indent=2, allow_nan=False) + "\n", encoding="utf-8")
