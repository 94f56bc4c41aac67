"""benchmarks/bench_jury.py's breakdown of a warm open: CPU seconds of a process and of the Chromium processes
this process started (from /proc), and the page phases read from the Performance API (DOMContentLoaded, first
`/media/` request, last `/media/` response). Browser parts skipped, with the reason, where /usr/bin/chromium or
playwright is missing."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_jury as bj  # noqa: E402
from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS  # noqa: E402

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this system")


@needs_proc
def test_cpu_seconds_counts_this_process_and_none_for_a_gone_one():
    before = bj.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = bj.cpu_seconds(os.getpid())
    assert before is not None and after is not None and after - before >= 0.2
    assert bj.cpu_seconds(2 ** 22 + 12345) is None  # above the kernel's pid_max: no such process


@needs_proc
def test_chromium_cpu_and_phases_of_a_page_with_media(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    (tmp_path / "media").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "media" / f"{name}.png")
    (tmp_path / "index.html").write_text('<html><body><img src="/media/a.png"><img src="/media/b.png"></body></html>')
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert bj.chromium_cpu() == {}  # no browser started by this process yet
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.wait_for_load_state("load")
            scripts_ran, first_request, last_response = page.evaluate(bj.PHASES)
            running = bj.chromium_cpu()
            exes = {os.readlink(f"/proc/{pid}/exe") for pid in running}
            browser.close()
        assert len(running) >= 2 and all("chromium" in exe for exe in exes)  # the browser and its renderer(s)
        assert sum(running.values()) > 0
        assert bj.chromium_cpu() == {}  # closed: nothing left to count
        assert all(math.isfinite(x) and x >= 0 for x in (scripts_ran, first_request, last_response))
        assert last_response >= first_request
    finally:
        server.shutdown()
