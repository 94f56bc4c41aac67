"""Records shared by run validation: the limits a submission must respect and one named problem.

Re-exported by `evaluator.intake.runs`, which is the public entry point.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Ceilings on what a submission may make the evaluator read (MEPP20 images are ~512x384, a few Mpx at most).

    `max_ratio` is the zip-bomb rule: a member's uncompressed size over its compressed size; it applies to
    members larger than `ratio_floor_bytes` (a tiny file cannot be a bomb).
    """

    max_members: int = 2000
    max_total_bytes: int = 2 * 1024**3
    max_file_bytes: int = 64 * 1024**2
    max_pixels: int = 40_000_000
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1024**2
    max_run_json_bytes: int = 1024**2


@dataclass(frozen=True)
class RunIssue:
    """One problem of a run: `file` (name inside the run, or the run itself), what is wrong, what to do."""

    file: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}; {self.fix}"


def show_name(name: str) -> str:
    """A name safe to print in one line: itself when printable, else its `repr` (surrogates, newlines, ...)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(name)
    return name if name.isprintable() else repr(name)


def escape_text(text: str) -> str:
    """`text` with every character that is not printable (newline, ESC, bidi control, surrogate, ...) written as
    its Python escape (`\\n`, `\\x1b`, `\\u202e`, `\\udcff`): a submitted name printed in a log stays on one line
    and cannot forge another line or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
