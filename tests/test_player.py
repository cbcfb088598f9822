"""The extension's progressive player (ara_tgwui/player.js) in a real headless Chromium, on
TGWUI's chat page as TGWUI renders it while a reply streams (tests/tgwui_fixture/chat_page.py:
its chat HTML, its morphdom update path and the morphdom build it ships).

The test plays the parts of TGWUI and of the extension: it streams a reply into the last
message, word by word, and, as each sentence of it is complete, lists that sentence's real
chunk video (from the pipeline) in the live manifest, as the pre-renderer does; then it finishes
the manifest with the whole MP4 and sends the final HTML, as `output_modifier` and
`chatbot_wrapper` do. The page must speak from the first listed chunk while the text streams,
play on without gaps, hand over to the whole MP4 at the same position and never hold two
videos in one message."""

from __future__ import annotations

import html
import io
import re
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
from tgwui_fixture.chat_page import chat_html, page

from ara_sidecar.pipeline import ChunkVideo, Pipeline, RenderRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
from ara_tgwui import markup
from ara_tgwui.live import LiveManifest, element_id, file_url, player_script

pytestmark = needs_chromium

SENTENCES = ["This is my first part.", "Then a second sentence follows it.", "And the third one ends it."]
REPLY = " ".join(SENTENCES)
USER = "Tell me something in three sentences."
JOB = "4f1c2b7e9a0d4c3e8b6a5f7d1e2c3b4a"
FOLDER = Path("user_data/cache/ara_avatar")  # TGWUI's cache folder, relative to its working directory
WORDS_PER_S = 8.0  # the stand-in model's streaming rate

SAMPLER = """
window.__samples = [];
setInterval(() => {
  const bodies = document.querySelectorAll('#chat .message-body');
  const body = bodies[bodies.length - 1];
  const videos = body ? body.querySelectorAll('video') : [];
  const v = videos[0];
  window.__samples.push([performance.now(), videos.length, v ? v.currentTime : null,
    v ? (v.paused || v.ended) : null, v ? v.src : null,
    Math.max(0, ...Array.from(document.querySelectorAll('#chat .message-body'),
      b => b.querySelectorAll('video').length))]);
}, 10);
"""


@pytest.fixture(scope="module")
def rendered(settings) -> tuple[list[ChunkVideo], Path]:
    """A three-chunk reply rendered by the real pipeline: its chunk videos and the whole MP4."""
    chunks: list[ChunkVideo] = []
    result = Pipeline(settings).render(RenderRequest(text=REPLY), on_chunk=chunks.append)
    assert len(chunks) == 3
    return chunks, result.path


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """TGWUI's web root: pages at /NAME.html, files under /file/ (relative to its working directory)."""
    monkeypatch.chdir(tmp_path)
    (FOLDER / "chunks").mkdir(parents=True)

    class Handler(SimpleHTTPRequestHandler):
        """Static files with byte ranges, as gradio's `file=` route serves them (seeking needs them)."""

        def send_head(self):
            span = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            path = Path(self.translate_path(self.path))
            if not span or not path.is_file():
                return super().send_head()
            data = path.read_bytes()
            start, end = int(span[1]), min(int(span[2] or len(data) - 1), len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Type", self.guess_type(str(path)))
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            return io.BytesIO(data[start : end + 1])

        def translate_path(self, path: str) -> str:
            path = path.split("?")[0]
            return super().translate_path(path.removeprefix("/file") if path.startswith("/file/") else path)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("profile"), "--autoplay-policy=no-user-gesture-required")
    try:
        yield driver
    finally:
        driver.quit()


def open_chat(browser, site, visible: list[list[str]], mode: str = "chat", name: str = "chat") -> None:
    url, root = site
    (root / f"{name}.html").write_text(page(player_script(FOLDER), visible, mode), encoding="utf-8")
    (root / "blank.html").write_text("<!doctype html><title>blank</title>", encoding="utf-8")
    browser.get(f"{url}/blank.html")
    browser.execute_script("localStorage.clear();")  # nothing played yet
    browser.get(f"{url}/{name}.html")
    browser.execute_script(SAMPLER)


def update(browser, visible: list[list[str]], mode: str, last_message_only: bool = True) -> None:
    """One of TGWUI's display updates (`handleMorphdomUpdate`)."""
    browser.execute_script("handleMorphdomUpdate(arguments[0])", chat_html(visible, mode, last_message_only))


