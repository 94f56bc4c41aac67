"""pp-jury CLI: jurors, admin, export, rank (store and votes CSV), errors and exit codes."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlparse

import pytest

from evaluator.common.csv_safe import unsafe_text
from evaluator.common.errors import exit_code_help
from jury_app.cli import main
from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.backends import open_store
from jury_app.votes.store import VoteStore

RUNS = ["TEAMSECRET_run1", "TEAMSECRET_run2", "TEAMSECRET_run3", "TEAMSECRET_run4"]


@pytest.fixture()
def pkg(tmp_path):
    return make_demo_package(tmp_path / "jury", RUNS, 2, most=2, least=1, size=16)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as ex:
        main(["--help"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    assert exit_code_help() in out  # the kit's one table (evaluator.common.errors)


def test_ctrl_c_exits_130_with_one_line(capsys, pkg, monkeypatch):
    import jury_app.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(jury_app.cli, "cmd_export", interrupted)
    code, out, err = run(capsys, "export", pkg)
    assert code == 130 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pp-jury: interrupted;")


def test_jurors_links_admin_once_and_rotation(capsys, pkg):
    code, out, err = run(capsys, "jurors", pkg, "--add", 3, "--base-url", "https://jury.example.org/")
    assert code == 0
    lines = out.strip().splitlines()
    assert [l.split("\t")[0] for l in lines] == ["juror001", "juror002", "juror003"]
    store = VoteStore(load_package(pkg))
    for line in lines:
        url = urlparse(line.split("\t")[1])
        assert url.netloc == "jury.example.org" and url.path == "/"
        assert store.authenticate(parse_qs(url.query)["token"][0]) == line.split("\t")[0]
    admin_url = urlparse(err.strip().splitlines()[-1].strip())
    first_admin = parse_qs(admin_url.query)["admin"][0]
    assert admin_url.path == "/organizer" and store.verify_admin(first_admin)
    code, out, err = run(capsys, "jurors", pkg, "--add", 1)
    assert out.startswith("juror004\thttp://127.0.0.1:8501/?token=") and "organizer" not in err  # shown once
    code, out, _ = run(capsys, "admin", pkg)
    new_admin = parse_qs(urlparse(out.strip()).query)["admin"][0]
    assert store.verify_admin(new_admin) and not store.verify_admin(first_admin)


def test_export_and_rank_from_store_and_from_csv(capsys, pkg, tmp_path):
    store = VoteStore(load_package(pkg))
    key = json.loads((pkg / "key.json").read_text())["candidates"]
    by_run = {(v["run"], v["image"]): c for c, v in key.items()}
    jurors = [l.juror for l in store.add_jurors(2)]
    # both jurors: run1, run2 most, run4 least on img00; juror002 skips img01 (missing ballot)
    for j in jurors:
        store.save_ballot(j, "img00", [by_run[("TEAMSECRET_run1", "img00")], by_run[("TEAMSECRET_run2", "img00")]],
                          [by_run[("TEAMSECRET_run4", "img00")]])
    store.save_ballot(jurors[0], "img01", [by_run[("TEAMSECRET_run1", "img01")], by_run[("TEAMSECRET_run3", "img01")]],
                      [by_run[("TEAMSECRET_run2", "img01")]])
    code, votes, _ = run(capsys, "export", pkg)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(votes)))
    assert list(rows[0]) == ["juror", "image", "candidate", "choice", "timestamp"] and len(rows) == 9
    assert "TEAMSECRET" not in votes
    code, ranked, err = run(capsys, "rank", pkg)
    assert code == 0 and "fewer than 5 jurors" in err
    table = list(csv.DictReader(io.StringIO(ranked)))
    assert [(r["run"], r["most"], r["least"], r["appearances"], r["rank"]) for r in table] == [
        ("TEAMSECRET_run1", "3", "0", "3", "1"), ("TEAMSECRET_run2", "2", "1", "3", "2"),
        ("TEAMSECRET_run3", "1", "0", "3", "3"), ("TEAMSECRET_run4", "0", "2", "3", "4")]
    assert (pkg / "ranking.csv").read_text() == ranked
    assert not [p for p in pkg.iterdir() if ".tmp" in p.name]
    votes_file = tmp_path / "votes.csv"
    votes_file.write_text(votes)
    code, ranked_csv, _ = run(capsys, "rank", pkg, "--votes", votes_file)
    assert code == 0 and ranked_csv == ranked


def test_bad_inputs_exit_2_with_a_message(capsys, pkg, tmp_path):
    code, _, err = run(capsys, "export", tmp_path / "missing")
    assert code == 2 and "not a folder" in err
    bad_votes = tmp_path / "votes.csv"
    bad_votes.write_text("juror,image,candidate,choice,timestamp\njuror001,img00,ffffffffffffffff,most,t\n")
    code, _, err = run(capsys, "rank", pkg, "--votes", bad_votes)
    assert code == 2 and "votes.csv:2" in err and "not a candidate" in err
    bad_votes.write_text("who,what\n")
    code, _, err = run(capsys, "rank", pkg, "--votes", bad_votes)
    assert code == 2 and "header" in err
    code, _, err = run(capsys, "jurors", pkg, "--add", 0)
    assert code == 2 and "N >= 1" in err
    (pkg / "key.json").unlink()
    code, _, err = run(capsys, "rank", pkg)
    assert code == 2 and "key.json" in err
    assert not (pkg / "ranking.csv").exists()


def _cand(pkg):
    key = json.loads((pkg / "key.json").read_text())["candidates"]
    return {(v["run"], v["image"]): c for c, v in key.items()}


HEADER = "juror,image,candidate,choice,timestamp\n"


def _rows(pkg, juror="juror001", image="img00", most=(0, 1), least=(2,), runs=RUNS):
    c = _cand(pkg)
    return "".join(f"{juror},{image},{c[(runs[k], image)]},{kind},t\n"
                   for kind, ks in (("most", most), ("least", least)) for k in ks)


def test_votes_file_round_trip_and_one_valid_ballot(capsys, pkg, tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_text(HEADER + _rows(pkg) + _rows(pkg, juror="juror002", most=(3, 1), least=(0,)))
    code, out, err = run(capsys, "rank", pkg, "--votes", votes)
    assert code == 0 and "2 ballots from 2 jurors" in err and "(jurors)" in err
    code, out2, err = run(capsys, "rank", pkg, "--votes", votes, "--interval", "jurors+images")
    assert code == 0 and "(jurors+images)" in err and "other images" in err
    assert [l.split(",")[:4] for l in out.splitlines()] == [l.split(",")[:4] for l in out2.splitlines()]
    # ranking.csv says which interval produced ci_low / ci_high, in the file written and in the one printed
    for text, interval in ((out, "jurors"), (out2, "jurors+images")):
        table = list(csv.DictReader(io.StringIO(text)))
        assert list(table[0])[-3:] == ["ci_high", "rank", "interval"]
        assert {r["interval"] for r in table} == {interval} and len(table) == len(RUNS)
    assert (pkg / "ranking.csv").read_text() == out2


@pytest.mark.parametrize("case, body, line, message", [
    ("long field", lambda p: HEADER + _rows(p) + "juror002,img00,x,most," + "x" * 200_000 + "\n", 5,
     "field larger than field limit"),
    ("line over 1 MiB", lambda p: HEADER + _rows(p) + '"' + "x" * (1 << 20) + '"\n', 5, "longer than"),
    ("all picks most, no least", lambda p: HEADER + _rows(p, most=(0, 1, 2, 3), least=()), 2,
     "you picked 4 as most appealing, exactly 2 are needed; you picked 0 as least appealing"),
    ("a single pick", lambda p: HEADER + _rows(p, most=(0,), least=()), 2, "exactly 2 are needed"),
    ("in both lists", lambda p: HEADER + _rows(p, most=(0, 1), least=(1,)), 4, "picked candidate"),
    ("extra column", lambda p: HEADER + _rows(p).replace(",t\n", ",t,extra\n", 1), 2, "6 fields, expected 5"),
    ("missing column", lambda p: HEADER + _rows(p).replace(",t\n", "\n", 1), 2, "4 fields, expected 5"),
    ("unterminated quote", lambda p: HEADER + _rows(p) + 'juror002,"img00\n', 5, "not a valid CSV row"),
    ("bad choice", lambda p: HEADER + _rows(p).replace("least", "worst"), 4, "must be 'most' or 'least'"),
    ("split ballot", lambda p: HEADER + _rows(p, most=(0, 1), least=()) + _rows(p, image="img01")
     + _rows(p, most=(), least=(2,)), 2, "put a ballot's rows together"),
    ("ballot twice", lambda p: HEADER + _rows(p) + _rows(p, image="img01") + _rows(p), 8, "must be consecutive"),
    ("empty file", lambda p: "", 1, "header None should be"),
    ("empty juror", lambda p: HEADER + _rows(p, juror=""), 2, "juror '' is empty"),
    ("juror over 200 characters", lambda p: HEADER + _rows(p) + _rows(p, juror="j" * 201), 5,
     "has 201 characters, more than 200"),
    ("huge juror", lambda p: HEADER + _rows(p, juror="j" * 131_000), 2, "has 131000 characters"),
    ("NUL in juror", lambda p: HEADER + _rows(p) + _rows(p, juror="juror\x00002"), 5, "U+0000"),
    ("escape in juror", lambda p: HEADER + _rows(p, juror="juror\x1b[2K"), 2, "control or format character"),
    ("CR in juror", lambda p: HEADER + _rows(p, juror='"juror\r2"'), 2, "U+000D"),
    ("bidi override in juror", lambda p: HEADER + _rows(p, juror="juror\u202e2"), 2, "U+202E"),
])
def test_malformed_votes_files_exit_2_naming_file_and_line(capsys, pkg, tmp_path, case, body, line, message):
    votes = tmp_path / "votes.csv"
    votes.write_text(body(pkg))
    code, out, err = run(capsys, "rank", pkg, "--votes", votes)
    assert code == 2 and out == "", case
    assert f"{votes}:{line}:" in err and message in err and "Traceback" not in err, err
    assert not (pkg / "ranking.csv").exists()


def test_pick_rule_of_the_task_five_most_no_least(capsys, tmp_path):
    pkg6 = make_demo_package(tmp_path / "jury6", [f"run{k}" for k in range(6)], 1, size=16)  # 3 most, 2 least
    votes = tmp_path / "votes.csv"
    votes.write_text(HEADER + _rows(pkg6, most=range(5), least=(), runs=[f"run{k}" for k in range(6)]))
    code, _, err = run(capsys, "rank", pkg6, "--votes", votes)
    assert code == 2 and f"{votes}:2:" in err and "lines 2-6" in err
    assert "3 most and 2 least" in err and "you picked 5 as most appealing" in err


def test_unreadable_votes_files_exit_2(capsys, pkg, tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_bytes(HEADER.encode() + _rows(pkg).encode() + b"juror002,img\xff00,x,most,t\n")
    code, _, err = run(capsys, "rank", pkg, "--votes", votes)
    assert code == 2 and f"{votes}:5: not UTF-8" in err
    code, _, err = run(capsys, "rank", pkg, "--votes", tmp_path)
    assert code == 2 and f"{tmp_path}: cannot read" in err
    code, _, err = run(capsys, "rank", pkg, "--votes", tmp_path / "missing.csv")
    assert code == 2 and "missing.csv: cannot read" in err


FORMULA_RUNS = ['=HYPERLINK("x","click")', "+cmd|' -C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd", "plain_run"]


def test_formula_names_are_text_in_ranking_csv_and_votes_round_trip(capsys, tmp_path):
    pkg = make_demo_package(tmp_path / "jury", FORMULA_RUNS, ["=img", "-img2"], size=16)
    store = VoteStore(load_package(pkg))
    c = _cand(pkg)
    for juror in [l.juror for l in store.add_jurors(2)]:
        for image in ("=img", "-img2"):
            store.save_ballot(juror, image, [c[(FORMULA_RUNS[0], image)], c[(FORMULA_RUNS[1], image)],
                                             c[(FORMULA_RUNS[4], image)]],
                              [c[(FORMULA_RUNS[2], image)], c[(FORMULA_RUNS[3], image)]])
    code, votes, _ = run(capsys, "export", pkg)
    assert code == 0
    cells = [cell for row in csv.reader(io.StringIO(votes)) for cell in row]
    assert "'=img" in cells and "'-img2" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    code, ranked, _ = run(capsys, "rank", pkg)
    assert code == 0
    table = list(csv.DictReader(io.StringIO((pkg / "ranking.csv").read_text())))
    hyperlink = next(r for r in table if unsafe_text(r["run"]) == FORMULA_RUNS[0])
    assert hyperlink["run"] == "'" + FORMULA_RUNS[0] and hyperlink["rank"] == "1"  # text, never evaluated
    assert '\'=HYPERLINK(""x"",""click"")"' in (pkg / "ranking.csv").read_text()
    assert sorted(unsafe_text(r["run"]) for r in table) == sorted(FORMULA_RUNS)
    assert not [r for r in table if r["run"].startswith(("=", "+", "-", "@", "\t", "\r"))]
    votes_file = tmp_path / "votes.csv"
    votes_file.write_text(votes)
    code, ranked_again, _ = run(capsys, "rank", pkg, "--votes", votes_file)  # import undoes safe_text
    assert code == 0 and ranked_again == ranked


def test_a_200_character_juror_is_accepted(capsys, pkg, tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_text(HEADER + _rows(pkg, juror="j" * 200) + _rows(pkg, juror="juror 2 (paper form)"))
    code, _, err = run(capsys, "rank", pkg, "--votes", votes)
    assert code == 0 and "2 ballots from 2 jurors" in err


def test_rank_votes_leaves_out_revoked_jurors_with_a_warning(capsys, pkg, tmp_path):
    """Review of issue 10, item 9: `rank --votes` on a folder whose store revoked a juror drops that juror's
    rows (as `rank` from the store does) and names them; a folder without a store gets none created."""
    store = VoteStore(load_package(pkg))
    c = _cand(pkg)
    jurors = [l.juror for l in store.add_jurors(3)]
    for k, juror in enumerate(jurors):
        for image in ("img00", "img01"):
            most = [c[(RUNS[k], image)], c[(RUNS[3], image)]]
            store.save_ballot(juror, image, most, [c[(RUNS[(k + 1) % 3], image)]])
    code, votes, _ = run(capsys, "export", pkg)
    votes_file = tmp_path / "votes.csv"
    votes_file.write_text(votes)  # exported before the revocation: juror002's rows are in the file
    assert code == 0 and votes.count("juror002,") == 6
    store.revoke("juror002")
    code, from_store, err = run(capsys, "rank", pkg)
    assert code == 0 and "4 ballots from 2 jurors" in err and "warning: left out" not in err
    code, from_file, err = run(capsys, "rank", pkg, "--votes", votes_file)
    assert code == 0 and from_file == from_store and "4 ballots from 2 jurors" in err
    assert "warning: left out 2 ballot(s) of 1 juror(s) revoked in" in err and "'juror002'" in err
    assert "juror001" not in err and "juror003" not in err
    bare = make_demo_package(tmp_path / "bare", RUNS, 2, most=2, least=1, size=16)  # the same package, no store
    assert (bare / "key.json").read_text() == (pkg / "key.json").read_text()
    code, from_bare, err = run(capsys, "rank", bare, "--votes", votes_file)
    assert code == 0 and "6 ballots from 3 jurors" in err and "left out" not in err
    assert not (bare / "votes.sqlite").exists()


@pytest.mark.parametrize("backend", ["sqlite-url", "postgresql"])
def test_every_command_takes_store_url_and_codes_are_listed(capsys, pkg, tmp_path, request, backend):
    """--store URL on jurors, admin, export, rank; `jurors --codes` prints each juror's completion code; the
    default DIR/votes.sqlite is never created."""
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}" if backend == "sqlite-url" else request.getfixturevalue("pg_url")
    code, out, err = run(capsys, "jurors", pkg, "--add", 2, "--completion-prefix", "PANEL", "--store", url)
    assert code == 0 and len(out.strip().splitlines()) == 2 and "organizer" in err
    store = open_store(load_package(pkg), url)
    codes = {j.juror: j.completion_code for j in store.jurors()}
    c = _cand(pkg)
    for image in ("img00", "img01"):
        store.save_ballot("juror001", image, [c[(RUNS[0], image)], c[(RUNS[1], image)]], [c[(RUNS[3], image)]])
    store.finalize("juror001")
    code, out, _ = run(capsys, "jurors", pkg, "--codes", "--store", url)
    lines = [l.split("\t") for l in out.strip().splitlines()]
    assert code == 0 and [(l[0], l[2]) for l in lines] == sorted(codes.items())
    assert lines[0][1] != "not final" and lines[1][1] == "not final" and codes["juror001"].startswith("PANEL-")
    for other in (["--codes"], ["--revoke", "juror002"]):
        code, _, err = run(capsys, "jurors", pkg, *other, "--completion-prefix", "X", "--store", url)
        assert code == 2 and "--completion-prefix goes with --add" in err
    assert not store.jurors()[1].revoked
    code, out, _ = run(capsys, "admin", pkg, "--store", url)
    assert code == 0 and store.verify_admin(parse_qs(urlparse(out.strip()).query)["admin"][0])
    code, votes, _ = run(capsys, "export", pkg, "--store", url)
    assert code == 0 and len(votes.strip().splitlines()) == 1 + 6
    code, ranked, err = run(capsys, "rank", pkg, "--store", url)
    assert code == 0 and "2 ballots from 1 jurors" in err and ranked.startswith("run,")
    assert not (pkg / "votes.sqlite").exists()
    store.close()


def test_store_from_the_environment_and_bad_urls(capsys, pkg, tmp_path, monkeypatch):
    monkeypatch.setenv("PP_JURY_STORE", f"sqlite:///{tmp_path / 'env.sqlite'}")
    code, out, _ = run(capsys, "jurors", pkg, "--add", 1)
    assert code == 0 and (tmp_path / "env.sqlite").exists() and not (pkg / "votes.sqlite").exists()
    code, _, err = run(capsys, "export", pkg, "--store", "mysql://u:hunter2@h/db")
    assert code == 2 and "unknown kind 'mysql'" in err and "hunter2" not in err and "u:***@h" in err
