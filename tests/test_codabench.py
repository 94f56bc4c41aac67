"""python -m evaluator.outputs.codabench INPUT OUTPUT: Codabench/CodaLab layout, scores.json / scores.txt, exit codes."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from evaluator_fixtures import BrightnessBIQA, darken, write_originals, write_run

import evaluator.biqa
from evaluator.outputs.codabench import SCORE_KEYS, main


@pytest.fixture()
def bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator.biqa, "create", lambda *args, **kwargs: BrightnessBIQA())
    originals = write_originals(tmp_path / "input" / "ref", {"a": 0.7, "b": 0.65, "c": 0.75, "d": 0.6})
    return tmp_path, originals


def _scores(tmp_path) -> dict:
    return json.loads((tmp_path / "output" / "scores.json").read_text())


def _call(tmp_path) -> int:
    return main([str(tmp_path / "input"), str(tmp_path / "output"), "--device", "cpu"])


def test_run_files_at_the_root_of_res(bundle):
    tmp_path, originals = bundle
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 0
    scores = _scores(tmp_path)
    assert list(scores) == list(SCORE_KEYS)
    assert scores["accuracy"] == 0.0 and scores["qualified"] == 1 and scores["accuracy_reduction"] == 1.0
    assert 30 < scores["mean_score"] < 40 and scores["abs_gain"] > 0.25
    assert all(isinstance(v, (int, float)) for v in scores.values())
    txt = (tmp_path / "output" / "scores.txt").read_text().splitlines()
    assert txt[0] == f"accuracy: {scores['accuracy']}" and len(txt) == len(SCORE_KEYS)
    assert (tmp_path / "output" / "details" / "report.html").is_file()


def test_one_zipped_run_inside_res_and_untouched_images_leave_psnr_out_of_scores_json(bundle):
    tmp_path, originals = bundle
    folder = write_run(tmp_path / "staging", "copy", originals)
    (tmp_path / "input" / "res").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "input" / "res" / "copy.zip", "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"copy/{f.name}")
    assert _call(tmp_path) == 0
    scores = _scores(tmp_path)
    assert scores["qualified"] == 0 and scores["accuracy"] == 1.0
    # Codabench stores scores NOT NULL: a PSNR that is not finite is left out of scores.json (its cell stays empty)
    assert "psnr" not in scores and list(scores) == [k for k in SCORE_KEYS if k != "psnr"]
    assert scores["ssim"] == pytest.approx(1.0)
    assert "psnr: NaN" in (tmp_path / "output" / "scores.txt").read_text()


def test_an_invalid_run_exits_1_with_every_problem_on_stderr(bundle, capsys):
    tmp_path, originals = bundle
    staged = write_run(tmp_path, "res", {k: v for k, v in originals.items() if k not in ("b", "c")})
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 1
    err = capsys.readouterr().err
    assert "b.png: is missing" in err and "c.png: is missing" in err
    assert not (tmp_path / "output" / "scores.json").exists()


def test_two_runs_in_res_is_a_layout_error(bundle, capsys):
    tmp_path, originals = bundle
    res = tmp_path / "input" / "res"
    write_run(res, "one", originals)
    write_run(res, "two", originals)
    assert _call(tmp_path) == 1
    err = capsys.readouterr().err
    assert "expected one run" in err and "found 2 folders/zips: one, two" in err


def test_missing_originals_is_a_setup_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluator.biqa, "create", lambda *args, **kwargs: BrightnessBIQA())
    (tmp_path / "input" / "ref").mkdir(parents=True)
    write_run(tmp_path / "input", "res", {})
    assert _call(tmp_path) == 2
    assert "scoring setup" in capsys.readouterr().err


def test_task_toml_in_ref_is_used(bundle):
    tmp_path, originals = bundle
    (tmp_path / "input" / "ref" / "task.toml").write_text("[biqa]\nthreshold = 30\n")
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 0
    assert _scores(tmp_path)["accuracy"] == 1.0  # post-JPEG scores ~33 are >= 30: high quality now


def test_a_model_that_needs_weights_without_them_is_a_setup_error(tmp_path, capsys):
    originals = write_originals(tmp_path / "input" / "ref", {"a": 0.7, "b": 0.65})
    (tmp_path / "input" / "ref" / "task.toml").write_text('[biqa]\nmodel = "koncept512"\n')
    staged = write_run(tmp_path, "res", originals)
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 2
    err = capsys.readouterr().err
    assert "scoring setup: BIQA 'koncept512' needs a weights file" in err
    assert "--biqa-weights PATH" in err and "--random-weights SEED" in err
    assert not (tmp_path / "output" / "scores.json").exists()
    shutil.rmtree(tmp_path / "input" / "res")  # a broken setup is reported as such, not as a bad submission
    assert _call(tmp_path) == 2
    assert "scoring setup: BIQA 'koncept512' needs a weights file" in capsys.readouterr().err


def test_a_device_that_is_not_available_is_a_setup_error_reported_as_itself(tmp_path, capsys):
    originals = write_originals(tmp_path / "input" / "ref", {"a": 0.7})
    shutil.move(write_run(tmp_path, "res", originals), tmp_path / "input" / "res")
    assert main([str(tmp_path / "input"), str(tmp_path / "output"), "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert "scoring setup: unknown device 'tpu'" in err and "does not load" not in err


def test_random_weights_are_marked_in_scores_json_and_on_stderr(tmp_path, monkeypatch, capsys):
    import dataclasses

    asked = {}

    def fake_create(name, weights=None, device="cpu", *, random_weights_seed=None):
        asked.update(name=name, seed=random_weights_seed)
        model = BrightnessBIQA()
        model.info = dataclasses.replace(model.info, needs_weights=True, random_weights_seed=random_weights_seed)
        return model

    monkeypatch.setattr(evaluator.biqa, "create", fake_create)
    originals = write_originals(tmp_path / "input" / "ref", {"a": 0.7, "b": 0.65})
    (tmp_path / "input" / "ref" / "task.toml").write_text('[biqa]\nmodel = "koncept512"\n')
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    assert main([str(tmp_path / "input"), str(tmp_path / "output"), "--device", "cpu", "--random-weights", "4"]) == 0
    assert asked == {"name": "koncept512", "seed": 4}
    scores = _scores(tmp_path)
    assert list(scores) == [*SCORE_KEYS, "random_weights_seed"] and scores["random_weights_seed"] == 4
    assert "random_weights_seed: 4" in (tmp_path / "output" / "scores.txt").read_text()
    assert "WARNING: BIQA brightness scored with RANDOM weights (--random-weights 4" in capsys.readouterr().err
    details = tmp_path / "output" / "details"
    assert json.loads((details / "task.json").read_text())["model"]["random_weights_seed"] == 4
    assert "RANDOM BIQA WEIGHTS" in (details / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("valid", [True, False])
def test_details_are_plain_files_each_once(bundle, valid):
    """Codabench zips OUTPUT with shutil.make_archive: no links, no .generations/.cache/.lock, each CSV once."""
    import os

    tmp_path, originals = bundle
    images = {k: darken(v, 0.5) for k, v in originals.items() if valid or k != "b"}
    staged = write_run(tmp_path, "res", images)
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == (0 if valid else 1)
    output = tmp_path / "output"
    files, links = [], []
    for folder, dirs, names in os.walk(output, followlinks=False):
        for name in dirs + names:
            path = os.path.join(folder, name)
            (links if os.path.islink(path) else files).append(os.path.relpath(path, output))
    assert links == []
    assert not [f for f in files if any(part.startswith(".") for part in f.split(os.sep))]
    csvs = sorted(os.path.basename(f) for f in files if f.endswith(".csv"))
    assert csvs == ["runs.csv", "scores.csv", "selection.csv"]
    assert {"details/report.html", "details/task.json", "details/runs.csv"} <= set(files)
    if valid:
        assert "details/jury/manifest.json" in files and "details/jury/key.json" in files
        assert any(f.startswith("details/jury/images/") and f.endswith(".jpg") for f in files)
    archive = shutil.make_archive(str(tmp_path / "submission-output"), "zip", output)
    names = zipfile.ZipFile(archive).namelist()
    assert len(names) == len(set(names)) and sum(n.endswith(".csv") for n in names) == 3
    assert not any("/." in "/" + n for n in names)


def test_detailed_results_html_holds_the_table_and_gallery_or_the_problems(bundle):
    tmp_path, originals = bundle
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 0
    page = (tmp_path / "output" / "detailed_results.html").read_text(encoding="utf-8")
    assert all(f"<td class=l>{i}</td>" in page for i in originals)
    assert page.count("data:image/jpeg;base64,") == 2 * len(originals) and "Gallery" in page
    (tmp_path / "input" / "res" / "b.png").unlink()
    assert _call(tmp_path) == 1
    page = (tmp_path / "output" / "detailed_results.html").read_text(encoding="utf-8")
    assert "Invalid submission" in page and "b.png: is missing" in page and "Gallery" not in page


# what Codabench's compute worker writes next to a result submission's files (Run.push_output, yaml.dump)
WORKER_STATUS = "elapsedTime: null\nexitCode: null\ningestionElapsedTime: null\ningestionExitCode: null\n"


def test_the_compute_workers_status_file_in_res_is_not_part_of_the_run(bundle):
    """On Codabench INPUT/res is the prediction step's output: the participant's files plus the worker's `metadata`.
    The scorer scores the run without it (the same numbers), and leaves INPUT/res as it was."""
    tmp_path, originals = bundle
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    assert _call(tmp_path) == 0
    clean = _scores(tmp_path)
    (tmp_path / "input" / "res" / "metadata").write_text(WORKER_STATUS)
    assert _call(tmp_path) == 0
    assert _scores(tmp_path) == clean and (tmp_path / "input" / "res" / "metadata").read_text() == WORKER_STATUS


@pytest.mark.parametrize("text", ["command: python evil.py\n", "exitCode: 0\nmine: 1\n", "not: [yaml\n", ""])
def test_any_other_metadata_file_is_an_extra_file_of_the_run(bundle, capsys, text):
    tmp_path, originals = bundle
    staged = write_run(tmp_path, "res", {k: darken(v, 0.5) for k, v in originals.items()})
    shutil.move(staged, tmp_path / "input" / "res")
    (tmp_path / "input" / "res" / "metadata").write_text(text)
    assert _call(tmp_path) == 1
    assert "metadata: is not an image or run.json" in capsys.readouterr().err
