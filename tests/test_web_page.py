"""The web page at `/`, in a real headless Chromium (Selenium): it loads the personas, renders a
text through the job API and its event stream, plays the first chunk while the rest renders
(Media Source), and ends on the whole video. Once against a server without
a token (the page uses the plain video URL) and once with one (typed into the page; the page
fetches everything, the video too, with the Authorization header).

Needs a headless Chromium (see browser.py); skipped without one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")

from browser import needs_chromium, start_chromium  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    JavascriptException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

TOKEN = "web-page-token-456"
TEXT = "Hello from the web page. This second sentence is still rendering while the first one plays."
RENDER_TIMEOUT_S = 180


pytestmark = needs_chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[None, TOKEN], ids=["no-token", "token"])
def server(request, tmp_path_factory) -> Iterator[tuple[str, str | None]]:
    """A real `ara-sidecar serve` on a free port: (base URL, token or None)."""
    token = request.param
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    env = {**os.environ, "ARA_CACHE_DIR": str(tmp / "cache")}
    env.pop("ARA_SERVER_TOKEN", None)
    args = [str(Path(sys.executable).with_name("ara-sidecar")), "serve", "--port", str(port)]
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args + (["--token", token] if token else []), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health/detailed", headers=auth, timeout=10).json()["worker"]["ready"]:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield base, token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = start_chromium(profile, "--autoplay-policy=no-user-gesture-required")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout_s: float, what: str):
    try:
        wait = WebDriverWait(driver, timeout_s, 0.2, ignored_exceptions=[StaleElementReferenceException])
        return wait.until(lambda d: condition(d))
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        status = driver.find_element(By.ID, "status").text
        raise AssertionError(f"timed out waiting for {what}; status {status!r}, error {error!r}") from None


def video_state(driver) -> dict:
    try:
        return driver.execute_script(
            "const v = document.getElementById('video');"
            "return {ready: v.readyState, duration: v.duration, src: v.currentSrc,"
            " error: v.error && v.error.code, phase: v.dataset.phase, live: v.dataset.liveChunks};"
        )
    except JavascriptException:
        return {"ready": 0}


def test_the_page_renders_text_and_plays_the_video(server, browser, tmp_path):
    base, token = server
    browser.get(base + "/")
    assert browser.title == "Ara sidecar"
    error = browser.find_element(By.ID, "error")
    if token:
        # Without the token the API answers 401, and the page says what is missing.
        wait_for(browser, lambda d: "token" in error.text, 20, "the missing-token message")
        field = browser.find_element(By.ID, "token")
        assert field.is_displayed()  # the page opened its token box
        field.send_keys(token, Keys.TAB)  # "change" stores it and reloads the lists

    persona = Select(browser.find_element(By.ID, "persona"))
    mode = Select(browser.find_element(By.ID, "mode"))
    wait_for(browser, lambda d: len(mode.options) > 1, 20, "the personas and modes to load")
    assert error.text == ""
    assert persona.first_selected_option.get_attribute("value") == "ara"
    modes = [o.get_attribute("value") for o in mode.options]
    assert modes[0] == "auto" and "cockpit" in modes
    assert mode.first_selected_option.text == "cockpit (default)"
    avatars = Select(browser.find_element(By.ID, "avatar"))
    assert len(avatars.options) >= 2  # the persona's own (default), then the listed avatars

    browser.find_element(By.ID, "text").send_keys(TEXT)
    browser.find_element(By.ID, "render").click()
    live = wait_for(
        browser,
        lambda d: s if ((s := video_state(d)).get("live") or s.get("error") or error.text) else None,
        RENDER_TIMEOUT_S,
        "the first chunk to play",
    )
    assert error.text == "", error.text
    assert live["phase"] == "live" and live["src"].startswith("blob:"), live

    def whole(d) -> dict | None:
        s = video_state(d)
        return s if (s.get("phase") == "whole" and s["ready"] >= 3) or s.get("error") else None

    state = wait_for(
        browser,
        whole,
        RENDER_TIMEOUT_S,
        "the live video to end on the whole video",
    )
    assert error.text == "", error.text
    assert state["ready"] >= 3 and state["live"] == "2", state  # HAVE_FUTURE_DATA, after both chunks played
    assert state["src"].startswith("blob:" if token else f"{base}/v1/videos/"), state["src"]

    # The same request again through the API is a cache hit on the same video: its facts.
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"text": TEXT, "persona": "ara", "mode": "cockpit"}
    result = httpx.post(f"{base}/v1/render", json=body, headers=auth, timeout=60).json()
    assert result["cached"], result
    if not token:
        assert state["src"] == f"{base}{result['video_url']}"
    assert abs(state["duration"] - result["duration_s"]) < 0.1, (state, result)

    facts = browser.find_element(By.ID, "facts")
    assert facts.is_displayed()
    assert f"{result['duration_s']:.2f} s" in facts.text and "cockpit (requested)" in facts.text
    assert browser.find_element(By.ID, "progress").get_attribute("value") == "1"
    assert browser.find_element(By.ID, "render").is_enabled()
    shot = tmp_path / f"web-page-{'token' if token else 'plain'}.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("ARA_WEB_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["ARA_WEB_SCREENSHOT_DIR"])


def test_test_voice_says_a_sample_line_in_the_chosen_mode(server, browser):
    """Each mode can be heard: Test voice renders a sample line in the selected mode."""
    base, _token = server
    browser.get(base + "/")  # the token, if any, was kept by the page from the test above
    mode = Select(browser.find_element(By.ID, "mode"))
    wait_for(browser, lambda d: len(mode.options) > 1, 20, "the personas and modes to load")
    mode.select_by_value("playful")
    browser.find_element(By.ID, "test-voice").click()
    facts = browser.find_element(By.ID, "facts")
    wait_for(
        browser, lambda d: facts.is_displayed() or browser.find_element(By.ID, "error").text, 120, "the test"
    )
    assert "playful (requested)" in facts.text, facts.text
    assert browser.find_element(By.ID, "text").get_attribute("value") == (
        "Hi, I'm Ara. This is how I sound in playful mode."
    )


def test_api_errors_are_shown_on_the_page(server, browser):
    base, token = server
    browser.get(base + "/")
    error = browser.find_element(By.ID, "error")
    if token:
        # the page keeps a typed token for the browser session
        assert browser.find_element(By.ID, "token").get_attribute("value") == token
    mode = Select(browser.find_element(By.ID, "mode"))
    wait_for(browser, lambda d: len(mode.options) > 1, 20, "the personas and modes to load")
    browser.find_element(By.ID, "render").click()  # no text
    wait_for(browser, lambda d: error.text, 5, "the empty-text message")
    assert "Type something" in error.text
    # An avatar that does not exist: the API's 422 message shows up.
    browser.execute_script(
        "const s = document.getElementById('avatar');s.add(new Option('gone', '0'.repeat(64), true, true));"
    )
    browser.find_element(By.ID, "text").send_keys(TEXT)
    browser.find_element(By.ID, "render").click()
    wait_for(browser, lambda d: error.text and "Type something" not in error.text, 30, "the API's error")
    assert "avatar" in error.text.lower(), error.text
    assert browser.find_element(By.ID, "status").text == "Failed."


def test_an_uploaded_portrait_becomes_the_selected_avatar(server, browser, astronaut_png, tmp_path):
    base, _ = server
    browser.get(base + "/")
    error = browser.find_element(By.ID, "error")
    avatar = Select(browser.find_element(By.ID, "avatar"))
    wait_for(browser, lambda d: len(avatar.options) > 1, 20, "the avatars to load")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    browser.find_element(By.ID, "upload").send_keys(str(not_an_image))
    wait_for(browser, lambda d: error.text, 30, "the upload error")
    assert error.text.startswith("Upload failed: ") and len(error.text) > len("Upload failed: "), error.text

    browser.find_element(By.ID, "upload").send_keys(str(astronaut_png))
    selected = "const o = document.getElementById('avatar').selectedOptions[0]; return [o.text, o.value];"
    wait_for(browser, lambda d: "Upload" in d.execute_script(selected)[0], 30, "the uploaded avatar")
    assert error.text == ""
    text, value = browser.execute_script(selected)
    assert text == f"Upload: astronaut.png ({value[:8]})" and len(value) == 64
