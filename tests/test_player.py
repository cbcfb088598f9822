"""The extension's progressive player (ara_tgwui/player.js) in a real headless Chromium.

A page shaped like TGWUI's chat (the reply's `.message-body`, the Stop button, a `morphdom`
updater reduced to what TGWUI's relies on) loads the player the way `custom_js` does. The test
plays the part of the extension: it announces real chunk videos from the pipeline in the live
manifest one by one, served like TGWUI's `file/` route. The player must start with chunk 1 while
the last chunk does not exist yet, play on through the reply's final HTML, and end on the whole
MP4 for replay."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")

from browser import needs_chromium, start_chromium

from ara_sidecar.pipeline import ChunkVideo, Pipeline, RenderRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
from ara_tgwui import markup
from ara_tgwui.live import LiveManifest, element_id, file_url, player_script

pytestmark = needs_chromium

REPLY = "This is my first part. Then a second sentence follows it. And the third one ends it."
JOB = "4f1c2b7e9a0d4c3e8b6a5f7d1e2c3b4a"
FOLDER = Path("user_data/cache/ara_avatar")  # TGWUI's cache folder, relative to its working directory

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>chat</title>
<script>
// TGWUI's morphdom update, reduced: the message body gets the new HTML's children; an element
// of the old body with the id of a new child is kept in its place if onBeforeElUpdated says so.
window.morphdom = function (fromNode, html, options) {
  const incoming = document.createElement("template");
  incoming.innerHTML = html;
  const children = [];
  for (const toEl of Array.from(incoming.content.firstElementChild.children)) {
    const fromEl = toEl.id ? fromNode.querySelector("#" + toEl.id) : null;
    children.push(fromEl && options.onBeforeElUpdated(fromEl, toEl) === false ? fromEl : toEl);
  }
  fromNode.replaceChildren(...children);
};
window.tgwuiUpdate = (html) => window.morphdom(document.querySelector("#chat .message-body"), html, {
  onBeforeElUpdated: (fromEl, toEl) => !fromEl.isEqualNode(toEl),
});
</script></head><body>
<button id="stop">Stop</button>
<div id="chat"><div class="messages"><div class="assistant-message"><div class="text">
<div class="message-body"><p>This is my first part.</p></div></div></div></div></div>
<script>%s</script></body></html>"""


@pytest.fixture(scope="module")
def rendered(settings) -> tuple[list[ChunkVideo], Path]:
    """A three-chunk reply rendered by the real pipeline: its chunk videos and the whole MP4."""
    chunks: list[ChunkVideo] = []
    result = Pipeline(settings).render(RenderRequest(text=REPLY), on_chunk=chunks.append)
    assert len(chunks) == 3
    return chunks, result.path


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[str]:
    """TGWUI's web root: the page at /, files under /file/ (relative to its working directory)."""
    monkeypatch.chdir(tmp_path)
    (FOLDER / "chunks").mkdir(parents=True)
    (tmp_path / "index.html").write_text(PAGE % player_script(FOLDER), encoding="utf-8")

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            path = path.split("?")[0]
            return super().translate_path(path.removeprefix("/file") if path.startswith("/file/") else path)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("profile"), "--autoplay-policy=no-user-gesture-required")
    try:
        yield driver
    finally:
        driver.quit()


def player(driver) -> dict:
    return driver.execute_script(
        "const v = document.querySelector('.ara-live video');"
        "return v && {time: v.currentTime, paused: v.paused, ended: v.ended, src: v.src,"
        " error: v.error && v.error.code, job: v.dataset.araJob, ready: v.readyState,"
        " first: document.querySelector('#chat .message-body').firstElementChild.className};"
    )


def wait(driver, predicate, timeout_s: float, what: str) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = player(driver)
        if state and predicate(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {player(driver)}")


def announce(live: LiveManifest, chunk: ChunkVideo) -> None:
    """What the extension does on a chunk_ready event: copy the chunk, then list it."""
    path = live.chunk_path(chunk.key)
    shutil.copyfile(chunk.path, path)
    live.add_chunk(chunk.describe(), path)


def test_plays_the_first_chunk_before_the_last_exists_and_ends_on_the_whole_video(rendered, site, browser):
    chunks, whole = rendered
    live = LiveManifest(FOLDER, JOB, position="before")
    browser.get(site + "/")
    announce(live, chunks[0])

    state = wait(browser, lambda s: s["time"] > 0.3, 20, "chunk 1 to play")
    assert not state["paused"] and state["error"] is None and state["job"] == JOB
    assert state["first"] == "ara-avatar ara-live" and state["src"].startswith("blob:")  # Media Source
    assert not live.chunk_path(chunks[-1].key).exists() and len(live.data["chunks"]) == 1

    for chunk in chunks[1:]:
        announce(live, chunk)
    final = FOLDER / "whole.mp4"
    shutil.copyfile(whole, final)
    live.finish(file_url(final))

    # The reply's HTML arrives (as TGWUI shows it once output_modifier returns): the live player
    # is paired with the video block by id and keeps playing where it was.
    block = markup.video(file_url(final), autoplay=True, element_id=element_id(JOB))
    before = player(browser)["time"]
    browser.execute_script("window.tgwuiUpdate(arguments[0])", f"<div>{block}<p>{REPLY}</p></div>")
    time.sleep(0.3)
    after = player(browser)
    assert after["job"] == JOB and not after["paused"] and after["time"] > before
    total = sum(c.duration_s for c in chunks)
    live_times: list[float] = []  # the live player's position, sampled until it hands over

    def handed_over(state: dict) -> bool:
        if state["src"].startswith("blob:"):
            live_times.append(state["time"])
        return state["src"].endswith("whole.mp4")

    ended = wait(browser, handed_over, total + 20, "playback to end")
    assert ended["error"] is None and ended["paused"]  # the whole video, ready for a replay
    assert live_times == sorted(live_times)  # never jumped back
    assert max(live_times) == pytest.approx(total, abs=0.25)  # played through every chunk


def test_without_media_source_the_chunks_play_in_turn(rendered, site, browser):
    chunks, whole = rendered
    live = LiveManifest(FOLDER, JOB + "0", position="after")
    browser.get(site + "/")
    browser.execute_script("window.MediaSource = undefined;")  # before the player's first poll ends
    announce(live, chunks[0])
    state = wait(browser, lambda s: s["time"] > 0.3, 20, "chunk 1 to play")
    assert state["src"].endswith(f"{chunks[0].key}.mp4") and state["first"] == ""  # after the text
    for chunk in chunks[1:]:
        announce(live, chunk)
    wait(browser, lambda s: s["src"].endswith(f"{chunks[-1].key}.mp4"), 30, "the last chunk")
    shutil.copyfile(whole, FOLDER / "whole.mp4")
    live.finish(file_url(FOLDER / "whole.mp4"))
    assert wait(browser, lambda s: s["src"].endswith("whole.mp4"), 30, "the whole video")["error"] is None
