"""evaluator.outputs.results_io: spreadsheet-safe cells, and a results generation committed in one step.

The kill tests run the commit in a forked child process that dies (`os._exit`, like kill -9: no cleanup runs)
just before its k-th file-system operation, for every k until the commit completes; after each death a reader must see
one complete generation (old or new, never a mix), no vote may be lost, and the next `tidy` must leave a clean
folder showing the same results.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from evaluator.common.csv_safe import FORMULA_STARTS
from evaluator.contracts.jury_package import SERVE_LOCK
from evaluator.contracts.results import cell, read_csv, write_csv
from evaluator.outputs.results_io import commit_generation, committed_generation, new_generation, tidy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

NAMES = ("runs.csv", "scores.csv", "task.json", "report.html", "jury")
FILES = ("runs.csv", "scores.csv", "task.json", "report.html", "jury/manifest.json", "jury/images/a.jpg")
VOTES = "jury/votes.sqlite"

FS_STEPS = ("replace", "rename", "symlink", "link", "unlink", "remove", "rmdir", "mkdir", "makedirs", "fsync")


def write_generation_by_hand(folder: Path, tag: str, votes: bool) -> None:
    for rel in FILES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(f"{tag}:{rel}")
    if votes:
        (folder / VOTES).write_text(f"votes of {tag}")


def commit(out: Path, tag: str, kill_at: int = 0) -> tuple[int, int]:
    """tidy + write a generation tagged `tag` + commit, in a forked child killed (`os._exit`: no except or finally
    runs, as with kill -9) just before its `kill_at`-th file-system call. (exit code, calls made)."""
    counter = out.parent / f"{out.name}.steps"
    pid = os.fork()
    if pid == 0:  # the child: only os/shutil work, never returns into pytest
        code = 98
        try:
            count = 0

            def wrap(module, name):
                real = getattr(module, name)

                def step(*args, **kwargs):
                    nonlocal count
                    count += 1
                    if count == kill_at:
                        os._exit(99)
                    return real(*args, **kwargs)
                setattr(module, name, step)

            for name in FS_STEPS:
                wrap(os, name)
            wrap(shutil, "rmtree")
            tidy(out, NAMES)
            gen = new_generation(out)
            for rel in FILES:
                (gen / rel).parent.mkdir(parents=True, exist_ok=True)
                (gen / rel).write_text(f"{tag}:{rel}")
            commit_generation(gen, out, NAMES)
            counter.write_text(str(count))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, int(counter.read_text()) if code == 0 else -1


def seen(out: Path) -> set[str]:
    """The tags a reader sees through the documented paths OUT/<name> (each file must exist)."""
    tags = set()
    for rel in FILES:
        path = out / rel
        assert path.is_file(), f"{rel} missing"
        tag, _, name = path.read_text().partition(":")
        assert name == rel
        tags.add(tag)
    return tags


def assert_tidy(out: Path) -> None:
    """One committed generation; any other one is kept only because its jury holds votes."""
    gen = committed_generation(out)
    assert gen is not None
    others = [p for p in (out / ".generations").iterdir() if p.name != gen.name]
    assert all((p / VOTES).is_file() for p in others), others
    leftovers = [p.name for p in out.iterdir() if p.name.startswith((".link-", ".staging-", ".old-"))]
    assert leftovers == []
    for name in NAMES:
        assert os.readlink(out / name) == f"current/{name}"


def test_a_kill_at_every_step_of_a_commit_leaves_old_or_new_never_a_mix(tmp_path):
    k = 1
    while True:
        out = tmp_path / f"k{k}"
        out.mkdir()
        assert commit(out, "old")[0] == 0
        old = committed_generation(out)
        (old / VOTES).write_text("votes of old")  # jurors voted on the old package
        code, steps = commit(out, "new", kill_at=k)
        if code == 0:
            assert steps < k
            break
        assert code == 99
        before = seen(out)
        assert before in ({"old"}, {"new"}), f"kill at step {k}: a reader sees {before}"
        gen = committed_generation(out)
        assert {p.read_text().split(":")[0] for p in gen.rglob("*") if p.is_file() and "votes" not in p.name} \
            == before
        tidy(out, NAMES)  # the next run cleans up
        assert seen(out) == before
        assert_tidy(out)
        votes = sorted(p.read_text() for p in out.rglob("votes.sqlite"))
        assert votes == ["votes of old"], f"kill at step {k}: votes {votes}"
        assert (old / VOTES).read_text() == "votes of old"  # kept where it was, whatever was committed
        if before == {"new"}:
            assert not (out / "jury" / "votes.sqlite").exists()
        assert not list(out.glob("jury-previous-*"))  # nothing moved; no key.json to keep in this test
        k += 1
    assert seen(out) == {"new"}
    assert sorted(p.name for p in (out / ".generations").iterdir()) == sorted([old.name, committed_generation(out).name])
    assert steps > 10  # the kill points above covered mkdir, the fsyncs, the switch and the retiring


def test_a_first_evaluation_killed_at_any_step_leaves_no_links_to_missing_results(tmp_path):
    """Before anything is committed, a reader finds either no result files or the complete new ones; the next
    tidy removes what a killed first evaluation left, links to a missing `current/` included."""
    k = 1
    while True:
        out = tmp_path / f"k{k}"
        out.mkdir()
        code, steps = commit(out, "new", kill_at=k)
        if code == 0:
            break
        assert code == 99
        tidy(out, NAMES)
        if committed_generation(out) is None:
            dangling = [p.name for p in out.iterdir() if p.is_symlink() and not p.exists()]
            assert dangling == [], f"kill at step {k}: links to missing results {dangling}"
            assert not any((out / name).exists() or (out / name).is_symlink() for name in NAMES)
        else:
            assert seen(out) == {"new"}
            assert_tidy(out)
        k += 1
    assert seen(out) == {"new"}
    assert_tidy(out)


def test_a_kill_at_every_step_of_adopting_an_older_results_folder(tmp_path):
    """Results of the older layout (real files in OUT/, a staging leftover) become a generation on the next run."""
    k = 1
    while True:
        out = tmp_path / f"k{k}"
        out.mkdir()
        write_generation_by_hand(out, "old", votes=True)
        (out / ".staging-0123").mkdir()
        (out / ".staging-0123" / "runs.csv").write_text("half written")
        code, _ = commit(out, "new", kill_at=k)
        if code == 0:
            break
        assert code == 99
        tags = set()
        for rel in FILES:  # a folder is missing for an instant while it is replaced by its link: allowed
            path = out / rel
            if path.is_file():
                tags.add(path.read_text().split(":")[0])
            else:
                assert not (out / rel.split("/")[0]).exists(), f"kill at step {k}: {rel} missing"
        assert tags in ({"old"}, {"new"}), f"kill at step {k}: a reader sees {tags}"
        tidy(out, NAMES)
        assert seen(out) == tags
        assert_tidy(out)
        assert sorted(p.read_text() for p in out.rglob("votes.sqlite")) == ["votes of old"]
        k += 1
    assert seen(out) == {"new"}
    assert_tidy(out)
    (adopted,) = [p for p in (out / ".generations").iterdir() if p.name != committed_generation(out).name]
    assert (adopted / VOTES).read_text() == "votes of old"  # the adopted generation, kept in place for its votes
    assert k > 5


def test_commit_refuses_an_incomplete_generation_and_keeps_the_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert commit(out, "old")[0] == 0
    gen = new_generation(out)
    (gen / "runs.csv").write_text("new:runs.csv")
    with pytest.raises(OSError, match="not written; nothing was committed"):
        commit_generation(gen, out, NAMES)
    assert seen(out) == {"old"}


def test_a_current_that_is_not_our_link_is_refused(tmp_path):
    (tmp_path / "current").mkdir()
    with pytest.raises(OSError, match="current: is not the link pp-evaluate writes"):
        tidy(tmp_path, NAMES)


def test_text_cells_are_spreadsheet_safe_and_numbers_stay_numbers(tmp_path):
    assert cell(-3.5) == "-3.5" and cell(-2) == "-2" and cell(float("-inf")) == "-inf" and cell(True) == "true"
    hostile = ['=HYPERLINK("x","click")', "+cmd|' -C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd", "\tx", "\rx", "'quoted"]
    assert [cell(t) for t in hostile] == ["'" + t for t in hostile]
    assert cell("ifgsm") == "ifgsm"
    hostile.append("a\rb\nc")  # a carriage return inside a cell must not split the row
    path = tmp_path / "t.csv"
    write_csv(path, ["run", "score"], [{"run": t, "score": -1.25} for t in hostile])
    rows = read_csv(path)
    assert [r["run"] for r in rows] == hostile and {r["score"] for r in rows} == {"-1.25"}
    with path.open(encoding="utf-8", newline="") as f:
        raw = [c for row in csv.reader(f) for c in row]
    for c in raw:
        if c.startswith(FORMULA_STARTS):
            float(c)  # only a number may start like a formula (a spreadsheet reads -1.25 as a number)


def _commit_with_key(out: Path, tag: str) -> Path:
    """tidy + a generation tagged `tag` whose jury has a key.json + commit (in this process)."""
    tidy(out, NAMES)
    gen = new_generation(out)
    write_generation_by_hand(gen, tag, votes=False)
    (gen / "jury" / "key.json").write_text(json.dumps({"candidates": {f"{tag}-cand": {"run": "r", "image": "a"}}}))
    commit_generation(gen, out, NAMES)
    return gen


@pytest.mark.skipif(fcntl is None, reason="no flock on this platform: votes.sqlite alone marks a live jury")
def test_a_served_jury_keeps_its_generation_while_the_server_runs(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    old = _commit_with_key(out, "old")
    with open(old / "jury" / SERVE_LOCK, "a+b") as lock:  # what `pp-jury serve` holds for the server's life
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        with caplog.at_level(logging.WARNING):
            _commit_with_key(out, "new")
            _commit_with_key(out, "newer")  # still served: still kept
        assert seen(out) == {"newer"}
        for rel in FILES:  # untouched, where the server found it
            assert (old / rel).read_text() == f"old:{rel}"
        warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith(str(old))]
        assert len(warnings) == 2 and "is being served by `pp-jury serve`" in warnings[0]
        assert f"pp-jury rank {old / 'jury'}" in warnings[0] and "new juror links" in warnings[0]
        assert len(list((out / ".generations").iterdir())) == 2  # "new" was retired: not served, no votes
    _commit_with_key(out, "last")  # the server stopped and left no votes: retired now
    assert not old.exists() and seen(out) == {"last"}
    assert [p.name for p in (out / ".generations").iterdir()] == [committed_generation(out).name]


def test_a_retired_jury_leaves_its_key_and_manifest(tmp_path):
    """Votes cast on a copy of a package (served without key.json, or imported with --votes) stay mappable."""
    out = tmp_path / "out"
    out.mkdir()
    old = _commit_with_key(out, "old")
    key = (old / "jury" / "key.json").read_text()
    _commit_with_key(out, "new")
    assert not old.exists()
    kept = out / f"jury-previous-{old.name}"
    assert sorted(p.name for p in kept.iterdir()) == ["key.json", "manifest.json"]  # not the images
    assert (kept / "key.json").read_text() == key
    assert (kept / "manifest.json").read_text() == "old:jury/manifest.json"
    empty = committed_generation(out)
    (empty / "jury" / "key.json").write_text('{"candidates": {}}')  # a jury with no candidate maps nothing
    _commit_with_key(out, "last")
    assert not (out / f"jury-previous-{empty.name}").exists()
    assert sorted(p.name for p in out.glob("jury-previous-*")) == [kept.name]


def _store_urls(tmp_path: Path, request) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'elsewhere' / 'votes.sqlite'}"]  # three slashes + an absolute path
    if request.node.callspec.params["backend"] == "postgresql":
        urls = [request.getfixturevalue("pg_url")]
    return urls


@pytest.mark.parametrize("backend", ["sqlite-elsewhere", "postgresql"])
def test_a_jury_whose_votes_live_in_another_store_keeps_its_generation(tmp_path, request, backend, caplog):
    """Votes in PostgreSQL (or an SQLite file outside the jury folder) leave no votes.sqlite in the jury folder:
    opening that store (`pp-jury serve/jurors/... --store URL`) marks the folder, so a later pp-evaluate run with
    no server running still keeps the generation a juror voted on (its images and key) where it is."""
    from jury_app.testing.fixtures import make_demo_package
    from evaluator.contracts.jury_package import EXTERNAL_STORE_NAME, load_package
    from jury_app.votes.backends import open_store

    (url,) = _store_urls(tmp_path, request)
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    tidy(out, NAMES)
    old = new_generation(out)
    write_generation_by_hand(old, "old", votes=False)
    shutil.rmtree(old / "jury")
    make_demo_package(old / "jury", ["r1", "r2", "r3", "r4", "r5"], 2, size=8)
    commit_generation(old, out, NAMES)
    package = load_package(out / "jury")  # through the link, as an organizer passes it
    store = open_store(package, url)
    juror = store.add_jurors(1)[0].juror
    cands = list(package.candidate_ids("img00"))
    store.save_ballot(juror, "img00", cands[:3], cands[3:5])
    store.close()
    assert not (old / "jury" / "votes.sqlite").exists()
    marker = json.loads((old / "jury" / EXTERNAL_STORE_NAME).read_text())
    assert marker["store"] == url and "password" not in json.dumps(marker)
    images = sorted(p.name for p in (old / "jury" / "images").iterdir())
    with caplog.at_level(logging.WARNING):
        _commit_with_key(out, "new")  # no server runs
    assert old.is_dir() and sorted(p.name for p in (old / "jury" / "images").iterdir()) == images
    assert any(EXTERNAL_STORE_NAME in r.getMessage() for r in caplog.records if r.getMessage().startswith(str(old)))
    again = open_store(load_package(old / "jury"), url)  # the votes still map to this very package
    assert again.ballot(juror, "img00") is not None
    again.close()


def test_opening_the_default_store_writes_no_marker(tmp_path):
    from jury_app.testing.fixtures import make_demo_package
    from evaluator.contracts.jury_package import EXTERNAL_STORE_NAME, load_package
    from jury_app.votes.backends import open_store

    root = make_demo_package(tmp_path / "jury", ["r1", "r2", "r3", "r4", "r5"], 2, size=8)
    open_store(load_package(root)).add_jurors(1)
    open_store(load_package(root), f"sqlite:///{root / 'votes.sqlite'}").add_jurors(1)  # the same file
    assert not (root / EXTERNAL_STORE_NAME).exists() and (root / "votes.sqlite").exists()
