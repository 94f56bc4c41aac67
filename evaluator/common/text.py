"""Showing submitted names safely: invisible characters (`is_invisible`, `invisible_chars`, `describe_chars`),
one-line names (`show_name`) and log text with every non-printable or invisible character escaped (`escape_text`).
Used by run validation (`evaluator.intake`), the look-alike check, the logs and the CLIs."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable


#: Code points that show nothing (or a blank) yet make a name differ: Unicode's Default_Ignorable_Code_Point
#: (DerivedCoreProperties.txt: soft hyphen, combining grapheme joiner, Hangul fillers, zero-width and bidi
#: controls, variation selectors, tags, ...) and the blank glyphs U+2800 BRAILLE PATTERN BLANK and U+1D159
#: MUSICAL SYMBOL NULL NOTEHEAD. `is_invisible` adds every format (Cf) and separator (Zs, Zl, Zp) character
#: but the ASCII space.
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D159, 0x1D159),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_INVISIBLE = frozenset(cp for lo, hi in _INVISIBLE_RANGES for cp in range(lo, hi + 1))


def is_invisible(c: str) -> bool:
    """True for a character that renders as nothing or as a blank (`_INVISIBLE_RANGES`, Cf, Zs/Zl/Zp but " ")."""
    return ord(c) in _INVISIBLE or (c != " " and unicodedata.category(c) in ("Cf", "Zs", "Zl", "Zp"))


def invisible_chars(text: str) -> list[str]:
    """The distinct invisible characters of `text` (`is_invisible`), in order of appearance."""
    if text.isascii():  # no ASCII character is invisible (tab, newline, ... are control characters)
        return []
    return [c for c in dict.fromkeys(text) if is_invisible(c)]


def describe_chars(chars: list[str]) -> str:
    """`U+034F COMBINING GRAPHEME JOINER, U+3164 HANGUL FILLER`: what an error message shows for each."""
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in chars)


def _escape(c: str) -> str:
    if not c.isprintable():
        return repr(c)[1:-1]
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def show_name(name: str) -> str:
    """A name safe to print in one line: itself when printable and free of invisible characters, else its `repr`
    (surrogates, newlines, ...) with every invisible character (`is_invisible`) written as `\\uXXXX` too, so that
    `ifgsm` and `ifgsm` + U+034F never print alike."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(name)
    if name.isprintable() and not invisible_chars(name):
        return name
    return "".join(_escape(c) if c.isprintable() and is_invisible(c) else c for c in repr(name))


def escape_text(text: str) -> str:
    """`text` with every character that is not printable (newline, ESC, bidi control, surrogate, ...) or is
    invisible (`is_invisible`: U+034F, a Hangul filler, ...) written as its Python escape (`\\n`, `\\x1b`,
    `\\u202e`, `\\udcff`, `\\u034f`): a submitted name printed in a log stays on one line, cannot forge another
    line or drive the terminal, and never looks like another name."""
    if text.isprintable() and not invisible_chars(text):
        return text
    return "".join(_escape(c) if not c.isprintable() or is_invisible(c) else c for c in text)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the choice closest to a mistyped `name` (difflib, ratio >= 0.6), else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
