"""A headless Chromium driven by Selenium, for the tests of the web pages and the player.

Needs Debian's `chromium` and `chromium-driver` (or ARA_CHROMIUM / ARA_CHROMEDRIVER) and the
`selenium` package; `.ci/run` installs them. Tests skip with `pytestmark = needs_chromium`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _find(*candidates: str) -> str | None:
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = os.environ.get("ARA_CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = os.environ.get("ARA_CHROMEDRIVER") or _find("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs a headless Chromium and its driver (Debian: apt-get install chromium chromium-driver)",
)


def start_chromium(profile: Path, *extra_args: str):
    """A headless Chromium with a private profile (quit it when done)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
        *extra_args,
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver
