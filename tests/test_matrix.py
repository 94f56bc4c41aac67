"""The survival matrix (`pp-evaluate --matrix`, `evaluator.scoring.matrix`): every defense of the catalogue through
the matrix, the official cell equal to runs.csv, cache reuse, bad input, a failing defense, the report section.

Models are `BrightnessBIQA` (100 * mean intensity; `scale` makes a second, different model), so each expected
cell is recomputed here from the images: the defense applied with `evaluator.defenses.apply`, then the mean.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluator_fixtures import H, W, BrightnessBIQA, darken, write_originals, write_run

import evaluator.biqa
import evaluator.defenses
from evaluator.cli import main
from evaluator.codec import OrganizerCodec
from evaluator.common.imageio import save_png
from evaluator.config import TaskConfig, task_from_dict
from evaluator.contracts.results import MATRIX_COLUMNS, MATRIX_CSV, RUNS_CSV, read_csv
from evaluator.defenses import apply, names
from evaluator.outputs.report_survival import robustness_order, run_sentence, survival_section
from evaluator.outputs.survival import MatrixStep
from evaluator.pipeline import evaluate
from evaluator.scoring.matrix import Cell, MatrixResult

LEVELS = {"img-a": 0.70, "img-b": 0.62, "img-c": 0.80, "img-d": 0.30, "img-e": 0.58}  # img-d: below 50
EVIL = "evil<img src=x onerror=alert(1)>"
LEVELS_SHAPE = (H, W)  # the size of the images `write_originals` makes


def _brightness(rgb: np.ndarray, scale: float = 1.0) -> float:
    return float(100 * scale * np.mean(rgb.astype(np.float32) / 255))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """pp-evaluate's default (--threads 1): then the test models, which are not registered thread_independent, are
    scored in the worker processes too (`evaluator.scoring.matrix._runs_in_workers`), whatever ran before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def setup(tmp_path):
    originals = write_originals(tmp_path / "originals", LEVELS)
    runs = tmp_path / "runs"
    runs.mkdir()
    submitted = {
        "dark": {k: darken(v, 0.6) for k, v in originals.items()},
        "mild": {k: darken(v, 0.9) for k, v in originals.items()},
        EVIL: dict(originals),
    }
    for run, images in submitted.items():
        write_run(runs, run, images)
    return tmp_path, originals, submitted


def _models() -> dict[str, BrightnessBIQA]:
    return {"brisque": BrightnessBIQA(), "niqe": BrightnessBIQA(scale=0.85)}


def _evaluate(tmp_path: Path, defenses, models=None, task: TaskConfig | None = None, workers: int | None = None,
              out: str = "out"):
    task = task or TaskConfig()
    models = models or _models()
    step = MatrixStep(models=models, defenses=list(defenses), task=task, batch_size=3, workers=workers)
    result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / out, task, models[task.biqa.model],
                      batch_size=3, progress=False, extra=step, workers=workers)
    return result, step.result


def _cells(tmp_path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(r["run"], r["defense"], r["biqa"]): r for r in read_csv(tmp_path / "out" / MATRIX_CSV)}


def test_every_defense_of_the_catalogue_gives_the_cells_recomputed_from_the_images(setup):
    tmp_path, originals, submitted = setup
    _, matrix = _evaluate(tmp_path, names())
    with (tmp_path / "out" / MATRIX_CSV).open(encoding="utf-8") as f:
        assert next(csv.reader(f)) == list(MATRIX_COLUMNS)
    cells = _cells(tmp_path)
    assert len(cells) == len(submitted) * len(names()) * 2
    codec = OrganizerCodec()
    for model, scale in (("brisque", 1.0), ("niqe", 0.85)):
        eligible = [i for i in sorted(originals) if _brightness(originals[i], scale) >= 50]
        assert "img-d" not in eligible and eligible
        for run, images in submitted.items():
            for defense in names():
                scores = [_brightness(apply(defense, images[i], codec), scale) for i in eligible]
                row = cells[(run, defense, model)]
                accuracy = float(np.mean([s >= 50 for s in scores]))
                assert row["error"] == "" and int(row["n_images"]) == len(eligible), (run, defense, model)
                assert float(row["accuracy"]) == accuracy, (run, defense, model)
                assert float(row["mean_score"]) == pytest.approx(np.mean(scores), abs=1e-3)
                assert row["qualified"] == ("true" if accuracy < 0.5 else "false")
    assert matrix.cell("dark", "none", "brisque").qualified and not matrix.cell(EVIL, "none", "brisque").qualified


def test_the_official_cell_equals_runs_csv(setup):
    tmp_path, _, submitted = setup
    _evaluate(tmp_path, ["none", "jpeg90", "blur1"])
    runs = {r["run"]: r for r in read_csv(tmp_path / "out" / RUNS_CSV)}
    cells = _cells(tmp_path)
    for run in submitted:
        cell = cells[(run, "jpeg90", "brisque")]
        for key in ("n_images", "accuracy", "mean_score", "qualified"):
            assert cell[key] == runs[run][key], (run, key)


def test_a_task_chain_is_the_official_pre_processing_and_its_cell_equals_runs_csv(setup):
    tmp_path, originals, submitted = setup
    task = task_from_dict({"preprocess": {"chain": "blur1+jpeg90"}})
    _evaluate(tmp_path, ["jpeg90", "blur1+jpeg90"], task=task)
    runs = {r["run"]: r for r in read_csv(tmp_path / "out" / RUNS_CSV)}
    cells = _cells(tmp_path)
    eligible = [i for i in sorted(originals) if _brightness(originals[i]) >= 50]
    for run, images in submitted.items():
        expected = np.mean([_brightness(apply("blur1+jpeg90", images[i])) for i in eligible])
        assert float(runs[run]["mean_score"]) == pytest.approx(expected, abs=1e-3)
        for key in ("accuracy", "mean_score", "qualified"):
            assert cells[(run, "blur1+jpeg90", "brisque")][key] == runs[run][key], (run, key)
    assert any(cells[(r, "jpeg90", "brisque")]["mean_score"] != runs[r]["mean_score"] for r in submitted)
    meta = json.loads((tmp_path / "out" / "task.json").read_text())
    assert meta["rules"]["preprocess"] == {"chain": "blur1+jpeg90"}


def test_a_second_run_scores_nothing_and_a_new_defense_or_run_scores_only_its_cells(setup):
    tmp_path, originals, _ = setup
    _, first = _evaluate(tmp_path, ["none", "jpeg90"])
    assert first.computed > 0
    _, again = _evaluate(tmp_path, ["none", "jpeg90"])
    assert again.computed == 0
    before = _cells(tmp_path)
    _, more = _evaluate(tmp_path, ["none", "jpeg90", "median3"])
    assert more.computed == 3 * len(originals) * 2  # 3 runs x 5 images x 2 models, median3 only
    after = _cells(tmp_path)
    assert {k: v for k, v in after.items() if k[1] != "median3"} == before
    write_run(tmp_path / "runs", "new", {k: darken(v, 0.7) for k, v in originals.items()})
    _, new_run = _evaluate(tmp_path, ["none", "jpeg90", "median3"])
    # the new run: 3 defenses x 5 images x 2 models, less its jpeg90 brisque scores (the pipeline scored them)
    assert new_run.computed == 3 * len(originals) * 2 - len(originals)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_defense_that_fails_on_one_image_marks_only_its_cells(setup, monkeypatch, workers):
    """In this process or in the workers (which inherit the patched filter), the failure comes back as that cell's
    error and the pool goes on."""
    tmp_path, originals, submitted = setup
    real = evaluator.defenses.median3x3
    marker = submitted["mild"]["img-b"]

    raised_in = tmp_path / "raised-in"

    def flaky(image, *args, **kwargs):
        if image.shape == marker.shape and np.array_equal(image, marker):
            raised_in.write_text(str(os.getpid()))
            raise MemoryError("simulated")  # not a ValueError: any exception of a defense is caught
        return real(image, *args, **kwargs)

    monkeypatch.setattr(evaluator.defenses, "median3x3", flaky)
    _evaluate(tmp_path, ["median3", "jpeg90"], workers=workers)
    assert (int(raised_in.read_text()) == os.getpid()) == (workers == 0)
    cells = _cells(tmp_path)
    for model in ("brisque", "niqe"):
        bad = cells[("mild", "median3", model)]
        assert "median3 failed on img-b" in bad["error"] and "MemoryError" in bad["error"]
        assert bad["accuracy"] == "" and bad["n_images"] == "0"
        assert bad["qualified"] == ""  # not 'false': a failed cell says nothing about the gate
        assert cells[("mild", "jpeg90", model)]["error"] == ""
        assert cells[("dark", "median3", model)]["error"] == "" and cells[("dark", "median3", model)]["accuracy"]


