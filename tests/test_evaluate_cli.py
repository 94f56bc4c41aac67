"""pp-evaluate: exit codes (0, 2, 3, 4), one clear stderr line on failure, the default BIQA end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evaluator_fixtures import BrightnessBIQA, darken, write_originals, write_run

import evaluator.biqa
from evaluator.cli import main
from evaluator.common.errors import exit_code_help


@pytest.fixture()
def dirs(tmp_path):
    originals = write_originals(tmp_path / "originals", {"a": 0.7, "b": 0.65, "c": 0.75})
    (tmp_path / "runs").mkdir()
    write_run(tmp_path / "runs", "dark-run", {k: darken(v, 0.5) for k, v in originals.items()})
    write_run(tmp_path / "runs", "copy-run", originals)
    return tmp_path


def _args(d: Path, *extra: str) -> list[str]:
    return ["--originals", str(d / "originals"), "--runs", str(d / "runs"), "--out", str(d / "out"),
            "--no-progress", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pp-evaluate: error: ")
    return err[0]


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert exit_code_help() in text  # the kit's one table (evaluator.common.errors), as in pp-attack and pp-jury


def test_success_with_an_injected_model_exits_0_and_writes_results(dirs, monkeypatch, capsys):
    monkeypatch.setattr(evaluator.biqa, "create", lambda *args, **kwargs: BrightnessBIQA())
    assert main(_args(dirs, "--batch-size", "2")) == 0
    rows = {r["run"]: r for r in csv.DictReader((dirs / "out" / "runs.csv").open(encoding="utf-8"))}
    assert rows["dark-run"]["qualified"] == "true" and rows["copy-run"]["qualified"] == "false"
    assert "1 qualified" in capsys.readouterr().err


def test_bad_task_file_exits_2(dirs, capsys):
    task = dirs / "task.toml"
    task.write_text("[jpeg]\nquality = 'ninety'\n")
    assert main(_args(dirs, "--task", str(task))) == 2
    line = _one_error_line(capsys)
    assert "task.toml" in line and "jpeg.quality" in line
    task.write_text("[jpeg\n")
    assert main(_args(dirs, "--task", str(task))) == 2
    assert "not valid TOML" in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_missing_runs_folder_and_bad_batch_size_exit_2(dirs, capsys):
    args = _args(dirs)
    args[args.index("--runs") + 1] = str(dirs / "nope")
    assert main(args) == 2
    assert "runs folder not found" in _one_error_line(capsys)
    assert main(_args(dirs, "--batch-size", "0")) == 2
    assert "--batch-size" in _one_error_line(capsys)


def test_a_negative_or_absurd_worker_count_exits_2_before_anything_runs(dirs, capsys):
    from evaluator.common.worker_pool import max_workers

    assert main(_args(dirs, "--workers", "-1")) == 2
    assert "--workers must be >= 0" in _one_error_line(capsys)
    assert main(_args(dirs, "--workers", str(max_workers() + 1))) == 2
    assert f"more than {max_workers()}" in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_no_originals_exits_3(dirs, capsys):
    for f in (dirs / "originals").iterdir():
        f.unlink()
    assert main(_args(dirs)) == 3
    assert "originals" in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_unreadable_original_exits_3(dirs, capsys):
    (dirs / "originals" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    assert main(_args(dirs)) == 3
    assert "b.png" in _one_error_line(capsys)


def test_an_unknown_model_name_is_bad_input_exit_2_from_the_flag_and_the_task_file(dirs, capsys):
    """The same mistake, one exit code (2, bad input) and the registry's own message, not "does not load"."""
    assert main(_args(dirs, "--biqa", "niqee")) == 2
    line = _one_error_line(capsys)
    assert "unknown BIQA model 'niqee'" in line and "did you mean 'niqe'" in line and "does not load" not in line
    task = dirs / "task.toml"
    task.write_text('[biqa]\nmodel = "niqee"\n')
    assert main(_args(dirs, "--task", str(task))) == 2
    assert "niqee" in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_a_device_that_is_not_available_is_reported_as_itself(dirs, capsys):
    """A --device error is printed with its own message, not labelled as a BIQA that does not load."""
    assert main(_args(dirs, "--device", "tpu")) == 4
    line = _one_error_line(capsys)
    assert "unknown device 'tpu'" in line and "does not load" not in line


