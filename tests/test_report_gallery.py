"""The report's camouflage gallery: the percentile scaling of the difference maps, the per-run picks, the size
bound on 13 runs x 20 noisy images, hostile run names, and (in headless Chromium) that its images load, the
difference switch works and a thumbnail opens full size by mouse and keyboard."""

from __future__ import annotations

import base64
import io
import os
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from evaluator.outputs.report import render_report
from evaluator.outputs.report_gallery import amplified, difference, percentile_of_counts, run_picks
from report_field import field, gallery_for

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.scripts += tag == "script"


def _jpeg_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        assert im.format == "JPEG"
        return im.size


def test_difference_map_makes_the_runs_99th_percentile_white():
    original = np.zeros((10, 10, 3), np.uint8)
    submitted = original.copy()
    submitted[..., 1] = np.arange(100, dtype=np.uint8).reshape(10, 10)  # d = 0..99, one pixel each
    d = difference(submitted, original)
    assert d.max() == 99 and d.dtype == np.uint8
    p99 = percentile_of_counts(np.bincount(d.ravel(), minlength=256))
    assert p99 == 98  # 99 of the 100 pixels are <= 98
    m = amplified(d, p99)
    assert m[d == 98].item() == 255 and m[d == 99].item() == 255 and m[d == 49].item() == round(49 * 255 / 98 - 0.5)
    assert amplified(d, 0).max() == 0 and percentile_of_counts(np.zeros(256, np.int64)) == 0


def test_run_picks_are_lowest_median_highest_score_and_skip_excluded_originals():
    result, *_ = field(["a"], 5)
    picks = run_picks(result)  # scores fall with i % 7: img000 60, img001 59, ... img004 56
    assert [(p.lowest, p.median, p.highest) for p in picks] == [("img004", "img002", "img000")]
    import dataclasses
    assert run_picks(dataclasses.replace(result, excluded_originals=("img004",)))[0].lowest == "img003"


def test_gallery_of_13_runs_by_20_noisy_images_stays_under_20_mb_and_escapes_run_names():
    runs = [f"run{i:02d}" for i in range(12)] + [HOSTILE]
    result, gallery = gallery_for(runs, 20)
    page = render_report(result, {}, {}, gallery)
    assert len(page.encode()) < 20_000_000, len(page.encode())
    assert "<script>alert" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    parser = _Tags()
    parser.feed(page)
    assert parser.scripts == 1  # the gallery's own script only
    images = [a for t, a in parser.tags if t == "img" and a.get("src", "").startswith("data:")]
    # 20 jury images x (original + 13 runs) + 13 runs x 3 picks x (original + run)
    assert len(images) == 20 * 14 + 13 * 6
    run_imgs = [a for a in images if "data-diff" in a]
    assert len(run_imgs) == 20 * 13 + 13 * 3 and all(a["alt"] for a in images)
    assert all(_jpeg_size(a["src"])[0] == 200 for a in images[:30])
    buttons = [a for t, a in parser.tags if t == "button" and "data-full" in a]
    assert len(buttons) == len(images) and all(_jpeg_size(b["data-full"]) for b in buttons[:30])
    assert any(HOSTILE in a["alt"] for a in run_imgs)  # the name is there, as text (the parser unescaped it)


def test_gallery_in_chromium_loads_switches_and_opens_full_size(tmp_path):
    from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    result, gallery = gallery_for(["alpha", HOSTILE], 2, size=(120, 160), noise=5.0)
    report = tmp_path / "report.html"
    report.write_text(render_report(result, {}, {}, gallery))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        loaded = page.eval_on_selector_all("img.gimg", "els => els.map(e => e.complete && e.naturalWidth)")
        assert len(loaded) == 2 * 3 + 2 * 6 and all(w == 200 for w in loaded)
        thumbs = page.locator("img.gimg[data-diff]")
        before = thumbs.first.get_attribute("src")
        switch = page.get_by_role("button", name="Amplified difference")
        switch.click()
        assert switch.get_attribute("aria-pressed") == "true"
        assert page.get_by_role("button", name="Scored images").get_attribute("aria-pressed") == "false"
        after = thumbs.first.get_attribute("src")
        assert after != before and after == thumbs.first.get_attribute("data-diff")
        assert "Amplified difference" in thumbs.first.get_attribute("alt")
        page.wait_for_function("() => [...document.querySelectorAll('img.gimg')].every(i => i.complete && "
                               "i.naturalWidth === 200)")
        # keyboard: focus the first run's thumbnail button, Enter opens its full-size difference map
        opener = page.locator("button.gopen[data-fulldiff]").first
        opener.focus()
        page.keyboard.press("Enter")
        big = page.locator("dialog#gview img")
        big.wait_for(state="visible")
        page.wait_for_function("() => document.querySelector('dialog#gview img').naturalWidth === 160")
        assert big.get_attribute("src") == opener.get_attribute("data-fulldiff")
        assert page.evaluate("document.getElementById('gview').open")
        page.keyboard.press("Escape")
        assert not page.evaluate("document.getElementById('gview').open")
        # focus returns to the thumbnail that opened the dialog (keyboard users keep their place)
        page.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('gopen')")
        assert page.evaluate("document.activeElement === document.querySelectorAll('button.gopen[data-fulldiff]')[0]")
        page.get_by_role("button", name="Scored images").click()
        page.locator("button.gopen").first.click()  # the original, by mouse
        page.wait_for_function("() => document.querySelector('dialog#gview img').naturalWidth === 160")
        page.get_by_role("button", name="Close").click()
        assert not page.evaluate("document.getElementById('gview').open")
        assert dialogs == []  # no injected alert() ran
        assert page.eval_on_selector_all("img", "els => els.filter(e => !e.complete || !e.naturalWidth).length") == 0
        browser.close()


