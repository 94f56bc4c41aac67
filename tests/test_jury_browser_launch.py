"""The headless Chromium of the browser tests and `benchmarks/bench_jury.py` (`jury_app.testing.browser`): no
omnibox popup page is prepared for the pages it opens (about 0.5 s of CPU per page on a 2-core machine, spent
while the jury page loads), and the one `--disable-features` it passes still turns off every feature playwright
itself turns off (Chromium keeps only the last `--disable-features`). Skipped, with the reason, where
/usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from jury_app.testing.browser import (CHROMIUM, LAUNCH_ARGS, OMNIBOX_POPUP_FEATURES, PLAYWRIGHT_DISABLED_FEATURES)

OMNIBOX_POPUP_URL = "chrome://omnibox-popup.top-chrome/"

pytestmark = [pytest.mark.browser]


def _browser_ui_urls(sync_api, args: list[str]) -> list[str]:
    """URLs of the browser's own UI pages (CDP targets of type browser_ui) after opening two pages."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = browser.new_context()
            for _ in range(2):
                context.new_page().goto("about:blank")
            targets = browser.new_browser_cdp_session().send("Target.getTargets")["targetInfos"]
            return [t["url"] for t in targets if t["type"] == "browser_ui"]
        finally:
            browser.close()


def test_launch_args_prepare_no_omnibox_popup_page():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    assert [a for a in LAUNCH_ARGS if a.startswith("--disable-features=")] == [LAUNCH_ARGS[-1]]
    assert not [u for u in _browser_ui_urls(sync_api, LAUNCH_ARGS) if u.startswith(OMNIBOX_POPUP_URL)]
    # the control: without the two features, this Chromium does prepare the popup page (else the flag is moot)
    without = LAUNCH_ARGS[:-1] + ["--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES)]
    if not [u for u in _browser_ui_urls(sync_api, without) if u.startswith(OMNIBOX_POPUP_URL)]:
        pytest.skip(f"{CHROMIUM} prepares no {OMNIBOX_POPUP_URL} even without the flags: OMNIBOX_POPUP_FEATURES in "
                    "jury_app/testing/browser.py is moot with this Chromium")


def _playwright_disabled_features(sync_api) -> set[str]:
    """The `disabledFeatures` list of the installed playwright driver (its chromiumSwitches, bundled JS)."""
    lib = Path(sync_api.__file__).resolve().parent.parent / "driver" / "package" / "lib"
    for path in sorted(lib.rglob("*.js")):
        text = path.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"disabledFeatures = \[(.*?)\]", text, re.S)
        if found:
            body = re.sub(r"//[^\n]*", "", found.group(1))
            return {s for s in ast.literal_eval("[" + body + "]") if s}
    pytest.skip(f"no `disabledFeatures = [...]` in the playwright driver under {lib}: this playwright lists the "
                "features it disables elsewhere (jury_app/testing/browser.py keeps its 1.65 list)")


def test_launch_args_keep_playwrights_disabled_features():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    ours = set(LAUNCH_ARGS[-1].removeprefix("--disable-features=").split(","))
    missing = _playwright_disabled_features(sync_api) - ours
    assert not missing, (f"playwright disables {sorted(missing)} too: add them to PLAYWRIGHT_DISABLED_FEATURES in "
                         "jury_app/testing/browser.py (Chromium keeps only our --disable-features)")
    assert set(OMNIBOX_POPUP_FEATURES) <= ours
