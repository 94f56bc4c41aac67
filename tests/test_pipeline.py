"""evaluator.pipeline end to end on tiny real images: 3 runs (folder, zip, invalid), every file of the contract.

The BIQA is `BrightnessBIQA` (100 * mean intensity), so every expected number is recomputed here independently
from the images, the organizer codec and skimage.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from evaluator_fixtures import BrightnessBIQA, darken, run_json, write_originals, write_run
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import evaluator.pipeline
from evaluator.common.versions import library_versions
from evaluator.codec import OrganizerCodec
from evaluator.config import TaskConfig, task_from_dict
from evaluator.scoring.fidelity import SSIM_TOLERANCE
from evaluator.contracts.jury_package import jpeg_markers
from evaluator.contracts.results import RUNS_COLUMNS, SCORES_COLUMNS
from evaluator.pipeline import PipelineError, evaluate
from evaluator.common.errors import OriginalsError
from evaluator.contracts.jury_package import check_blinding, load_key, load_package

LEVELS = {"img-a": 0.70, "img-b": 0.62, "img-c": 0.80, "img-d": 0.30, "img-e": 0.58}  # img-d: below threshold
DARK, MILD, BROKEN = "team1-darkened", "team2-mildly", "team3-broken<img src=x onerror=alert(1)>"


def _score(rgb: np.ndarray) -> float:
    return float(100 * np.mean(rgb.astype(np.float32) / 255))


@pytest.fixture()
def setup(tmp_path):
    originals = write_originals(tmp_path / "originals", LEVELS)
    runs = tmp_path / "runs"
    runs.mkdir()
    dark = {k: darken(v, 0.5) for k, v in originals.items()}
    mild = {k: darken(v, 0.95) for k, v in originals.items()}
    write_run(runs, DARK, dark)
    mild_dir = write_run(tmp_path / "staging", MILD, mild, fmt="jpg")  # shipped as a zip
    with zipfile.ZipFile(runs / f"{MILD}.zip", "w") as zf:
        for f in sorted(mild_dir.iterdir()):
            zf.write(f, f.name)
    broken = write_run(runs, BROKEN, {k: v for k, v in originals.items() if k != "img-e"})
    Image.fromarray(originals["img-a"][:10]).save(broken / "img-a.png")  # wrong size
    return tmp_path, originals, {DARK: dark, MILD: mild}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _run(tmp_path: Path, model=None, task: TaskConfig | None = None):
    model = model or BrightnessBIQA()
    result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", task or TaskConfig(), model,
                      batch_size=3, progress=False)
    return result, model


def test_every_file_of_the_results_contract(setup):
    tmp_path, originals, submitted = setup
    result, model = _run(tmp_path)
    out = tmp_path / "out"
    results = ["jury", "report.html", "runs.csv", "scores.csv", "selection.csv", "task.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted([".cache", ".generations", ".lock", "current"] + results)
    (gen,) = (out / ".generations").iterdir()
    assert os.readlink(out / "current") == f".generations/{gen.name}"
    assert sorted(p.name for p in gen.iterdir()) == sorted(results)
    assert all(os.readlink(out / name) == f"current/{name}" for name in results)
    codec = OrganizerCodec()
    clean = {k: _score(v) for k, v in originals.items()}
    eligible = sorted(k for k, v in clean.items() if v >= 50)
    assert eligible == ["img-a", "img-b", "img-c", "img-e"]

    # scores.csv: one row per (scored run, image), recomputed independently
    rows = _read_csv(out / "scores.csv")
    assert list(rows[0]) == list(SCORES_COLUMNS)
    assert [(r["run"], r["image"]) for r in rows] == [(run, i) for run in (DARK, MILD) for i in sorted(LEVELS)]
    for r in rows:
        sub, orig = submitted[r["run"]][r["image"]], originals[r["image"]]
        if r["run"] == MILD:  # submitted as quality-95 JPEG: the pipeline scores what it decodes
            sub = np.asarray(Image.open(tmp_path / "staging" / MILD / f"{r['image']}.jpg").convert("RGB"))
        assert float(r["score_clean"]) == pytest.approx(clean[r["image"]], abs=1e-4)
        expected = _score(codec.roundtrip(sub))
        assert float(r["score"]) == pytest.approx(expected, abs=1e-4)
        assert r["low_quality"] == ("true" if expected < 50 else "false")
        assert float(r["psnr"]) == pytest.approx(peak_signal_noise_ratio(orig, sub, data_range=255), rel=1e-9)
        # SSIM is the compiled one (evaluator.scoring.fidelity): documented difference <= SSIM_TOLERANCE
        assert float(r["ssim"]) == pytest.approx(
            structural_similarity(orig, sub, channel_axis=-1, data_range=255), rel=0, abs=SSIM_TOLERANCE)

    # runs.csv: exact columns, invalid row with its errors, numbers over the high-quality originals only
    runs = {r["run"]: r for r in _read_csv(out / "runs.csv")}
    assert list(next(iter(runs.values()))) == list(RUNS_COLUMNS)
    assert set(runs) == {DARK, MILD, BROKEN}
    bad = runs[BROKEN]
    assert bad["status"] == "invalid" and bad["qualified"] == "false" and bad["accuracy"] == ""
    assert "img-e.png: is missing" in bad["error"] and "img-a.png" in bad["error"]
    dark = runs[DARK]
    assert (dark["status"], dark["error"], dark["n_images"]) == ("scored", "", "4")
    assert float(dark["accuracy"]) == 0.0 and float(dark["accuracy_reduction"]) == 1.0
    assert dark["qualified"] == "true"
    mild = runs[MILD]
    assert float(mild["accuracy"]) == 1.0 and mild["qualified"] == "false"
    dark_scores = {r["image"]: float(r["score"]) for r in rows if r["run"] == DARK}
    s = np.array([clean[i] for i in eligible]) / 100
    p = np.array([dark_scores[i] for i in eligible]) / 100
    assert float(dark["mean_score"]) == pytest.approx(100 * p.mean())
    assert float(dark["abs_gain"]) == pytest.approx(np.mean(s - p))
    assert float(dark["rel_gain"]) == pytest.approx(np.mean((s - p) / (s + 1)))
    assert float(dark["robustness_score"]) == pytest.approx(
        np.mean(np.log10(np.maximum(1 - s, s) / np.maximum(np.abs(s - p), 1e-6))))
    psnrs = [float(r["psnr"]) for r in rows if r["run"] == DARK and r["image"] in eligible]
    assert float(dark["psnr"]) == pytest.approx(np.mean(psnrs))

    # selection.csv: population variance across the two scored runs, high-quality originals only
    sel = _read_csv(out / "selection.csv")
    assert list(sel[0]) == ["image", "variance", "rank"]
    by = {(r["run"], r["image"]): float(r["score"]) for r in rows}
    var = {i: float(np.var([by[(DARK, i)], by[(MILD, i)]])) for i in eligible}
    expected_order = sorted(var, key=lambda i: (-var[i], i))
    assert [r["image"] for r in sel] == expected_order
    assert [int(r["rank"]) for r in sel] == [1, 2, 3, 4]
    assert [float(r["variance"]) for r in sel] == pytest.approx([var[i] for i in expected_order])

    # task.json: the rules, the versions and the model hash; the excluded original is reported
    meta = json.loads((out / "task.json").read_text(encoding="utf-8"))
    assert meta["rules"] == TaskConfig().to_dict()
    assert re.fullmatch(r"[0-9a-f]{64}", meta["model"]["sha256"])
    assert {"torch", "numpy", "scipy", "scikit-image", "jpeglib", "python"} <= set(meta["versions"])
    assert set(meta["versions"]) == set(library_versions())  # the list pp-attack records in run.json
    assert meta["originals"]["excluded"] == [{"image": "img-d", "score_clean": pytest.approx(clean["img-d"])}]
    assert result.excluded_originals == ("img-d",)


def test_jury_package_is_blind_loads_and_holds_the_scored_jpeg_bytes(setup):
    tmp_path, originals, submitted = setup
    result, _ = _run(tmp_path)
    jury = tmp_path / "out" / "jury"
    package = load_package(jury)
    key = load_key(jury, package)
    check_blinding(package, key)
    assert package.image_ids == tuple(s.image for s in result.selection)
    assert set(key.runs) == {DARK}  # the only qualified run
    # one qualified run: 3 most + 2 least shrink to 1 + 0, and the manifest says so
    manifest = json.loads((jury / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["task"] == {"most": 1, "least": 0, "show_original": False}
    assert "shrunk" in manifest["note"]
    codec = OrganizerCodec()
    for image in package.images:
        (cand,) = image.candidates
        data = cand.file.read_bytes()
        assert data == codec.compress(submitted[DARK][image.image])  # the exact bytes that were scored
        markers = [m for m, _ in jpeg_markers(data)]
        assert 0xFE not in markers and not any(0xE1 <= m <= 0xEF for m in markers)
        with Image.open(cand.file) as im:
            assert "exif" not in im.info and "comment" not in im.info
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", cand.id)
    # no run name anywhere under jury/ except key.json
    for f in jury.rglob("*"):
        if f.is_file() and f.name != "key.json":
            blob = f.read_bytes().lower()
            for run in (DARK, MILD, BROKEN):
                assert run.lower().encode() not in blob, f
    assert DARK in (jury / "key.json").read_text(encoding="utf-8")


def test_candidate_ids_are_fresh_random_on_every_evaluation(setup):
    tmp_path, _, _ = setup
    _run(tmp_path)
    first = set(json.loads((tmp_path / "out" / "jury" / "key.json").read_text())["candidates"])
    _run(tmp_path)
    second = set(json.loads((tmp_path / "out" / "jury" / "key.json").read_text())["candidates"])
    assert first and second and not first & second


def test_rerun_hits_the_cache_and_a_new_run_scores_only_its_images(setup):
    tmp_path, originals, _ = setup
    first, m1 = _run(tmp_path)
    assert m1.images_seen == 5 + 2 * 5  # originals + two valid runs (the invalid one is never scored)
    before = (tmp_path / "out" / "scores.csv").read_bytes()
    again, m2 = _run(tmp_path)
    assert (m2.calls, m2.images_seen) == (0, 0)
    assert again.cache.computed == 0 and again.cache.hits == 5 + 2 * 5
    assert (tmp_path / "out" / "scores.csv").read_bytes() == before
    write_run(tmp_path / "runs", "team4-new", {k: darken(v, 0.4) for k, v in originals.items()})
    third, m3 = _run(tmp_path)
    assert m3.images_seen == 5
    assert third.run("team4-new").qualified


def test_changed_rules_or_model_do_not_reuse_cached_scores(setup):
    tmp_path, _, _ = setup
    _run(tmp_path)
    _, m = _run(tmp_path, model=BrightnessBIQA(scale=0.9))
    assert m.images_seen == 15
    q80 = task_from_dict({"jpeg": {"quality": 80}})
    _, m = _run(tmp_path, task=q80)
    assert m.images_seen == 2 * 5  # originals are scored clean, the JPEG rules do not change them
    stricter = task_from_dict({"biqa": {"threshold": 75}})
    result, m = _run(tmp_path, task=stricter)
    assert m.images_seen == 0  # the threshold changes the decisions, not the scores
    assert result.excluded_originals == ("img-a", "img-b", "img-d", "img-e")


def test_an_interrupted_evaluation_leaves_the_previous_results_intact(setup, monkeypatch):
    tmp_path, originals, _ = setup
    _run(tmp_path)
    out = tmp_path / "out"
    snapshot = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluator.pipeline, "write_report", crash)  # the last file written before the commit
    write_run(tmp_path / "runs", "team4-new", {k: darken(v, 0.4) for k, v in originals.items()})
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    now = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert now == snapshot
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    monkeypatch.undo()
    result, model = _run(tmp_path)
    assert model.images_seen == 0  # the interrupted run's scores were cached before the crash
    assert "team4-new" in (out / "runs.csv").read_text(encoding="utf-8")


def test_nothing_is_written_outside_out(setup):
    tmp_path, _, _ = setup

    def tree() -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path)): (p.read_bytes() if p.is_file() else b"<dir>")
                for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts[:1]}

    before = tree()
    _run(tmp_path)
    assert tree() == before


def test_report_is_self_contained_and_escapes_run_names(setup):
    tmp_path, _, _ = setup
    _run(tmp_path)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "data:image/jpeg;base64," in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from a network
    # one script only: the gallery's own fixed one (switch and full-size view), no text of a run inside it
    from evaluator.outputs.report_gallery import SCRIPT
    assert page.lower().count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert DARK in page and "threshold 50" in page


def test_show_original_and_shrinking_with_two_qualified_runs(setup):
    tmp_path, originals, _ = setup
    write_run(tmp_path / "runs", "team4-new", {k: darken(v, 0.4) for k, v in originals.items()})
    task = task_from_dict({"jury": {"show_original": True}, "selection": {"images": 2}})
    result, _ = _run(tmp_path, task=task)
    jury = tmp_path / "out" / "jury"
    package = load_package(jury)
    check_blinding(package, load_key(jury, package))
    assert (package.task.most, package.task.least, package.task.show_original) == (1, 1, True)
    assert len(package.images) == 2 and all(len(im.candidates) == 2 for im in package.images)
    for im in package.images:
        with Image.open(im.original) as o:
            assert np.array_equal(np.asarray(o), originals[im.image])
            assert not (set(o.info) - {"dpi", "gamma"})


def test_only_invalid_runs_still_write_every_file(tmp_path):
    write_originals(tmp_path / "originals", {"x": 0.7, "y": 0.6})
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "empty-run").mkdir()
    only_json = runs / "json-only"
    only_json.mkdir()
    (only_json / "run.json").write_text(json.dumps(run_json("json-only")))
    result, model = _run(tmp_path)
    out = tmp_path / "out"
    rows = _read_csv(out / "runs.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("empty-run", "invalid"), ("json-only", "invalid")]
    assert all(r["error"] for r in rows)
    assert _read_csv(out / "scores.csv") == [] and _read_csv(out / "selection.csv") == []
    manifest = json.loads((out / "jury" / "manifest.json").read_text())
    assert manifest["images"] == [] and json.loads((out / "jury" / "key.json").read_text()) == {"candidates": {}}
    assert model.images_seen == 2


def test_missing_originals_raise_before_anything_is_written(tmp_path):
    (tmp_path / "originals").mkdir()
    (tmp_path / "runs").mkdir()
    with pytest.raises(OriginalsError, match="originals"):
        _run(tmp_path)
    assert not (tmp_path / "out").exists()


def test_identical_submission_gets_infinite_psnr_and_no_camouflage(tmp_path):
    originals = write_originals(tmp_path / "originals", {"x": 0.7, "y": 0.6})
    (tmp_path / "runs").mkdir()
    write_run(tmp_path / "runs", "copy", originals)
    result, _ = _run(tmp_path)
    row = result.run("copy")
    assert row.psnr == math.inf and row.ssim == pytest.approx(1.0)
    assert not row.qualified and abs(row.abs_gain) < 0.01
    assert "inf" in (tmp_path / "out" / "runs.csv").read_text()
    assert json.loads((tmp_path / "out" / "task.json").read_text())["originals"]["accuracy"] == 1.0
    assert dataclasses.asdict(result.cache)["computed"] == 4


def test_pixels_that_do_not_decode_make_only_that_run_invalid(setup):
    """Runs are validated from headers; a truncated image surfaces while scoring and invalidates its run only."""
    tmp_path, originals, _ = setup
    bad = write_run(tmp_path / "runs", "team5-truncated", {k: darken(v, 0.4) for k, v in originals.items()})
    data = (bad / "img-c.png").read_bytes()
    (bad / "img-c.png").write_bytes(data[: len(data) // 2])
    result, _ = _run(tmp_path)
    row = result.run("team5-truncated")
    assert row.status == "invalid" and "img-c.png: cannot be decoded" in row.error
    assert not [r for r in result.scores if r.run == "team5-truncated"]
    assert result.run(DARK).qualified and result.run(MILD).status == "scored"
    key = json.loads((tmp_path / "out" / "jury" / "key.json").read_text())
    assert {c["run"] for c in key["candidates"].values()} == {DARK}


def test_many_broken_runs_at_once_leave_the_good_run_complete(tmp_path):
    """A field of broken submissions: each gets its own invalid row; the good run is scored in full."""
    import os

    originals = write_originals(tmp_path / "originals", {"p": 0.7, "q": 0.66})
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "good-run", {k: darken(v, 0.5) for k, v in originals.items()})
    (runs / "empty-run").mkdir()
    listed = write_run(runs, "json-list", originals)
    (listed / "run.json").write_text("[1, 2]")
    renamed = write_run(runs, "png-as-jpg", originals)
    (renamed / "p.png").rename(renamed / "p.jpg")
    tiny = write_run(runs, "one-pixel", originals)
    Image.fromarray(originals["q"][:1, :1]).save(tiny / "q.png")
    (tmp_path / "secret.png").write_bytes((tiny / "p.png").read_bytes())
    linked = write_run(runs, "symlinked", originals)
    (linked / "p.png").unlink()
    (linked / "p.png").symlink_to(tmp_path / "secret.png")
    with zipfile.ZipFile(runs / "zip-slip.zip", "w") as zf:
        zf.writestr("../p.png", b"x")
        zf.writestr("run.json", json.dumps(run_json("zip-slip")))
    badname = write_run(runs, "bad-name", originals)
    os.close(os.open(os.fsencode(badname) + b"/\xff\xfe.png", os.O_CREAT | os.O_WRONLY))

    result, model = _run(tmp_path)
    rows = {r.run: r for r in result.runs}
    assert rows["good-run"].status == "scored" and rows["good-run"].n_images == 2 and rows["good-run"].qualified
    broken = {name: r.error for name, r in rows.items() if name != "good-run"}
    assert set(broken) == {"empty-run", "json-list", "png-as-jpg", "one-pixel", "symlinked", "zip-slip", "bad-name"}
    assert all(r.status == "invalid" for n, r in rows.items() if n != "good-run")
    assert len(set(broken.values())) == len(broken)  # every run has its own message
    assert "run.json" in broken["json-list"] and "p.jpg" in broken["png-as-jpg"]
    assert "q.png" in broken["one-pixel"] and "p.png" in broken["symlinked"] and ".." in broken["zip-slip"]
    assert model.images_seen == 2 + 2
    assert [p.name for p in tmp_path.iterdir()] and not (tmp_path / "p.png").exists()


def test_a_results_folder_inside_the_runs_folder_is_not_taken_for_a_run(setup):
    tmp_path, _, _ = setup
    model = BrightnessBIQA()
    for _ in range(2):
        result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "runs" / "results", TaskConfig(),
                          model, progress=False)
        assert {r.run for r in result.runs} == {DARK, MILD, BROKEN}
    with pytest.raises(PipelineError, match="must not be the runs or the originals folder"):
        evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "runs", TaskConfig(), model, progress=False)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_worker_processes_do_not_change_any_number(setup, workers):
    """Decoding, JPEG and PSNR/SSIM in 0 (inline), 1 or 3 worker processes: the same files, byte for byte."""
    tmp_path, _, _ = setup
    _run(tmp_path)
    names = ("scores.csv", "runs.csv", "selection.csv")
    reference = {n: (tmp_path / "out" / n).read_bytes() for n in names}
    shutil.rmtree(tmp_path / "out")
    result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(), BrightnessBIQA(),
                      batch_size=2, progress=False, workers=workers)
    assert {n: (tmp_path / "out" / n).read_bytes() for n in names} == reference
    assert result.cache.computed == 5 + 10


class PidBIQA(BrightnessBIQA):
    """BrightnessBIQA declared `thread_independent` (so pp-evaluate may score it in its worker processes); each
    call appends the scoring process's id to `log`."""

    def __init__(self, log: Path):
        super().__init__()
        from evaluator.biqa.base import BIQAInfo

        self.info = BIQAInfo(name="brightness", thread_independent=True)
        self.log = str(log)

    def raw_score(self, x):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().raw_score(x)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_thread_independent_model_scores_in_the_jobs_with_the_same_numbers(setup, workers):
    """A CPU model registered thread_independent scores inside the per-image jobs (in the worker processes when
    there are workers, here when not); the files are byte for byte those of scoring in this process."""
    tmp_path, _, _ = setup
    _run(tmp_path)  # BrightnessBIQA: not thread_independent, scored in this process
    names = ("scores.csv", "runs.csv", "selection.csv")
    reference = {n: (tmp_path / "out" / n).read_bytes() for n in names}
    log = tmp_path / "pids.txt"
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out2", TaskConfig(), PidBIQA(log),
             batch_size=2, progress=False, workers=workers)
    assert {n: (tmp_path / "out2" / n).read_bytes() for n in names} == reference
    pids = set(log.read_text().split())
    if workers == 0:
        assert pids == {str(os.getpid())}
    else:  # the runs' images in the workers (the 5 originals are too few to send: scored inline, here)
        assert pids - {str(os.getpid())}, pids


