"""pp-attack end to end on three small real images: run folders the evaluator accepts, resume after a crash,
shards + finalize (also under torchrun's RANK / WORLD_SIZE), and every bad input refused with nothing written."""

from __future__ import annotations

import csv
import json
import re
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluator.common.imageio import load_rgb
from evaluator.common.versions import VERSIONS_KEY, library_versions
from evaluator.intake.runs import index_originals, validate_run
from submission.cli import main
from submission.run_folder import list_originals, log_path, originals_sha256, work_dir

FAST = ["--set", "iters=2", "--quiet"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    from skimage import data

    d = tmp_path_factory.mktemp("originals")
    a = data.astronaut()
    for name, (y, x) in {"img0": (100, 200), "img1": (250, 250), "img2": (40, 150)}.items():
        Image.fromarray(np.ascontiguousarray(a[y : y + 48, x : x + 64])).save(d / f"{name}.png")
    return d


def log_rows(run: Path) -> list[dict[str, str]]:
    with log_path(run).open(newline="") as f:
        return list(csv.DictReader(f))


def assert_valid(run: Path, originals: Path) -> None:
    result = validate_run(run, index_originals(originals))
    assert result.issues == [], result.issues
    for p in originals.glob("*.png"):
        assert load_rgb(run / p.name).shape == load_rgb(p).shape


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_ifgsm_run_folder_is_valid_and_complete(tmp_path, originals):
    run = tmp_path / "runs" / "team-ifgsm"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), "--team", "t1", "--seed", "5",
                 "--batch-size", "2", *FAST]) == 0
    assert_valid(run, originals)
    meta = json.loads((run / "run.json").read_text())
    assert {k: meta[k] for k in ("team", "run", "method", "biqa", "seed", "status")} == {
        "team": "t1", "run": "team-ifgsm", "method": "ifgsm", "biqa": "brisque", "seed": 5, "status": "complete"}
    assert meta["params"]["iters"] == 2 and meta["params"]["eps"] == pytest.approx(10 / 255)
    # objective 'lower' aims at no target: none is recorded; the task's threshold is
    assert meta["params"]["target"] is None and meta["threshold"] == 50.0 and meta["kit_version"]
    # the library versions: the key and the package list of pp-evaluate's task.json
    assert set(meta[VERSIONS_KEY]) == set(library_versions()) and "libraries" not in meta
    rows = log_rows(run)
    assert [r["image"] for r in rows] == ["img0", "img1", "img2"]
    for r in rows:
        assert float(r["score_after"]) < float(r["score_before"])
        assert 0 <= float(r["score_jpeg"]) <= 100 and 30 < float(r["psnr"]) < 60 and float(r["seconds"]) > 0
    assert sorted(p.name for p in run.iterdir()) == ["img0.png", "img1.png", "img2.png", "run.json"]


def test_design_md_lists_every_key_pp_attack_writes_to_run_json(tmp_path, originals):
    """docs/design.md ("The run folder and run.json") names each key of a finished run's run.json, in order."""
    import re
    from pathlib import Path

    run = tmp_path / "runs" / "n"
    assert main(["noise", "--originals", str(originals), "--out", str(run), "--quiet"]) == 0
    keys = list(json.loads((run / "run.json").read_text()))
    design = (Path(__file__).resolve().parents[1] / "docs/design.md").read_text(encoding="utf-8")
    section = design[design.index("Other keys are allowed. pp-attack writes them"):]
    section = section[:section.index("\n\n")]
    named = re.findall(r"`(\w+)`", section)
    missing = [k for k in keys if k not in named and k not in ("team", "run", "method", "params", "biqa", "created",
                                                                "kit_version", "seed")]
    assert not missing, f"run.json keys docs/design.md does not name: {missing}"
    listed = [k for k in named if k in keys]
    assert listed == [k for k in keys if k in listed], "docs/design.md lists run.json's keys in another order"


