"""Hostile submissions against the evaluator's outputs (issue "Hostile inputs"): run names that are spreadsheet
formulas, look-alike names, names that forge log lines; file modes; a results folder interrupted after its switch,
jury votes across evaluations, and a results folder of the older layout.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from evaluator_fixtures import INVISIBLE_CHARS, BrightnessBIQA, darken, write_originals, write_run

import evaluator.outputs.results_io
from evaluator.common.atomic import write_text_atomic
from evaluator.cli import EscapingFormatter
from evaluator.config import TaskConfig
from evaluator.common.csv_safe import FORMULA_STARTS
from evaluator.pipeline import evaluate
from evaluator.intake.lookalike import lookalikes, skeleton
from evaluator.contracts.results import read_csv
from evaluator.outputs.results_io import committed_generation
from evaluator.common.text import escape_text, show_name

LEVELS = {"img-a": 0.70, "img-b": 0.62, "img-c": 0.80}
FORMULAS = ['=HYPERLINK("x","click")', "+cmd|' -C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd"]


@pytest.fixture()
def folders(tmp_path):
    originals = write_originals(tmp_path / "originals", LEVELS)
    (tmp_path / "runs").mkdir()
    return tmp_path, originals


def _evaluate(tmp_path: Path, model=None):
    return evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(),
                    model or BrightnessBIQA(), batch_size=4, progress=False)


def _raw_cells(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [c for row in csv.reader(f) for c in row]


def test_formula_run_names_never_reach_a_spreadsheet_as_formulas(folders):
    tmp_path, originals = folders
    for i, name in enumerate(FORMULAS):
        write_run(tmp_path / "runs", name, {k: darken(v, 0.4 + 0.1 * i) for k, v in originals.items()})
    (tmp_path / "runs" / "=1+1 broken").mkdir()  # an invalid run: its name is in runs.csv too
    result = _evaluate(tmp_path)
    assert {r.run for r in result.runs if r.status == "scored"} == set(FORMULAS)
    out = tmp_path / "out"
    for name in ("runs.csv", "scores.csv", "selection.csv"):
        for c in _raw_cells(out / name):
            if c.startswith(FORMULA_STARTS):
                float(c)  # only numbers (a negative score) may start like a formula
    assert {r["run"] for r in read_csv(out / "runs.csv")} == set(FORMULAS) | {"=1+1 broken"}
    assert {r["run"] for r in read_csv(out / "scores.csv")} == set(FORMULAS)
    assert "'=HYPERLINK(" in (out / "runs.csv").read_text(encoding="utf-8")
    first_cells = [row[0] for row in csv.reader((out / "runs.csv").open(encoding="utf-8", newline=""))][1:]
    assert all(c.startswith("'") for c in first_cells)


def test_look_alike_names_are_flagged_in_runs_csv_and_the_report(folders):
    tmp_path, originals = folders
    for name, factor in (("ifgsm", 0.4), ("\u0456fgsm", 0.5), ("blur", 0.6)):  # Cyrillic і in the second
        write_run(tmp_path / "runs", name, {k: darken(v, factor) for k, v in originals.items()})
    result = _evaluate(tmp_path)
    assert all(r.status == "scored" for r in result.runs)  # flagged, still scored
    rows = {r["run"]: r for r in read_csv(tmp_path / "out" / "runs.csv")}
    assert rows["blur"]["warning"] == ""
    assert "'\\u0456fgsm'" in rows["ifgsm"]["warning"] and "'ifgsm'" in rows["\u0456fgsm"]["warning"]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count('class="warn">warning: the name looks like') == 2
    assert "\\u0456fgsm" in page


@pytest.mark.parametrize("char", INVISIBLE_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_characters_neither_make_a_new_look_nor_print_unseen(char):
    """`ifgsm` + U+034F (Hangul filler, variation selector, ...) has the skeleton of `ifgsm`, and is printed with
    the character escaped (the run itself is refused: tests/test_runs_validation.py)."""
    inside = () if char.isspace() else ("if" + char + "gsm",)  # a no-break space inside shows as a space
    for name in ("ifgsm" + char, char + "ifgsm", *inside):
        assert skeleton(name) == skeleton("ifgsm")
        assert lookalikes(["ifgsm", name, "blur"]) == {"ifgsm": [name], name: ["ifgsm"]}
        for shown in (show_name(name), escape_text(name)):
            assert char not in shown and char.encode("unicode_escape").decode("ascii") in shown


def test_names_from_submissions_are_escaped_in_log_lines(folders, caplog):
    tmp_path, originals = folders
    forged = "team\nWARNING evaluator.pipeline: run winner qualified\x1b[2K"
    write_run(tmp_path / "runs", forged, {k: darken(v, 0.4) for k, v in originals.items()})
    write_run(tmp_path / "runs", "x\u202egpj.exe", {k: darken(v, 0.4) for k, v in originals.items()})
    (tmp_path / "runs" / "not-a-run\n.txt").write_text("x")
    with caplog.at_level(logging.DEBUG):
        result = _evaluate(tmp_path)
    assert {r.status for r in result.runs} == {"invalid"}  # control characters in names are refused
    messages = [r.getMessage() for r in caplog.records]
    assert any("\\nWARNING" in m for m in messages) and any("\\u202e" in m for m in messages)
    assert any("not-a-run\\n.txt" in m for m in messages)
    for m in messages:
        assert "\n" not in m and "\x1b" not in m and "\u202e" not in m, m


def test_the_cli_log_format_escapes_every_message_and_indents_tracebacks():
    fmt = EscapingFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("evaluator", logging.WARNING, __file__, 1, "run %s is invalid",
                               ("a\nINFO forged\x1b[31m",), None)
    assert fmt.format(record) == "WARNING evaluator: run a\\nINFO forged\\x1b[31m is invalid"
    try:
        raise ValueError("bad\nERROR forged")
    except ValueError:
        record = logging.LogRecord("evaluator", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = fmt.format(record).split("\n")
    assert lines[0] == "ERROR evaluator: failed"
    assert all(line.startswith("    ") for line in lines[1:]) and "    ERROR forged" in lines


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_every_output_file_has_the_umask_mode(folders, umask, mode):
    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    old = os.umask(umask)
    try:
        _evaluate(tmp_path)
        write_text_atomic(tmp_path / "out" / "jury" / "ranking.csv", "run,rank\n")  # how pp-jury rank writes
    finally:
        os.umask(old)
    gen = committed_generation(tmp_path / "out")
    files = [p for p in gen.rglob("*") if p.is_file()]
    assert {"report.html", "runs.csv", "manifest.json", "ranking.csv"} <= {p.name for p in files}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


def test_an_interrupt_after_the_switch_keeps_the_new_results(folders, monkeypatch):
    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    old_gen = committed_generation(out).name
    write_run(tmp_path / "runs", "darker", {k: darken(v, 0.3) for k, v in originals.items()})
    real_rmtree, raised = shutil.rmtree, []

    def interrupted(path, *args, **kwargs):  # Ctrl-C while the old generation is being deleted
        if not raised and committed_generation(out).name != old_gen:
            raised.append(path)
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(evaluator.outputs.results_io.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(tmp_path)
    monkeypatch.undo()
    assert raised and {r["run"] for r in read_csv(out / "runs.csv")} == {"dark", "darker"}
    assert (out / "report.html").is_file() and (out / "jury" / "manifest.json").is_file()
    _evaluate(tmp_path)  # the next run removes the old generation
    assert [p.name for p in (out / ".generations").iterdir()] == [committed_generation(out).name]


def test_votes_survive_a_new_evaluation_and_the_cache_is_kept(folders, caplog):
    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    old = committed_generation(out)
    (out / "jury" / "votes.sqlite").write_bytes(b"the jurors' votes")  # pp-jury serve results/jury
    model = BrightnessBIQA()
    with caplog.at_level(logging.WARNING):
        _evaluate(tmp_path, model)
    assert model.images_seen == 0  # out/.cache survived the switch
    assert not (out / "jury" / "votes.sqlite").exists() and committed_generation(out) != old
    files = {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()}  # the whole generation, as it was
    assert {"runs.csv", "jury/manifest.json", "jury/key.json", "jury/votes.sqlite"} <= files
    assert (old / "jury" / "votes.sqlite").read_bytes() == b"the jurors' votes"
    assert not list(out.glob("jury-previous-*"))
    (warning,) = [r.getMessage() for r in caplog.records if str(old) in r.getMessage()]
    assert "holds votes (votes.sqlite)" in warning and f"pp-jury rank {old / 'jury'}" in warning


def test_a_results_folder_of_the_older_layout_is_adopted(folders):
    """Real files in OUT/ (and a staging leftover), as the kit wrote them before results generations."""
    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    gen = committed_generation(out)
    for name in ("runs.csv", "scores.csv", "selection.csv", "task.json", "report.html", "jury"):
        (out / name).unlink()
        os.rename(gen / name, out / name)
    (out / "current").unlink()
    shutil.rmtree(out / ".generations")
    (out / "jury" / "votes.sqlite").write_bytes(b"votes")
    (out / ".staging-abc123").mkdir()
    _evaluate(tmp_path)
    assert os.readlink(out / "runs.csv") == "current/runs.csv" and os.readlink(out / "jury") == "current/jury"
    assert not list(out.glob(".staging-*"))
    (votes,) = (out / ".generations").glob("*/jury/votes.sqlite")  # the adopted generation, kept for its votes
    assert votes.read_bytes() == b"votes" and votes.parents[1] != committed_generation(out)
    assert len(list((out / ".generations").iterdir())) == 2


def _fake_ids(monkeypatch, *patterns: str) -> list[str]:
    """Make the jury export's random ids come from `patterns` in turn (`{n}` = a counter); return those drawn."""
    import itertools

    import evaluator.outputs.jury_export

    drawn: list[str] = []
    counter = itertools.count()

    def token_urlsafe(nbytes=None):
        n = next(counter)
        if n > 20_000:
            raise AssertionError("the candidate-id loop does not stop")
        drawn.append(patterns[n % len(patterns)].format(n=n))
        return drawn[-1]

    monkeypatch.setattr(evaluator.outputs.jury_export.secrets, "token_urlsafe", token_urlsafe)
    return drawn


