"""The vote store contract (`VoteStoreBase`) and its SQLite back end (`VoteStore`, `votes.sqlite` in the jury folder).

One contract, two back ends, chosen by a store URL (`jury_app.votes.backends.open_store(package, url)`): none
(the default) or
`sqlite:///PATH` -> `VoteStore`, SQLite; `postgresql://...` -> `jury_app.votes.store_postgres.PostgresVoteStore`.
Every method below is written once, in `VoteStoreBase`, as SQL both back ends run (`?` placeholders, `ON CONFLICT`);
a back end supplies only its connections (`_read`, `_write`), its schema and its locks. Same semantics on both:

- one transaction per ballot; a juror's ballot for an image replaces the previous one; the final submit locks
  the juror's ballots; every write locks the juror's row first (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite: the
  whole store, `BEGIN IMMEDIATE`), so a ballot racing the final submit is either saved before it or refused;
- tokens are stored as sha256 only (`tokens.hash_token`);
- a schema version (`schema_version`) with forward migrations (`MIGRATIONS`); a store written by a newer pp-jury
  is refused with a StoreError that names it and says what to do.

SQLite: WAL journal, a busy timeout, `synchronous=FULL`, one `BEGIN IMMEDIATE` transaction per ballot (writers
queue on an flock of `votes.sqlite.lock` first, see `_writer_turn`). Each thread uses its own connection
(re-opened after a fork), so one store can be shared by threads, and other processes open their own.

Tables: schema_version(version); meta(key, value) holding the layout salt, the served images' secret and
the admin token hash; jurors(juror, token_sha256, created, finalized, revoked, completion_code); layouts(juror,
image, position, candidate, letter); ballots(juror, image, updated); picks(juror, image, candidate, choice in
{'most','least'}).

Revocation (`revoke`, `pp-jury jurors DIR --revoke ID`): the juror's token hash is overwritten (so no
version of pp-jury accepts the token again) and `revoked` is set; the next run of the juror's page refuses
the token, and every write checks it inside its transaction. The juror's committed ballots stay in the store
(nothing is deleted) but `ballots()`, `votes()` and `layouts()` leave them out, so the ranking, the export
and the position-bias table do not count them; `jurors()` lists the juror with the time of the revocation.
The `revoked` column is added to stores made before it existed (`ALTER TABLE`, same schema version).

Completion codes (schema version 2): `add_jurors(n, completion_prefix=P)` gives each new juror the code
`P-<10 random characters>`, stored as is (it is not a credential: the juror is shown it after the final submit,
`completion_code`, and pastes it into the crowdsourcing platform; the organizer checks it against
`pp-jury jurors DIR --codes`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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

SCHEMA_VERSION = 2
ENV_STORE = "PP_JURY_STORE"  # the store URL `pp-jury` (and the app `serve` starts) uses when --store is not given
_INHERITED: list[sqlite3.Connection] = []
BUSY_TIMEOUT_MS = 15_000
_REVOKED = "(SELECT juror FROM jurors WHERE revoked IS NOT NULL)"  # their ballots are kept, not counted
JUROR_PREFIX = "juror"
SIMULATED_PREFIX = "simulated"  # jurors of `pp-jury simulate`: scripted, never people
_PREFIX_RE = re.compile(r"^[a-z]{1,20}$")
_CODE_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jurors (
    juror TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created TEXT NOT NULL, finalized TEXT, revoked TEXT,
    completion_code TEXT);
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

# version -> statements that bring a store of version - 1 to it (both back ends; run in one transaction)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE jurors ADD COLUMN completion_code TEXT",),
}


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


def redact_url(url: str) -> str:
    """`url` with the password (if any) replaced by `***`: what logs and error messages show of a store URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable store URL>"
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)  # libpq also reads ?password=...
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")  # host and port as written (a bad port is shown too)
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
    completion_code: str | None = None