def test_rerun_resumes_after_a_crash_and_redoes_only_missing_images(tmp_path, originals, monkeypatch, capsys):
    from submission.attacks.methods.fgsm_family import IFGSM

    run = tmp_path / "runs" / "r"
    real = IFGSM.perturb
    calls = {"n": 0}

    def crash_on_second_batch(self, x, model, ctx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(self, x, model, ctx)

    monkeypatch.setattr(IFGSM, "perturb", crash_on_second_batch)
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST]) == 130  # Ctrl-C: the table's 130
    assert capsys.readouterr().err.splitlines()[-1].startswith("pp-attack: interrupted;")
    assert sorted(p.name for p in run.glob("*.png")) == ["img0.png"]
    assert json.loads((run / "run.json").read_text())["status"] == "in progress"
    first = (run / "img0.png").stat().st_mtime_ns
    # a crash while appending the log leaves a torn line; a stale temp file of an atomic write is left too
    with log_path(run).open("a") as f:
        f.write("img1,12.5")
    (run / ".img1.png.x1.tmp").write_bytes(b"partial")
    monkeypatch.setattr(IFGSM, "perturb", real)
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST]) == 0
    assert (run / "img0.png").stat().st_mtime_ns == first
    assert [r["image"] for r in log_rows(run)] == ["img0", "img1", "img2"]
    assert_valid(run, originals)


def test_a_run_json_of_an_older_kit_with_libraries_resumes_and_finalizes(tmp_path, originals):
    """Older kits recorded the library versions under "libraries": such a run is still resumed (same identity)."""
    run = tmp_path / "runs" / "old"
    args = ["identity", "--originals", str(originals), "--out", str(run), "--quiet"]
    assert main(args) == 0
    meta = json.loads((run / "run.json").read_text())
    meta["libraries"] = meta.pop(VERSIONS_KEY)
    (run / "run.json").write_text(json.dumps(meta))
    assert main(args) == 0
    again = json.loads((run / "run.json").read_text())
    assert again["status"] == "complete" and again["libraries"] == meta["libraries"]
    assert_valid(run, originals)


def test_shards_then_finalize(tmp_path, originals, monkeypatch, capsys):
    run = tmp_path / "runs" / "sharded"
    args = ["noise", "--originals", str(originals), "--out", str(run), "--quiet", "--seed", "1"]
    assert main([*args, "--shard", "0/2"]) == 0  # img0, img2
    assert sorted(p.name for p in run.glob("*.png")) == ["img0.png", "img2.png"]
    assert main(["finalize", str(run)]) == 5  # an incomplete run (the kit's exit-code table)
    err = capsys.readouterr().err
    assert "1 of 3 images not done (img1)" in err and "1/2" in err
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args) == 0  # shard 1/2 from torchrun's environment
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert json.loads((run / "run.json").read_text())["status"] == "in progress"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded originals are found relative to the run, from any folder
    assert main(["finalize", str(run)]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["n_images"] == 3 and meta["shards"] == 2
    # run.json is submitted: the originals' folder name and image-set hash, nothing of the folder layout
    assert meta["originals"] == {"folder": originals.name, "sha256": originals_sha256(list_originals(originals))}
    text = (run / "run.json").read_text()
    assert str(originals.parent) not in text and ".." not in text and str(tmp_path) not in text
    assert [r["image"] for r in log_rows(run)] == ["img0", "img1", "img2"]
    assert not list(work_dir(run).glob("log.shard*"))
    assert_valid(run, originals)
    # same images as one unsharded run with the same seed (noise is seeded per image, not per shard)
    single = tmp_path / "runs" / "single"
    assert main(["noise", "--originals", str(originals), "--out", str(single), "--quiet", "--seed", "1"]) == 0
    for p in originals.glob("*.png"):
        assert (single / p.name).read_bytes() == (run / p.name).read_bytes()


def test_the_task_threshold_is_the_default_target_and_is_recorded(tmp_path, originals, monkeypatch):
    """task.toml is the one source of the threshold: with threshold = 40 the attack aims at 40, run.json records
    target 40 next to threshold 40, and the summary counts successes below 40 (before: aimed at the model's 50)."""
    from submission.attacks.methods.fgsm_family import IFGSM

    task = tmp_path / "task.toml"
    task.write_text("[biqa]\nthreshold = 40\n")
    seen = set()
    perturb = IFGSM.perturb

    def spy(self, x, model, ctx):
        seen.add(ctx.objective.target)
        return perturb(self, x, model, ctx)

    monkeypatch.setattr(IFGSM, "perturb", spy)
    run = tmp_path / "runs" / "t40"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), "--task", str(task),
                 "--set", "objective=below", *FAST]) == 0
    assert seen == {40.0}
    meta = json.loads((run / "run.json").read_text())
    assert meta["params"]["target"] == 40.0 and meta["threshold"] == 40.0 and meta["task"]["biqa"]["threshold"] == 40
    after = [float(r["score_after"]) for r in log_rows(run)]
    assert meta["summary"]["success_image"] == pytest.approx(sum(a < 40 for a in after) / len(after))


