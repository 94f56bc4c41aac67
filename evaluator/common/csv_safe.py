"""Spreadsheet-safe CSV text cells (OWASP "CSV Injection" rule).

A spreadsheet evaluates a cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula,
so a run folder named `=HYPERLINK(...)` would run in the organizer's spreadsheet when `runs.csv` is opened. Every
CSV the kit writes passes its *text* cells through `safe_text`, which prefixes such a cell with a single quote
(`'=HYPERLINK(...)`): spreadsheets show the text as typed and never evaluate it. Numbers are written by the
callers as numbers (a negative score stays `-3.5`), so only strings go through here. `unsafe_text` undoes it for
readers of the kit's own CSVs.

`CsvWriter` is the one CSV writer of the kit (`evaluator.contracts.results.write_csv`, the jury's `ranking.csv`
and votes export): it applies `safe_text` to every text cell, and writes a row holding a carriage return in a cell with every cell
quoted: with "\n" line ends Python's csv module quotes a cell with "\n" but not one with a lone "\r", which a
reader then splits into two rows.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(text: str) -> str:
    """`text`, prefixed with `'` when a spreadsheet would read it as a formula (or when it already starts with `'`,
    so that `unsafe_text` is its exact inverse)."""
    if text.startswith(FORMULA_STARTS) or text.startswith("'"):
        return "'" + text
    return text


def unsafe_text(cell: str) -> str:
    """Inverse of `safe_text`: the original text of a cell the kit wrote."""
    return cell[1:] if cell.startswith("'") else cell


class CsvWriter:
    """Rows of cells to a text file opened with `newline=""`: UTF-8 by the caller, "\n" line ends.

    A `str` cell is text (through `safe_text`); None is an empty cell; any other value is a number, written as
    `number(value)` (the caller's format, `str` by default) and never quoted as a formula: it is not text."""

    def __init__(self, f: TextIO, number: Callable[[Any], str] = str) -> None:
        self._plain = csv.writer(f, lineterminator="\n")
        self._quoted = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._number = number

    def cell(self, value: Any) -> str:
        if isinstance(value, str):
            return safe_text(value)
        return "" if value is None else self._number(value)

    def writerow(self, values: Iterable[Any]) -> None:
        cells = [self.cell(v) for v in values]
        (self._quoted if any("\r" in c for c in cells) else self._plain).writerow(cells)