# -- the CLI --------------------------------------------------------------------------------------------------
def _args(d: Path, *extra: str) -> list[str]:
    return ["--originals", str(d / "originals"), "--runs", str(d / "runs"), "--out", str(d / "out"),
            "--no-progress", *extra]


@pytest.fixture()
def brightness_everywhere(monkeypatch):
    made: list[str] = []

    def create(name="brisque", *args, **kwargs):
        made.append(name)
        return BrightnessBIQA(scale={"brisque": 1.0, "niqe": 0.85, "piqe": 0.8}.get(name, 1.0))

    monkeypatch.setattr(evaluator.biqa, "create", create)
    return made


def test_cli_matrix_writes_matrix_csv_and_the_report_section_with_names_escaped(setup, brightness_everywhere, capsys):
    tmp_path, _, submitted = setup
    assert main(_args(tmp_path, "--matrix", "--defenses", "jpeg90,resize75+jpeg90", "--models", "brisque,piqe")) == 0
    cells = _cells(tmp_path)
    assert {k[1] for k in cells} == {"jpeg90", "resize75+jpeg90"} and {k[2] for k in cells} == {"brisque", "piqe"}
    assert {k[0] for k in cells} == set(submitted)
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Survival matrix</h2>" in report and "Transfer" in report
    assert EVIL not in report and "evil&lt;img src=x" in report
    assert "matrix: 3 run(s) x 2 defense(s) x 2 model(s)" in capsys.readouterr().err