def test_the_task_codec_is_what_pgd_dct_writes_for_and_is_recorded(tmp_path, originals):
    """task.toml is the one source of the JPEG settings: with quality 75 and 4:4:4 the files pgd-dct writes carry
    the QF-75 tables and full-size chroma, score_jpeg is the score after that codec's round trip, and run.json says
    which codec (before: pgd-dct wrote QF-90 4:2:0 files whatever the task said)."""
    import torch

    from evaluator.biqa import create
    from evaluator.codec import OrganizerCodec

    task = tmp_path / "task.toml"
    task.write_text('[jpeg]\nquality = 75\nsubsampling = "4:4:4"\n')
    run = tmp_path / "runs" / "q75"
    assert main(["pgd-dct", "--originals", str(originals), "--out", str(run), "--task", str(task), "--quiet",
                 "--set", "search_steps=1", "--set", "iters=1", "--set", "lambda_steps=1"]) == 0
    codec = OrganizerCodec(quality=75, subsampling="4:4:4")
    meta = json.loads((run / "run.json").read_text())
    assert meta["codec"] == {"quality": 75, "subsampling": "4:4:4", "libjpeg": "turbo210"}
    assert "quality" not in meta["params"]
    model = create("brisque")
    rows = {r["image"]: r for r in log_rows(run)}
    for p in sorted(originals.glob("*.png")):
        coeffs = codec.read_dct(run / f"{p.stem}.jpg")
        assert np.array_equal(coeffs.qt, codec.quant_tables()) and coeffs.Cb.shape == coeffs.Y.shape
        after = codec.roundtrip(codec.decompress((run / f"{p.stem}.jpg").read_bytes()))
        x = torch.from_numpy(after).permute(2, 0, 1)[None].float() / 255
        assert float(rows[p.stem]["score_jpeg"]) == pytest.approx(float(model(x)[0]), abs=0.01)


def test_finalize_refuses_a_run_json_without_a_threshold(tmp_path, originals, capsys):
    run = tmp_path / "runs" / "n"
    assert main(["noise", "--originals", str(originals), "--out", str(run), "--quiet"]) == 0
    meta = json.loads((run / "run.json").read_text())
    del meta["threshold"]
    (run / "run.json").write_text(json.dumps(meta))
    assert main(["finalize", str(run)]) == 2
    assert "'threshold' is None" in capsys.readouterr().err


def test_list_shows_every_method_with_params_and_paper(capsys):
    from submission.attacks import ATTACKS

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, cls in ATTACKS.items():
        assert f"{name}: " in out and cls.paper in out
    assert "--set eps (float, default 0.0392157" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "step=ten"], "step=.ten. is not a number"),
        (["--set", "iters=3"], "--set iters given twice"),
        (["--set", "epsilon=1"], "unknown parameter 'epsilon'"),
        (["--set", "iters"], "write key=value"),
        (["--target", "150"], r"--target 150 is outside \[0, 100\]"),
        (["--target", "-1"], r"outside \[0, 100\]"),
        (["--target", "30"], "target=30 has no effect with objective=lower"),
        (["--set", "jpeg_quality=75"], "unknown parameter .jpeg_quality."),  # the task file sets the codec
        (["--shard", "2/2"], "need 0 <= i < n"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, originals, capsys, extra, message):
    run = tmp_path / "runs" / "x"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST, *extra]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not run.exists()


def test_finalize_interrupted_exits_130(tmp_path, monkeypatch, capsys):
    import submission.run_folder

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(submission.run_folder, "finalize", interrupted)
    assert main(["finalize", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip().startswith("pp-attack finalize: interrupted;")


def test_a_device_that_is_not_available_exits_4_and_writes_nothing(tmp_path, originals, capsys):
    """The BIQA stage's exit code, as in pp-evaluate (the kit's one exit-code table)."""
    run = tmp_path / "runs" / "x"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST, "--device", "tpu"]) == 4
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert not run.exists()


def test_an_unknown_biqa_name_exits_2_from_the_flag_and_the_task_file(tmp_path, originals, capsys):
    """An unknown name is bad input (2) whether it comes from --biqa or the task file, as in pp-evaluate."""
    run = tmp_path / "runs" / "x"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST, "--biqa", "niqee"]) == 2
    assert "unknown BIQA model 'niqee' (did you mean 'niqe'?)" in capsys.readouterr().err
    task = tmp_path / "task.toml"
    task.write_text('[biqa]\nmodel = "niqee"\n')
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), *FAST, "--task", str(task)]) == 2
    assert "niqee" in capsys.readouterr().err
    assert not run.exists()