def test_jpeg_within_keeps_every_cap_and_learns_the_quality_per_kind():
    from evaluator.outputs.report_gallery import MIN_CAP, QUALITIES, jpeg_within

    noise = np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    hint: dict[str, int] = {}
    for cap in (200_000, 30_000, 5_000, 10):
        data = jpeg_within(noise, cap, long_side=1024, hint=hint, kind="full")
        assert len(data) <= max(cap, MIN_CAP)
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size[0] <= 512 and im.size[0] / im.size[1] == pytest.approx(4 / 3, 0.02)
    assert hint["full"] == len(QUALITIES) - 1  # the last images needed the lowest quality (and a smaller size)
    big = jpeg_within(noise, 10_000_000, long_side=1024, hint={"full": 3}, kind="full")
    with Image.open(io.BytesIO(big)) as im:
        assert im.size == (512, 384)
    assert len(big) == len(jpeg_within(noise, 10_000_000, long_side=1024))  # the hint never lowers the quality


def test_gallery_decodes_each_original_and_pair_once_and_counts_repeats_in_the_budget():
    """Speed: one decode per distinct original and (run, image) pair, one organizer JPEG round trip per pair, even
    where a run's lowest/median/highest image is also a jury image (shown twice, counted twice in the budget)."""
    from collections import Counter

    from evaluator.outputs.report_gallery import gallery_html

    result, original, submitted, scored = field(["a", "b", "c"], 6, size=(96, 128), selected=4)
    calls: Counter = Counter()

    def count(name, fn):
        def wrapped(*args):
            calls[(name,) + tuple(a for a in args if isinstance(a, str))] += 1
            return fn(*args)
        return wrapped

    page = gallery_html(result, original=count("original", original), submitted=count("submitted", submitted),
                        scored=count("scored", scored), budget=400_000)
    assert max(n for k, n in calls.items() if k[0] != "scored") == 1
    shown = {k[1:] for k in calls if k[0] == "submitted"}
    assert calls[("scored",)] == len(shown)  # one round trip per distinct pair
    parser = _Tags()
    parser.feed(page)
    uris = [a[k] for _, a in parser.tags for k in ("src", "data-diff", "data-full", "data-fulldiff") if k in a]
    assert sum(len(u) - len("data:image/jpeg;base64,") for u in uris) <= 400_000
    # every pair the page shows was decoded: 3 runs x 4 jury images, plus the picks outside them
    picks = {(p.run, i) for p in run_picks(result) for i in (p.lowest, p.median, p.highest)}
    assert shown == {(r, i) for r in "abc" for i in ("img000", "img001", "img002", "img003")} | picks


def test_jpeg_within_encodes_once_where_the_learnt_quality_fits_without_room_to_spare(monkeypatch):
    import evaluator.outputs.report_gallery as gallery

    noise = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    at_55 = len(gallery._encode(Image.fromarray(noise), 55))
    encodes = []
    real = gallery._encode
    monkeypatch.setattr(gallery, "_encode", lambda im, q: encodes.append(q) or real(im, q))
    hint = {"full": gallery.QUALITIES.index(55)}
    data = gallery.jpeg_within(noise, at_55 + 10, long_side=1024, hint=hint, kind="full")
    assert encodes == [55] and len(data) == at_55  # the next better quality would not fit: not tried


def test_hostile_names_cannot_add_attributes_or_script_and_the_one_script_is_the_fixed_code():
    from evaluator.outputs.report_gallery import SCRIPT

    names = ["x' onmouseover='alert(3)", 'y" onfocus="alert(4)', "</script><script>alert(5)</script>", "z\u2028w"]
    result, page = gallery_for(names, 3, size=(48, 64), noise=5.0)
    parser = _Tags()
    parser.feed(page)
    assert parser.scripts == 1 and page.count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    assert not [a for _, a in parser.tags if any(k.startswith("on") for k in a)]
    labels = [a["aria-label"] for t, a in parser.tags if t == "div" and "aria-label" in a]
    assert sum(n in label for n in names for label in labels) == len(names)  # each run's strip, its name as text


def test_gallery_uses_the_scored_images_it_is_given_and_the_jpeg_memo_keeps_its_bound():
    from evaluator.outputs.report_gallery import JpegMemo, gallery_html

    result, original, submitted, scored = field(["a", "b"], 3, size=(48, 64), selected=3)
    made = []
    grey = np.full((48, 64, 3), 128, np.uint8)

    def scored_of(run, image):
        made.append((run, image))
        return grey if run == "a" else None

    calls = []
    page = gallery_html(result, original=original, submitted=submitted,
                        scored=lambda rgb: calls.append(1) or scored(rgb), scored_of=scored_of)
    assert len(made) == 6 and len(calls) == 3  # run a's scored images came from scored_of, b's from scored
    assert page.count("data-full=") == 3 * 3 + 2 * 6
    memo = JpegMemo(max_bytes=10)
    assert memo.keep("x", b"12345") == b"12345" and memo.keep("y", b"123456") == b"123456"  # y over the bound
    assert memo.pop("y") is None and memo.pop("x") == b"12345" and memo.pop("x") is None
    assert memo.bytes == 0
