"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temporary folder, a free loopback port,
trust authentication for the one local user, stopped (and the folder removed) by `stop()`.

Uses Debian's server binaries (`postgresql` package: /usr/lib/postgresql/<version>/bin) or `initdb` on PATH, or
the folder in PP_PG_BIN. PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user
(`runuser -u postgres`) in a folder that user owns. `find_bin()` is None where there is no server to start:
callers skip with `UNAVAILABLE`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from jury_app.testing.devserver import free_port

USER = "ppjury"
UNAVAILABLE = ("PostgreSQL server binaries not found (install Debian's `postgresql` package, as .ci/run does, "
               "or set PP_PG_BIN to the folder holding initdb and pg_ctl)")


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates = [os.environ.get("PP_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    which = shutil.which("initdb")
    candidates.append(str(Path(which).parent) if which else "")
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


class PostgresServer:
    """`with PostgresServer() as pg: pg.new_database()` -> a postgresql:// URL of a fresh, empty database."""

    def __init__(self, *, fsync: bool = True, max_connections: int = 300) -> None:
        self.bin = find_bin()
        if self.bin is None:
            raise RuntimeError(UNAVAILABLE)
        self.fsync, self.max_connections = fsync, max_connections
        self.root = Path(tempfile.mkdtemp(prefix="pp-jury-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = 0
        self._as = []
        if os.geteuid() == 0:  # initdb and postgres refuse root
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self.port = free_port()
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync={'on' if self.fsync else 'off'}"
                   f" -c max_connections={self.max_connections} -c shared_buffers=64MB")
        self._options = options
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", self._options, "-l", str(self.log), "-w",
                  "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        import psycopg

        name = f"jury_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop the server (fast: open connections are cut) and start it again on the same port."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        self._pg_ctl_start()  # with the log file again: a server writing to our pipe would keep it open

    def stop(self) -> None:
        if self.port and self.data.exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