@pytest.mark.parametrize("flag, expected", [(["--workers", "0"], 0), (["--workers", "1"], 1), ([], None)])
def test_cli_workers_reach_the_matrix(setup, brightness_everywhere, monkeypatch, flag, expected):
    """`pp-evaluate --matrix --workers N` computes the matrix with N worker processes too (None: the default)."""
    import evaluator.outputs.survival as survival

    seen = []
    real = survival.survival_matrix

    def spy(*args, **kwargs):
        seen.append(kwargs.get("workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(survival, "survival_matrix", spy)
    tmp_path, _, _ = setup
    assert main(_args(tmp_path, "--matrix", "--defenses", "jpeg90", "--models", "brisque", *flag)) == 0
    assert seen == [expected]


def test_cli_skips_a_model_that_needs_weights_with_a_note(setup, brightness_everywhere, capsys):
    tmp_path, _, _ = setup
    assert main(_args(tmp_path, "--matrix", "--defenses", "jpeg90", "--models", "brisque,koncept512")) == 0
    err = capsys.readouterr().err
    assert "koncept512: skipped, it needs a weights file" in err and "--biqa-weights" in err
    assert "koncept512" not in brightness_everywhere
    assert {k[2] for k in _cells(tmp_path)} == {"brisque"}


@pytest.mark.parametrize("extra, fragments", [
    (["--matrix", "--defenses", "jpeg90,jpg75"], ["unknown defense 'jpg75'", "did you mean 'jpeg75'",
                                                  "known defenses: none, jpeg95", "social"]),
    (["--matrix", "--defenses", "resize75+"], ["--defenses", "empty part"]),
    (["--matrix", "--models", "brisque,niqee"], ["unknown BIQA model 'niqee'", "available:", "piqe"]),
    (["--matrix", "--models", "koncept512"], ["no model left to score", "koncept512: skipped"]),
    (["--defenses", "jpeg90"], ["add --matrix"]),
    (["--models", "brisque"], ["add --matrix"]),
])
def test_cli_bad_matrix_input_exits_2_naming_the_known_values_and_writes_nothing(setup, brightness_everywhere, capsys,
                                                                                 extra, fragments):
    tmp_path, _, _ = setup
    assert main(_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("pp-evaluate: error: ")]
    assert len(line) == 1, err
    for fragment in fragments:
        assert fragment in line[0], (fragment, line[0])
    assert not (tmp_path / "out" / RUNS_CSV).exists()


def test_without_matrix_no_matrix_csv_is_committed(setup, brightness_everywhere):
    tmp_path, _, _ = setup
    assert main(_args(tmp_path, "--matrix", "--defenses", "jpeg90", "--models", "brisque")) == 0
    assert (tmp_path / "out" / MATRIX_CSV).is_file()
    assert main(_args(tmp_path)) == 0
    assert not (tmp_path / "out" / MATRIX_CSV).exists()  # the link points into a generation that has none
    assert (tmp_path / "out" / RUNS_CSV).is_file()


# -- the report section ----------------------------------------------------------------------------------------
def _synthetic() -> MatrixResult:
    defenses = ("none", "jpeg90", "blur1")
    accuracy = {  # run -> accuracy per defense (brisque); niqe = brisque + 0.3
        "robust": (0.0, 0.1, 0.2), "fragile": (0.0, 0.8, 0.9), EVIL: (0.2, 0.4, 0.7), "weak": (0.9, 1.0, 1.0)}
    cells = []
    for run, accs in accuracy.items():
        for d, a in zip(defenses, accs):
            for m, shift in (("brisque", 0.0), ("niqe", 0.3)):
                acc = min(a + shift, 1.0)
                cells.append(Cell(run, d, m, n_images=10, accuracy=acc, mean_score=40.0, qualified=acc < 0.5))
    return MatrixResult(cells=tuple(cells), runs=tuple(sorted(accuracy)), defenses=defenses,
                        models=("brisque", "niqe"), official_defense="jpeg90", task_model="brisque",
                        max_accuracy=0.5, threshold=50.0, targets={r: "brisque" for r in accuracy},
                        notes=("koncept512: skipped <b>",))


def test_heatmap_rows_most_robust_first_and_one_sentence_naming_what_breaks_each_run():
    result = _synthetic()
    assert robustness_order(result, "brisque") == ["robust", EVIL, "fragile", "weak"]
    # 'none' is named as what it is: "survives none" would read as "survives no defense"
    assert run_sentence(result, "fragile") == ("fragile (brisque): broken by jpeg90, blur1; survives none (no "
                                               "pre-processing).")
    assert run_sentence(result, "robust") == "robust (brisque): survives every defense."
    assert run_sentence(result, "weak") == "weak (brisque): qualifies under no defense."
    html = survival_section(result)
    assert html.index(">robust<") < html.index(">fragile<") < html.index(">weak<")
    assert EVIL not in html and "evil&lt;img" in html and "koncept512: skipped <b>" not in html and "skipped &lt;b&gt;" in html
    assert "#1b9e77" in html  # green = qualified


def test_transfer_table_reads_the_attacked_model_and_marks_it():
    result = dataclasses.replace(_synthetic(), targets={"robust": "niqe", "fragile": "<b>x</b>"})
    html = survival_section(result)
    transfer = html[html.index("Transfer"):]
    row = transfer[transfer.index(">robust<"):].split("</tr>")[0]
    assert ">niqe<" in row and row.count("outline:2px") == 1
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert math.isclose(result.cell("robust", "jpeg90", "niqe").accuracy, 0.4)


@pytest.mark.parametrize("workers, fork", [(0, True), (2, False)])
def test_each_submitted_image_is_decoded_once_and_batches_stay_within_batch_size(setup, monkeypatch, workers, fork):
    """Streaming: the matrix decodes every (run, image) once for all its defenses and models, and no model call
    gets more than batch_size images (the images waiting for a model are bounded, not the whole matrix). Counted
    in this process: workers=0, or workers where processes cannot be forked (the models reach the workers by
    fork only, so the matrix then runs here)."""
    import multiprocessing

    import evaluator.intake.runs as intake

    tmp_path, originals, submitted = setup
    task = TaskConfig()
    models = _models()
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", task, models["brisque"], batch_size=3,
             progress=False)  # the official scoring first: the count below is the matrix's alone
    loads: list[str] = []
    real_load = intake.ImageRef.load

    def counting(self):
        loads.append(self.name)
        return real_load(self)

    sizes: list[int] = []
    for model in models.values():
        real_raw = model.raw_score
        model.raw_score = lambda x, real_raw=real_raw: (sizes.append(x.shape[0]), real_raw(x))[1]
    monkeypatch.setattr(intake.ImageRef, "load", counting)
    if not fork:
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    step = MatrixStep(models=models, defenses=names(), task=task, batch_size=3, workers=workers)
    staging = tmp_path / "staging"
    staging.mkdir()
    step(staging, _Evaluation(tmp_path / "out", submitted), {}, _valid_runs(tmp_path),
         {p.stem: p for p in sorted((tmp_path / "originals").glob("*.png"))})
    assert step.result is not None and step.result.computed > 0
    assert len(loads) == len(submitted) * len(originals)  # once per (run, image), not per defense or model
    assert sizes and max(sizes) <= 3


class _Evaluation:
    def __init__(self, out_dir: Path, runs: dict) -> None:
        from evaluator.scoring.results import RunResult

        self.out_dir = out_dir
        self.runs = tuple(RunResult(run=r, status="scored") for r in runs)


def _valid_runs(tmp_path: Path) -> dict:
    from evaluator.intake.runs import find_runs, index_originals, validate_run

    headers = index_originals(tmp_path / "originals")
    found = [validate_run(p, headers, decode=False) for p in find_runs(tmp_path / "runs")]
    return {v.name: v for v in found if v.valid}


class _PickyBIQA(BrightnessBIQA):
    """Refuses (ValueError, as NIQE refuses a too-small image, or `error`) any batch holding an image of mean
    0.35..0.45 (two images of the run 'dark', none of 'mild' or of the originals)."""

    def __init__(self, error: type[Exception] = ValueError) -> None:
        super().__init__()
        self.error = error

    def raw_score(self, x):
        mean = x.mean(dim=(1, 2, 3))
        if bool(((mean > 0.35) & (mean < 0.45)).any()):
            raise self.error("too dark for this model")
        return super().raw_score(x)


@pytest.mark.parametrize("error, workers", [(ValueError, 2), (IndexError, 0), (ZeroDivisionError, 2)])
def test_a_model_that_cannot_score_an_image_marks_only_its_cells_not_its_batch_mates(setup, error, workers):
    """Whatever a matrix model raises on one image (NIQE/PIQE corner cases are not all ValueErrors), that image's
    cells say so and the evaluation (runs.csv, the other cells) goes on."""
    tmp_path, _, submitted = setup
    models = {"brisque": BrightnessBIQA(), "piqe": _PickyBIQA(error)}
    _evaluate(tmp_path, ["none", "jpeg90"], models=models, workers=workers)
    cells = _cells(tmp_path)
    for d in ("none", "jpeg90"):
        assert "piqe cannot score a 32x24 image" in cells[("dark", d, "piqe")]["error"]
        assert "too dark for this model" in cells[("dark", d, "piqe")]["error"]
        assert cells[("dark", d, "brisque")]["error"] == "" and cells[("dark", d, "brisque")]["accuracy"]
        assert cells[("mild", d, "piqe")]["error"] == "" and cells[("mild", d, "piqe")]["accuracy"]


def test_cli_scores_a_model_that_needs_weights_when_it_is_the_scoring_model_with_its_weights(setup, brightness_everywhere,
                                                                                            capsys):
    tmp_path, _, _ = setup
    assert main(_args(tmp_path, "--biqa", "koncept512", "--random-weights", "3", "--matrix", "--defenses", "jpeg90",
                      "--models", "brisque,koncept512")) == 0
    assert "skipped" not in capsys.readouterr().err
    assert brightness_everywhere.count("koncept512") == 1  # built once, as the scoring model, and reused
    runs = {r["run"]: r for r in read_csv(tmp_path / "out" / RUNS_CSV)}
    cells = _cells(tmp_path)
    assert {k[2] for k in cells} == {"brisque", "koncept512"}
    for run in runs:
        assert cells[(run, "jpeg90", "koncept512")]["accuracy"] == runs[run]["accuracy"]


def test_a_defense_whose_parameters_change_under_the_same_name_is_rescored_not_served_from_the_cache(setup,
                                                                                                     monkeypatch):
    """The cache key of a defense cell holds the defense's parameters, not only its name: a catalogue entry changed
    in place (a new kit checkout with the same version) never serves the old numbers."""
    import evaluator.defenses as defenses

    tmp_path, originals, submitted = setup
    _evaluate(tmp_path, ["none", "jpeg90", "blur1"])
    changed = dict(defenses.DEFENSES)
    changed["blur1"] = dataclasses.replace(changed["blur1"], fn=defenses._gaussian_blur(3.0), params={"sigma": 3.0})
    monkeypatch.setattr(defenses, "DEFENSES", type(defenses.DEFENSES)(changed))
    _, again = _evaluate(tmp_path, ["none", "jpeg90", "blur1"])
    assert again.computed == len(submitted) * len(originals) * 2  # blur1 only: 3 runs x 5 images x 2 models
    cells = _cells(tmp_path)
    eligible = [i for i in sorted(originals) if _brightness(originals[i]) >= 50]
    for run, images in submitted.items():
        expected = np.mean([_brightness(defenses._gaussian_blur(3.0)(images[i], OrganizerCodec())) for i in eligible])
        assert float(cells[(run, "blur1", "brisque")]["mean_score"]) == pytest.approx(expected, abs=1e-3)


def test_a_new_pillow_or_scipy_rescores_the_defense_cells(setup, monkeypatch):
    """WebP, resize and the filters are Pillow's and scipy's: their versions are part of a defense cell's key (the
    official cell keeps the pipeline's key, the task's codec rules)."""
    import importlib.metadata

    tmp_path, originals, submitted = setup
    _evaluate(tmp_path, ["jpeg90", "resize75"])
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "999.0" if name.lower() == "pillow" else real(name))
    _, again = _evaluate(tmp_path, ["jpeg90", "resize75"])
    assert again.computed == len(submitted) * len(originals) * 2  # resize75 only


