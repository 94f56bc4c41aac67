"""Two real `pp-jury serve --store postgresql://...` replicas and a real browser: a juror votes on replica A,
replica A is killed with SIGKILL, the juror opens the link on replica B and resumes at the next image, receives
the same bytes any replica sends, finishes and sees the completion code. Skipped, with the reason, where
/usr/bin/chromium, playwright or PostgreSQL is missing."""

from __future__ import annotations

import os
import signal

import pytest

from evaluator.contracts.jury_package import load_package
from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS, press
from jury_app.testing.devserver import free_port, start_server
from jury_app.testing.fixtures import make_demo_package
from jury_app.votes.backends import open_store
from jury_app.web.served_image import blind_screen, candidate_pixels

RUNS = [f"run{i}" for i in range(5)]
WAIT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def media_ids(page) -> set[str]:
    imgs = page.locator('[data-testid="stImage"] img')
    imgs.nth(4).wait_for(timeout=WAIT_MS)
    return {src.rsplit("/", 1)[-1].split(".")[0] for src in imgs.evaluate_all("els => els.map(e => e.src)")}


def vote(page) -> None:
    most = page.get_by_role("toolbar", name="Most appealing (exactly 3)")
    least = page.get_by_role("toolbar", name="Least appealing (exactly 2)")
    most.get_by_role("button").nth(4).wait_for(timeout=WAIT_MS)
    letters = [b.inner_text().strip() for b in most.get_by_role("button").all()]
    for letter in letters[:3]:
        press(most.get_by_role("button", name=letter, exact=True))
    for letter in letters[3:]:
        press(least.get_by_role("button", name=letter, exact=True))
    page.get_by_role("button", name="Save and continue").click()


def test_a_juror_moves_from_a_killed_replica_to_another(tmp_path, pg_url):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    root = make_demo_package(tmp_path / "jury", RUNS, 2, size=32)
    package = load_package(root)
    store = open_store(package, pg_url)
    link = store.add_jurors(1, completion_prefix="PANEL")[0]
    code = store.jurors()[0].completion_code
    expected = {image.image: {_calculate_file_id(b, "image/png") for b in blind_screen(
        {c.id: candidate_pixels(c.file) for c in image.candidates}, store.image_secret(), link.juror).values()}
        for image in package.images}
    ports = [free_port(), free_port()]
    a = start_server(root, ports[0], log_path=tmp_path / "a.log", store=pg_url)
    b = start_server(root, ports[1], log_path=tmp_path / "b.log", store=pg_url)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_context().new_page()
            page.goto(f"http://127.0.0.1:{ports[0]}/?token={link.token}")
            page.get_by_text("Image 1 of 2", exact=True).wait_for(timeout=WAIT_MS)
            assert media_ids(page) == expected["img00"]
            vote(page)
            page.get_by_text("Image 2 of 2", exact=True).wait_for(timeout=WAIT_MS)
            assert store.done_images(link.juror) == {"img00"}
            os.kill(a.pid, signal.SIGKILL)  # replica A dies; the proxy would send the juror to B
            a.wait(timeout=30)
            page.goto(f"http://127.0.0.1:{ports[1]}/?token={link.token}")
            page.get_by_text("Image 2 of 2", exact=True).wait_for(timeout=WAIT_MS)  # resumed from the store
            assert media_ids(page) == expected["img01"]  # the bytes any replica sends this juror
            vote(page)
            page.get_by_text("All images have a ballot").wait_for(timeout=WAIT_MS)
            page.get_by_text("I am done: lock my ballots").click()
            page.get_by_role("button", name="Final submit").click()
            page.get_by_text(code, exact=True).wait_for(timeout=WAIT_MS)
            browser.close()
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert store.is_final(link.juror) and store.count_ballots() == 2
    assert not (root / "votes.sqlite").exists()
    store.close()