def test_weights_that_do_not_load_exit_4(dirs, capsys):
    bad = dirs / "weights.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(_args(dirs, "--biqa", "koncept512", "--biqa-weights", str(bad))) == 4
    line = _one_error_line(capsys)  # the loader's own message names the model and the file
    assert "KonCept512 weights" in line and "weights.pth" in line and "does not load:" not in line
    assert main(_args(dirs, "--biqa-weights", str(bad))) == 4  # brisque takes no weights
    assert "brisque" in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_console_script_with_the_default_brisque(tmp_path):
    """The real default model through the installed entry point, on 128x96 crops of a real photo."""
    from PIL import Image, ImageFilter

    from evaluator.demo.demo_data import photo_path
    from evaluator.common.imageio import save_png

    photo = np.asarray(Image.open(photo_path("skimage", "data/astronaut.png")).convert("RGB"))
    crops = {f"c{i}": np.ascontiguousarray(photo[y:y + 96, x:x + 128])
             for i, (y, x) in enumerate([(100, 200), (384, 100), (0, 0)])}
    (tmp_path / "originals").mkdir()
    for image, rgb in crops.items():
        save_png(tmp_path / "originals" / f"{image}.png", rgb)
    (tmp_path / "runs").mkdir()
    blurred = {k: np.asarray(Image.fromarray(v).filter(ImageFilter.GaussianBlur(3))) for k, v in crops.items()}
    write_run(tmp_path / "runs", "blur-run", blurred)
    write_run(tmp_path / "runs", "copy-run", crops)
    exe = Path(sys.executable).with_name("pp-evaluate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "evaluator.cli"]
    proc = subprocess.run(cmd + _args(tmp_path, "--device", "cpu"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "task.json").read_text())
    assert meta["model"]["name"] == "brisque" and meta["rules"]["biqa"]["model"] == "brisque"
    assert meta["originals"]["excluded"] == []  # all three crops score >= 50 clean
    runs = {r["run"]: r for r in csv.DictReader((tmp_path / "out" / "runs.csv").open(encoding="utf-8"))}
    assert runs["blur-run"]["qualified"] == "true" and float(runs["blur-run"]["accuracy"]) == 0.0
    assert runs["copy-run"]["qualified"] == "false" and runs["copy-run"]["psnr"] == "inf"


def test_a_results_folder_in_use_or_a_broken_cache_exits_2(dirs, monkeypatch, capsys):
    import fcntl

    monkeypatch.setattr(evaluator.biqa, "create", lambda *args, **kwargs: BrightnessBIQA())
    out = dirs / "out"
    (out / ".cache").mkdir(parents=True)
    (out / ".cache" / "scores.sqlite").write_bytes(b"garbage" * 200)
    assert main(_args(dirs)) == 2
    assert "delete the file and rerun" in _one_error_line(capsys)
    (out / ".cache" / "scores.sqlite").unlink()
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(_args(dirs)) == 2
        assert "another pp-evaluate" in _one_error_line(capsys)
    assert main(_args(dirs)) == 0


def test_interrupt_exits_130_with_one_line(dirs, monkeypatch, capsys):
    import evaluator.pipeline

    monkeypatch.setattr(evaluator.biqa, "create", lambda *args, **kwargs: BrightnessBIQA())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluator.pipeline, "evaluate", interrupted)
    assert main(_args(dirs)) == 130
    assert "interrupted" in _one_error_line(capsys)


def test_a_jury_package_that_cannot_be_written_exits_2_with_its_message(dirs, monkeypatch, capsys):
    """A JuryExportError (e.g. a package that would not be servable) is bad input for the organizer, not a crash:
    exit 2, one line naming the problem, previous results untouched."""
    import evaluator.pipeline
    from evaluator.outputs.jury_export import JuryExportError

    def refuse(*args, **kwargs):
        raise JuryExportError("images/x.jpg: the JPEG has a comment (COM) segment; jurors could read it")

    monkeypatch.setattr(evaluator.biqa, "create", lambda name, weights=None, device="cpu", **kw: BrightnessBIQA())
    monkeypatch.setattr(evaluator.pipeline, "write_jury_package", refuse)
    assert main(_args(dirs)) == 2
    assert "COM" in _one_error_line(capsys)
    assert not (dirs / "out" / "runs.csv").exists()


def test_a_model_that_needs_weights_without_them_exits_4_and_says_how_to_pass_them(dirs, capsys):
    assert main(_args(dirs, "--biqa", "koncept512")) == 4
    line = _one_error_line(capsys)
    for needle in ("'koncept512' needs a weights file", "--biqa-weights PATH", "torch.save", "'module.' prefix",
                   "{'state_dict': ...}", "--random-weights SEED"):
        assert needle in line, (needle, line)
    task = dirs / "task.toml"
    task.write_text('[biqa]\nmodel = "koncept512"\n')  # the task's model, not only --biqa
    assert main(_args(dirs, "--task", str(task))) == 4
    assert "--biqa-weights" in _one_error_line(capsys)
    assert main(_args(dirs, "--random-weights", "0")) == 4  # brisque has no weights to randomize
    assert "drop --random-weights" in _one_error_line(capsys)
    assert main(_args(dirs, "--biqa", "koncept512", "--random-weights", "0", "--biqa-weights", "w.pth")) == 4
    assert "not both" in _one_error_line(capsys)
    assert main(_args(dirs, "--biqa", "koncept512", "--random-weights", "-1")) == 4
    assert "integer in [0," in _one_error_line(capsys)
    assert not (dirs / "out").exists()


def test_random_weights_opt_in_reaches_the_model_and_every_output(dirs, monkeypatch, capsys):
    import dataclasses

    asked = {}

    def fake_create(name, weights=None, device="cpu", *, random_weights_seed=None):
        asked.update(name=name, weights=weights, seed=random_weights_seed)
        model = BrightnessBIQA()
        model.info = dataclasses.replace(model.info, needs_weights=True, random_weights_seed=random_weights_seed)
        return model

    monkeypatch.setattr(evaluator.biqa, "create", fake_create)
    assert main(_args(dirs, "--biqa", "koncept512", "--random-weights", "11")) == 0
    assert asked == {"name": "koncept512", "weights": None, "seed": 11}
    out = dirs / "out"
    assert json.loads((out / "task.json").read_text())["model"]["random_weights_seed"] == 11
    assert {r["random_weights_seed"] for r in csv.DictReader((out / "runs.csv").open(encoding="utf-8"))} == {"11"}
    assert "RANDOM BIQA WEIGHTS" in (out / "report.html").read_text(encoding="utf-8")
    err = capsys.readouterr().err
    assert "pp-evaluate: WARNING: BIQA brightness scored with RANDOM weights (--random-weights 11" in err