@pytest.mark.parametrize("rules", [{"jpeg": {"subsampling": "4:4:4", "libjpeg": "6b"}},
                                   {"preprocess": {"chain": "resize75+jpeg90"}}])
def test_the_official_cell_of_another_model_scored_by_the_matrix_itself_equals_that_models_runs_csv(setup, rules):
    """The task model's official cell reads the pipeline's cache entries; another model's official cell is scored by
    the matrix's own code path (cold cache): it must equal runs.csv of `pp-evaluate --biqa niqe` in another folder,
    under a non-default codec and under a longer chain."""
    tmp_path, _, submitted = setup
    task = task_from_dict(rules)
    models = _models()
    _evaluate(tmp_path, [task.preprocess.chain, "none"], models=models, task=task)
    cells = _cells(tmp_path)
    niqe_task = dataclasses.replace(task, biqa=dataclasses.replace(task.biqa, model="niqe"))
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out-niqe", niqe_task, models["niqe"],
             batch_size=3, progress=False)
    runs = {r["run"]: r for r in read_csv(tmp_path / "out-niqe" / RUNS_CSV)}
    for run in submitted:
        cell = cells[(run, task.preprocess.chain, "niqe")]
        for key in ("n_images", "accuracy", "mean_score", "qualified"):
            assert cell[key] == runs[run][key], (run, key)


