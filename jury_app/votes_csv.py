"""The votes CSV: `juror, image, candidate, choice, timestamp`, one row per pick (choice is most or least)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from jury_app.store import VoteRow

VOTE_COLUMNS = ("juror", "image", "candidate", "choice", "timestamp")


class VotesFileError(ValueError):
    """A votes CSV that cannot be read; the message names the file, the line and the fix."""


def votes_to_csv(rows: Sequence[VoteRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(VOTE_COLUMNS)
    for r in rows:
        writer.writerow([r.juror, r.image, r.candidate, r.choice, r.timestamp])
    return buf.getvalue()


def read_votes_csv(path: str | Path, known_candidates: dict[str, str]) -> list[VoteRow]:
    """Read a votes CSV; `known_candidates` maps candidate id -> image (from the package) to check each row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VotesFileError(f"{path}: cannot read ({exc}); pass the file `pp-jury export` wrote.") from exc
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != VOTE_COLUMNS:
        raise VotesFileError(f"{path}: header {reader.fieldnames} should be {','.join(VOTE_COLUMNS)}; "
                             "write it with `pp-jury export DIR > votes.csv`.")
    rows: list[VoteRow] = []
    seen: set[tuple[str, str, str]] = set()
    for line, rec in enumerate(reader, start=2):
        row = VoteRow(**{k: (rec[k] or "").strip() for k in VOTE_COLUMNS})
        if row.choice not in ("most", "least"):
            raise VotesFileError(f"{path}:{line}: choice {row.choice!r} must be 'most' or 'least'.")
        if known_candidates.get(row.candidate) != row.image:
            raise VotesFileError(f"{path}:{line}: candidate {row.candidate!r} is not a candidate of image "
                                 f"{row.image!r} in this jury package; use the votes of this package.")
        if not row.juror:
            raise VotesFileError(f"{path}:{line}: empty juror.")
        if (row.juror, row.image, row.candidate) in seen:
            raise VotesFileError(f"{path}:{line}: juror {row.juror!r} picked candidate {row.candidate!r} "
                                 "twice; one row per pick.")
        seen.add((row.juror, row.image, row.candidate))
        rows.append(row)
    return rows
