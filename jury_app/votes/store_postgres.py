"""The PostgreSQL back end of the vote store (`open_store(package, "postgresql://...")`), for several `pp-jury
serve` replicas (or `pp-jury simulate` processes) on one database.

The contract and every query live in `jury_app.votes.store.VoteStoreBase`; this module supplies connections
(psycopg 3, a `psycopg_pool.ConnectionPool` per process, re-created after a fork), the schema (text columns
`COLLATE "C"`, so every ORDER BY sorts byte-wise as SQLite does) and the locks:

- one transaction per ballot (READ COMMITTED); every write locks the juror's row first (`SELECT ... FOR
  UPDATE`), so two replicas writing for one juror queue, and a ballot racing the final submit is either saved
  before it or refused as locked;
- juror creation and schema setup take a transaction-scoped advisory lock (`pg_advisory_xact_lock`), so several
  processes may add jurors or start at once;
- the schema version is checked and migrated like SQLite's (`VoteStoreBase._migrate`); a newer one is refused;
- the database belongs to one jury package: its fingerprint (sha256 of the image and candidate ids) is stored in
  `meta` on first use, and a store of another package is refused (point each jury at its own database).

The URL's password is never logged or shown (`redact_url`); prefer a password file (`~/.pgpass`) or
`PGPASSWORD` over a password in the URL.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evaluator.contracts.jury_package import JuryPackage
from jury_app.votes.store import _SCHEMA, StoreError, VoteStoreBase, redact_url

try:
    import psycopg
    import psycopg.conninfo
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - the dependency is in pyproject.toml
    psycopg = None

DEFAULT_MAX_CONNECTIONS = 20
CONNECT_TIMEOUT_S = 10
_LOCK_SCHEMA = 0x70704A7572790001  # advisory lock keys: "ppJury" + 1 / 2
_LOCK_JURORS = 0x70704A7572790002
_INHERITED: list[Any] = []


def _pg_schema() -> list[str]:
    """The SQLite schema with byte-wise collation on every text column (same ORDER BY as SQLite)."""
    text = _SCHEMA.replace(" TEXT", ' TEXT COLLATE "C"')
    return [s for s in (x.strip() for x in text.split(";")) if s]


def package_fingerprint(package: JuryPackage) -> str:
    """sha256 of the package's image ids and their candidate ids, in manifest order."""
    h = hashlib.sha256()
    for im in package.images:
        h.update(im.image.encode() + b"\0" + b",".join(c.id.encode() for c in im.candidates) + b"\n")
    return h.hexdigest()


def _check_url(url: str, where: str) -> None:
    """Refuse a URL libpq cannot parse before any connection is tried: its error quotes the token it could not
    read, which may be the password, and the pool would log that error on every retry."""
    try:
        options = psycopg.conninfo.conninfo_to_dict(url)
        port = options.get("port")
        if port is not None and not all(p.strip().isdigit() for p in str(port).split(",")):
            raise ValueError("port")
    except (psycopg.Error, ValueError):
        raise StoreError(f"{where}: not a valid PostgreSQL URL (postgresql://USER@HOST:PORT/DB; a port is a number, "
                         "and special characters in a password must be percent-encoded: better give the password "
                         "through PGPASSWORD or ~/.pgpass); nothing was saved.") from None


class _Conn:
    """A psycopg connection with the SQLite-style calls the contract uses (`?` placeholders)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: list) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), rows)


class PostgresVoteStore(VoteStoreBase):
    """Votes of one jury package in a PostgreSQL database (URL `postgresql://...`)."""

    _FOR_UPDATE = " FOR UPDATE"

    def __init__(self, package: JuryPackage, url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if psycopg is None:
            raise StoreError("a postgresql:// store needs psycopg 3 and psycopg-pool: pip install "
                             "'psycopg[binary]' psycopg-pool (they are dependencies of the kit)")
        self.package = package
        self.url = url
        self.where = f"vote store {redact_url(url)}"
        _check_url(url, self.where)
        self.max_connections = max_connections
        self._pool_obj: Any = None
        self._pool_pid: int | None = None
        self._pool_lock = threading.Lock()
        self._init_schema()

    # -- connections --------------------------------------------------------------------------------------
    def _pool(self) -> Any:
        with self._pool_lock:
            if self._pool_obj is None or self._pool_pid != os.getpid():
                # after a fork the parent's pool (its threads, its sockets) is not ours: keep it referenced, so
                # that collecting it never closes the parent's connections, and open our own
                if self._pool_obj is not None:
                    _INHERITED.append(self._pool_obj)
                self._pool_obj = ConnectionPool(self.url, min_size=1, max_size=self.max_connections, open=False,
                                                kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
                                                check=ConnectionPool.check_connection,  # survives a DB restart
                                                name="pp-jury", timeout=30)
                try:
                    self._pool_obj.open(wait=True, timeout=CONNECT_TIMEOUT_S + 5)
                except (PoolTimeout, psycopg.Error) as exc:
                    self._pool_obj = None
                    raise self._unreachable(exc) from None
                self._pool_pid = os.getpid()
            return self._pool_obj

    def _unreachable(self, exc: Exception, connected: bool = False) -> StoreError:
        """The error for a database that cannot be reached; `connected`: the connection was lost during a
        transaction, so its commit may have landed (the juror is told to check, not that nothing was saved)."""
        detail = str(exc).replace(self.url, redact_url(self.url)).strip().splitlines()
        outcome = ("the connection was lost before the database confirmed the request: a change may or may not have "
                   "been saved (saving a ballot again is safe: it replaces the earlier one)" if connected
                   else "nothing was saved")
        return StoreError(f"{self.where} cannot be reached ({detail[0] if detail else type(exc).__name__}); "
                          "check that PostgreSQL runs, the host, port, database and user of the URL, and the "
                          f"password (PGPASSWORD or ~/.pgpass); {outcome}.")

    @contextmanager
    def _tx(self) -> Iterator[_Conn]:
        try:
            with self._pool().connection() as conn:
                with conn.transaction():
                    yield _Conn(conn)
        except PoolTimeout as exc:
            raise self._unreachable(exc) from None
        except psycopg.OperationalError as exc:
            state = getattr(exc, "sqlstate", None) or ""
            if state and not state.startswith(("08", "57")):  # not a lost connection: e.g. 40P01, a deadlock
                raise StoreError(f"{self.where} refused the change ({state}: {str(exc).splitlines()[0]}); "
                                 "nothing was saved, please try again.") from None
            raise self._unreachable(exc, connected=True) from None

    _read = _tx
    _write = _tx

    def _lock_jurors(self, conn: _Conn) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_JURORS,))

    def close(self) -> None:
        with self._pool_lock:
            if self._pool_obj is not None and self._pool_pid == os.getpid():
                self._pool_obj.close()
            self._pool_obj = None

    # -- schema -------------------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_SCHEMA,))
            exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
            if not exists:
                for statement in _pg_schema():
                    conn.execute(statement)
            self._migrate(conn)
            fingerprint = package_fingerprint(self.package)
            conn.execute("INSERT INTO meta(key, value) VALUES ('package', ?) ON CONFLICT(key) DO NOTHING",
                         (fingerprint,))
            stored = conn.execute("SELECT value FROM meta WHERE key = 'package'").fetchone()[0]
            if stored != fingerprint:
                raise StoreError(f"{self.where} holds the votes of another jury package (its images and "
                                 f"candidates differ from {self.package.root}); give each jury its own database "
                                 "(createdb), or pass the jury folder this database was made for.")