class NanInWorkersBIQA(PidBIQA):
    """PidBIQA that scores NaN in any process but the one that built it (so only a worker's scores are NaN)."""

    def __init__(self, log: Path):
        super().__init__(log)
        self.home = os.getpid()

    def raw_score(self, x):
        return super().raw_score(x) * (1.0 if os.getpid() == self.home else float("nan"))


@pytest.mark.parametrize("workers", [0, 2])
def test_originals_of_different_sizes_score_in_the_jobs_as_in_this_process(tmp_path, workers):
    """Landscape and portrait originals (the jobs of `batch_size` originals mix sizes): a model that scores in the
    jobs batches only same-size images, as this process does; the same files byte for byte, and the same number
    of model calls with 0 or 2 workers (was: 'all input arrays must have the same shape')."""
    from evaluator_fixtures import photo

    from evaluator.common.imageio import save_png

    originals = {f"img-{i}": photo(i, 0.7, *((24, 32) if i % 3 else (32, 24))) for i in range(9)}
    (tmp_path / "originals").mkdir()
    for image, rgb in originals.items():
        save_png(tmp_path / "originals" / f"{image}.png", rgb)
    write_run(tmp_path / "runs", DARK, {k: darken(v, 0.5) for k, v in originals.items()})
    write_run(tmp_path / "runs", MILD, {k: darken(v, 0.95) for k, v in originals.items()})
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "ref", TaskConfig(), BrightnessBIQA(),
             batch_size=4, progress=False, workers=0)  # scored in this process
    result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(),
                      PidBIQA(tmp_path / "pids.txt"), batch_size=4, progress=False, workers=workers)
    names = ("scores.csv", "runs.csv", "selection.csv")
    assert {n: (tmp_path / "out" / n).read_bytes() for n in names} == {
        n: (tmp_path / "ref" / n).read_bytes() for n in names}
    # originals (P: portrait, L: landscape) in jobs of 4: [P L L P] [L L P L] [L] -> 3 + 3 + 1 calls;
    # runs: one call per image id's job
    assert result.cache.model_batches == 7 + 9


