"""A real browser against a real `pp-jury serve`: a juror votes on every image, reloads, survives a kill -9
of the server, finishes; the organizer sees the ranking; no byte the juror's browser received names a run,
the candidates of one screen have one byte size and differ in no byte but their pixels (exactly the organizer's
decoded files) and a per-juror key chunk, and the image URLs are neither the content hashes a participant could
compute nor the same for two jurors. Skipped, with the reason, where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS, press
from jury_app.testing.devserver import free_port, start_server
from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.store import VoteStore
from png_layout import png_parts

RUNS = [f"TEAMSECRET_run{i}" for i in range(1, 6)]
WAIT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def committed_ballots(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM ballots").fetchone()[0]


class Recorder:
    """Every HTTP response body and websocket frame one browser context received.

    Bodies are read in `drain()`, called before every navigation: Chromium drops a page's bodies once it
    navigates away, and `missed` lists any that could not be read.
    """

    def __init__(self, context) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.pending: list = []
        self.missed: list[str] = []
        self.missed_urls: list[str] = []
        self.expired: list[str] = []
        context.on("response", lambda response: self.pending.append(response))
        context.on("page", self._page)

    def _page(self, page) -> None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: self.chunks.append(
            (f"ws:{ws.url}", payload if isinstance(payload, bytes) else payload.encode()))))

    def drain(self, page) -> None:
        page.wait_for_load_state("networkidle")
        while self.pending:
            response = self.pending.pop(0)
            try:
                self.chunks.append((response.url, response.body()))
            except Exception as exc:  # noqa: BLE001 - Chromium dropped the body (navigated away)
                self.missed.append(f"{response.status} {response.url}: {exc}")
                self.missed_urls.append(response.url)

    def refetch_missed(self) -> None:
        """Fetch again, from the live server, every dropped body that is not one of Streamlit's font files
        (these are Streamlit's own endpoints, e.g. /_stcore/health, whose bodies Chromium sometimes drops when a
        reload races them), so the scan still covers them."""
        import urllib.error
        import urllib.request

        kept = []
        for entry, url in zip(self.missed, self.missed_urls):
            if "/static/media/" in url and url.endswith(".woff2"):
                kept.append(entry)
                continue
            try:
                with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
                    self.chunks.append((url, r.read()))
            except urllib.error.HTTPError as exc:
                # a candidate image of an earlier screen: Streamlit forgets a session's media once the script
                # reruns, so on a slow machine its body can be gone before it is read. Such a body is one of the
                # server's PNGs, whose every byte the test checks through the screens it keeps (below).
                if exc.code != 404 or "/media/" not in url or "/static/" in url:
                    raise
                self.expired.append(url)
        self.missed = kept

    def leaks(self, needles: list[str]) -> list[str]:
        found = []
        for where, data in self.chunks:
            low = data.lower()
            found += [f"{n} in {where}" for n in needles if n.lower().encode() in low]
        return found


def media_id(url: str) -> str:
    """The file id of a Streamlit media URL (`.../media/<id>.jpg`)."""
    return url.rsplit("/", 1)[-1].split(".")[0]


def screen_media(page, expected: str) -> list[str]:
    """The media ids of the 5 candidate images on the screen titled `expected`, once the page has settled
    (Streamlit updates the title before the images: no element marked stale, the same ids twice in a row)."""
    page.get_by_text(expected, exact=True).wait_for(timeout=WAIT_MS)
    images = page.locator('[data-testid="stImage"] img')
    images.nth(4).wait_for(timeout=WAIT_MS)
    last = None
    for _ in range(WAIT_MS // 250):
        page.wait_for_timeout(250)
        if page.locator('[data-stale="true"]').count():
            continue
        ids = [media_id(img.get_attribute("src")) for img in images.all()]
        if ids == last:
            return ids
        last = ids
    raise AssertionError(f"the images of {expected!r} did not settle")


def predictable_media_ids(root: Path) -> set[str]:
    """What a participant can compute from the public kit: the media ids of the package's files as they are,
    with metadata stripped, and as served PNGs with any key but the store's (Streamlit names media by a hash of
    the bytes)."""
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    from jury_app.web.served_image import candidate_pixels, stored_png, strip_jpeg_metadata

    out = set()
    for f in root.glob("images/*.jpg"):
        data = f.read_bytes()
        out |= {_calculate_file_id(data, "image/jpeg"), _calculate_file_id(strip_jpeg_metadata(data), "image/jpeg"),
                _calculate_file_id(stored_png(candidate_pixels(f), bytes(32)), "image/png")}
    return out


def decoded_widths(page) -> list[int]:
    """The natural widths of the screen's images once the browser has decoded them all (0: not decodable)."""
    images = page.locator('[data-testid="stImage"] img')
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
                           ".every(i => i.complete)", timeout=WAIT_MS)
    return images.evaluate_all("els => els.map(e => e.naturalWidth)")


