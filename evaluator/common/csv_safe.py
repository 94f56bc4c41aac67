"""Spreadsheet-safe CSV text cells (OWASP "CSV Injection" rule).

A spreadsheet evaluates a cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula,
so a run folder named `=HYPERLINK(...)` would run in the organizer's spreadsheet when `runs.csv` is opened. Every
CSV the kit writes passes its *text* cells through `safe_text`, which prefixes such a cell with a single quote
(`'=HYPERLINK(...)`): spreadsheets show the text as typed and never evaluate it. Numbers are written by the
callers as numbers (a negative score stays `-3.5`), so only strings go through here. `unsafe_text` undoes it for
readers of the kit's own CSVs.
"""

from __future__ import annotations

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
