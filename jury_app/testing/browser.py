"""Driving the jury pages in headless Chromium through playwright (the browser test and the jury benchmark).

`LAUNCH_ARGS` turns off the omnibox popup of the browser's own address bar (`OMNIBOX_POPUP_FEATURES`). Chromium
156 keeps that popup as a web page (`chrome://omnibox-popup.top-chrome/`) in a renderer of its own, and that
renderer used about 0.5 s of CPU for every page playwright opened (new tabs of one window), plus ~0.15 s more in
the browser process (measured with `/proc` CPU times on this 2-core machine), while the jury page loads: work of
an address bar that a headless browser never shows, which the benchmark would otherwise charge to the juror
page on 2 cores shared with the server (whether a desktop browser spends it per new tab was not measured). Chromium keeps
only the last `--disable-features` it is given, so ours repeats the features playwright itself turns off
(`PLAYWRIGHT_DISABLED_FEATURES`, playwright 1.65, plus those the installed playwright lists;
`tests/test_jury_browser_launch.py` checks the list against the installed playwright).
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"  # the system browser: playwright downloads none
# playwright's own `--disable-features` (packages/playwright-core/src/server/chromium/chromiumSwitches.ts)
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding", "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying",
    "AimEnabled", "PreconnectToSearch", "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
)
OMNIBOX_POPUP_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")  # both off: no omnibox popup page at all


def installed_playwright_features() -> tuple[str, ...]:
    """The `disabledFeatures` list of the installed playwright driver (its bundled chromiumSwitches), () where
    playwright is missing or lists them elsewhere: a newer playwright's additions are kept without an edit here."""
    import ast
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("playwright")
    if spec is None or not spec.submodule_search_locations:
        return ()
    lib = Path(next(iter(spec.submodule_search_locations))) / "driver" / "package" / "lib"
    for path in sorted(lib.rglob("chromiumSwitches*.js")) + sorted(lib.rglob("*.js")):
        try:
            found = re.search(r"disabledFeatures = \[(.*?)\]", path.read_text(encoding="utf-8", errors="replace"),
                              re.S)
            if found:
                return tuple(s for s in ast.literal_eval("[" + re.sub(r"//[^\n]*", "", found.group(1)) + "]") if s)
        except (OSError, ValueError, SyntaxError):
            continue
    return ()


_FEATURES = tuple(dict.fromkeys(PLAYWRIGHT_DISABLED_FEATURES + installed_playwright_features()
                                + OMNIBOX_POPUP_FEATURES))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-features=" + ",".join(_FEATURES)]
LAUNCH_ARGS_BEFORE_ISSUE_16 = LAUNCH_ARGS[:-1]  # playwright's features only: an omnibox popup page per page


def press(button) -> None:
    """Click a pill (a playwright locator) until it reads as pressed: a click during Streamlit's re-mount can be
    lost, so up to 5 clicks, each followed by up to 2 s of looking for `aria-pressed="true"`."""
    for _ in range(5):
        button.click()
        for _ in range(20):
            if button.get_attribute("aria-pressed") == "true":
                return
            button.page.wait_for_timeout(100)
    raise AssertionError("a pill did not register the click (5 clicks)")
