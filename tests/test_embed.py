"""`<ara-avatar>` (GET /embed.js) on a page of another origin, in a real headless Chromium: a
second local server serves the page; the sidecar lists its origin in `server.cors_origins`. The
video plays (its currentTime advances) before the render has ended, the events arrive in order,
and the same page from an origin that is not listed is refused.

Needs a headless Chromium (see browser.py); skipped without one."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")

from browser import needs_chromium, start_chromium  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from server_helpers import free_port  # noqa: E402

pytestmark = needs_chromium

TEXT = (
    "Good evening, and welcome back. The lamps are lit along the harbour. A few boats are still out, "
    "their lights small and steady. The wind has dropped since the afternoon. Tomorrow should be calm. "
    "Sleep well when you get there."
)
PAGE = """<!doctype html><meta charset="utf-8"><title>another site</title>
<script src="{sidecar}/embed.js"></script>
<ara-avatar id="ara" server="{sidecar}" persona="ara"></ara-avatar>
<script>
  window.log = [];
  const ara = document.getElementById("ara");
  const note = (name, detail) => log.push({{name, t: performance.now(), detail}});
  for (const name of ["started", "chunk", "ended", "error"]) {{
    ara.addEventListener(name, (e) => note(name, e.detail));
  }}
  ara.video.addEventListener("timeupdate", () => {{
    if (ara.video.currentTime > 0.3 && !window.playedAt) {{ window.playedAt = performance.now(); }}
  }});
</script>
"""


@pytest.fixture(scope="module")
def page_server(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """The other site: a plain static file server on a free port (its folder is filled later)."""
    folder = tmp_path_factory.mktemp("site")
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], folder
    finally:
        httpd.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory, page_server) -> Iterator[str]:
    """`ara-sidecar serve` without a token, the page server's 127.0.0.1 origin in cors_origins."""
    tmp = tmp_path_factory.mktemp("embed")
    port = free_port()
    origin = f"http://127.0.0.1:{page_server[0]}"
    env = {**os.environ, "ARA_CACHE_DIR": str(tmp / "cache"), "ARA_SERVER_CORS_ORIGINS": json.dumps([origin])}
    env.pop("ARA_SERVER_TOKEN", None)
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ara-sidecar")), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health/detailed", timeout=10).json()["worker"]["ready"]:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    driver = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"), "--autoplay-policy=no-user-gesture-required"
    )
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, page_server, sidecar, host: str) -> None:
    port, folder = page_server
    (folder / "index.html").write_text(PAGE.format(sidecar=sidecar), encoding="utf-8")
    browser.get(f"http://{host}:{port}/index.html")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return !!customElements.get('ara-avatar')"))


def events(browser) -> list[dict]:
    return browser.execute_script("return window.log")


def test_the_avatar_plays_on_another_sites_page_before_the_render_ends(browser, page_server, sidecar):
    open_page(browser, page_server, sidecar, "127.0.0.1")
    browser.execute_script("document.getElementById('ara').speak(arguments[0]).catch(() => {})", TEXT)
    WebDriverWait(browser, 180, 0.2).until(lambda d: any(e["name"] in ("ended", "error") for e in events(d)))
    log = events(browser)
    names = [e["name"] for e in log]
    assert "error" not in names, log
    assert names[0] == "started" and names[-1] == "ended" and names.count("chunk") >= 3, names
    ended = log[-1]
    played = browser.execute_script("return window.playedAt || null")
    assert played is not None and played < ended["t"], (played, ended["t"])  # playing while rendering
    chunks = [e["detail"] for e in log if e["name"] == "chunk"]
    assert [c["index"] for c in chunks] == list(range(chunks[0]["count"]))
    assert ended["detail"]["result"]["video_url"].startswith("/v1/videos/")
    # it goes on playing through the later chunks
    WebDriverWait(browser, 60, 0.2).until(
        lambda d: (
            d.execute_script("return document.getElementById('ara').video.currentTime") > chunks[1]["start_s"]
        )
    )


def test_an_origin_not_listed_is_refused(browser, page_server, sidecar):
    open_page(browser, page_server, sidecar, "localhost")  # another origin: not in cors_origins
    browser.execute_script("document.getElementById('ara').speak('Hello there.').catch(() => {})")
    WebDriverWait(browser, 30, 0.2).until(lambda d: any(e["name"] in ("ended", "error") for e in events(d)))
    log = events(browser)
    assert [e["name"] for e in log] == ["error"], log
    assert "cors_origins" in log[0]["detail"]["message"]
    # and the server itself refuses such a page's write, whatever the browser does
    refused = httpx.post(
        f"{sidecar}/v1/jobs",
        json={"text": "Hello there."},
        headers={"Origin": f"http://localhost:{page_server[0]}"},
        timeout=10,
    )
    assert refused.status_code == 403


def test_the_web_pages_speech_only_switch(browser, sidecar):
    from selenium.webdriver.common.by import By

    browser.get(sidecar + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text == "Ready.")
    browser.find_element(By.ID, "speech-only").click()
    browser.find_element(By.ID, "text").send_keys(TEXT)
    browser.find_element(By.ID, "render").click()
    speech = browser.find_element(By.ID, "speech")
    WebDriverWait(browser, 120, 0.2).until(
        lambda d: speech.get_attribute("data-done-at") or d.find_element(By.ID, "error").text
    )
    assert browser.find_element(By.ID, "error").text == ""
    started, done = (
        float(speech.get_attribute("data-started-at")),
        float(speech.get_attribute("data-done-at")),
    )
    assert started < done and float(speech.get_attribute("data-seconds")) > 8  # played as it came
    assert (
        speech.get_attribute("src").startswith("blob:")
        and "s of speech" in browser.find_element(By.ID, "status").text
    )
