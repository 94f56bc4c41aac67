"""`pp-evaluate --matrix`: the survival matrix as an extra step of one evaluation (`evaluator.pipeline.ExtraStep`).

`MatrixStep(models, defenses, task)` runs after the official scoring, under the results lock: it scores the matrix
(`evaluator.scoring.matrix.survival_matrix`, cached in OUT/.cache), writes matrix.csv into the generation being
written (`evaluator.contracts.results.MATRIX_COLUMNS`, through the kit's CSV writer; committed with the rest,
atomically) and gives the report its survival section (`evaluator.outputs.report_survival`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluator.biqa.base import BIQAModel
from evaluator.config import TaskConfig
from evaluator.contracts.results import MATRIX_COLUMNS, MATRIX_CSV, write_csv
from evaluator.outputs.report_survival import survival_sections
from evaluator.pipeline import CACHE_DIR, CACHE_FILE, ExtraOutputs
from evaluator.scoring.matrix import MatrixResult, matrix_rows, survival_matrix


@dataclass
class MatrixStep:
    """The `extra` step of `evaluator.pipeline.evaluate` that adds matrix.csv and the report's survival section."""

    models: Mapping[str, BIQAModel]
    defenses: Sequence[str]
    task: TaskConfig
    batch_size: int = 8
    notes: Sequence[str] = ()
    progress: Callable[[str], None] | None = None
    workers: int | None = None  # processes for the matrix's images (None: `default_workers()`; 0: this process)
    result: MatrixResult | None = field(default=None, init=False)  # set once the step ran

    def __call__(self, staging: Path, evaluation: Any, meta: dict, runs: Mapping[str, Any],
                 original_paths: Mapping[str, Path]) -> ExtraOutputs:
        scored = {r.run for r in evaluation.runs if r.status == "scored"}
        out_dir = Path(evaluation.out_dir)
        self.result = survival_matrix(
            {name: v for name, v in runs.items() if name in scored}, sorted(original_paths), original_paths,
            self.models, self.defenses, self.task, out_dir / CACHE_DIR / CACHE_FILE, batch_size=self.batch_size,
            notes=self.notes, progress=self.progress, workers=self.workers)
        write_csv(staging / MATRIX_CSV, MATRIX_COLUMNS, matrix_rows(self.result))
        return ExtraOutputs(names=(MATRIX_CSV,), sections=tuple(survival_sections(self.result)))


def model_names(text: str | None) -> list[str]:
    """`--models a,b` -> registry names (every registered BIQA when empty); `UnknownBIQAError` lists the known."""
    from evaluator.biqa.registry import available, spec

    if text is None or not text.strip():
        return available()
    found: list[str] = []
    for part in text.split(","):
        name = spec(part.strip()).name  # raises naming the available models (exit 2)
        if name not in found:
            found.append(name)
    return found


def build_matrix_step(defenses: str | None, models: str | None, task: TaskConfig, official_name: str,
                      official_model: BIQAModel, *, device: str = "cpu", batch_size: int = 8,
                      progress: Callable[[str], None] | None = None, workers: int | None = None) -> MatrixStep:
    """The `--matrix` step from the CLI's `--defenses` and `--models` text: names checked first (an unknown one
    lists the known ones), then the models built; the task's own model is `official_model` (with its weights);
    any other model that needs a weights file (koncept512) is skipped with a note. `workers`: as `--workers`
    (None: `default_workers()`)."""
    from evaluator.biqa import create
    from evaluator.biqa.registry import spec
    from evaluator.scoring.matrix import parse_defenses

    chains = parse_defenses(defenses)
    names = model_names(models)
    built: dict[str, BIQAModel] = {}
    notes: list[str] = []
    for name in names:
        if name == official_name:
            built[name] = official_model
        elif spec(name).needs_weights:
            notes.append(f"{name}: skipped, it needs a weights file; to include it, make it the scoring model: "
                         f"--biqa {name} --biqa-weights FILE")
        else:
            built[name] = create(name, device=device)
    if not built:
        from evaluator.common.errors import ConfigError

        raise ConfigError(f"--models {models!r}: no model left to score ({'; '.join(notes)}); name a model that "
                          "needs no weights file (brisque, niqe, piqe)")
    return MatrixStep(models=built, defenses=chains, task=task, batch_size=batch_size, notes=tuple(notes),
                      progress=progress, workers=workers)