def test_the_baseline_scores_the_unattacked_originals_under_every_defense_report_only(setup):
    """Besides the runs, the matrix scores the originals themselves under each defense and model (the baseline row of
    the report): recomputed here from the images; matrix.csv keeps one row per run only."""
    import shutil

    from evaluator.outputs.report_survival import BASELINE_LABEL

    tmp_path, originals, submitted = setup
    shutil.rmtree(tmp_path / "runs" / EVIL)  # its images are the originals' own bytes: no run stands in for them
    _, matrix = _evaluate(tmp_path, ["none", "jpeg90", "blur1"])
    assert {c.run for c in matrix.baseline} == {""} and len(matrix.baseline) == 3 * 2
    for model, scale in (("brisque", 1.0), ("niqe", 0.85)):
        eligible = [i for i in sorted(originals) if _brightness(originals[i], scale) >= 50]
        for d in ("none", "jpeg90", "blur1"):
            scores = [_brightness(apply(d, originals[i]), scale) for i in eligible]
            base = matrix.base(d, model)
            assert base is not None and base.error == "" and base.n_images == len(eligible)
            assert base.accuracy == float(np.mean([s >= 50 for s in scores]))
            assert base.mean_score == pytest.approx(np.mean(scores), abs=1e-3)
        assert matrix.base("none", model).accuracy == 1.0  # eligible = the model calls them high quality
    assert {k[0] for k in _cells(tmp_path)} == {"dark", "mild"}
    html = survival_section(matrix)
    for model in ("brisque", "niqe"):
        table = html[html.index(f"<h3>{model}"):]
        assert table.index(BASELINE_LABEL) < table.index(">dark<") and table.index(BASELINE_LABEL) < table.index(">mild<")