def test_a_model_scoring_nan_in_a_worker_stops_the_evaluation_with_the_same_error(setup):
    """The finite-score check runs where the model scores: a NaN from a worker process is the PipelineError that
    scoring in this process gives, and no results are committed."""
    tmp_path, _, _ = setup
    with pytest.raises(PipelineError, match="must return one finite score per image"):
        evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(),
                 NanInWorkersBIQA(tmp_path / "pids.txt"), batch_size=2, progress=False, workers=2)
    assert not (tmp_path / "out" / "runs.csv").exists()


class KilledInWorkersBIQA(PidBIQA):
    """PidBIQA whose worker processes die (SIGKILL, as the out-of-memory killer does) when they score."""

    def __init__(self, log: Path):
        super().__init__(log)
        self.home = os.getpid()

    def raw_score(self, x):
        if os.getpid() != self.home:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().raw_score(x)


def test_a_worker_killed_mid_evaluation_is_a_clear_error_and_nothing_is_committed(setup):
    """A worker process that dies (the OOM killer) is a PipelineError saying what happened and what to do (was a
    bare BrokenProcessPool traceback); no results are committed."""
    from evaluator.common.errors import KitError

    tmp_path, _, _ = setup
    with pytest.raises(PipelineError, match=r"worker process .*ended abruptly.*--workers") as caught:
        evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(),
                 KilledInWorkersBIQA(tmp_path / "pids.txt"), batch_size=2, progress=False, workers=2)
    assert isinstance(caught.value, KitError) and "nothing was committed" in str(caught.value).lower()
    assert not (tmp_path / "out" / "runs.csv").exists() and not (tmp_path / "out" / "current").exists()