@dataclass(frozen=True)
class VoteRow:
    juror: str
    image: str
    candidate: str
    choice: str
    timestamp: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _check_version(where: str, found: int) -> None:
    """Refuse a store of a newer schema than this pp-jury knows (a migration never runs backwards)."""
    if found > SCHEMA_VERSION or found < 1:
        raise StoreError(f"{where}: vote store schema version {found}, this pp-jury uses {SCHEMA_VERSION} "
                         f"(it migrates stores of versions 1..{SCHEMA_VERSION} forward, never back); use the kit "
                         "version that created it (or a newer one), or export its votes with that version and "
                         "start a new store.")


class VoteStoreBase:
    """The vote store contract: every query, written once for both back ends (see the module docstring).

    A back end sets `where` (how messages name the store, never with a password) and implements `_read()` /
    `_write()` (context managers giving a connection whose `execute(sql, params)` returns a cursor with
    `fetchone`/`fetchall`, and `executemany`), `_lock_jurors(conn)` (serialises juror creation) and
    `_FOR_UPDATE` (the row lock a write takes on the juror's row)."""

    package: JuryPackage
    where: str
    _FOR_UPDATE = ""

    @contextmanager
    def _read(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    @contextmanager
    def _write(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _lock_jurors(self, conn: Any) -> None:
        """Serialise juror creation between processes (SQLite's BEGIN IMMEDIATE already does)."""

    def close(self) -> None:
        """Release the back end's connections (a no-op where there is nothing to release)."""

    def _migrate(self, conn: Any) -> None:
        """Create the tables or bring them to SCHEMA_VERSION, inside the caller's write transaction."""
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            _check_version(self.where, row[0])
            for version in range(row[0] + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(version, ()):
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (version,))
                log.info("%s: vote store migrated to schema version %d", self.where, version)
        conn.execute("INSERT INTO meta(key, value) VALUES ('layout_salt', ?) ON CONFLICT(key) DO NOTHING",
                     (secrets.token_hex(16),))
        conn.execute("INSERT INTO meta(key, value) VALUES ('image_secret', ?) ON CONFLICT(key) DO NOTHING",
                     (secrets.token_hex(32),))

    def schema_version(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def image_secret(self) -> bytes:
        """The random secret that keys the served images' private chunk (`served_image.blind_screen`): stored, so a
        restarted server or another replica on the same store sends each juror the same bytes and URLs."""
        with self._read() as conn:
            return bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'image_secret'").fetchone()[0])

    # -- tokens -------------------------------------------------------------------------------------------
    def add_jurors(self, n: int, *, prefix: str = JUROR_PREFIX,
                   completion_prefix: str | None = None) -> list[JurorLink]:
        """Create n jurors (<prefix>001, <prefix>002, ... after the highest existing number of that prefix) and
        return their tokens; only hashes are stored. With `completion_prefix`, each gets a completion code."""
        if n < 1:
            raise StoreError(f"cannot add {n} jurors; pass --add N with N >= 1")
        if not _PREFIX_RE.match(prefix):
            raise StoreError(f"juror id prefix {prefix!r}: use 1..20 lower-case letters")
        if completion_prefix is not None and not _CODE_PREFIX_RE.match(completion_prefix):
            raise StoreError(f"completion code prefix {completion_prefix!r}: use 1..32 characters of "
                             "[A-Za-z0-9_-] (e.g. the study code of your crowdsourcing platform)")
        links = []
        with self._write() as conn:
            self._lock_jurors(conn)
            existing = [r[0] for r in conn.execute("SELECT juror FROM jurors")]
            width = len(prefix)
            numbers = [int(j[width:]) for j in existing if j.startswith(prefix) and j[width:].isdigit()]
            start = max(numbers, default=0) + 1
            rows = []
            for k in range(start, start + n):
                juror = f"{prefix}{k:03d}"
                token = tokens.new_token(juror)
                code = None if completion_prefix is None else f"{completion_prefix}-{secrets.token_hex(5).upper()}"
                rows.append((juror, tokens.hash_token(token), _now(), code))
                links.append(JurorLink(juror, token))
            conn.executemany("INSERT INTO jurors(juror, token_sha256, created, completion_code) "
                             "VALUES (?, ?, ?, ?)", rows)
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
            conn.execute("INSERT INTO meta(key, value) VALUES ('admin_sha256', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (tokens.hash_token(token),))
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
            conn.executemany("INSERT INTO layouts(juror, image, position, candidate, letter) "
                             "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                             [(juror, image, s.position, s.candidate, s.letter) for s in slots])
        return slots

    def layouts(self) -> list[tuple[str, str, int, str, str]]:
        with self._read() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT juror, image, position, candidate, letter FROM layouts "
                f"WHERE juror NOT IN {_REVOKED} ORDER BY juror, image, position").fetchall()]

    # -- ballots ------------------------------------------------------------------------------------------
    def _require_juror(self, conn: Any, juror: str, *, writing: bool = False) -> str | None:
        """The juror's final-submit time (None: not final); StoreError if unknown, or revoked when writing.
        When writing, the juror's row stays locked until the transaction ends."""
        row = conn.execute("SELECT finalized, revoked FROM jurors WHERE juror = ?"
                           + (self._FOR_UPDATE if writing else ""), (juror,)).fetchone()
        if row is None:
            raise StoreError(f"unknown juror {juror!r}; open your private link again or ask the organizer.")
        if writing and row[1] is not None:
            raise StoreError("This link was revoked by the organizer: nothing was saved. Ask the organizer "
                             "if you think this is a mistake.")
        return row[0]

    def revoke(self, juror: str) -> tuple[bool, int]:
        """Revoke a juror's token at once; (newly revoked?, the juror's ballots kept but no longer counted)."""
        with self._write() as conn:
            row = conn.execute("SELECT revoked FROM jurors WHERE juror = ?" + self._FOR_UPDATE,
                               (juror,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT juror FROM jurors ORDER BY juror LIMIT 6")]
                raise StoreError(f"{self.where}: no juror {juror!r} in this store (known: "
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
            return {r[0] for r in conn.execute("SELECT image FROM ballots WHERE juror = ?", (juror,)).fetchall()}

    def is_final(self, juror: str) -> bool:
        with self._read() as conn:
            return self._require_juror(conn, juror) is not None

    def completion_code(self, juror: str) -> str | None:
        """The juror's completion code once the final submit is made (None before it, or when none was set)."""
        with self._read() as conn:
            row = conn.execute("SELECT completion_code FROM jurors WHERE juror = ? AND finalized IS NOT NULL "
                               "AND revoked IS NULL", (juror,)).fetchone()
        return row[0] if row else None

    def finalize(self, juror: str) -> None:
        """Lock the juror's ballots; refused unless every image of the package has a ballot."""
        with self._write() as conn:
            if self._require_juror(conn, juror, writing=True) is not None:
                return
            done = {r[0] for r in conn.execute("SELECT image FROM ballots WHERE juror = ?", (juror,)).fetchall()}
            missing = [i for i in self.package.image_ids if i not in done]
            if missing:
                raise BallotError(f"{len(missing)} image(s) still need a ballot before the final submit "
                                  f"(first: {missing[0]}).")
            conn.execute("UPDATE jurors SET finalized = ? WHERE juror = ?", (_now(), juror))

    def jurors(self) -> list[JurorStatus]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT j.juror, j.created, j.finalized, COUNT(b.image), MAX(b.updated), j.revoked, "
                "j.completion_code FROM jurors j LEFT JOIN ballots b ON b.juror = j.juror "
                "GROUP BY j.juror, j.created, j.finalized, j.revoked, j.completion_code ORDER BY j.juror").fetchall()
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


class VoteStore(VoteStoreBase):
    """The SQLite back end: votes of one jury package in `path` (default `package.store_path`)."""

    def __init__(self, package: JuryPackage, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 path: str | Path | None = None) -> None:
        self.package = package
        self.path = Path(path) if path is not None else package.store_path
        self.where = str(self.path)
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
            row = None
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone():
                row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is not None:
                _check_version(self.where, row[0])  # before any statement touches a newer store
            if "jurors" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} \
                    and "revoked" not in {r[1] for r in conn.execute("PRAGMA table_info(jurors)")}:
                conn.execute("ALTER TABLE jurors ADD COLUMN revoked TEXT")  # a store from before revocation
            if row is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            self._migrate(conn)


SqliteVoteStore = VoteStore
