"""Position bias: the share of "most appealing" picks by grid position.

For position p: shown_p = ballots whose grid had a position p, most_p = "most" picks at p, share = most_p /
shown_p, expected = mean over those ballots of (most picks / candidates), the share if position did not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jury_app.votes.ballot import Ballot


@dataclass(frozen=True)
class PositionShare:
    position: int  # 1-based for people
    shown: int
    most: int
    share: float
    expected: float


def position_bias(ballots: Sequence[Ballot], layouts: Sequence[tuple[str, str, int, str, str]]
                  ) -> list[PositionShare]:
    """`layouts` rows are (juror, image, position, candidate, letter) as the store returns them."""
    grid: dict[tuple[str, str], dict[str, int]] = {}
    for juror, image, position, candidate, _ in layouts:
        grid.setdefault((juror, image), {})[candidate] = position
    shown: dict[int, int] = {}
    most: dict[int, int] = {}
    expected: dict[int, float] = {}
    for b in ballots:
        positions = grid.get((b.juror, b.image))
        if not positions:
            continue
        for p in positions.values():
            shown[p] = shown.get(p, 0) + 1
            expected[p] = expected.get(p, 0.0) + len(b.most) / len(positions)
        for c in b.most:
            if c in positions:
                most[positions[c]] = most.get(positions[c], 0) + 1
    return [PositionShare(position=p + 1, shown=shown[p], most=most.get(p, 0),
                          share=most.get(p, 0) / shown[p], expected=expected[p] / shown[p])
            for p in sorted(shown)]
