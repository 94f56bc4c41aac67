"""Open the vote store of a jury package from a store URL: the factory over the two back ends of the contract
`jury_app.votes.store.VoteStoreBase` (SQLite: `store.VoteStore`; PostgreSQL: `store_postgres.PostgresVoteStore`).

The URL in force is `--store URL`, else the environment variable PP_JURY_STORE (`store_url`), else none: the
SQLite file `votes.sqlite` in the jury folder, as before there were URLs.

A store outside the jury folder (PostgreSQL, or an SQLite file elsewhere) leaves no `votes.sqlite` there, so
`open_store` writes the marker `DIR/votes.store.json` (`EXTERNAL_STORE_NAME`: the URL, password redacted) before
it returns the store, that is before any vote can be cast: pp-evaluate then never retires that jury folder (the
images and key the votes refer to), as it never retires one holding `votes.sqlite`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evaluator.common.atomic import write_text_atomic
from evaluator.contracts.jury_package import EXTERNAL_STORE_NAME, JuryPackage
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
        path = Path(url[len("sqlite:///"):])
        store: VoteStoreBase = VoteStore(package, path=path, **options)
        if not _same_file(path, package.store_path):
            _mark_external(package, url, store)
        return store
    if scheme in ("postgresql", "postgres"):
        from jury_app.votes.store_postgres import PostgresVoteStore  # psycopg loads only for PostgreSQL

        store = PostgresVoteStore(package, url, **options)
        _mark_external(package, url, store)
        return store
    raise StoreError(f"store URL {redact_url(url)!r}: unknown kind {scheme or '(none)'!r}; use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DB (or leave --store and PP_JURY_STORE unset for DIR/votes.sqlite)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _mark_external(package: JuryPackage, url: str, store: VoteStoreBase) -> None:
    """Write DIR/votes.store.json (module docstring) unless it is there; StoreError if it cannot be written."""
    marker = package.root / EXTERNAL_STORE_NAME
    if marker.is_file():
        return
    try:
        write_text_atomic(marker, json.dumps({"store": redact_url(url)}, indent=1) + "\n")
    except OSError as exc:
        store.close()
        raise StoreError(f"{marker}: cannot write the marker that keeps this jury folder while its votes live in "
                         f"{redact_url(url)} ({exc.strerror or exc}); make the jury folder writable for pp-jury "
                         "and rerun. Nothing was saved.") from None


def store_url(explicit: str | None = None) -> str | None:
    """The store URL in force: `explicit` (--store), else the environment variable PP_JURY_STORE, else None."""
    return explicit or os.environ.get(ENV_STORE) or None
