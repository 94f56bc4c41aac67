"""Start `pp-jury serve` on a free loopback port and wait until it answers (for tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class ServerStartError(RuntimeError):
    """The jury server did not come up; the message carries its output."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(directory: str | Path, port: int, *, timeout: float = 90.0, log_path: Path | None = None,
                 source: Path | None = None, store: str | None = None) -> subprocess.Popen:
    """Run `python -m jury_app.cli serve DIR --port PORT` (it execs streamlit, so the pid is the server's).

    `source`: a checkout of the kit to run instead of the importable one (the benchmark's "before");
    `store`: a vote-store URL (`--store`, e.g. a PostgreSQL shared by several replicas)."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    store_args = ["--store", store] if store is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "jury_app.cli", "serve", str(directory), "--port", str(port),
                             "--address", "127.0.0.1", *store_args], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=source)
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/_stcore/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"pp-jury serve exited with code {proc.returncode} (log: {log_path})")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise ServerStartError(f"pp-jury serve did not answer on port {port} within {timeout:.0f} s (log: {log_path})")
