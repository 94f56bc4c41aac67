"""Attention checks (planted candidates, `evaluator.contracts.jury_package`, key.json's "checks"): each juror's
results, and the ballots without them.

A juror sees a check on every image that has one; the juror fails it by picking the check as most appealing
(an attentive juror never finds a heavily degraded copy the most appealing version). For juror j:

    checks_j = ballots of j on images with a check,  failed_j = those whose "most" picks hold the check,
    fail_share_j = failed_j / checks_j  (0 when checks_j = 0).

`without_checks` drops the check from every ballot (a pick of it counts for no run), so checks never count in
the ranking; `rank --exclude-failed --max-fail-share X` drops the ballots of jurors with fail_share_j > X.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from jury_app.votes.ballot import Ballot
from evaluator.contracts.jury_package import JuryKey


@dataclass(frozen=True)
class JurorChecks:
    juror: str
    checks: int
    failed: int

    @property
    def fail_share(self) -> float:
        return self.failed / self.checks if self.checks else 0.0


def check_results(ballots: Iterable[Ballot], key: JuryKey) -> list[JurorChecks]:
    """Per juror (sorted), the checks seen and failed (module docstring); jurors without a check ballot too."""
    by_image = {image: cid for cid, image in key.checks.items()}
    seen: dict[str, list[int]] = {}
    for b in ballots:
        tally = seen.setdefault(b.juror, [0, 0])
        check = by_image.get(b.image)
        if check is not None:
            tally[0] += 1
            tally[1] += check in b.most
    return [JurorChecks(j, c, f) for j, (c, f) in sorted(seen.items())]


def failed_jurors(results: Iterable[JurorChecks], max_fail_share: float) -> frozenset[str]:
    """Jurors whose fail_share is above `max_fail_share`."""
    return frozenset(r.juror for r in results if r.fail_share > max_fail_share)


def without_checks(ballots: Iterable[Ballot], key: JuryKey) -> Iterator[Ballot]:
    """The ballots with the planted checks taken out of their picks (the ballots as they are without checks)."""
    checks = key.checks
    for b in ballots:
        if checks and (any(c in checks for c in b.most) or any(c in checks for c in b.least)):
            b = Ballot(b.juror, b.image, tuple(c for c in b.most if c not in checks),
                       tuple(c for c in b.least if c not in checks))
        yield b