def test_a_sentence_says_when_the_unattacked_originals_qualify_under_a_defense_the_run_survives():
    """A pre-processing that makes the originals themselves 'low quality' is no evidence of a camouflage."""
    result = _synthetic()
    base = tuple(Cell("", d, m, n_images=10, accuracy=a, mean_score=45.0, qualified=a < 0.5)
                 for d, a in (("none", 1.0), ("jpeg90", 0.9), ("blur1", 0.3)) for m in ("brisque", "niqe"))
    result = dataclasses.replace(result, baseline=base)
    assert run_sentence(result, "robust") == ("robust (brisque): survives every defense (the unattacked originals "
                                              "qualify under blur1 too).")
    assert run_sentence(result, "fragile").endswith("survives none (no pre-processing).")
    html = survival_section(result)
    assert html.count("originals (no attack)") >= 3  # a baseline row in both heatmaps and in the transfer table


# -- worker processes ------------------------------------------------------------------------------------------
def test_matrix_csv_is_byte_identical_for_0_1_and_2_workers_with_the_embedded_models(tmp_path):
    """brisque, niqe and piqe scored in this process, in one worker and in two: the same matrix.csv, byte for byte
    (batches are formed within one image's job, never across the jobs a worker happens to get)."""
    from parity_images import noisy
    from parity_images import photo as shipped_photo

    originals = {name: np.ascontiguousarray(shipped_photo(name)[:288, :384]) for name in ("astronaut", "chelsea",
                                                                                           "coffee")}
    (tmp_path / "originals").mkdir()
    for image, rgb in originals.items():
        save_png(tmp_path / "originals" / f"{image}.png", rgb)
    (tmp_path / "runs").mkdir()
    write_run(tmp_path / "runs", "noisy", {k: noisy(v) for k, v in originals.items()})
    write_run(tmp_path / "runs", "same", dict(originals))  # the originals' own bytes: one job serves both
    task = task_from_dict({"biqa": {"threshold": 1}})  # every original eligible: every cell has numbers
    models = {m: evaluator.biqa.create(m) for m in ("brisque", "niqe", "piqe")}
    outputs, computed = [], []
    for workers in (0, 1, 2):
        _, matrix = _evaluate(tmp_path, ["none", "jpeg90", "blur1", "resize50", "median3"], models=models, task=task,
                              workers=workers, out=f"out{workers}")
        outputs.append((tmp_path / f"out{workers}" / MATRIX_CSV).read_bytes())
        computed.append(matrix.computed)
        assert all(c.error == "" and c.n_images == 3 for c in (*matrix.cells, *matrix.baseline)), matrix.cells
    assert outputs[0] == outputs[1] == outputs[2]
    assert computed[0] == computed[1] == computed[2] > 0


