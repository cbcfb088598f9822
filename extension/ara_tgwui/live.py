"""The live manifest: what the page's progressive player (player.js) plays while a reply renders.

One JSON file, `live.json` in the extension's folder under TGWUI's cache (served by TGWUI's
`file/` route, like the videos), rewritten atomically whenever a chunk of the current reply is
ready. The chunk videos are copied next to it (`chunks/KEY.mp4`, named by their content key), so
the browser only ever talks to TGWUI: the sidecar's address and token stay on the server.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("ara_avatar")

MANIFEST = "live.json"
_BLOCK = 16384  # the manifest is padded to a multiple of this, so its size rarely changes


KEEP_CHUNKS_S = 600  # chunk copies are only for live playback (replays use the whole video)


def file_url(path: Path) -> str:
    """The `src` TGWUI's `file/` route serves `path` under."""
    return "file/" + path.as_posix()


def player_script(folder: Path) -> str:
    """The page's progressive player (player.js), told where the live manifest is served (an
    empty one is written if there is none yet, so the page's polling finds a file)."""
    try:
        if not (folder / MANIFEST).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _write_padded(folder, {"job": None, "chunks": [], "done": True})
    except OSError as exc:
        log.warning("Ara: could not write an empty %s (%s)", MANIFEST, exc)
    config = json.dumps({"manifest": file_url(folder / MANIFEST)})
    return f"window.__ARA_PLAYER__ = {config};\n" + Path(__file__).with_name("player.js").read_text("utf-8")


def element_id(job: str) -> str:
    """The HTML id shared by a reply's live player and its video block in the reply's HTML."""
    return "ara-" + "".join(ch for ch in job if ch.isalnum())[:64]


def _prune(folder: Path) -> None:
    """Delete chunk copies older than KEEP_CHUNKS_S."""
    limit = time.time() - KEEP_CHUNKS_S
    for path in folder.glob("*.mp4"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            pass  # in use or gone: next time


class LiveManifest:
    """The manifest of one reply (`job`: the id of the reply's first job, or any id unique to
    the reply). The pre-renders of the streaming reply and its final render add their chunks to
    the same manifest, in order and once each, so the page plays the reply from its first
    rendered sentence while it still streams."""

    def __init__(self, folder: Path, job: str, *, position: str):
        self.folder = folder
        self.chunks_dir = folder / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        _prune(self.chunks_dir)
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "job": job,
            "element_id": element_id(job),
            "created": time.time(),
            "position": position,
            "mime": None,
            "chunks": [],
            "final": None,
            "done": False,
            "failed": False,
            "cancelled": False,
        }
        self._write()

    def chunk_path(self, key: str) -> Path:
        return self.chunks_dir / f"{key}.mp4"

    @property
    def element_id(self) -> str:
        return str(self.data["element_id"])

    def wants(self, chunk: dict[str, Any]) -> bool:
        """Whether `chunk` (a `chunk_ready` event of any job of this reply) is the next one to list."""
        return not self.data["done"] and chunk.get("index") == len(self.data["chunks"])

    def add_chunk(self, chunk: dict[str, Any], path: Path) -> None:
        """Chunk `chunk` (a sidecar `chunk_ready` event) is saved at `path`: announce it (a chunk
        already listed, or one after a missing one, is left out)."""
        with self._lock:
            if not self.wants(chunk):
                return
            self.data["mime"] = self.data["mime"] or chunk.get("mime")
            self.data["chunks"].append(
                {
                    "index": chunk.get("index"),
                    "src": file_url(path),
                    "start_s": chunk.get("start_s", 0.0),
                    "duration_s": chunk.get("duration_s"),
                    "listed": round(time.time(), 3),
                }
            )
            self._write()

    def finish(self, final_src: str | None, *, cancelled: bool = False) -> None:
        """The reply is over: `final_src` is the whole video's `src` (None: it failed, or was
        `cancelled`: the page drops its live player)."""
        with self._lock:
            if self.data["done"]:
                return
            self.data.update(final=final_src, done=True, failed=final_src is None, cancelled=cancelled)
            self._write()

    def _write(self) -> None:
        """Replace the file atomically, padded with spaces to a multiple of 16 KiB: a web server
        that reads a file's size before opening it (TGWUI's gradio `file/` route does) announces
        the old size while sending the new file when it was replaced in between (the browser
        reported ERR_CONTENT_LENGTH_MISMATCH); with equal sizes both agree. A failure (e.g.
        Windows refusing to replace a file being read) only costs the page its progressive
        playback, never the reply its video."""
        try:
            _write_padded(self.folder, self.data)
        except OSError as exc:
            log.warning("Ara: could not update %s (%s)", MANIFEST, exc)


def _write_padded(folder: Path, data: dict[str, Any]) -> None:
    """Replace `folder/live.json` with `data`, padded to a multiple of _BLOCK bytes (atomically)."""
    text = json.dumps(data)
    text += " " * (-len(text.encode("utf-8")) % _BLOCK)
    fd, tmp = tempfile.mkstemp(prefix=".live-", suffix=".json", dir=str(folder))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, folder / MANIFEST)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