def test_unknown_method_and_target_on_a_naive_method(tmp_path, originals, capsys):
    run = tmp_path / "runs" / "x"
    assert main(["nope", "--originals", str(originals), "--out", str(run)]) == 2
    assert "unknown attack method 'nope'" in capsys.readouterr().err
    assert main(["blur", "--originals", str(originals), "--out", str(run), "--target", "30"]) == 2
    assert "takes no target" in capsys.readouterr().err
    assert not run.exists()


def test_unreadable_original_is_named_and_nothing_is_written(tmp_path, originals, capsys):
    bad = tmp_path / "originals"
    bad.mkdir()
    for p in originals.glob("*.png"):
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "img1.png").write_bytes((originals / "img1.png").read_bytes()[:200])  # truncated
    run = tmp_path / "runs" / "x"
    assert main(["ifgsm", "--originals", str(bad), "--out", str(run), *FAST]) == 3  # the originals, as pp-evaluate
    err = capsys.readouterr().err
    assert "img1.png" in err
    assert not run.exists()
    assert main(["ifgsm", "--originals", str(tmp_path / "missing"), "--out", str(run)]) == 3
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda text: re.sub(r'"sigma": [0-9.e-]+', '"sigma": NaN', text), "NaN"),
    (lambda text: text.replace('{\n', '{\n  "team": "other",\n', 1), "key 'team' twice"),
    (lambda text: text.replace('"team":', '"teem":', 1), "missing the key(s) team"),
])
def test_resume_and_finalize_read_run_json_by_the_evaluators_rules(tmp_path, originals, capsys, edit, message):
    """pp-attack reads its run.json back with the evaluator's one strict reader (issue 11 review): a run.json
    pp-evaluate would refuse (NaN, a duplicate key, a missing key) is refused on resume and on finalize, untouched."""
    run = tmp_path / "runs" / "n"
    args = ["noise", "--originals", str(originals), "--out", str(run), "--quiet"]
    assert main(args) == 0
    text = (run / "run.json").read_text()
    bad = edit(text)
    assert bad != text
    (run / "run.json").write_text(bad)
    for again in (args, ["finalize", str(run)]):
        assert main(again) == 2
        err = capsys.readouterr().err
        assert "run.json" in err and message in err
        assert (run / "run.json").read_text() == bad


def test_out_holding_a_different_run_is_refused_untouched(tmp_path, originals, capsys):
    run = tmp_path / "runs" / "r"
    assert main(["noise", "--originals", str(originals), "--out", str(run), "--quiet"]) == 0
    before = snapshot(run)
    for other in (["blur"], ["noise", "--seed", "9"], ["noise", "--set", "sigma=0.1"]):
        assert main([*other, "--originals", str(originals), "--out", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "already holds a different run" in err
    assert snapshot(run) == before
    # a folder with files but no run.json is not ours
    foreign = tmp_path / "runs" / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["noise", "--originals", str(originals), "--out", str(foreign), "--quiet"]) == 2
    assert "no run.json" in capsys.readouterr().err
    assert snapshot(foreign) == {"notes.txt": b"mine"}
    # the same run again: nothing left to do, files unchanged
    assert main(["noise", "--originals", str(originals), "--out", str(run), "--quiet"]) == 0
    assert {k: v for k, v in snapshot(run).items() if k != "run.json"} == {
        k: v for k, v in before.items() if k != "run.json"}


def test_a_biqa_that_needs_weights_without_them_exits_4_and_writes_nothing(tmp_path, originals, capsys):
    run = tmp_path / "runs" / "x"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), "--biqa", "koncept512", *FAST]) == 4
    err = capsys.readouterr().err
    assert "pp-attack: error: BIQA 'koncept512' needs a weights file" in err
    assert "--biqa-weights PATH" in err and "--random-weights SEED" in err
    assert not run.exists()


