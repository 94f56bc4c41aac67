"""OWASP CSV-injection rule: formula-looking text is neutralised and the transform round-trips."""

import pytest

from evaluator.common.csv_safe import safe_text, unsafe_text


@pytest.mark.parametrize("name", ['=HYPERLINK("x","click")', "+cmd|' -C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd",
                                  "\tx", "\rx"])
def test_formula_cells_are_quoted(name):
    assert safe_text(name) == "'" + name
    assert unsafe_text(safe_text(name)) == name


@pytest.mark.parametrize("name", ["ifgsm", "team-a_run1", "", "'quoted", "''", "a=b"])
def test_plain_text_round_trips(name):
    assert unsafe_text(safe_text(name)) == name
    assert not safe_text(name).startswith(("=", "+", "-", "@", "\t", "\r"))


def _rows(text: str) -> list[list[str]]:
    import csv
    import io
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("name", ["a\rb", "\rlead", "=x\r=y", "a\r\nb", "a\nb"])
def test_every_csv_of_the_kit_keeps_a_cell_with_cr_or_lf_in_its_row(tmp_path, name):
    """contracts.results.write_csv, ranking.csv and the votes export share one writer: a CR inside a cell is quoted."""
    from evaluator.contracts.results import read_csv, write_csv
    from jury_app.ranking.ranking import RunScore
    from jury_app.ranking.summary import ranking_csv
    from jury_app.votes.store import VoteRow
    from jury_app.votes.votes_csv import votes_to_csv

    write_csv(tmp_path / "runs.csv", ["run", "score"], [{"run": name, "score": -1.5}, {"run": "b", "score": 2}])
    assert [(r["run"], r["score"]) for r in read_csv(tmp_path / "runs.csv")] == [(name, "-1.5"), ("b", "2")]

    rows = _rows(ranking_csv([RunScore(name, 3, 1, 4, -0.25, rank=1), RunScore("b", 1, 3, 4, 0.5, rank=2)], "jurors"))
    assert len(rows) == 3 and [unsafe_text(r[0]) for r in rows[1:]] == [name, "b"]
    assert rows[1][4] == "-0.2500"  # numbers stay numbers

    text = votes_to_csv([VoteRow(name, "img", "cand1234", "most", "t"), VoteRow("j2", "img", "c", "least", "t")])
    rows = _rows(text)
    assert len(rows) == 3 and [unsafe_text(r[0]) for r in rows[1:]] == [name, "j2"]
    for row in rows:
        for c in row:
            assert not c.startswith(("=", "+", "@", "\t", "\r"))