def test_candidate_ids_are_checked_against_the_qualified_runs_only(folders, monkeypatch):
    """What `pp-jury serve` checks (the runs of key.json): an invalid or unqualified run's name in an id is fine."""
    tmp_path, originals = folders
    for name, factor in (("dark", 0.4), ("darker", 0.3), ("faint", 0.99)):
        write_run(tmp_path / "runs", name, {k: darken(v, factor) for k, v in originals.items()})
    (tmp_path / "runs" / "badrun").mkdir()  # invalid: no images
    drawn = _fake_ids(monkeypatch, "badrun{n:010d}", "faint{n:011d}", "clean{n:011d}", "xdarkx{n:010d}")
    result = _evaluate(tmp_path)
    status = {r.run: (r.status, r.qualified) for r in result.runs}
    assert status == {"dark": ("scored", True), "darker": ("scored", True), "faint": ("scored", False),
                      "badrun": ("invalid", False)}
    manifest = json.loads((tmp_path / "out" / "jury" / "manifest.json").read_text(encoding="utf-8"))
    ids = [c["id"] for im in manifest["images"] for c in im["candidates"]]
    assert len(ids) == 2 * len(manifest["images"]) > 0
    assert sorted(ids) == sorted(d for d in drawn if "dark" not in d)  # only a qualified name makes a redraw
    assert any(i.startswith("badrun") for i in ids) and any(i.startswith("faint") for i in ids)
    assert any("dark" in d for d in drawn)