def decoded_candidates(root: Path, image_index: int) -> set[bytes]:
    """The RGB pixels of one image's candidate files, as the organizer's decoder (Pillow) reads them."""
    package = load_package(root)
    out = set()
    for c in package.images[image_index].candidates:
        with Image.open(c.file) as im:
            out.add(im.convert("RGB").tobytes())
    return out


def vote(page, expected: str) -> list[str]:
    """Cast a ballot on the screen titled `expected`; return the media ids of its candidates."""
    shown = screen_media(page, expected)
    most = page.get_by_role("toolbar", name="Most appealing (exactly 3)")
    least = page.get_by_role("toolbar", name="Least appealing (exactly 2)")
    most.get_by_role("button").nth(4).wait_for(timeout=WAIT_MS)
    least.get_by_role("button").nth(4).wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stImage"] img').nth(4).wait_for(timeout=WAIT_MS)
    letters = [b.inner_text().strip() for b in most.get_by_role("button").all()]
    assert len(letters) == 5 and page.locator('[data-testid="stImage"] img').count() == 5
    for letter in letters[:3]:
        press(most.get_by_role("button", name=letter, exact=True))
    for letter in letters[3:]:
        press(least.get_by_role("button", name=letter, exact=True))
    page.get_by_role("button", name="Save and continue").click()
    return shown


