"""Avatar and audio uploads: checked once, stored in the render cache under their content
digest (kinds "avatar-upload" and "audio-upload"), found again by that digest. An id a client
sends is only ever looked up in the cache index, never turned into a path.

Uploads are evicted with the rest of the cache (least recently used first); a render naming
an evicted upload fails with a message asking to upload it again. Clearing the cache keeps
them unless asked (`UPLOAD_KINDS`). An upload's file is the uploaded bytes, so the index's
checksum of it is its id: the list of uploads survives a restart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio

from ara_persona import discover
from ara_sidecar.audio import check_audio
from ara_sidecar.avatar import decode_avatar
from ara_sidecar.cache import cache_key
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import UserError
from ara_sidecar.personas import persona_roots
from ara_sidecar.pipeline import Pipeline

AVATAR_KIND = "avatar-upload"
AUDIO_KIND = "audio-upload"
UPLOAD_KINDS = (AVATAR_KIND, AUDIO_KIND)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")  # kept as a hint for FFmpeg
# Uploads checked at the same time (the rest wait, without holding a thread): decoding an image takes
# up to 4 bytes per pixel of limits.max_avatar_pixels (160 MB at the default) until it is scaled down.
CHECKS_AT_ONCE = 2


class Uploads:
    """The uploads of one server, in `pipeline.cache`; CPU and disk work: call from a thread."""

    def __init__(self, pipeline: Pipeline):
        assert pipeline.cache is not None
        self.pipeline = pipeline
        self.cache = pipeline.cache
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, add: Callable[[bytes, str], str], data: bytes, filename: str) -> str:
        """`add(data, filename)` (`add_avatar`, `add_audio`) in a thread, at most CHECKS_AT_ONCE at a
        time; the memory a check freed is handed back to the system afterwards."""
        if self._limiter is None:  # made on the event loop (older anyio needs one)
            self._limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)
        return await anyio.to_thread.run_sync(partial(_then_trim, add, data, filename), limiter=self._limiter)

    def add_avatar(self, data: bytes, filename: str) -> str:
        """Check an image (decodable, within the pixel limit, a face in it), store it, return its id."""
        settings = self.pipeline.settings

        def check_and_write(path: Path) -> None:
            avatar = decode_avatar(
                data,
                f"upload {filename!r}",
                max_pixels=settings.limits.max_avatar_pixels,
                max_side=settings.video_max_side,
            )
            self.pipeline.lipsync.prepare(avatar)  # raises NoFaceError
            path.write_bytes(data)

        avatar_id = hashlib.sha256(data).hexdigest()
        self.cache.get_or_create(_key(AVATAR_KIND, avatar_id), ".img", check_and_write, kind=AVATAR_KIND)
        return avatar_id

    def add_audio(self, data: bytes, filename: str) -> str:
        """Check that FFmpeg decodes the speech and that it is within the length limit (by its header,
        then decoding it frame by frame without keeping the samples, stopping at the limit); store it."""
        limit = self.pipeline.settings.limits.max_audio_s

        def check_and_write(path: Path) -> None:
            path.write_bytes(data)
            check_audio(path, limit, name=repr(filename))

        suffix = Path(filename).suffix.lower()
        audio_id = hashlib.sha256(data).hexdigest()
        self.cache.get_or_create(
            _key(AUDIO_KIND, audio_id),
            suffix if suffix in AUDIO_SUFFIXES else ".audio",
            check_and_write,
            kind=AUDIO_KIND,
        )
        return audio_id

    def avatar_path(self, avatar_id: str) -> Path:
        """The image of an uploaded or persona avatar."""
        path = self.cache.get(_key(AVATAR_KIND, avatar_id)) or self.persona_avatars().get(avatar_id)
        if path is None:
            raise UserError(
                f"unknown avatar_id {avatar_id}: upload the image with POST /v1/avatars "
                "(GET /v1/avatars lists the known ones)"
            )
        return path

    def audio_path(self, audio_id: str) -> Path:
        path = self.cache.get(_key(AUDIO_KIND, audio_id))
        if path is None:
            raise UserError(f"unknown audio_id {audio_id}: upload the speech with POST /v1/audio")
        return path

    def persona_avatars(self) -> dict[str, Path]:
        """avatar_id → avatar.png of every persona that has one."""
        found = {}
        for folder in discover(*persona_roots(self.pipeline.settings)).values():
            path = folder / "avatar.png"
            if path.is_file():
                found[file_digest(path)] = path
        return found

    def avatars(self) -> list[dict]:
        """The personas' avatars, then the stored uploads, oldest first."""
        listed = [
            {"avatar_id": avatar_id, "persona": path.parent.name}
            for avatar_id, path in self.persona_avatars().items()
        ]
        for key, sha256, created in self.cache.entries(AVATAR_KIND):
            if key == _key(AVATAR_KIND, sha256):  # the file is the upload: its checksum is its id
                listed.append({"avatar_id": sha256, "uploaded": created})
        return listed


def _then_trim(add: Callable[[bytes, str], str], data: bytes, filename: str) -> str:
    try:
        return add(data, filename)
    finally:
        trim_heap()


def trim_heap() -> None:
    """Return freed heap memory to the system (glibc only). glibc keeps the large blocks a decoded
    image was made of in its per-thread arenas after they are freed: without this, a burst of big
    uploads leaves the server hundreds of MB larger for good."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _find_malloc_trim()
    if _malloc_trim:
        _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return False


_malloc_trim: Callable[[int], int] | bool | None = None


def _key(kind: str, digest: str) -> str:
    return cache_key({"kind": kind, "digest": digest})
