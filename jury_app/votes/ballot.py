"""One juror's ballot for one image: the pick rule and its validation (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class BallotError(ValueError):
    """A ballot that breaks the pick rule; the message tells the juror what to change."""


class BallotLockedError(BallotError):
    """The juror has made the final submit; ballots can no longer change."""


@dataclass(frozen=True)
class PickRule:
    """How many "most" and "least" appealing candidates a juror picks for one image."""

    most: int
    least: int
    shrunk: bool = False  # True when the task's numbers were reduced because there are few candidates

    def explain(self) -> str:
        base = f"Pick exactly {self.most} most appealing" + (
            f" and exactly {self.least} least appealing" if self.least else "") + " (no image in both)."
        if self.shrunk:
            base += " This image has only a few versions, so fewer picks than usual are asked."
        return base


def pick_rule(n_candidates: int, most: int, least: int) -> PickRule:
    """The task's (most, least), shrunk until most + least <= n_candidates (larger one first, least on ties).

    Example: 5 candidates keep 3/2; 4 give 2/2; 3 give 2/1; 2 give 1/1; 1 gives 1/0.
    """
    if n_candidates < 1:
        raise BallotError("an image without candidates cannot be judged")
    m, l = most, least
    while m + l > n_candidates:
        if l >= m and l > 0:
            l -= 1
        else:
            m -= 1
    m = max(m, 1)
    return PickRule(most=m, least=l, shrunk=(m, l) != (most, least))


@dataclass(frozen=True)
class Ballot:
    juror: str
    image: str
    most: tuple[str, ...]
    least: tuple[str, ...]


def validate_picks(
    candidates: Sequence[str], rule: PickRule, most: Iterable[str], least: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check a ballot against the rule; return (most, least) sorted; raise BallotError with a juror message."""
    most_l, least_l = list(most), list(least)
    allowed = set(candidates)
    unknown = sorted((set(most_l) | set(least_l)) - allowed)
    if unknown:
        raise BallotError(f"Unknown image choice(s) {unknown}: pick only among the versions shown for this image.")
    if len(set(most_l)) != len(most_l) or len(set(least_l)) != len(least_l):
        raise BallotError("The same version was picked twice in one list; pick each version at most once.")
    both = set(most_l) & set(least_l)
    problems = []
    if len(most_l) != rule.most:
        problems.append(f"you picked {len(most_l)} as most appealing, exactly {rule.most} are needed")
    if len(least_l) != rule.least:
        problems.append(f"you picked {len(least_l)} as least appealing, exactly {rule.least} are needed")
    if both:
        problems.append(f"{len(both)} version(s) are in both lists; a version can be most or least, not both")
    if problems:
        raise BallotError("Please fix your picks: " + "; ".join(problems) + ".")
    return tuple(sorted(most_l)), tuple(sorted(least_l))
