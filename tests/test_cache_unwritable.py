"""A cache that cannot be written — its disk full, its folder read-only — still serves what it
holds: a hit skips its bookkeeping (access time, hit count, pin), a new entry, a clear or an
upload is refused with CacheUnwritable naming the folder (HTTP 507), and no pin is left behind.

The faults are injected the portable way (the tests run as root, for whom permissions do not
apply): the index connection's writes fail with SQLite's own errors ("database or disk is full",
SQLITE_FULL; "attempt to write a readonly database", SQLITE_READONLY), and creating, renaming or
deleting a file under the cache fails with the errno the kernel gives (ENOSPC, EROFS). One test
also mounts the cache read-only for real where that is allowed (Linux, root)."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ara_sidecar.cache import CacheStore, CacheUnwritable, cache_key
from ara_sidecar.config import project_root

SQLITE_ERRORS = {
    "full": ("database or disk is full", sqlite3.SQLITE_FULL, "SQLITE_FULL"),
    "read-only": ("attempt to write a readonly database", sqlite3.SQLITE_READONLY, "SQLITE_READONLY"),
}
FILE_ERRNOS = {"full": errno.ENOSPC, "read-only": errno.EROFS}
MESSAGES = {"full": "cache disk full at {root}", "read-only": "the cache folder {root} is read-only"}
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def key(name: str) -> str:
    return cache_key({"test": name})


def writer(data: bytes):
    return lambda path: path.write_bytes(data)


@dataclass
class Faults:
    """What fails while `problem` is set: index writes, and file changes under `root`."""

    root: Path
    problem: str | None = None

    def sqlite_error(self) -> sqlite3.OperationalError:
        message, code, name = SQLITE_ERRORS[self.problem]
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorcode, exc.sqlite_errorname = code, name  # as SQLite sets them
        return exc

    def check_path(self, path) -> None:
        if self.problem is None or not isinstance(path, (str, bytes, os.PathLike)):
            return
        if os.path.abspath(os.fsdecode(path)).startswith(str(self.root)):
            code = FILE_ERRNOS[self.problem]
            raise OSError(code, os.strerror(code), os.fsdecode(path))


class FaultyIndex:
    """An index connection whose writes fail while its `Faults` say so."""

    def __init__(self, conn: sqlite3.Connection, faults: Faults):
        self._conn, self._faults = conn, faults

    def execute(self, sql: str, *args):
        if self._faults.problem and sql.lstrip().upper().startswith(WRITES):
            raise self._faults.sqlite_error()
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args):
        if self._faults.problem and sql.lstrip().upper().startswith(WRITES):
            raise self._faults.sqlite_error()
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


@pytest.fixture
def faults(tmp_path, monkeypatch) -> Faults:
    faults = Faults(tmp_path.resolve())
    real_conn = CacheStore._conn
    monkeypatch.setattr(CacheStore, "_conn", lambda self: FaultyIndex(real_conn(self), faults))
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            faults.check_path(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    for name in ("mkdir", "unlink", "remove", "rmdir", "replace", "rename"):
        real = getattr(os, name)

        def failing(path, *args, _real=real, **kwargs):
            faults.check_path(path)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, failing)
    return faults


@pytest.fixture
def store(tmp_path) -> CacheStore:
    store = CacheStore(tmp_path / "cache", max_bytes=10**7)
    store.get_or_create(key("video"), ".mp4", writer(b"video"))
    store.get_or_create_bytes(key("bytes"), lambda: b"analysis")
    return store


PROBLEMS = ["full", "read-only"]


# -- the store --------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS)
def test_hits_are_served_when_their_bookkeeping_cannot_be_written(store, faults, problem):
    faults.problem = problem
    path = store.get(key("video"))
    assert path is not None and path.read_bytes() == b"video"
    assert store.get_or_create(key("video"), ".mp4", writer(b"other")) == (path, True)
    with store.reading(key("video")) as entry:
        assert entry.path == path and entry.hit
    assert store.get_bytes(key("bytes")) == b"analysis"
    assert store.get_or_create_bytes(key("bytes"), lambda: b"other") == b"analysis"
    faults.problem = None
    stats = store.stats()
    assert stats["hits"] == 0 and stats["pinned"] == 0 and stats["entries"] == 2


@pytest.mark.parametrize("problem", PROBLEMS)
def test_a_new_entry_is_refused_with_an_error_naming_the_folder(store, faults, problem):
    faults.problem = problem
    with pytest.raises(CacheUnwritable, match=MESSAGES[problem].format(root=store.root)):
        store.get_or_create(key("new"), ".mp4", writer(b"new"))
    with pytest.raises(CacheUnwritable, match=MESSAGES[problem].format(root=store.root)):
        store.get_or_create_bytes(key("new bytes"), lambda: b"new")
    faults.problem = None
    assert store.get(key("new")) is None and store.stats()["entries"] == 2
    assert store.get_or_create(key("new"), ".mp4", writer(b"new")).hit is False  # usable again


@pytest.mark.parametrize("problem", PROBLEMS)
def test_clear_and_verify_are_refused_with_an_error_naming_the_folder(store, faults, problem):
    faults.problem = problem
    for call in (store.clear, store.verify, lambda: store.release_pins(1)):
        with pytest.raises(CacheUnwritable, match=MESSAGES[problem].format(root=store.root)):
            call()
    faults.problem = None
    assert store.stats()["entries"] == 2


def test_a_pin_whose_release_cannot_be_written_is_released_later(store, faults):
    """As in the render worker: a chunk is pinned, the next one cannot be stored (disk full), and
    releasing the first pin cannot be written either: the reader gets the disk-full error (not
    the failed release's), and the pin goes with the store's next write."""
    with pytest.raises(CacheUnwritable, match="cache disk full"), store.reading(key("video")) as first:
        assert first is not None and store.stats()["pinned"] == 1
        faults.problem = "full"
        with store.reading(key("next"), writer(b"next"), suffix=".mp4"):
            pass
    faults.problem = None
    assert store.stats()["pinned"] == 1  # its release is pending
    store.get_or_create(key("later"), ".mp4", writer(b"later"))
    assert store.stats()["pinned"] == 0


def test_a_read_only_cache_opens_for_reading(store, faults):
    path = store.get(key("video"))
    faults.problem = "read-only"
    reader = CacheStore(store.root, max_bytes=10**7)  # a server started on the read-only cache
    assert reader.read_only and reader.stats()["read_only"] and reader.stats()["entries"] == 2
    assert reader.get(key("video")) == path
    with reader.reading(key("video")) as entry:
        assert entry.path == path
    assert reader.get_bytes(key("bytes")) == b"analysis"
    message = f"the cache folder {store.root} is read-only"
    with pytest.raises(CacheUnwritable, match=message):
        reader.get_or_create(key("new"), ".mp4", writer(b"new"))
    with pytest.raises(CacheUnwritable, match=message):
        reader.clear()


@pytest.fixture
def read_only_mount(tmp_path):
    """`tmp_path/cache` bind-mounted read-only over itself (Linux, root); skipped elsewhere."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root on Linux")
    folder = tmp_path / "cache"
    folder.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


