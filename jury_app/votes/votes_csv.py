"""The votes CSV: `juror, image, candidate, choice, timestamp`, one row per pick (choice is most or least).

Written by `pp-jury export` (and the organizer page) with every text cell through `evaluator.common.csv_safe.safe_text`
(a cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`, so a spreadsheet shows it as text);
`iter_ballots` applies the inverse, `unsafe_text`, so export -> import round-trips.

`iter_ballots` streams the file: one line in memory at a time (a line is at most `MAX_LINE_BYTES`, a field at
most `csv.field_size_limit()`), the picks of one ballot (juror, image) are gathered while its rows follow each
other, then the ballot is checked against the task's pick rule exactly as the web form checks it
(`PickRule.for_candidates` + `ballot.validate_picks`) and yielded. A ballot's rows must be consecutive, as the export
writes them; memory is one bit per (juror, image) to refuse a ballot that appears twice. A juror id is 1..200
printable characters (`juror_problem`). Every problem raises
`VotesFileError` naming the file and line, what is wrong and what to do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from evaluator.common.csv_safe import CsvWriter, unsafe_text
from evaluator.common.errors import VotesError
from jury_app.votes.ballot import Ballot, BallotError, validate_picks
from evaluator.contracts.jury_package import JuryPackage
from jury_app.votes.store import VoteRow

VOTE_COLUMNS = ("juror", "image", "candidate", "choice", "timestamp")

#: a valid row is a few hundred bytes (image ids <= 200 characters); longer lines are refused before parsing.
MAX_LINE_BYTES = 1 << 20


#: a juror id is at most this many characters (the store's ids read juror001; image ids are capped alike).
MAX_JUROR_CHARS = 200


def juror_problem(juror: str) -> str | None:
    """What is wrong with a juror id of a votes file, or None: 1..MAX_JUROR_CHARS printable characters (no
    control or format characters such as NUL, a line break, ESC or a bidi override, as `str.isprintable`)."""
    if not juror:
        return "is empty"
    if len(juror) > MAX_JUROR_CHARS:
        return f"has {len(juror)} characters, more than {MAX_JUROR_CHARS}"
    if not juror.isprintable():
        bad = next(c for c in juror if not c.isprintable())
        return f"contains the control or format character {bad!r} (U+{ord(bad):04X})"
    return None


class VotesFileError(VotesError, ValueError):
    """A votes CSV that cannot be read; the message names the file, the line and the fix."""


def votes_to_csv(rows: Sequence[VoteRow]) -> str:
    """The votes as CSV text, through the kit's one CSV writer (`evaluator.common.csv_safe.CsvWriter`)."""
    buf = io.StringIO(newline="")
    writer = CsvWriter(buf)
    writer.writerow(VOTE_COLUMNS)
    for r in rows:
        writer.writerow([str(v) for v in (r.juror, r.image, r.candidate, r.choice, r.timestamp)])
    return buf.getvalue()


class _Lines:
    """Iterate the decoded lines of a binary file, counting them, refusing over-long lines and non-UTF-8."""

    def __init__(self, path: Path, handle) -> None:
        self.path, self.handle, self.line = path, handle, 0

    def __iter__(self) -> Iterator[str]:
        readline, limit = self.handle.readline, MAX_LINE_BYTES + 1
        encoding = "utf-8-sig"  # the first line may start with a byte order mark
        while raw := readline(limit):
            self.line += 1
            if len(raw) == limit:
                raise VotesFileError(f"{self.path}:{self.line}: line longer than {MAX_LINE_BYTES} bytes; a "
                                     "votes row is a few hundred bytes. Use the file `pp-jury export DIR` wrote.")
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise VotesFileError(f"{self.path}:{self.line}: not UTF-8 ({exc.reason} at byte {exc.start}); "
                                     "save the votes file as UTF-8.") from exc
            encoding = "utf-8"


