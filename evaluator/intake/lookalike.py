"""Look-alike run names: `іfgsm` (Cyrillic і) beside `ifgsm` score as two runs and print identically.

Two names are look-alikes when they differ but have the same skeleton (Unicode TR39 "Unicode Security Mechanisms",
section 4, confusable detection):

    skeleton(name) = concat_c prototype(c)  for c in NFKC(name) that is not invisible,
                     then spaces at either end removed and runs of spaces made one

TR39 section 4 first removes Default_Ignorable_Code_Point characters; here every invisible character
(`evaluator.common.text.is_invisible`: default-ignorables such as U+034F or U+FE0F, fillers such as U+3164,
U+115F and U+2800, format and non-ASCII space characters) is removed, so `ifgsm` + U+034F looks like `ifgsm`.
(`evaluator.intake.runs` refuses such names anyway; the skeleton does not rely on it.)

NFKC folds compatibility forms (fullwidth `ｉ`, ligature `ﬁ`, ...); `prototype` maps every character to one
representative of its class in Unicode's confusables.txt, as shipped by the `confusable-homoglyphs` package (its
`confusables_data` lists, for each character, the characters it can be confused with, both ways). A character
whose prototype is several characters (`m` -> `rn`) is replaced by them. Names are compared as given (no case
folding: names equal up to case are already refused as the same run, see `evaluator.pipeline`).

Look-alike runs are still scored; they are flagged with a warning in `runs.csv` and the report's runs table, the
warning spelling each name with its non-ASCII characters escaped so the organizer can tell them apart.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

from evaluator.common.text import is_invisible

_MARKS = str.maketrans("", "", "\u200e\u200f")  # direction marks the data wraps right-to-left glyphs in


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """(representative of each single character's confusable class, multi-character prototypes)."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def find(c: str) -> str:
        root = c
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(c, c) != root:  # path compression
            parent[c], c = root, parent[c]
        return root

    expand: dict[str, str] = {}
    for char, glyphs in confusables_data.items():
        for glyph in glyphs:
            other = glyph["c"].translate(_MARKS)
            if len(other) == 1:
                a, b = find(char), find(other)
                if a != b:  # the smaller code point represents the class
                    parent[max(a, b)] = min(a, b)
            elif len(other) > 1 and len(char) == 1:
                expand.setdefault(char, other)
    reps = {c: find(c) for c in list(parent)}
    return reps, expand


def skeleton(name: str) -> str:
    """The TR39 skeleton of `name` after NFKC, without invisible characters: equal for names that look alike."""
    reps, expand = _tables()
    out = []
    for c in unicodedata.normalize("NFKC", name):
        if is_invisible(c):
            continue
        for d in expand.get(c, c):
            out.append(reps.get(d, d))
    return " ".join(w for w in "".join(out).split(" ") if w)  # spaces at the ends and doubled ones show nothing


def spelled(name: str) -> str:
    """`name` with its non-ASCII characters as `\\uXXXX` escapes, in quotes (`'\\u0456fgsm'`)."""
    return ascii(name)


def lookalikes(names: Iterable[str]) -> dict[str, list[str]]:
    """For every name that looks like another one of `names`: those others (sorted)."""
    groups: dict[str, set[str]] = {}
    for n in names:
        groups.setdefault(skeleton(n), set()).add(n)
    found: dict[str, list[str]] = {}
    for members in groups.values():
        if len(members) > 1:
            for n in members:
                found[n] = sorted(members - {n})
    return found


def lookalike_warnings(names: Iterable[str]) -> dict[str, str]:
    """One warning text per look-alike name, spelling out both names (e.g. for `runs.csv`'s `warning` column)."""
    return {n: "the name looks like " + ", ".join(f"{spelled(o)}" for o in others)
               + f" (this one is {spelled(n)}); check they are different teams' runs"
            for n, others in lookalikes(names).items()}
