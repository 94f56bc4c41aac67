"""Driving the jury pages in headless Chromium through playwright (the browser test and the jury benchmark)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"  # the system browser: playwright downloads none
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


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