FILL = """
import sys
from ara_sidecar.cache import CacheStore, cache_key
store = CacheStore(sys.argv[1], max_bytes=10**7)
print(store.get_or_create(cache_key({"test": "video"}), ".mp4", lambda p: p.write_bytes(b"video")).path)
"""


def test_a_really_read_only_mounted_cache_opens_for_reading(read_only_mount):
    # another process fills it and exits: SQLite checkpoints its WAL and removes the WAL files
    filled = subprocess.run(
        [sys.executable, "-c", FILL, str(read_only_mount)], capture_output=True, text=True
    )
    path = Path(filled.stdout.strip())
    assert path.is_file(), filled.stderr
    subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only_mount)], check=True)
    store = CacheStore(read_only_mount, max_bytes=10**7)
    assert store.read_only and store.get(key("video")) == path
    with store.reading(key("video")) as entry:
        assert entry.path.read_bytes() == b"video"
    with pytest.raises(CacheUnwritable, match=f"the cache folder {read_only_mount} is read-only"):
        store.get_or_create(key("new"), ".mp4", writer(b"new"))


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture
def svc(settings, tmp_path):
    from ara_sidecar.server.app import create_app

    shutil.copytree(project_root() / "personas" / "ara", tmp_path / "personas" / "ara")
    cfg = settings.with_overrides(
        user_personas_dir=str(tmp_path / "personas"), **{"cache.dir": str(tmp_path / "cache")}
    )
    return create_app(cfg)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_the_server_serves_hits_and_refuses_writes_with_507(svc, faults, problem, astronaut_png):
    import asyncio

    from ara_sidecar.server.planning import _plan
    from ara_sidecar.server.schemas import RenderBody

    service = svc.state.service
    body = {"text": "Served from a cache that cannot be written."}
    video_key = _plan(service, RenderBody(**body))[0]
    service.jobs._results[video_key] = {  # as the worker left it
        "key": video_key,
        "duration_s": 1.0,
        "mode": "cockpit",
        "persona": "ara",
        "cached": False,
        "timings": {},
        "chunks": [],
    }
    service.pipeline.cache.get_or_create(video_key, ".mp4", writer(b"video"))
    root = service.pipeline.cache.root

    async def requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(svc)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7870") as client:
            faults.problem = problem
            return [
                await client.post("/v1/render", json=body),
                await client.get(f"/v1/videos/{video_key}.mp4"),
                await client.get(f"/v1/videos/{video_key}.mp4", headers={"Range": "bytes=1-2"}),
                await client.delete("/v1/cache"),
                await client.post(
                    "/v1/avatars", files={"file": ("me.png", astronaut_png.read_bytes(), "image/png")}
                ),
                await client.get("/v1/cache/stats"),
            ]

    render, video, part, clear, upload, stats = asyncio.run(requests())
    assert render.status_code == 200 and render.json()["cached"] is True, render.text
    assert video.status_code == 200 and video.content == b"video"
    assert part.status_code == 206 and part.content == b"id"
    for refused in (clear, upload):
        assert refused.status_code == 507, refused.text
        # the folder is named (over HTTP maybe by its last component only: no server paths)
        before, after = MESSAGES[problem].split("{root}")
        error = refused.json()["error"]
        assert before in error and after in error and f"{root.name} " in error, error
    assert stats.status_code == 200 and stats.json()["entries"] == 1
    faults.problem = None
    assert service.pipeline.cache.stats()["pinned"] == 0


def test_the_worker_answers_a_cached_render_and_refuses_a_new_one_as_storage(settings, tmp_path, faults):
    from ara_sidecar.pipeline import Pipeline, RenderRequest
    from ara_sidecar.server.routes.render import FAILURE_STATUS
    from ara_sidecar.server.worker import Job, render_job

    class Pipe:
        def send(self, message) -> None:
            pass

    class Cancel:
        value = -1

    pipeline = Pipeline(settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")}))
    pipeline.load()
    first = render_job(pipeline, Job(1, RenderRequest(text="Cached once.")), Pipe(), Cancel())
    assert first[0] == "done", first
    faults.problem = "full"
    again = render_job(pipeline, Job(2, RenderRequest(text="Cached once.")), Pipe(), Cancel())
    assert again[0] == "done" and again[2]["cached"] is True, again
    new = render_job(pipeline, Job(3, RenderRequest(text="Never stored.")), Pipe(), Cancel())
    assert new[0] == "failed" and new[3] == "storage" and FAILURE_STATUS[new[3]] == 507
    assert f"cache disk full at {pipeline.cache.root}" in new[2]
    faults.problem = None
    pipeline.cache.get_or_create(key("after"), ".bin", writer(b"x"))
    assert pipeline.cache.stats()["pinned"] == 0
