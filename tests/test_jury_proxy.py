"""The reverse-proxy configuration of docs/jury.md, as written there (the Caddyfile block is read from the doc),
in front of two real `pp-jury serve --store postgresql://...` replicas: the proxy sets its sticky cookie, a
browser with that cookie reaches the same replica every time, and the Streamlit websocket (`/_stcore/stream`)
upgrades through it. Skipped, with the reason, where Caddy (Debian's `caddy`) or PostgreSQL is missing."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from jury_app.testing.devserver import free_port, start_server
from jury_app.testing.fixtures import make_demo_package

DOC = Path(__file__).resolve().parents[1] / "docs" / "jury.md"
pytestmark = [pytest.mark.slow]


def doc_caddyfile(front: int, ports: list[int]) -> str:
    """The Caddyfile of docs/jury.md with its site address and upstreams pointed at this test's loopback ports."""
    text = DOC.read_text()
    block = re.search(r"`Caddyfile`:\n\n```\n(.*?)```", text, re.S)
    assert block, f"{DOC}: no Caddyfile block"
    conf = block.group(1).replace("jury.example.org", f"http://127.0.0.1:{front}")
    conf = conf.replace("127.0.0.1:8501 127.0.0.1:8502", f"127.0.0.1:{ports[0]} 127.0.0.1:{ports[1]}")
    assert f"127.0.0.1:{ports[1]}" in conf, conf
    return "{\n\tadmin off\n\tauto_https off\n}\n" + conf


def websocket_status(port: int, cookie: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\nCookie: {cookie}\r\n\r\n").encode())
        return s.recv(4096).split(b"\r\n", 1)[0]


def test_the_documented_caddy_config_is_sticky_and_carries_the_websocket(tmp_path, pg_url):
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("no `caddy` on PATH (Debian: apt-get install caddy): the proxy of docs/jury.md is not tried")
    root = make_demo_package(tmp_path / "jury", [f"run{i}" for i in range(5)], 2, size=16)
    ports, front = [free_port(), free_port()], free_port()
    (tmp_path / "Caddyfile").write_text(doc_caddyfile(front, ports))
    procs = []
    try:
        for port in ports:
            procs.append(start_server(root, port, log_path=tmp_path / "serve.log", store=pg_url))
        procs.append(subprocess.Popen([caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                                      stdout=subprocess.DEVNULL, stderr=open(tmp_path / "caddy.log", "w")))
        deadline = time.monotonic() + 60
        while True:
            try:
                first = urllib.request.urlopen(f"http://127.0.0.1:{front}/", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "caddy.log").read_text()[-2000:]
                time.sleep(0.3)
        set_cookie = first.headers.get("Set-Cookie") or ""
        assert first.status == 200 and set_cookie.startswith("pp_jury_replica="), set_cookie
        cookie = set_cookie.split(";")[0]
        # with the cookie, every request goes to one replica: it never sets another cookie
        for _ in range(8):
            req = urllib.request.Request(f"http://127.0.0.1:{front}/", headers={"Cookie": cookie})
            with urllib.request.urlopen(req, timeout=5) as again:
                assert again.status == 200 and again.headers.get("Set-Cookie") is None
        assert websocket_status(front, cookie) == b"HTTP/1.1 101 Switching Protocols"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