def test_the_worker_pool_forks_while_no_other_thread_runs(setup, monkeypatch):
    """With progress bars on (pp-evaluate's default), the pool forks while no thread of the evaluation but this one
    runs: no thread that may hold a lock (tqdm's monitor takes tqdm's lock and writes to stderr; the runs'
    validation thread) is copied into the workers half-way."""
    import threading

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    real_fork, alive = os.fork, []
    before = set(threading.enumerate())  # threads other tests left behind are not this evaluation's

    def fork():
        alive.append(sorted(t.name for t in threading.enumerate()
                            if t is not threading.current_thread() and t not in before))
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    tmp_path, _, _ = setup
    evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(), BrightnessBIQA(),
             batch_size=2, progress=True, workers=2)
    assert alive and all(names == [] for names in alive), alive


def test_an_unused_setting_is_refused_not_ignored(setup):
    """`fidelity_threads` (PSNR/SSIM threads before they moved into the worker processes) is gone: passing it is
    a TypeError, not a setting that is accepted and ignored."""
    tmp_path, _, _ = setup
    with pytest.raises(TypeError, match="fidelity_threads"):
        evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(), BrightnessBIQA(),
                 progress=False, fidelity_threads=2)


def test_a_run_json_with_a_huge_integer_or_overflowing_float_is_one_invalid_row(setup):
    """json.loads raises a plain ValueError past 4300 digits; it must be a run issue, not an abort."""
    tmp_path, originals, _ = setup
    for name, text in (("team6-bigint", '{"team": 1' + "0" * 5000 + "}"), ("team7-inf", '{"team": 1e999}')):
        folder = write_run(tmp_path / "runs", name, {k: darken(v, 0.4) for k, v in originals.items()})
        (folder / "run.json").write_text(text)
    result, _ = _run(tmp_path)
    assert "run.json: is not usable JSON" in result.run("team6-bigint").error
    assert "overflows to infinity" in result.run("team7-inf").error
    assert result.run(DARK).status == "scored" and result.run(MILD).status == "scored"


