"""pp-evaluate codabench-bundle / codabench-check: the round trip, one broken copy of each kind, a submission
scored through the bundle's own command (the same numbers as pp-evaluate), and the detailed results page."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from evaluator_fixtures import darken, write_run

from evaluator.cli import main as pp_evaluate
from evaluator.common.imageio import save_png
from evaluator.contracts.results import read_csv
from evaluator.outputs.codabench import SCORE_KEYS
from evaluator.outputs.codabench_bundle import COMPETITION_YAML, safe_member_name
from evaluator.outputs.codabench_check import BundleCheckError, check_bundle, effective_time_limit, run_submission

IDS = ("img01", "img02", "img03")


def _photos() -> dict[str, np.ndarray]:
    """Three 256x384 crops of a real photo (scikit-image's astronaut): BRISQUE needs natural image statistics, and
    images this large make the float reductions depend on torch's thread count (the scorer pins it, as pp-evaluate)."""
    from skimage import data

    photo = data.astronaut()
    return {i: np.ascontiguousarray(photo[k * 128:k * 128 + 256, k * 64:k * 64 + 384]) for k, i in enumerate(IDS)}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("codabench")
    originals = root / "originals"
    originals.mkdir()
    photos = _photos()
    for i, rgb in photos.items():
        save_png(originals / f"{i}.png", rgb)
    bundle = root / "bundle.zip"
    assert pp_evaluate(["codabench-bundle", "--originals", str(originals), "--out", str(bundle),
                        "--task", str(Path(__file__).parents[1] / "task.toml"), "--title", "PP test",
                        "--image", "registry.example.org/pp:1"]) == 0
    return root, originals, bundle, photos


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _edit_yaml(members: dict[str, bytes], edit) -> dict[str, bytes]:
    cfg = yaml.safe_load(members[COMPETITION_YAML])
    edit(cfg)
    return {**members, COMPETITION_YAML: yaml.safe_dump(cfg, sort_keys=False).encode()}


def _check(bundle: Path, capsys, *extra: str) -> tuple[int, str]:
    code = pp_evaluate(["codabench-check", str(bundle), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# -- the round trip ------------------------------------------------------------------------------------------------
def test_the_bundle_has_every_part_and_passes_the_check(made, capsys, tmp_path):
    root, originals, bundle, _ = made
    members = _members(bundle)
    assert {COMPETITION_YAML, "logo.png", "Dockerfile", "scoring_program/metadata.yaml", "reference_data/task.toml",
            "pages/overview.md", "pages/evaluation.md", "pages/submission.md", "pages/terms.md"} <= set(members)
    assert {f"reference_data/{i}.png" for i in IDS} <= set(members)
    assert all(safe_member_name(n) for n in members)
    assert members["reference_data/img02.png"] == (originals / "img02.png").read_bytes()
    cfg = yaml.safe_load(members[COMPETITION_YAML])
    assert cfg["version"] == 2 and cfg["title"] == "PP test" and cfg["docker_image"] == "registry.example.org/pp:1"
    assert cfg["enable_detailed_results"] is True and cfg["show_detailed_results_in_submission_panel"] is True
    assert cfg["show_detailed_results_in_leaderboard"] is False  # no team sees another's images during the run
    assert cfg["tasks"][0]["scoring_program"] == "scoring_program" and cfg["phases"][0]["tasks"] == [0]
    # participants must get the originals they attack: the phase's public data (Codabench's Files tab)
    assert cfg["phases"][0]["public_data"] == cfg["tasks"][0]["reference_data"] == "reference_data"
    assert "*Files* tab" in members["pages/overview.md"].decode()
    (board,) = cfg["leaderboards"]
    keys = [c["key"] for c in board["columns"]]
    assert sorted(keys) == sorted(SCORE_KEYS) and keys[0] == "accuracy" and board["columns"][0]["sorting"] == "asc"
    assert all(len(c["key"]) < 36 and len(c["title"]) <= 36 for c in board["columns"])
    meta = yaml.safe_load(members["scoring_program/metadata.yaml"])
    assert meta == {"command": "python -m evaluator.outputs.codabench /app/input /app/output"}
    assert "pixel-privacy-kit" in members["Dockerfile"].decode() and "FROM python:" in members["Dockerfile"].decode()
    assert check_bundle(bundle, tmp_path).problems == []
    as_text = _edit_yaml(members, lambda c: c.update(version="2", docker_image="localhost:5000/pp"))  # str(version)
    assert check_bundle(_write(tmp_path / "v.zip", as_text), tmp_path / "v").problems == []
    code, out = _check(bundle, capsys)
    assert code == 0 and "OK" in out and "11 leaderboard columns" in out


def test_the_dockerfile_builds_the_kit_from_a_checkout(made):
    """Docker cannot run here, so the Dockerfile is read: every COPY source exists in the kit's checkout (the build
    context), every package of pyproject.toml is copied, the compiler comes before the first pip install (brisque's
    libsvm-official is a source distribution only: it is built in the image), the library pins are this machine's,
    and the kit is installed, imported from site-packages, and the working folder is Codabench's /app/program."""
    import tomllib

    from evaluator.common.versions import library_versions

    _, _, bundle, _ = made
    repo = Path(__file__).parents[1]
    lines = _members(bundle)["Dockerfile"].decode().splitlines()
    steps = [line for line in lines if line and not line.startswith("#")]
    copied = []
    for step in steps:
        if step.startswith("COPY "):
            *sources, dest = step.split()[1:]
            assert dest.startswith("/opt/pixel-privacy-kit/")
            copied += sources
    assert all((repo / src).exists() for src in copied), copied
    packages = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in packages["include"]} <= set(copied)
    assert {"pyproject.toml", "README.md"} <= set(copied)
    first_pip = next(i for i, step in enumerate(steps) if "pip install" in step)
    compiler = next(i for i, step in enumerate(steps) if "apt-get install" in step)
    assert compiler < first_pip and " g++" in steps[compiler] and " gcc" in steps[compiler]
    versions = library_versions()
    for name in ("numpy", "scipy", "pillow", "jpeglib", "brisque"):
        assert f"'{name}=={versions[name]}'" in "\n".join(steps), name
    assert "RUN pip install /opt/pixel-privacy-kit && python -m evaluator.outputs.codabench --help" in steps[-2]
    assert steps[-1] == "WORKDIR /app/program" and steps[0].startswith("FROM python:")


def test_the_pages_state_the_exact_rules_and_limits(made):
    _, _, bundle, _ = made
    members = _members(bundle)
    evaluation = members["pages/evaluation.md"].decode()
    task_text = (Path(__file__).parents[1] / "task.toml").read_text(encoding="utf-8")
    assert task_text.strip() in evaluation  # the rules file, verbatim
    assert members["reference_data/task.toml"].decode() == task_text
    assert "quality\n   90" in evaluation or "quality 90" in evaluation.replace("\n  ", " ")
    assert "3 images; sizes (width x height): 384x256 (3 images)" in evaluation
    submission = members["pages/submission.md"].decode()
    assert all(f"| `{i}` | 384x256 |" in submission for i in IDS) and "run.json" in submission
    assert "registry" not in members["pages/terms.md"].decode() and members["pages/terms.md"].strip()


def test_the_bundle_is_written_atomically_and_a_failed_build_leaves_the_old_one(made, tmp_path):
    _, originals, bundle, _ = made
    out = tmp_path / "b.zip"
    out.write_bytes(b"old")
    assert pp_evaluate(["codabench-bundle", "--originals", str(tmp_path / "none"), "--out", str(out)]) == 3
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["b.zip"]
    assert pp_evaluate(["codabench-bundle", "--originals", str(originals), "--out", str(out)]) == 0
    assert zipfile.is_zipfile(out) and [p.name for p in tmp_path.iterdir()] == ["b.zip"]
    # without --image the bundle names a placeholder image that Codabench cannot pull: the check says so
    problems = [str(p) for p in check_bundle(out, tmp_path / "w").problems]
    assert len(problems) == 1 and "docker_image: 'pixel-privacy-kit:latest' names no account" in problems[0]


def test_a_model_that_needs_weights_is_refused_without_them_and_bundled_with_them(made, tmp_path, capsys):
    _, originals, _, _ = made
    task = tmp_path / "task.toml"
    task.write_text('[biqa]\nmodel = "koncept512"\n')
    out = tmp_path / "k.zip"
    assert pp_evaluate(["codabench-bundle", "--originals", str(originals), "--out", str(out), "--task", str(task)]) == 4
    assert "needs a weights file" in capsys.readouterr().err and not out.exists()
    weights = tmp_path / "koncept.pth"
    weights.write_bytes(b"not really weights")
    assert pp_evaluate(["codabench-bundle", "--originals", str(originals), "--out", str(out), "--task", str(task),
                        "--biqa-weights", str(weights), "--image", "registry.example.org/pp:1"]) == 0
    members = _members(out)
    assert members["scoring_program/koncept.pth"] == b"not really weights"
    assert yaml.safe_load(members["scoring_program/metadata.yaml"])["command"].endswith(
        "--biqa-weights /app/program/koncept.pth")
    assert check_bundle(out, tmp_path / "w").problems == []
    # the same bundle with its weights file removed: the command names a file that is not there
    del members["scoring_program/koncept.pth"]
    problems = [str(p) for p in check_bundle(_write(tmp_path / "nok.zip", members), tmp_path / "w2").problems]
    assert any("/app/program/koncept.pth, which is not in the scoring program" in p for p in problems)


# -- broken copies: each fails with its own message ----------------------------------------------------------
def _missing_file(m):
    return {k: v for k, v in m.items() if k != "pages/evaluation.md"}


def _key_mismatch(m):
    return _edit_yaml(m, lambda c: c["leaderboards"][0]["columns"][2].update(key="ssim_mean"))


def _long_key(m):
    long_key = "accuracy_after_jpeg_over_all_the_test_images"
    return _edit_yaml(m, lambda c: c["leaderboards"][0]["columns"][0].update(key=long_key))


def _bad_yaml(m):
    return {**m, COMPETITION_YAML: b"version: 2\ntitle: [unclosed\nimage: logo.png\n"}


BROKEN = {
    "missing file": (_missing_file, "pages[1].file: names 'pages/evaluation.md', which is not in the bundle"),
    "key mismatch": (_key_mismatch, "key 'ssim_mean': is not a key of the scorer's scores.json"),
    "long key": (_long_key,
                 "has 44 characters: a column key must stay under 36 characters (Column.key, max_length=36)"),
    "bad YAML": (_bad_yaml, "competition.yaml: is not valid YAML ("),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_copy_fails_with_its_own_message(made, tmp_path, capsys, kind):
    _, _, bundle, _ = made
    edit, message = BROKEN[kind]
    broken = _write(tmp_path / "broken.zip", edit(_members(bundle)))
    code, out = _check(broken, capsys)
    assert code == 2, out
    assert message in out
    for other, (_, other_message) in BROKEN.items():
        if other != kind:
            assert other_message not in out
    assert "fix:" in out
    if kind == "key mismatch":
        assert "has no column for the scorer's key 'ssim', so that score is lost" in out


@pytest.mark.parametrize("length, ok", [(35, True), (36, False)])
def test_a_column_key_must_stay_under_36_characters(made, tmp_path, length, ok):
    """The issue's rule: keys UNDER 36 characters (Codabench's Column.key is max_length=36; 36 itself is refused)."""
    _, _, bundle, _ = made
    key = "k" * length
    members = _edit_yaml(_members(bundle), lambda c: c["leaderboards"][0]["columns"].append(
        {"title": "Extra", "key": key, "index": 99, "sorting": "asc"}))
    problems = [str(p) for p in check_bundle(_write(tmp_path / "k.zip", members), tmp_path / "w").problems]
    too_long = [p for p in problems if f"'{key}' has {length} characters" in p]
    assert bool(too_long) is not ok, problems
    if not ok:
        assert "leaderboards[0].columns[11].key" in too_long[0] and "shorten it to 35 characters" in too_long[0]
    assert any(f"key '{key}': is not a key of the scorer's scores.json" in p for p in problems)  # both lengths


@pytest.mark.parametrize("edit, message", [
    (lambda m: _edit_yaml(m, lambda c: c.update(version=2.0)), "version: must be 2 (a Codabench bundle), got 2.0"),
    (lambda m: _edit_yaml(m, lambda c: c.update(version=True)), "version: must be 2 (a Codabench bundle), got True"),
    (lambda m: _edit_yaml(m, lambda c: c["leaderboards"][0].update(submission_rule="force_last")),
     "leaderboards[0].submission_rule: 'force_last' is not a Codabench submission rule"),
    (lambda m: _edit_yaml(m, lambda c: c["phases"][0].update(max_submission_per_day=2)),
     "phases[0].max_submission_per_day: is not a phase key Codabench reads (it would be ignored); fix: remove it "
     "(did you mean 'max_submissions_per_day'?)"),
    (lambda m: _edit_yaml(m, lambda c: c.update(leaderboard=c.pop("leaderboards"))),
     "leaderboard: is not a key Codabench reads (it would be ignored); fix: remove it (did you mean 'leaderboards'?)"),
    (lambda m: {**m, "scoring_program/metadata.yaml": b"command: python3 /app/program/score.py /app/input /app/output"},
     "does not run the kit's scorer"),
    (lambda m: {**{k: v for k, v in m.items() if k != "scoring_program/metadata.yaml"},
                "scoring_program/README.md": b"no metadata"}, "scoring_program/metadata.yaml: is missing"),
    (lambda m: {k: v for k, v in m.items() if k != "scoring_program/metadata.yaml"},
     "tasks[0].scoring_program: names 'scoring_program', which is not a folder or .zip in the bundle"),
    (lambda m: {**m, "reference_data/task.toml": b"[biqa]\nthreshold = 500\n"},
     "reference_data/task.toml: biqa.threshold"),
    (lambda m: _edit_yaml(m, lambda c: c.update(terms="../../etc/passwd")), "terms: '../../etc/passwd' points outside"),
    (lambda m: _edit_yaml(m, lambda c: c.pop("docker_image")), "docker_image: is missing"),
    (lambda m: _edit_yaml(m, lambda c: c.update(docker_image="pixel-privacy-kit:latest")),
     "docker_image: 'pixel-privacy-kit:latest' names no account or registry, so Codabench pulls "
     "docker.io/library/pixel-privacy-kit:latest"),
    (lambda m: _edit_yaml(m, lambda c: c.pop("pages")), "competition.yaml: pages: is missing"),
    (lambda m: _edit_yaml(m, lambda c: c["phases"][0].update(starting_kit="kit/")),
     "phases[0].starting_kit: names 'kit/', which is not a folder or .zip in the bundle"),
    (lambda m: {f"bundle/{k}": v for k, v in m.items()}, "it is at bundle/competition.yaml: zip the folder's contents"),
])
def test_more_broken_copies(made, tmp_path, edit, message):
    _, _, bundle, _ = made
    problems = [str(p) for p in check_bundle(_write(tmp_path / "broken.zip", edit(_members(bundle))), tmp_path / "w")
                .problems]
    assert any(message in p for p in problems), problems


def test_an_unsafe_bundle_member_is_refused_and_never_written(made, tmp_path):
    _, _, bundle, _ = made
    members = {**_members(bundle), "../evil.txt": b"x"}
    work = tmp_path / "w"
    problems = [str(p) for p in check_bundle(_write(tmp_path / "evil.zip", members), work).problems]
    assert any("../evil.txt" in p and "'..' component" in p for p in problems), problems
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()


def test_a_scoring_program_that_shadows_the_kit_is_refused_and_never_run(made, tmp_path, capsys):
    """/app/program is the working folder of `python -m`, first on sys.path: a bundled evaluator/ would run instead
    of the kit installed in the image (on Codabench and in the check), so the check refuses it before running."""
    _, _, bundle, photos = made
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    members = {**_members(bundle), "scoring_program/evaluator/__init__.py": evil,
               "scoring_program/evaluator/outputs/__init__.py": evil,
               "scoring_program/evaluator/outputs/codabench.py": evil, "scoring_program/numpy.py": evil}
    broken = _write(tmp_path / "shadow.zip", members)
    run = write_run(tmp_path / "runs", "dim", {i: darken(rgb, 0.8) for i, rgb in photos.items()})
    code, out = _check(broken, capsys, "--submission", str(run))
    assert code == 2 and not marker.exists(), out
    assert "scoring_program/evaluator: is a Python module or folder in the scoring program" in out
    assert "scoring_program/numpy.py: is a Python module or folder" in out and "fix: remove it" in out
    check = check_bundle(broken, tmp_path / "w")
    with pytest.raises(BundleCheckError, match="nothing of a bundle that failed the check is run"):
        run_submission(check, run, tmp_path / "folders")
    assert not marker.exists()


def test_the_command_must_use_the_images_python_not_a_file_of_the_bundle(made, tmp_path):
    _, _, bundle, _ = made
    members = {**_members(bundle), "scoring_program/python": b"#!/bin/sh\n",
               "scoring_program/metadata.yaml": b"command: /app/program/python -m evaluator.outputs.codabench "
                                                b"/app/input /app/output\n"}
    problems = [str(p) for p in check_bundle(_write(tmp_path / "py.zip", members), tmp_path / "w").problems]
    assert any("metadata.yaml: command: '/app/program/python -m" in p and "does not run the kit's scorer" in p
               for p in problems), problems


@pytest.mark.parametrize("names", [("pages/x", "pages/x/y"), ("pages/x", "pages/x/"), ("pages/x/y", "pages/x")])
def test_a_name_that_is_both_a_file_and_a_folder_is_a_problem_not_a_crash(made, tmp_path, capsys, names):
    _, _, bundle, _ = made
    with zipfile.ZipFile(tmp_path / "both.zip", "w") as zf:
        for name, data in _members(bundle).items():
            zf.writestr(name, data)
        for name in names:
            zf.writestr(name, b"" if name.endswith("/") else b"x")
    code, out = _check(tmp_path / "both.zip", capsys)
    assert code == 2 and "is both a file and a folder in the zip" in out and "Traceback" not in out, out


def test_a_missing_bundle_and_a_used_keep_folder_exit_2(made, tmp_path, capsys):
    _, _, bundle, _ = made
    code, out = _check(tmp_path / "nope.zip", capsys)
    assert code == 2 and "bundle not found" in out
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x").write_text("mine")
    code, out = _check(bundle, capsys, "--submission", str(bundle), "--keep", str(tmp_path / "keep"))
    assert code == 2 and "is not an empty folder" in out and (tmp_path / "keep" / "x").read_text() == "mine"


# -- a submission through the bundle's own command --------------------------------------------------------------
@pytest.mark.slow
def test_a_submission_scored_through_the_check_matches_pp_evaluate(made, tmp_path, capsys, monkeypatch):
    root, originals, bundle, photos = made
    run = write_run(tmp_path / "runs", "dim", {i: darken(rgb, 0.8) for i, rgb in photos.items()})
    run_zip = tmp_path / "dim.zip"
    with zipfile.ZipFile(run_zip, "w") as zf:  # files at the zip's root, as the submission page asks
        for f in sorted(run.iterdir()):
            zf.write(f, f.name)
    monkeypatch.chdir(tmp_path)  # relative paths, as an organizer types them (the command runs in program/)
    code, out = _check(bundle, capsys, "--submission", "dim.zip", "--keep", "keep")
    assert code == 0, out
    keep = tmp_path / "keep"
    scores = json.loads((keep / "output" / "scores.json").read_text())
    assert list(scores) == list(SCORE_KEYS)
    assert f"detailed results page: {keep / 'output' / 'detailed_results.html'}" in out
    assert re.search(r"^  accuracy: ", out, re.M)
    assert pp_evaluate(["--originals", str(originals), "--runs", str(tmp_path / "runs"), "--out",
                        str(tmp_path / "results"), "--no-progress"]) == 0
    (row,) = read_csv(tmp_path / "results" / "runs.csv")
    for key in SCORE_KEYS:
        expected = float(row[key]) if key != "qualified" else int(row[key] == "true")
        assert scores[key] == expected, key  # the same numbers, not merely close ones
    page = (keep / "output" / "detailed_results.html").read_text(encoding="utf-8")
    assert all(f"<td class=l>{i}</td>" in page for i in IDS)
    assert page.count("data:image/jpeg;base64,") == 2 * len(IDS)
    assert (keep / "input" / "ref" / "img01.png").is_file() and (keep / "input" / "res" / "run.json").is_file()
    # as on Codabench, input/res also holds the compute worker's status file (its prediction step writes it)
    status = yaml.safe_load((keep / "input" / "res" / "metadata").read_text())
    assert status == {"exitCode": None, "elapsedTime": None, "ingestionExitCode": None, "ingestionElapsedTime": None}


@pytest.mark.slow
def test_an_invalid_submission_through_the_check_exits_2_with_its_problems(made, tmp_path, capsys):
    _, _, bundle, photos = made
    run = write_run(tmp_path / "runs", "short", {i: photos[i] for i in IDS[:2]})
    code, out = _check(bundle, capsys, "--submission", str(run))
    assert code == 2
    assert "the scoring command exited 1 (the submission is invalid)" in out and "img03.png: is missing" in out


# -- the detailed results page --------------------------------------------------------------------------------
def test_the_detailed_results_page_escapes_every_submitted_string():
    from evaluator.outputs.codabench_details import render_invalid, render_scored
    from evaluator.scoring.results import ImageScore

    evil = '<script>alert("x")</script>'
    rows = [ImageScore(run=evil, image=evil, score_clean=70.0, score=40.0, low_quality=True, psnr=float("inf"),
                       ssim=0.9, jpeg_sha256="0" * 64)]
    page = render_scored(evil, {"accuracy": 0.0}, rows, 50.0, 90, {evil: ('x" onerror="y', "data:image/jpeg;base64,")})
    assert "<script>" not in page and "&lt;script&gt;" in page and 'x&quot; onerror=&quot;y' in page
    assert "&infin;" in page
    bad = render_invalid(evil, [f"{evil}.png: is missing; add it"])
    assert "<script>" not in bad and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.png: is missing" in bad


@pytest.mark.slow
def test_a_submission_with_its_own_metadata_file_is_reported(made, tmp_path, capsys):
    _, _, bundle, photos = made
    run = write_run(tmp_path / "runs", "dim", {i: darken(rgb, 0.8) for i, rgb in photos.items()})
    (run / "metadata").write_text("command: python -c 'print(1)'\n")
    code, out = _check(bundle, capsys, "--submission", str(run))
    assert code == 2, out
    assert "dim: metadata: is a file Codabench's compute worker writes itself" in out
    assert "fix: remove metadata from the submission" in out


def test_the_check_runs_the_bundles_own_command_with_its_options(made, tmp_path, capsys):
    """The command of metadata.yaml is what runs, options included: --threads 0 passes the static check (an int the
    scorer's parser accepts) and the scorer itself refuses it, exit 2, which the check reports with its message."""
    _, _, bundle, photos = made
    members = {**_members(bundle), "scoring_program/metadata.yaml":
               b"command: python -m evaluator.outputs.codabench /app/input /app/output --threads 0\n"}
    run = write_run(tmp_path / "runs", "dim", {i: darken(rgb, 0.8) for i, rgb in photos.items()})
    code, out = _check(_write(tmp_path / "t.zip", members), capsys, "--submission", str(run))
    assert code == 2 and "--threads 0" in out, out
    assert "the scoring command exited 2 (the scoring setup is broken)" in out
    assert "scoring setup: --threads must be >= 1, got 0" in out


@pytest.mark.parametrize("config, seconds", [
    ({"phases": [{"execution_time_limit": 3600}]}, 600),  # the default queue caps every run at 600 s
    ({"phases": [{"execution_time_limit": 3600}], "queue": "my-vhost"}, 3600),  # the organizer's own queue
    ({"phases": [{"execution_time_limit": 30}]}, 30),
    ({"phases": [{}]}, 600),  # Codabench's default execution_time_limit
])
def test_the_check_gives_a_run_the_time_codabench_gives_it(config, seconds):
    assert effective_time_limit(config) == seconds


def test_the_bundle_asks_for_no_more_time_than_the_default_queue_gives(made):
    _, _, bundle, _ = made
    cfg = yaml.safe_load(_members(bundle)[COMPETITION_YAML])
    assert "queue" not in cfg and cfg["phases"][0]["execution_time_limit"] == 600


def test_a_scorer_that_runs_past_the_phase_time_limit_is_reported(made, tmp_path, capsys):
    _, _, bundle, photos = made
    slow = _write(tmp_path / "slow.zip", _edit_yaml(_members(bundle),
                                                    lambda c: c["phases"][0].update(execution_time_limit=1)))
    run = write_run(tmp_path / "runs", "dim", {i: darken(rgb, 0.8) for i, rgb in photos.items()})
    code, out = _check(slow, capsys, "--submission", str(run))
    assert code == 2 and "phases[0].execution_time_limit: the scoring command ran past 1 s" in out