def test_juror_and_organizer_in_chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    root = make_demo_package(tmp_path / "jury", RUNS, 3, size=64, leak_run_in_metadata=True)
    store = VoteStore(load_package(root))
    juror, other = store.add_jurors(2)
    admin = store.new_admin_token()
    port = free_port()
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    screens: list[list[str]] = []  # media ids of the candidates, one list per screen the juror saw
    server = start_server(root, port, log_path=log)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            context = browser.new_context()
            recorder = Recorder(context)
            page = context.new_page()
            page.goto(f"{base}/?token={juror.token}")
            assert screen_media(page, "Image 1 of 3") and decoded_widths(page) == [64] * 5  # Chromium decodes them
            screens.append(vote(page, "Image 1 of 3"))
            page.get_by_text("Image 2 of 3", exact=True).wait_for(timeout=WAIT_MS)
            assert "token" not in page.url
            recorder.drain(page)
            page.reload()  # a new Streamlit session: no cookie holds the token, so the page asks for the link
            page.get_by_text("open your link again", exact=False).wait_for(timeout=WAIT_MS)
            secret = juror.token.split(".")[1]
            assert not any(secret in c["value"] for c in context.cookies())
            assert secret not in page.evaluate("document.cookie + location.href")
            recorder.drain(page)
            page.goto(f"{base}/?token={juror.token}")  # the private link again: resumes from the database
            screens.append(vote(page, "Image 2 of 3"))
            before_kill = screen_media(page, "Image 3 of 3")
            assert committed_ballots(root / "votes.sqlite") == 2

            recorder.drain(page)
            os.kill(server.pid, signal.SIGKILL)  # the server dies mid-session
            server.wait(timeout=30)
            assert committed_ballots(root / "votes.sqlite") == 2
            server = start_server(root, port, log_path=log)
            page.goto(f"{base}/?token={juror.token}")
            screens.append(vote(page, "Image 3 of 3"))
            assert screens[-1] == before_kill  # the restarted server sends the same bytes (secret in the store)
            page.get_by_text("All images have a ballot").wait_for(timeout=WAIT_MS)
            page.get_by_text("I am done: lock my ballots").click()
            page.get_by_role("button", name="Final submit").click()
            page.get_by_text("Your ballots are final").wait_for(timeout=WAIT_MS)
            assert store.is_final(juror.juror) and store.count_ballots() == 3
            recorder.drain(page)

            second = browser.new_context()  # another juror: other URLs for the same candidates
            recorder2 = Recorder(second)
            other_page = second.new_page()
            other_page.goto(f"{base}/?token={other.token}")
            other_screen = screen_media(other_page, "Image 1 of 3")
            assert decoded_widths(other_page) == [64] * 5
            recorder2.drain(other_page)

            organizer = browser.new_context().new_page()
            organizer.goto(f"{base}/organizer?admin={admin}")
            organizer.get_by_text("Ranking (task rule").wait_for(timeout=WAIT_MS)
            organizer.get_by_text("Position bias").wait_for(timeout=WAIT_MS)
            assert "admin" not in organizer.url
            recorder.drain(organizer)
            recorder.refetch_missed()
            recorder2.refetch_missed()
            browser.close()
    finally:
        server.kill()
        server.wait(timeout=30)
    # Chromium does not keep font bodies; they are Streamlit's own fixed files. Everything else was read.
    for rec in (recorder, recorder2):
        assert all("/static/media/" in m and ".woff2" in m for m in rec.missed), rec.missed
    assert sum(u.startswith("ws:") for u, _ in recorder.chunks) > 10  # the script data went by websocket
    bodies = {media_id(u): d for rec in (recorder, recorder2) for u, d in rec.chunks
              if "/media/" in u and "/static/" not in u}
    assert len(bodies) >= 15 and all(d.startswith(b"\x89PNG\r\n\x1a\n") for d in bodies.values())
    assert len(recorder.chunks) > 30
    assert recorder.leaks(RUNS + ["TEAMSECRET"]) == [] and recorder2.leaks(RUNS + ["TEAMSECRET"]) == []
    assert b"TEAMSECRET" in next(root.glob("images/*.jpg")).read_bytes()  # the leak was there to strip
    assert len({f.stat().st_size for f in root.glob("images/*.jpg")}) > 1  # the channel: JPEG sizes differ by run
    # one screen: one byte size, and no byte but the pixels and the key chunk differs (png_layout parses them
    # independently of the server's writer); the pixels are exactly the organizer's decoded candidates
    keys = []
    for index, screen in [(0, screens[0]), (1, screens[1]), (2, screens[2]), (0, other_screen)]:
        assert len(screen) == 5 and all(m in bodies for m in screen)
        assert len({len(bodies[m]) for m in screen}) == 1, [len(bodies[m]) for m in screen]
        parts = [png_parts(bodies[m]) for m in screen]
        assert len({p.skeleton for p in parts}) == 1
        assert {p.rgb for p in parts} == decoded_candidates(root, index)
        keys += [p.key for p in parts]
    assert len(set(keys)) == len(keys) == 20  # per juror and candidate: no key repeats, not even between jurors
    # URLs: not the content hashes a participant can compute, and another juror's differ
    seen = {m for screen in screens + [other_screen] for m in screen}
    assert not seen & predictable_media_ids(root)
    assert len(set(other_screen)) == 5 and not set(other_screen) & set(screens[0])