def generating(browser, on: bool) -> None:
    browser.execute_script(f"document.getElementById('stop').style.display = '{'' if on else 'none'}'")


def announce(live: LiveManifest, chunk: ChunkVideo) -> None:
    """What the extension does on a chunk_ready event: copy the chunk, then list it."""
    path = live.chunk_path(chunk.key)
    shutil.copyfile(chunk.path, path)
    live.add_chunk(chunk.describe(), path)


def now_ms(browser) -> float:
    return browser.execute_script("return performance.now()")


def samples(browser) -> list[list]:
    return browser.execute_script("return window.__samples")


def wait(browser, predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = browser.execute_script(predicate)
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stream(
    browser, live: LiveManifest, chunks: list[ChunkVideo], visible, mode: str, prefix: str = ""
) -> float:
    """TGWUI streams the reply into the last message; each sentence's chunk is listed once the
    sentence is complete in the stream. Returns when (page clock) the first sentence was complete."""
    words = REPLY.split(" ")
    first_complete = None
    listed = 0
    for i in range(1, len(words) + 1):
        text = " ".join(words[:i])
        visible[-1][1] = prefix + html.escape(text)
        update(browser, visible, mode)
        complete = sum(1 for n in range(1, 4) if text.startswith(" ".join(SENTENCES[:n])))
        while listed < min(complete, len(chunks)):
            if listed == 0:
                first_complete = now_ms(browser)
            announce(live, chunks[listed])
            listed += 1
        time.sleep(1 / WORDS_PER_S)
    return first_complete


def finish(browser, live: LiveManifest, whole: Path, visible, mode: str, ident: str) -> str:
    """output_modifier: the whole MP4 ends the manifest; TGWUI shows the final HTML."""
    final = FOLDER / "whole.mp4"
    shutil.copyfile(whole, final)
    live.finish(file_url(final))
    block = markup.video(file_url(final), autoplay=True, mode="lab", reason="why", element_id=ident)
    visible[-1][1] = markup.compose(html.escape(REPLY), block)
    update(browser, visible, mode)
    generating(browser, False)
    return file_url(final)


def measure(rows: list[list], start_ms: float, total_s: float) -> dict:
    """First frame, longest stall while playing, videos per message, from the page's samples."""
    playing = [r for r in rows if r[2] is not None and r[2] > 0.02]
    first = playing[0][0]
    stall, since, last_t = 0.0, None, None
    for wall, _count, t, _paused, _src, _most in playing:
        if t >= total_s - 0.05:
            break
        if last_t is not None and t <= last_t + 1e-4:
            since = since or wall
            stall = max(stall, (wall - since) / 1000)
        else:
            since = None
        last_t = t
    return {
        "first_frame_s": (first - start_ms) / 1000,
        "max_gap_s": stall,
        "most_videos": max(r[5] for r in rows),
    }


@pytest.mark.parametrize("mode", ["chat", "instruct"])
def test_speaks_while_the_reply_streams_and_hands_over_to_the_whole_video(rendered, site, browser, mode):
    chunks, whole = rendered
    total = sum(c.duration_s for c in chunks)
    visible = [["", "Hi, I'm Ara."], [html.escape(USER), ""]]
    open_chat(browser, site, visible[:1], mode)
    generating(browser, True)
    update(browser, visible, mode, last_message_only=False)  # chatbot_wrapper's first yield: the whole chat
    live = LiveManifest(FOLDER, JOB + mode, position="before")
    first_complete = stream(browser, live, chunks, visible, mode)
    state = browser.execute_script(
        "const v = document.querySelector('#chat .message-body:last-of-type video, .ara-live video');"
        "return v && {time: v.currentTime, paused: v.paused};"
    )
    assert state and state["time"] > 0 and not state["paused"]  # speaking while the text streamed
    assert not (FOLDER / "whole.mp4").exists()
    ident = element_id(JOB + mode)
    src = finish(browser, live, whole, visible, mode, ident)
    handover = wait(browser, "return window.__araHandover", 20, "the handover to the whole MP4")
    wait(
        browser,
        f"const v = document.querySelector('#{ident} video'); return v && v.ended",
        total + 10,
        "the end",
    )
    figures = measure(samples(browser), first_complete, total)
    print(
        f"\n{mode}: first frame {figures['first_frame_s']:.3f} s after sentence 1, longest gap "
        f"{figures['max_gap_s']:.3f} s, handover {handover['whole'] - handover['live']:+.3f} s"
    )
    assert figures["first_frame_s"] <= 1.0
    assert figures["max_gap_s"] <= 0.3
    assert figures["most_videos"] == 1  # never two videos in a message
    assert abs(handover["whole"] - handover["live"]) <= 0.1 and handover["live"] > 0.3  # no restart
    end = browser.execute_script(
        f"const box = document.getElementById('{ident}'); const v = box.querySelector('video');"
        "return {src: v.getAttribute('src'), videos: document.querySelectorAll('#chat video').length,"
        " badge: box.querySelector('.ara-avatar-badge')?.textContent,"
        " first: box.parentNode.firstElementChild === box, time: v.currentTime};"
    )
    assert end["src"] == src and end["videos"] == 1 and end["badge"] == "lab" and end["first"]
    assert end["time"] == pytest.approx(total, abs=0.25)  # played through to the end
    update(browser, visible, mode, last_message_only=False)  # a later redraw changes nothing
    assert browser.execute_script("return document.querySelectorAll('#chat video').length") == 1


def test_continue_keeps_one_video_and_regenerate_drops_the_old_player(rendered, site, browser):
    chunks, whole = rendered
    shutil.copyfile(whole, FOLDER / "old.mp4")
    old = markup.video(file_url(FOLDER / "old.mp4"), autoplay=False, element_id=element_id("old"))
    before = markup.compose("Earlier.", old)
    visible = [[html.escape(USER), before]]
    open_chat(browser, site, visible)
    generating(browser, True)
    live = LiveManifest(FOLDER, JOB + "c", position="before")
    stream(browser, live, chunks[:2], visible, "chat", prefix=before + " ")  # Continue: old reply + new text
    wait(
        browser, "return document.querySelector('.ara-live video')?.currentTime > 0.2", 10, "the live player"
    )
    # Regenerate: a new reply's manifest replaces this one before it was finished.
    regen = LiveManifest(FOLDER, JOB + "r", position="before")
    visible[-1][1] = ""
    update(browser, visible, "chat")
    announce(regen, chunks[0])
    wait(browser, f"return document.getElementById('{element_id(JOB + 'r')}')", 10, "the new reply's player")
    time.sleep(0.3)
    regen.finish(None, cancelled=True)  # ... and was stopped without a video
    wait(browser, "return !document.querySelector('#chat video')", 10, "the cancelled player to go")
    assert max(r[5] for r in samples(browser)) == 1


def test_a_fresh_video_autoplays_once_and_a_reload_never_replays(rendered, site, browser):
    _, whole = rendered
    shutil.copyfile(whole, FOLDER / "whole.mp4")
    block = markup.video(file_url(FOLDER / "whole.mp4"), autoplay=True, element_id=element_id("fresh"))
    visible = [[html.escape(USER), markup.compose("Hello.", block)]]
    open_chat(browser, site, visible, name="fresh")
    wait(browser, "return document.querySelector('#chat video').currentTime > 0.2", 10, "autoplay")
    browser.refresh()
    time.sleep(2.0)
    assert browser.execute_script(
        "const v = document.querySelector('#chat video'); return v.paused && v.currentTime == 0"
    )


def test_without_media_source_the_chunks_play_in_turn(rendered, site, browser):
    chunks, whole = rendered
    live = LiveManifest(FOLDER, JOB + "0", position="after")
    open_chat(browser, site, [[html.escape(USER), "This is my first part."]])
    browser.execute_script("window.MediaSource = undefined;")  # before the player's first poll ends
    generating(browser, True)
    announce(live, chunks[0])
    src = "return document.querySelector('.ara-live video')?.getAttribute('src')"
    assert wait(browser, src, 20, "chunk 1").endswith(f"{chunks[0].key}.mp4")
    assert browser.execute_script(
        "return document.querySelector('.assistant-message .message-body, .message:last-child .message-body')"
        ".lastElementChild.id"
    ) == (element_id(JOB + "0"))  # after the text
    for chunk in chunks[1:]:
        announce(live, chunk)
    wait(
        browser,
        src.replace("return", "return (") + f" || '').endsWith('{chunks[-1].key}.mp4')",
        30,
        "the last",
    )
    shutil.copyfile(whole, FOLDER / "whole.mp4")
    live.finish(file_url(FOLDER / "whole.mp4"))
    wait(
        browser,
        "return document.querySelector('.ara-live video').getAttribute('src').endsWith('whole.mp4')",
        30,
        "whole",
    )
