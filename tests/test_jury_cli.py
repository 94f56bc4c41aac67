"""pp-jury CLI: jurors, admin, export, rank (store and votes CSV), errors and exit codes."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlparse

import pytest

from jury_app.cli import main
from jury_app.fixtures import make_demo_package
from jury_app.package import load_package
from jury_app.store import VoteStore

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
    assert "exit codes" in out and "0  success" in out and "2  bad input" in out


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

