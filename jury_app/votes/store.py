"""The vote store: SQLite in the jury folder (`votes.sqlite`).

WAL journal, a busy timeout, `synchronous=FULL`, one `BEGIN IMMEDIATE` transaction per ballot (writers queue
on an flock of `votes.sqlite.lock` first, see `_writer_turn`); a juror's ballot for an image replaces the
previous one; a final submit locks the juror's ballots. Each thread uses its own connection (re-opened after
a fork), so one `VoteStore` can be shared by threads, and other processes open their own.

Tables: schema_version(version); meta(key, value) holding the layout salt, the served images' secret and
the admin token hash; jurors(juror, token_sha256, created, finalized, revoked); layouts(juror, image,
position, candidate, letter); ballots(juror, image, updated); picks(juror, image, candidate, choice in
{'most','least'}).

Revocation (`revoke`, `pp-jury jurors DIR --revoke ID`): the juror's token hash is overwritten (so no
version of pp-jury accepts the token again) and `revoked` is set; the next run of the juror's page refuses
the token, and every write checks it inside its transaction. The juror's committed ballots stay in the store
(nothing is deleted) but `ballots()`, `votes()` and `layouts()` leave them out, so the ranking, the export
and the position-bias table do not count them; `jurors()` lists the juror with the time of the revocation.
The `revoked` column is added to stores made before it existed (`ALTER TABLE`, same schema version).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from jury_app.votes import tokens
from evaluator.common.errors import VotesError
from jury_app.votes.ballot import Ballot, BallotError, BallotLockedError, validate_picks
from jury_app.votes.layout import Slot, draw_layout
from evaluator.contracts.jury_package import JuryPackage

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_INHERITED: list[sqlite3.Connection] = []
BUSY_TIMEOUT_MS = 15_000
_REVOKED = "(SELECT juror FROM jurors WHERE revoked IS NOT NULL)"  # their ballots are kept, not counted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jurors (
    juror TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created TEXT NOT NULL, finalized TEXT, revoked TEXT);
CREATE TABLE IF NOT EXISTS layouts (
    juror TEXT NOT NULL REFERENCES jurors(juror), image TEXT NOT NULL, position INTEGER NOT NULL,
    candidate TEXT NOT NULL, letter TEXT NOT NULL, PRIMARY KEY (juror, image, position));
CREATE TABLE IF NOT EXISTS ballots (
    juror TEXT NOT NULL REFERENCES jurors(juror), image TEXT NOT NULL, updated TEXT NOT NULL,
    PRIMARY KEY (juror, image));
CREATE TABLE IF NOT EXISTS picks (
    juror TEXT NOT NULL, image TEXT NOT NULL, candidate TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('most', 'least')),
    PRIMARY KEY (juror, image, candidate),
    FOREIGN KEY (juror, image) REFERENCES ballots(juror, image));
"""


def _end(conn: sqlite3.Connection, statement: str) -> None:
    """COMMIT or ROLLBACK if a transaction is still open; a failure here must not hide the original error."""
    if conn.in_transaction:
        try:
            conn.execute(statement)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


class StoreError(VotesError, RuntimeError):
    """The vote store cannot be used (wrong schema version, unknown juror, ...)."""


@dataclass(frozen=True)
class JurorLink:
    juror: str
    token: str


@dataclass(frozen=True)
class JurorStatus:
    juror: str
    created: str
    finalized: str | None
    ballots: int
    last_update: str | None
    revoked: str | None = None