def test_random_weights_reach_the_model_and_run_json(tmp_path, originals, monkeypatch):
    import dataclasses

    import evaluator.biqa
    from evaluator_fixtures import BrightnessBIQA

    asked = {}

    def fake_create(name, weights=None, device="cpu", *, random_weights_seed=None):
        asked.update(name=name, weights=weights, seed=random_weights_seed)
        model = BrightnessBIQA()
        model.info = dataclasses.replace(model.info, needs_weights=True, random_weights_seed=random_weights_seed)
        return model

    monkeypatch.setattr(evaluator.biqa, "create", fake_create)
    run = tmp_path / "runs" / "r"
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), "--biqa", "koncept512",
                 "--random-weights", "9", *FAST]) == 0
    assert asked == {"name": "koncept512", "weights": None, "seed": 9}
    assert json.loads((run / "run.json").read_text())["biqa_random_weights_seed"] == 9
    # resuming with another random network would mix two networks' results in one run: refused
    assert main(["ifgsm", "--originals", str(originals), "--out", str(run), "--biqa", "koncept512",
                 "--random-weights", "10", *FAST]) == 2
    other = tmp_path / "runs" / "default"
    assert main(["blur", "--originals", str(originals), "--out", str(other), "--quiet"]) == 0  # real brisque
    assert json.loads((other / "run.json").read_text())["biqa_random_weights_seed"] is None


def test_finalize_finds_the_originals_or_says_to_pass_them(tmp_path, originals, monkeypatch, capsys):
    """run.json names the originals folder and hashes its images; finalize finds them from any folder (the note
    in runs/.pp-attack/, else a folder of that name beside the run or its parents) or asks for --originals."""
    import shutil
    import tempfile

    run = tmp_path / "runs" / "moved"
    for shard in ("0/2", "1/2"):
        assert main(["noise", "--originals", str(originals), "--out", str(run), "--quiet", "--shard", shard]) == 0
    pointer = work_dir(run) / "originals.path"
    assert pointer.read_text() == str(originals.resolve())  # stays on this machine, outside the submitted run
    pointer.unlink()  # a runs folder copied from elsewhere: found beside a parent (the pytest base folder)
    elsewhere = Path(tempfile.mkdtemp(prefix="pp-no-originals-"))  # no originals beside it or its parents
    try:
        shutil.copytree(tmp_path / "runs", elsewhere / "runs")
        monkeypatch.chdir(tmp_path)
        assert main(["finalize", str(run)]) == 0
        assert json.loads((run / "run.json").read_text())["status"] == "complete"
        copy = elsewhere / "runs" / "moved"
        monkeypatch.chdir(elsewhere)
        assert main(["finalize", str(copy)]) == 3  # the originals were not found
        err = capsys.readouterr().err
        assert f"a folder named {originals.name!r}" in err and "pp-attack finalize RUN --originals DIR" in err
        other = tmp_path / "other-originals"
        shutil.copytree(originals, other)
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(other / "img1.png")  # same names, other pixels
        assert main(["finalize", str(copy), "--originals", str(other)]) == 3
        assert "are not the images the run was made from" in capsys.readouterr().err
        assert main(["finalize", str(copy), "--originals", str(originals)]) == 0
        shutil.copytree(originals, elsewhere / originals.name)  # moved beside the runs: found by name and hash
        json_text = (copy / "run.json").read_text()
        (copy / "run.json").write_text(json_text.replace('"complete"', '"in progress"'))
        assert main(["finalize", str(copy)]) == 0
    finally:
        shutil.rmtree(elsewhere)


def test_a_task_chain_with_steps_before_its_jpeg_is_said_in_the_log_and_run_json(tmp_path, originals, caplog):
    """task.toml's preprocess.chain ('resize75+jpeg90') is what the evaluator applies, but pp-attack's JPEG-aware
    parts (through_jpeg's DiffJPEG, pgd-dct, score_jpeg) model the JPEG only: the shown setting must not pass as
    honoured, so a warning says so and run.json records it."""
    task = tmp_path / "task.toml"
    task.write_text('[preprocess]\nchain = "resize75+jpeg90"\n')
    run = tmp_path / "runs" / "chain"
    with caplog.at_level("WARNING"):
        assert main(["noise", "--originals", str(originals), "--out", str(run), "--task", str(task), "--quiet"]) == 0
    warned = [r.getMessage() for r in caplog.records if "preprocess.chain" in r.getMessage()]
    assert len(warned) == 1 and "resize75" in warned[0] and "score_jpeg" in warned[0] and "through_jpeg" in warned[0]
    meta = json.loads((run / "run.json").read_text())
    assert meta["task"]["preprocess"] == {"chain": "resize75+jpeg90"}
    assert "resize75" in meta["preprocess_note"] and "score_jpeg" in meta["preprocess_note"]
    plain = tmp_path / "runs" / "plain"
    caplog.clear()
    assert main(["noise", "--originals", str(originals), "--out", str(plain), "--quiet"]) == 0
    assert "preprocess_note" not in json.loads((plain / "run.json").read_text())
    assert not [r for r in caplog.records if "preprocess.chain" in r.getMessage()]
