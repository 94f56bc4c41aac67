"""Shared fixtures: a throwaway PostgreSQL server for the vote-store tests (`jury_app.testing.postgres`).

`pg_server` starts one server per test session (skipped, with the reason printed, where PostgreSQL is not
installed); `store_url` gives each test a fresh database on it.
"""

from __future__ import annotations

import subprocess

import pytest

from jury_app.testing.postgres import UNAVAILABLE, PostgresServer, find_bin


@pytest.fixture(scope="session")
def pg_server():
    if find_bin() is None:
        pytest.skip(UNAVAILABLE)
    try:
        server = PostgresServer(fsync=False)  # the tests kill clients, never the server: durability is PostgreSQL's
    except (RuntimeError, LookupError, OSError) as exc:  # e.g. root without a `postgres` user to run it as
        pytest.skip(f"PostgreSQL could not be prepared: {exc}")
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
