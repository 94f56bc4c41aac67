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