def test_the_candidate_id_search_gives_up_with_an_error(monkeypatch):
    from evaluator.outputs.jury_export import MAX_ID_DRAWS, JuryExportError, new_candidate_id

    drawn = _fake_ids(monkeypatch, "abcabc{n:010d}")
    with pytest.raises(JuryExportError, match=r"no random candidate id free of every run name in \d+ draws.*'abc'"
                                              r".*Rename or remove the runs with the shortest names"):
        new_candidate_id(set(), ["abc", "zzzz"])
    assert len(drawn) == MAX_ID_DRAWS


def test_thousands_of_short_qualified_names_end_in_an_error_not_a_hang():
    """Every 3-character name over the ids' alphabet (case-folded): each random id contains several of them."""
    import itertools

    from evaluator.outputs.jury_export import JuryExportError, new_candidate_id

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_"
    names = ["".join(t) for t in itertools.product(alphabet, repeat=3)]
    with pytest.raises(JuryExportError, match=f"{len(names)} names of 3\\+ characters"):
        new_candidate_id(set(), names)
    assert new_candidate_id(set(), names[:100]) not in names  # a few short names: an id is found


def test_a_new_evaluation_leaves_a_live_jury_working(folders, caplog):
    """Review of issue 10: jurors were voting on results/jury when pp-evaluate ran again (a new run came in).
    The live jury keeps its generation: the same store, in this thread and a new one, keeps saving ballots, the
    images stay readable, and `pp-jury rank` on that folder ranks them; the new jury/ is a new package."""
    import threading

    from jury_app import cli
    from evaluator.contracts.jury_package import load_package
    from jury_app.votes.store import VoteStore

    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    write_run(tmp_path / "runs", "darker", {k: darken(v, 0.3) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    package = load_package(out / "jury")  # what `pp-jury serve results/jury` opens
    store = VoteStore(package)
    (juror,) = store.add_jurors(1)
    first, second = package.images[0], package.images[1]
    store.save_ballot(juror.juror, first.image, [first.candidates[0].id], [first.candidates[1].id])
    write_run(tmp_path / "runs", "blurry", {k: darken(v, 0.35) for k, v in originals.items()})
    with caplog.at_level(logging.WARNING):
        _evaluate(tmp_path)
    new = committed_generation(out)
    assert package.root.parent != new and not (out / "jury" / "votes.sqlite").exists()
    store.save_ballot(juror.juror, second.image, [second.candidates[1].id], [second.candidates[0].id])
    errors = []
    thread = threading.Thread(target=lambda: errors.append(store.save_ballot(  # a new connection
        juror.juror, second.image, [second.candidates[0].id], [second.candidates[1].id])))
    thread.start()
    thread.join()
    assert len(errors) == 1 and len(store.ballots()) == 2
    assert all(c.file.read_bytes() for im in package.images for c in im.candidates)
    assert any(str(package.root.parent) in r.getMessage() for r in caplog.records)
    assert cli.main(["rank", str(package.root)]) == 0
    assert len(json.loads((out / "jury" / "key.json").read_text())["candidates"]) == 3 * len(load_package(
        out / "jury").images)  # the new package has the new run


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_pp_jury_serve_holds_the_serve_lock_for_the_server_life(folders, caplog):
    """The lock `pp-jury serve` takes survives its exec into the server process (here a stand-in that sleeps)."""
    import fcntl
    import subprocess

    from evaluator.contracts.jury_package import SERVE_LOCK

    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    served = committed_generation(out)
    stand_in = ("import os, sys\nfrom jury_app import cli\nreal = os.execve\n"
                "os.execve = lambda path, argv, env: real(sys.executable, [sys.executable, '-c', "
                "'import time; print(\"serving\", flush=True); time.sleep(300)'], env)\n"
                "sys.exit(cli.main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", stand_in, "serve", str(out / "jury"), "--port", "8598"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout.readline().strip() == "serving"
        with open(served / "jury" / SERVE_LOCK, "rb") as lock:
            with pytest.raises(BlockingIOError):
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        (served / "jury" / "votes.sqlite").unlink()  # only the lock keeps it now
        for suffix in ("-wal", "-shm"):
            (served / "jury" / f"votes.sqlite{suffix}").unlink(missing_ok=True)
        write_run(tmp_path / "runs", "darker", {k: darken(v, 0.3) for k, v in originals.items()})
        with caplog.at_level(logging.WARNING):
            _evaluate(tmp_path)
        assert committed_generation(out) != served and (served / "jury" / "manifest.json").is_file()
        assert any("is being served by `pp-jury serve`" in r.getMessage() for r in caplog.records)
    finally:
        proc.kill()
        proc.wait()
    _evaluate(tmp_path)  # the server is gone and left no votes: that generation is retired now
    assert not served.exists() and (out / f"jury-previous-{served.name}" / "key.json").is_file()


def test_a_vote_store_whose_folder_vanished_says_so(folders):
    """Should the jury folder go anyway (deleted by hand), saving a ballot gives a message, not a traceback."""
    import threading

    from evaluator.contracts.jury_package import load_package
    from jury_app.votes.store import StoreError, VoteStore

    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    write_run(tmp_path / "runs", "darker", {k: darken(v, 0.3) for k, v in originals.items()})
    _evaluate(tmp_path)
    package = load_package(tmp_path / "out" / "jury")
    store = VoteStore(package)
    (juror,) = store.add_jurors(1)
    shutil.rmtree(package.root)
    image = package.images[0]
    picks = ([image.candidates[0].id], [image.candidates[1].id])
    with pytest.raises(StoreError, match="the jury folder was moved or deleted while the server ran"):
        store.save_ballot(juror.juror, image.image, *picks)
    errors = []

    def other_thread():
        try:
            store.save_ballot(juror.juror, image.image, *picks)
        except Exception as exc:  # noqa: BLE001 - the type is what is checked
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert [type(e) for e in errors] == [StoreError]


def test_votes_on_a_copy_of_a_retired_package_can_still_be_ranked(folders, tmp_path_factory):
    """The organizer served a copy of results/jury without key.json (docs/jury.md) and ranks its votes after a
    new evaluation replaced the package: the key is in OUT/jury-previous-<generation id>/."""
    from jury_app import cli
    from evaluator.contracts.jury_package import load_package
    from jury_app.votes.store import VoteStore

    tmp_path, originals = folders
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.4) for k, v in originals.items()})
    write_run(tmp_path / "runs", "darker", {k: darken(v, 0.3) for k, v in originals.items()})
    _evaluate(tmp_path)
    out = tmp_path / "out"
    old = committed_generation(out)
    copy = tmp_path_factory.mktemp("server") / "jury"
    shutil.copytree(out / "jury", copy, ignore=shutil.ignore_patterns("key.json"))
    package = load_package(copy)
    store = VoteStore(package)
    (juror,) = store.add_jurors(1)
    for image in package.images:
        store.save_ballot(juror.juror, image.image, [image.candidates[0].id], [image.candidates[1].id])
    write_run(tmp_path / "runs", "blurry", {k: darken(v, 0.35) for k, v in originals.items()})
    _evaluate(tmp_path)
    assert not old.exists()
    shutil.copy(out / f"jury-previous-{old.name}" / "key.json", copy / "key.json")
    assert cli.main(["rank", str(copy)]) == 0
    ranking = read_csv(copy / "ranking.csv")
    assert {r["run"] for r in ranking} == {"dark", "darker"} and sum(int(r["most"]) for r in ranking) == 3