def test_an_image_that_cannot_be_decoded_in_a_worker_marks_only_its_runs_cells(setup):
    """A submitted image that fails when a worker decodes it again (here: changed since it was validated) marks
    that run's cells with the reason; the pool goes on and every other run's cells have their numbers."""
    tmp_path, originals, submitted = setup
    task = TaskConfig()
    models = _models()
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", task, models["brisque"], batch_size=3,
             progress=False, workers=0)
    valid = _valid_runs(tmp_path)
    (tmp_path / "runs" / "mild" / "img-c.png").write_bytes(b"not a png any more")
    step = MatrixStep(models=models, defenses=["none", "jpeg90", "blur1"], task=task, batch_size=3, workers=2)
    staging = tmp_path / "staging"
    staging.mkdir()
    step(staging, _Evaluation(tmp_path / "out", submitted), {}, valid,
         {p.stem: p for p in sorted((tmp_path / "originals").glob("*.png"))})
    result = step.result
    assert result is not None
    for d in ("none", "jpeg90", "blur1"):
        for m in models:
            if (d, m) == ("jpeg90", "brisque"):
                continue
            bad = result.cell("mild", d, m)
            assert "img-c could not be decoded" in bad.error and "changed since it was validated" in bad.error
            good = result.cell("dark", d, m)
            assert good.error == "" and good.n_images > 0
    # only the cells that needed the image: the official brisque cell is read from the pipeline's cache entries
    assert result.cell("mild", "jpeg90", "brisque").error == ""


class _WhereBIQA(BrightnessBIQA):
    """Brightness, registered thread_independent or not; appends the id of the process that scores the test's
    images to `log` (not the matrix's warm-up call, on a bigger image, before its pool forks)."""

    def __init__(self, log: Path, thread_independent: bool) -> None:
        super().__init__()
        self.info = dataclasses.replace(self.info, thread_independent=thread_independent)
        self.log = log

    def raw_score(self, x):
        if tuple(x.shape[-2:]) == LEVELS_SHAPE:
            with self.log.open("a") as f:
                f.write(f"{os.getpid()}\n")
        return super().raw_score(x)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_model_keyed_by_the_thread_count_is_scored_in_the_workers_only_when_this_process_runs_one_thread(
        setup, threads):
    """Workers run 1 torch thread. The cache keys a model not registered thread_independent by this process's thread
    count (`score_cache.model_key`), so with 2 threads here such a model is scored here; the others in the workers."""
    tmp_path, _, _ = setup
    logs = {m: tmp_path / f"{m}.pids" for m in ("niqe", "piqe")}
    models = {"brisque": BrightnessBIQA(),  # the task model (runs.csv, scored by the pipeline in this process)
              "niqe": _WhereBIQA(logs["niqe"], True), "piqe": _WhereBIQA(logs["piqe"], False)}
    torch.set_num_threads(threads)
    _evaluate(tmp_path, ["none", "blur1"], models=models, workers=2)
    assert threads == torch.get_num_threads()
    here = str(os.getpid())
    pids = {m: set(p.read_text().split()) for m, p in logs.items()}
    assert pids["niqe"] and here not in pids["niqe"]
    assert pids["piqe"] == {here} if threads == 2 else pids["piqe"] and here not in pids["piqe"]
