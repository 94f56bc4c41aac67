"""Open the vote store of a jury package from a store URL: the factory over the two back ends of the contract
`jury_app.votes.store.VoteStoreBase` (SQLite: `store.VoteStore`; PostgreSQL: `store_postgres.PostgresVoteStore`).

The URL in force is `--store URL`, else the environment variable PP_JURY_STORE (`store_url`), else none: the
SQLite file `votes.sqlite` in the jury folder, as before there were URLs.
"""

from __future__ import annotations

import os
from typing import Any

from evaluator.contracts.jury_package import JuryPackage
from jury_app.votes.store import ENV_STORE, StoreError, VoteStore, VoteStoreBase, redact_url


def open_store(package: JuryPackage, url: str | None = None, **options: Any) -> VoteStoreBase:
    """The vote store of `package` at `url`: None or "" -> the SQLite file in the jury folder (the default);
    `sqlite:///PATH` (absolute: four slashes, `sqlite:////srv/votes.sqlite`; relative: three) -> SQLite at PATH;
    `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?...]` (or `postgres://`) -> PostgreSQL (psycopg 3, a pool).
    `options` go to the back end (SQLite: busy_timeout_ms; PostgreSQL: max_connections)."""
    if not url:
        return VoteStore(package, **options)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise StoreError(f"store URL {redact_url(url)!r}: write sqlite:///relative/path.sqlite or "
                             "sqlite:////absolute/path.sqlite")
        return VoteStore(package, path=url[len("sqlite:///"):], **options)
    if scheme in ("postgresql", "postgres"):
        from jury_app.votes.store_postgres import PostgresVoteStore  # psycopg loads only for PostgreSQL

        return PostgresVoteStore(package, url, **options)
    raise StoreError(f"store URL {redact_url(url)!r}: unknown kind {scheme or '(none)'!r}; use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DB (or leave --store and PP_JURY_STORE unset for DIR/votes.sqlite)")


def store_url(explicit: str | None = None) -> str | None:
    """The store URL in force: `explicit` (--store), else the environment variable PP_JURY_STORE, else None."""
    return explicit or os.environ.get(ENV_STORE) or None