@dataclass(frozen=True)
class VoteRow:
    juror: str
    image: str
    candidate: str
    choice: str
    timestamp: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class VoteStore:
    """Votes of one jury package, in `package.store_path`."""

    def __init__(self, package: JuryPackage, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.package = package
        self.path = package.store_path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._init_schema()

    # -- connection -------------------------------------------------------------------------------------
    def _gone(self, exc: Exception) -> StoreError:
        """The error for a store whose folder was moved or deleted under a running server."""
        return StoreError(f"The vote store {self.path} cannot be opened ({exc}): the jury folder was moved or "
                          "deleted while the server ran. Nothing was saved. Organizer: put the folder back, or "
                          "restart `pp-jury serve` on the jury folder (pp-evaluate never removes a jury that is "
                          "being served or holds votes).")

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():  # sqlite would say only "unable to open database file"
            raise self._gone(FileNotFoundError(f"no folder {self.path.parent}"))
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened once (closing the last WAL connection checkpoints: ~10 ms)."""
        local = self._local
        if getattr(local, "conn", None) is not None and local.pid != os.getpid():
            _INHERITED.append(local.conn)  # never close a parent's connection in a forked child
            local.conn = None
        if getattr(local, "conn", None) is None:
            local.conn, local.pid = self._connect(), os.getpid()
        return local.conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN")  # one consistent snapshot for the whole read
        try:
            yield conn
        finally:
            _end(conn, "COMMIT")

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Queue writers on an flock of `votes.sqlite.lock` (threads and processes alike).

        SQLite's own busy handler polls with growing sleeps, which gives seconds-long tails when 20 jurors
        commit at once; a blocking flock wakes the next writer as soon as the lock is released. Where flock is
        unavailable (Windows, some network file systems) the busy timeout alone applies.
        """
        if fcntl is None:
            yield
            return
        try:
            fh = open(self.path.with_name(self.path.name + ".lock"), "a+b")
        except OSError as exc:
            raise self._gone(exc) from exc
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except OSError:
                yield
                return
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front (waiting up to the busy timeout)."""
        with self._writer_turn():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                _end(conn, "ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                _end(conn, "ROLLBACK")  # a failed COMMIT leaves the transaction open on this cached connection
                raise

    def _init_schema(self) -> None:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: could not switch SQLite to WAL mode (got {mode!r}); "
                                 "put the jury folder on a local file system.")
        finally:
            conn.close()
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: vote store schema version {row[0]}, this pp-jury uses "
                                 f"{SCHEMA_VERSION}; use the kit version that created it, or export its votes "
                                 "with that version and start a new store.")
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('layout_salt', ?)",
                         (secrets.token_hex(16),))
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('image_secret', ?)",
                         (secrets.token_hex(32),))
            if "revoked" not in {r[1] for r in conn.execute("PRAGMA table_info(jurors)")}:
                conn.execute("ALTER TABLE jurors ADD COLUMN revoked TEXT")  # a store from before revocation

    def image_secret(self) -> bytes:
        """The random secret that keys the served images' private chunk (`served_image.blind_screen`): stored, so a
        restarted server or another replica on the same store sends each juror the same bytes and URLs."""
        with self._read() as conn:
            return bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'image_secret'").fetchone()[0])

    # -- tokens -------------------------------------------------------------------------------------------
    def add_jurors(self, n: int) -> list[JurorLink]:
        """Create n jurors (juror001, juror002, ...) and return their tokens; only hashes are stored."""
        if n < 1:
            raise StoreError(f"cannot add {n} jurors; pass --add N with N >= 1")
        links = []
        with self._write() as conn:
            existing = [r[0] for r in conn.execute("SELECT juror FROM jurors")]
            numbers = [int(j[5:]) for j in existing if j.startswith("juror") and j[5:].isdigit()]
            start = max(numbers, default=0) + 1
            for k in range(start, start + n):
                juror = f"juror{k:03d}"
                token = tokens.new_token(juror)
                conn.execute("INSERT INTO jurors(juror, token_sha256, created) VALUES (?, ?, ?)",
                             (juror, tokens.hash_token(token), _now()))
                links.append(JurorLink(juror, token))
        return links

    def authenticate(self, token: str) -> str | None:
        """The juror id for a valid juror token, else None (constant-time hash comparison)."""
        owner = tokens.token_owner(token)
        stored = None
        if owner is not None and owner != tokens.ADMIN_PREFIX:
            with self._read() as conn:
                row = conn.execute("SELECT token_sha256, revoked FROM jurors WHERE juror = ?",
                                   (owner,)).fetchone()
            stored = row[0] if row and row[1] is None else None
        return owner if tokens.matches(token or "", stored) else None

    def new_admin_token(self) -> str:
        """Create (or replace: the old one stops working) the organizer token; only its hash is stored."""
        token = tokens.new_token(tokens.ADMIN_PREFIX)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('admin_sha256', ?)",
                         (tokens.hash_token(token),))
        return token

    def has_admin_token(self) -> bool:
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM meta WHERE key = 'admin_sha256'").fetchone() is not None

    def verify_admin(self, token: str) -> bool:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'admin_sha256'").fetchone()
        return tokens.token_owner(token or "") == tokens.ADMIN_PREFIX and tokens.matches(token, row and row[0])

    # -- layouts ------------------------------------------------------------------------------------------
    def layout(self, juror: str, image: str) -> tuple[Slot, ...]:
        """The grid this juror sees for this image: drawn once (seeded), then read back from the store."""
        candidates = self.package.candidate_ids(image)
        with self._read() as conn:
            rows = conn.execute("SELECT position, candidate, letter FROM layouts WHERE juror = ? AND image = ? "
                                "ORDER BY position", (juror, image)).fetchall()
            if rows:
                return tuple(Slot(*r) for r in rows)
            salt = conn.execute("SELECT value FROM meta WHERE key = 'layout_salt'").fetchone()[0]
        slots = draw_layout(salt, juror, image, candidates)
        with self._write() as conn:
            self._require_juror(conn, juror, writing=True)
            conn.executemany("INSERT OR IGNORE INTO layouts(juror, image, position, candidate, letter) "
                             "VALUES (?, ?, ?, ?, ?)",
                             [(juror, image, s.position, s.candidate, s.letter) for s in slots])
        return slots

    def layouts(self) -> list[tuple[str, str, int, str, str]]:
        with self._read() as conn:
            return conn.execute("SELECT juror, image, position, candidate, letter FROM layouts "
                                f"WHERE juror NOT IN {_REVOKED} ORDER BY juror, image, position").fetchall()

    # -- ballots ------------------------------------------------------------------------------------------
    @staticmethod
    def _require_juror(conn: sqlite3.Connection, juror: str, *, writing: bool = False) -> str | None:
        """The juror's final-submit time (None: not final); StoreError if unknown, or revoked when writing."""
        row = conn.execute("SELECT finalized, revoked FROM jurors WHERE juror = ?", (juror,)).fetchone()
        if row is None:
            raise StoreError(f"unknown juror {juror!r}; open your private link again or ask the organizer.")
        if writing and row[1] is not None:
            raise StoreError("This link was revoked by the organizer: nothing was saved. Ask the organizer "
                             "if you think this is a mistake.")
        return row[0]

    def revoke(self, juror: str) -> tuple[bool, int]:
        """Revoke a juror's token at once; (newly revoked?, the juror's ballots kept but no longer counted)."""
        with self._write() as conn:
            row = conn.execute("SELECT revoked FROM jurors WHERE juror = ?", (juror,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT juror FROM jurors ORDER BY juror LIMIT 6")]
                raise StoreError(f"{self.path}: no juror {juror!r} in this store (known: "
                                 f"{', '.join(known[:5]) or 'none'}{', ...' if len(known) > 5 else ''}); "
                                 "pass a juror id as printed by `pp-jury jurors DIR --add N`.")
            ballots = conn.execute("SELECT COUNT(*) FROM ballots WHERE juror = ?", (juror,)).fetchone()[0]
            if row[0] is not None:
                return False, ballots
            conn.execute("UPDATE jurors SET revoked = ?, token_sha256 = 'revoked' WHERE juror = ?",
                         (_now(), juror))
        return True, ballots

    def save_ballot(self, juror: str, image: str, most: Iterable[str], least: Iterable[str]) -> Ballot:
        """Validate and store one ballot in one transaction, replacing this juror's previous one for the image.

        Raises BallotError (wrong picks), BallotLockedError (after the final submit), StoreError (unknown
        juror); in every case nothing is written.
        """
        if image not in self.package.image_ids:
            raise BallotError(f"Unknown image {image!r}: it is not part of this jury.")
        candidates = self.package.candidate_ids(image)
        rule = self.package.task.for_candidates(len(candidates))
        most_t, least_t = validate_picks(candidates, rule, most, least)
        with self._write() as conn:
            if self._require_juror(conn, juror, writing=True) is not None:
                raise BallotLockedError("Your ballots are final and locked: the final submit was made, so "
                                        "this change was not saved.")
            conn.execute("INSERT INTO ballots(juror, image, updated) VALUES (?, ?, ?) "
                         "ON CONFLICT(juror, image) DO UPDATE SET updated = excluded.updated",
                         (juror, image, _now()))
            conn.execute("DELETE FROM picks WHERE juror = ? AND image = ?", (juror, image))
            conn.executemany("INSERT INTO picks(juror, image, candidate, choice) VALUES (?, ?, ?, ?)",
                             [(juror, image, c, "most") for c in most_t]
                             + [(juror, image, c, "least") for c in least_t])
        return Ballot(juror, image, most_t, least_t)

    def ballot(self, juror: str, image: str) -> Ballot | None:
        with self._read() as conn:
            rows = conn.execute("SELECT candidate, choice FROM picks WHERE juror = ? AND image = ? "
                                "ORDER BY candidate", (juror, image)).fetchall()
        if not rows:
            return None
        return Ballot(juror, image, tuple(c for c, k in rows if k == "most"),
                      tuple(c for c, k in rows if k == "least"))

    def ballots(self) -> list[Ballot]:
        """All stored ballots of jurors not revoked, sorted by (juror, image)."""
        with self._read() as conn:
            rows = conn.execute("SELECT juror, image, candidate, choice FROM picks "
                                f"WHERE juror NOT IN {_REVOKED} ORDER BY juror, image, candidate").fetchall()
        grouped: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for juror, image, cand, choice in rows:
            m, l = grouped.setdefault((juror, image), ([], []))
            (m if choice == "most" else l).append(cand)
        return [Ballot(j, i, tuple(m), tuple(l)) for (j, i), (m, l) in grouped.items()]

    def done_images(self, juror: str) -> set[str]:
        with self._read() as conn:
            return {r[0] for r in conn.execute("SELECT image FROM ballots WHERE juror = ?", (juror,))}

    def is_final(self, juror: str) -> bool:
        with self._read() as conn:
            return self._require_juror(conn, juror) is not None

    def finalize(self, juror: str) -> None:
        """Lock the juror's ballots; refused unless every image of the package has a ballot."""
        with self._write() as conn:
            if self._require_juror(conn, juror, writing=True) is not None:
                return
            done = {r[0] for r in conn.execute("SELECT image FROM ballots WHERE juror = ?", (juror,))}
            missing = [i for i in self.package.image_ids if i not in done]
            if missing:
                raise BallotError(f"{len(missing)} image(s) still need a ballot before the final submit "
                                  f"(first: {missing[0]}).")
            conn.execute("UPDATE jurors SET finalized = ? WHERE juror = ?", (_now(), juror))

    def jurors(self) -> list[JurorStatus]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT j.juror, j.created, j.finalized, COUNT(b.image), MAX(b.updated), j.revoked "
                "FROM jurors j LEFT JOIN ballots b ON b.juror = j.juror GROUP BY j.juror ORDER BY j.juror").fetchall()
        return [JurorStatus(*r) for r in rows]

    def votes(self) -> list[VoteRow]:
        """One row per pick of a juror not revoked: (juror, image, candidate, choice, timestamp of the ballot)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT p.juror, p.image, p.candidate, p.choice, b.updated FROM picks p "
                "JOIN ballots b ON b.juror = p.juror AND b.image = p.image "
                f"WHERE p.juror NOT IN {_REVOKED} ORDER BY p.juror, p.image, p.choice DESC, p.candidate").fetchall()
        return [VoteRow(*r) for r in rows]

    def count_ballots(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM ballots").fetchone()[0]

