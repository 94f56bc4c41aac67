"""One juror's ballot for one image and its validation against the pick rule
(`evaluator.contracts.jury_package.PickRule`, `PickRule.for_candidates` for an image with few candidates); pure
functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evaluator.common.errors import VotesError
from evaluator.contracts.jury_package import PickRule


class BallotError(VotesError, ValueError):
    """A ballot that breaks the pick rule; the message tells the juror what to change."""


class BallotLockedError(BallotError):
    """The juror has made the final submit; ballots can no longer change."""


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