def test_phone_juror_page_is_clean_enlarges_blind_and_organizer_starts_empty(tmp_path):
    """One server, 600 px candidates: the organizer page before any vote says so (no table, rank or chart); a
    juror on a 390x844 phone sees the title and instruction, no Streamlit toolbar or menu, no horizontal scroll,
    grid images pre-sized to 512 px; "Enlarge X" by keyboard opens the full 600 px candidate in a dialog without
    losing picks; every byte received (the enlarged PNGs too) names no run, and the enlarged PNGs of one image
    have one length and differ only in pixels (exactly the decoded files) and the per-juror key."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    root = make_demo_package(tmp_path / "jury", RUNS, 2, size=600, leak_run_in_metadata=True)
    store = VoteStore(load_package(root))
    (juror,) = store.add_jurors(1)
    admin = store.new_admin_token()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(root, port, log_path=tmp_path / "server.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            organizer = browser.new_context().new_page()
            organizer.goto(f"{base}/organizer?admin={admin}")
            organizer.get_by_text("No votes yet", exact=False).wait_for(timeout=WAIT_MS)
            organizer.get_by_text("juror001", exact=True).wait_for(state="attached", timeout=WAIT_MS)  # progress table
            assert organizer.get_by_text("None", exact=True).count() == 0
            assert organizer.locator('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]').count() == 0
            assert organizer.get_by_role("button", name="Download ranking.csv").count() == 0
            assert organizer.get_by_text("Ranking (task rule", exact=False).count() == 1

            context = browser.new_context(viewport={"width": 390, "height": 844})
            recorder = Recorder(context)
            page = context.new_page()
            page.goto(f"{base}/?token={juror.token}")
            screen_media(page, "Image 1 of 2")
            assert decoded_widths(page) == [512] * 5  # pre-sized for the grid (600 px files)
            page.get_by_role("heading", name="Pixel Privacy jury").wait_for(timeout=WAIT_MS)
            page.get_by_text("For each photo, pick the", exact=False).wait_for(timeout=WAIT_MS)
            page.get_by_text("Appealing could mean", exact=False).wait_for(timeout=WAIT_MS)
            for testid in ("stToolbar", "stMainMenu", "stAppDeployButton", "stToolbarActions"):
                assert page.locator(f'[data-testid="{testid}"]').filter(visible=True).count() == 0, testid
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            most = page.get_by_role("toolbar", name="Most appealing (exactly 3)")
            most.get_by_role("button").nth(4).wait_for(timeout=WAIT_MS)
            letters = [b.inner_text().strip() for b in most.get_by_role("button").all()]
            press(most.get_by_role("button", name=letters[0], exact=True))
            enlarged = []
            for letter in letters[:2]:
                button = page.get_by_role("button", name=f"Enlarge {letter}")
                button.focus()
                page.keyboard.press("Enter")
                dialog = page.get_by_role("dialog")
                dialog.get_by_text(f"Version {letter}", exact=True).wait_for(timeout=WAIT_MS)
                big = dialog.locator("img")
                big.wait_for(timeout=WAIT_MS)
                page.wait_for_function("() => { const i = document.querySelector('[role=dialog] img');"
                                       " return i && i.complete && i.naturalWidth === 600; }", timeout=WAIT_MS)
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                enlarged.append(media_id(big.get_attribute("src")))
                page.keyboard.press("Escape")
                dialog.wait_for(state="detached", timeout=WAIT_MS)
            pill = most.get_by_role("button", name=letters[0], exact=True)
            assert pill.get_attribute("aria-pressed") == "true"  # the pick survived the enlarging
            recorder.drain(page)
            recorder.refetch_missed()
            browser.close()
    finally:
        server.kill()
        server.wait(timeout=30)
    assert all("/static/media/" in m and ".woff2" in m for m in recorder.missed), recorder.missed
    assert recorder.leaks(RUNS + ["TEAMSECRET"]) == []
    bodies = {media_id(u): d for u, d in recorder.chunks if "/media/" in u and "/static/" not in u}
    assert len(set(enlarged)) == 2 and all(m in bodies for m in enlarged)
    parts = [png_parts(bodies[m]) for m in enlarged]
    assert (parts[0].width, parts[0].height) == (600, 600) and len({len(bodies[m]) for m in enlarged}) == 1
    assert len({p.skeleton for p in parts}) == 1 and len({p.key for p in parts}) == 2
    assert {p.rgb for p in parts} <= decoded_candidates(root, 0)
    assert not set(enlarged) & predictable_media_ids(root)