def iter_ballots(path: str | Path, package: JuryPackage) -> Iterator[Ballot]:
    """Yield the ballots of a votes CSV, each checked against `package` (its candidates and pick rule)."""
    path = Path(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise VotesFileError(f"{path}: cannot read ({exc.strerror or exc}); pass the file `pp-jury export` "
                             "wrote.") from exc
    with handle:
        lines = _Lines(path, handle)
        reader = csv.reader(iter(lines), strict=True)
        try:
            yield from _ballots(path, reader, lines, package)
        except csv.Error as exc:
            raise VotesFileError(f"{path}:{lines.line}: not a valid CSV row ({exc}); use the file "
                                 "`pp-jury export DIR` wrote.") from exc


def _ballots(path: Path, reader, lines: _Lines, package: JuryPackage) -> Iterator[Ballot]:
    header = next(reader, None)
    if header is None or tuple(header) != VOTE_COLUMNS:
        raise VotesFileError(f"{path}:1: header {header} should be {','.join(VOTE_COLUMNS)}; write the file "
                             "with `pp-jury export DIR > votes.csv`.")
    image_index = {im.image: k for k, im in enumerate(package.images)}
    candidates = {im.image: tuple(c.id for c in im.candidates) for im in package.images}
    candidate_sets = {image: frozenset(ids) for image, ids in candidates.items()}
    rules = {im.image: package.task.for_candidates(len(im.candidates))
             for im in package.images}
    done: dict[str, int] = {}  # juror -> bit set of the images whose ballot is complete
    current: tuple[str, str] | None = None
    most: list[str] = []
    least: list[str] = []
    first = last = 0

    def finish() -> Ballot:
        juror, image = current
        rule = rules[image]
        try:
            m, l = validate_picks(candidates[image], rule, most, least)
        except BallotError as exc:
            where = f"line {first}" if first == last else f"lines {first}-{last}"
            hint = (" If its other rows are further down, put a ballot's rows together (sort by juror, image)."
                    if len(most) < rule.most or len(least) < rule.least else "")
            raise VotesFileError(
                f"{path}:{first}: the ballot of juror {juror!r} for image {image!r} ({where}) breaks the task's "
                f"pick rule ({rule.most} most and {rule.least} least for this image): {exc} Correct or remove "
                f"those rows.{hint}") from None
        done[juror] = done.get(juror, 0) | (1 << image_index[image])
        return Ballot(juror, image, m, l)

    cur_juror = cur_image = None
    cur_candidates: frozenset[str] = frozenset()
    for rec in reader:
        if len(rec) != 5:
            if not rec:
                continue  # a blank line
            raise VotesFileError(f"{path}:{lines.line}: {len(rec)} fields, expected {len(VOTE_COLUMNS)} "
                                 f"({','.join(VOTE_COLUMNS)}); quote fields that contain commas.")
        juror, image, candidate, choice = rec[0], rec[1], rec[2], rec[3]
        # undo the export's safe_text; the cheap test first, as this loop runs once per pick
        if juror[:1] == "'":
            juror = unsafe_text(juror)
        if image[:1] == "'":
            image = unsafe_text(image)
        if candidate[:1] == "'":
            candidate = unsafe_text(candidate)
        choice = choice.strip()
        if juror != cur_juror or image != cur_image:
            if current is not None:
                yield finish()
            if juror != cur_juror and (problem := juror_problem(juror)) is not None:
                raise VotesFileError(f"{path}:{lines.line}: juror {juror[:80]!r}{'...' if len(juror) > 80 else ''} "
                                     f"{problem}; use the juror ids `pp-jury jurors DIR --add N` printed.")
            if image not in image_index:
                raise VotesFileError(f"{path}:{lines.line}: image {image[:80]!r} is not in this jury package; "
                                     "use the votes of this package.")
            if done.get(juror, 0) >> image_index[image] & 1:
                raise VotesFileError(
                    f"{path}:{lines.line}: juror {juror!r} has rows for image {image!r} here and in an earlier, "
                    "separate group of rows; a ballot's rows must be consecutive (sort the file by juror, "
                    "image) and appear once.")
            current, most, least, first = (juror, image), [], [], lines.line
            cur_juror, cur_image, cur_candidates = juror, image, candidate_sets[image]
        if choice != "most" and choice != "least":
            raise VotesFileError(f"{path}:{lines.line}: choice {choice[:40]!r} must be 'most' or 'least'.")
        if candidate not in cur_candidates:
            raise VotesFileError(f"{path}:{lines.line}: candidate {candidate[:80]!r} is not a candidate of image "
                                 f"{image[:80]!r} in this jury package; use the votes of this package.")
        if candidate in most or candidate in least:
            raise VotesFileError(f"{path}:{lines.line}: juror {juror!r} picked candidate {candidate!r} twice; "
                                 "one row per pick.")
        (most if choice == "most" else least).append(candidate)
        last = lines.line
    if current is not None:
        yield finish()
