"""Grid layout per (juror, image): candidates shuffled into positions under freshly drawn letters.

The draw is seeded by sha256(salt | juror | image), so it is reproducible, differs between jurors and images,
and reveals nothing about the runs (the salt is a random secret of the vote store). The store keeps the
layout it first showed, so the position-bias table reads positions that were really seen.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    position: int  # 0-based, row-major in the grid
    candidate: str
    letter: str


def _labels(n: int) -> list[str]:
    if n <= 26:
        return list(string.ascii_uppercase)
    return [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]


def draw_layout(salt: str, juror: str, image: str, candidates: Sequence[str]) -> tuple[Slot, ...]:
    """Shuffle candidates into positions and draw n distinct letters, shown in alphabetical order."""
    seed = hashlib.sha256(f"{salt}|{juror}|{image}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:16], "big"))
    order = sorted(candidates)  # input order must not matter
    rng.shuffle(order)
    letters = sorted(rng.sample(_labels(len(order)), len(order)))
    return tuple(Slot(position=i, candidate=c, letter=letters[i]) for i, c in enumerate(order))