def test_runs_whose_names_differ_only_in_case_are_all_invalid(setup):
    tmp_path, originals, _ = setup
    write_run(tmp_path / "runs", "Team8", {k: darken(v, 0.4) for k, v in originals.items()})
    write_run(tmp_path / "runs", "team8", {k: darken(v, 0.3) for k, v in originals.items()})
    result, _ = _run(tmp_path)
    rows = [r for r in result.runs if r.run.casefold() == "team8"]
    assert len(rows) == 2 and all(r.status == "invalid" and "same run name" in r.error for r in rows)
    assert result.run(DARK).status == "scored"



def test_forked_workers_inherit_the_compiled_kernels_and_the_codec_probe(tmp_path):
    """Before the pool forks, this process compiles (or loads) PSNR/SSIM and runs the codec's Pillow probe, so a
    worker does neither (a fresh checkout otherwise compiled the kernels once in every worker: seconds each)."""
    import subprocess
    import sys

    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "a.png")
    code = f"""
import multiprocessing
from pathlib import Path
import numpy as np
from evaluator.codec import OrganizerCodec, _PILLOW_OK
from evaluator.common.worker_pool import WorkerPool
from evaluator.pipeline import _Entry, _prepare_image, _warm_for_workers
from evaluator.scoring import fidelity_fast
if "fork" not in multiprocessing.get_all_start_methods():
    raise SystemExit(0)
class Ref:
    name, sha256 = "a.png", "0" * 64
    def load(self):
        return np.full((16, 16, 3), 91, np.uint8)
codec = OrganizerCodec()
with WorkerPool(1, ahead=1, before_start=_warm_for_workers(codec)) as pool:
    jobs = iter([("tag", (Path({str(tmp_path / "a.png")!r}), [_Entry("run", Ref(), True, True)], codec))])
    [(tag, [(error, sha, pixels, fid, score)])] = list(pool.run(_prepare_image, jobs))
assert error is None and pixels.shape == (16, 16, 3) and fid["ssim"] < 1 and score is None, (error, fid)
assert fidelity_fast.ssim_uint8.signatures, "PSNR/SSIM were not compiled before the workers forked"
assert _PILLOW_OK, "the codec probe did not run before the workers forked"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ctrl_c_stops_the_evaluation_without_tracebacks_from_the_workers(setup):
    """Ctrl-C in a terminal reaches the whole process group: the main process stops the evaluation (nothing is
    committed) and the workers, idle or busy, leave it to do so instead of each printing a KeyboardInterrupt
    traceback. The interrupt comes while the workers wait for jobs (in the extra step, after the gallery)."""
    import signal
    import subprocess
    import sys

    if not hasattr(os, "killpg"):
        pytest.skip("no process groups on this platform")
    tmp_path, _, _ = setup
    code = f"""
import os, signal, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from evaluator_fixtures import BrightnessBIQA
from evaluator.config import TaskConfig
from evaluator.pipeline import evaluate
def extra(staging, result, meta, runs, paths):
    os.killpg(os.getpgrp(), signal.SIGINT)
    time.sleep(30)
tmp = Path({str(tmp_path)!r})
try:
    evaluate(tmp / "originals", tmp / "runs", tmp / "out", TaskConfig(), BrightnessBIQA(), batch_size=2,
             progress=False, workers=2, extra=extra)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130 and done.stdout.strip() == "interrupted", (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out" / "runs.csv").exists()
