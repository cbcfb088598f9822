"""The cache store: hits and misses, LRU and TTL eviction, pins, verification, disk-full errors,
and safety across threads and processes (coalesced renders, a writer killed mid-write)."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ara_sidecar.cache import CacheStore, cache_key
from ara_sidecar.errors import UserError

SPAWN = multiprocessing.get_context("spawn")


class Clock:
    """A settable time source."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(name: str) -> str:
    return cache_key({"name": name})


def content(k: str, size: int = 256_000) -> bytes:
    """Deterministic bytes for a key."""
    block = hashlib.sha256(k.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def writer(data: bytes):
    def produce(path: Path) -> None:
        path.write_bytes(data)

    return produce


def put(store: CacheStore, k: str, size: int = 1000) -> Path:
    path, hit = store.get_or_create(k, ".bin", writer(content(k, size)), kind="test")
    assert not hit
    return path


def present(store: CacheStore, k: str) -> bool:
    """Whether the entry's file exists, without touching its access time."""
    return any(store.root.joinpath("objects", k[:2]).glob(k + "*"))


def leftovers(store: CacheStore) -> list[str]:
    """Temporary and lock files: none should outlive a render."""
    temps = [p.name for p in store.root.joinpath("objects").glob("*/.tmp-*")]
    return temps + [p.name for p in store.root.joinpath("locks").iterdir()]


def assert_consistent(store: CacheStore) -> None:
    report = store.verify()
    assert report["ok"] == report["checked"] == store.stats()["entries"], report
    assert not any(report[name] for name in ("missing", "corrupt", "orphans", "temps", "locks")), report


# -- hits and misses -------------------------------------------------------------------------------


def test_miss_produces_once_then_hits(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    k, calls = key("a"), []

    def produce(path: Path) -> None:
        calls.append(path)
        path.write_bytes(b"video")

    assert store.get(k) is None
    path, hit = store.get_or_create(k, ".mp4", produce)
    assert (hit, path.read_bytes(), path.name) == (False, b"video", k + ".mp4")
    assert calls[0].parent == path.parent and calls[0] != path  # written beside, then renamed
    assert store.get_or_create(k, ".mp4", produce) == (path, True)
    assert store.get(k) == path
    assert len(calls) == 1
    stats = store.stats()
    assert (stats["entries"], stats["bytes"], stats["hits"]) == (1, 5, 2)
    assert stats["by_kind"] == {"video": {"entries": 1, "bytes": 5, "hits": 2}}
    assert leftovers(store) == []
    assert_consistent(store)


def test_a_second_store_on_the_same_directory_sees_the_entries(tmp_path):
    path = put(CacheStore(tmp_path, max_bytes=10**7), key("a"))
    assert CacheStore(tmp_path, max_bytes=10**7).get(key("a")) == path


def test_produce_failure_leaves_nothing_and_propagates(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)

    def produce(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        store.get_or_create(key("a"), ".mp4", produce)
    assert store.get(key("a")) is None
    assert store.stats()["entries"] == 0
    assert leftovers(store) == []
    assert not present(store, key("a"))
    assert not store.get_or_create(key("a"), ".mp4", writer(b"ok")).hit


@pytest.mark.parametrize("bad", ["", "x" * 64, "../" + "0" * 61, "0" * 64 + "/", "A" * 64])
def test_only_digests_are_accepted_as_keys(tmp_path, bad):
    store = CacheStore(tmp_path, max_bytes=10**7)
    with pytest.raises(ValueError, match="not a cache key"):
        store.get(bad)
    with pytest.raises(ValueError, match="not a cache key"):
        store.get_or_create(bad, ".mp4", writer(b""))


@pytest.mark.parametrize("suffix", ["mp4", "/x", ".mp4/..", "." + "a" * 17])
def test_bad_suffixes_are_rejected(tmp_path, suffix):
    with pytest.raises(ValueError, match="suffix"):
        CacheStore(tmp_path, max_bytes=10**7).get_or_create(key("a"), suffix, writer(b""))


def test_bytes_entries(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    calls = []

    def produce() -> bytes:
        calls.append(1)
        return b"analysis"

    assert store.get_bytes(key("a")) is None
    assert store.get_or_create_bytes(key("a"), produce, suffix=".pkl", kind="avatar") == b"analysis"
    assert store.get_or_create_bytes(key("a"), produce, suffix=".pkl", kind="avatar") == b"analysis"
    assert store.get_bytes(key("a")) == b"analysis"
    assert len(calls) == 1
    assert store.stats()["by_kind"]["avatar"]["entries"] == 1


def test_a_bytes_entry_with_a_bad_checksum_is_produced_again(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    path = store.get_or_create(key("a"), ".npy", writer(b"samples")).path
    path.write_bytes(b"SAMPLES")  # same size: only the checksum tells
    assert store.get_bytes(key("a")) is None
    assert store.stats()["entries"] == 0
    assert store.get_or_create_bytes(key("a"), lambda: b"samples", suffix=".npy") == b"samples"


def test_a_truncated_file_is_a_miss_and_its_entry_is_dropped(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    path = put(store, key("a"))
    with open(path, "r+b") as f:
        f.truncate(10)
    assert store.get(key("a")) is None
    assert store.stats()["entries"] == 0
    assert not path.exists()
    assert not store.get_or_create(key("a"), ".bin", writer(content(key("a"), 1000))).hit


def test_a_deleted_file_is_a_miss(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    put(store, key("a")).unlink()
    assert store.get(key("a")) is None
    assert store.stats()["entries"] == 0


# -- eviction --------------------------------------------------------------------------------------


def test_lru_eviction_keeps_the_total_within_the_limit(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=3000, clock=clock)
    a, b, c, d, e = (key(n) for n in "abcde")
    for k in (a, b, c):
        put(store, k)
        clock.now += 1
    assert store.get(a)  # a is now the most recently used; b the least
    clock.now += 1
    put(store, d)
    assert [present(store, k) for k in (a, b, c, d)] == [True, False, True, True]
    assert store.stats()["bytes"] == 3000
    clock.now += 1
    put(store, e)
    assert [present(store, k) for k in (a, c, d, e)] == [True, False, True, True]
    assert store.stats()["entries"] == 3
    assert_consistent(store)


def test_an_entry_larger_than_the_limit_is_returned_then_evicted_by_the_next_insert(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=3000, clock=clock)
    big = put(store, key("big"), size=5000)
    assert big.stat().st_size == 5000
    clock.now += 1
    put(store, key("small"))
    assert not present(store, key("big"))
    assert store.stats()["bytes"] == 1000


def test_ttl_expiry(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=10**7, ttl_s=10, clock=clock)
    a, b = key("a"), key("b")
    put(store, a)
    clock.now += 5
    put(store, b)
    clock.now += 4
    assert store.get(a) is not None  # 9 s old; hits do not extend the lifetime
    clock.now += 2
    assert store.get(a) is None
    assert not present(store, a)
    assert store.get(b) is not None
    clock.now += 10
    put(store, key("c"))  # each insert sweeps expired entries
    assert not present(store, b)
    assert store.stats()["entries"] == 1


def test_a_pinned_entry_is_not_evicted(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=3000, clock=clock)
    a, b, c = key("a"), key("b"), key("c")
    for k in (a, b, c):
        put(store, k)
        clock.now += 1
    with store.reading(a) as entry:
        assert entry.hit and entry.path.read_bytes() == content(a, 1000)
        clock.now += 1
        store.get(b), store.get(c)  # a is the least recently used
        clock.now += 1
        put(store, key("d"))
        put(store, key("e"))
        assert present(store, a) and not present(store, b) and not present(store, c)
        assert store.stats()["pinned"] == 1
        assert store.clear() == 2
        assert entry.path.read_bytes() == content(a, 1000)
    assert store.stats()["pinned"] == 0
    assert store.clear() == 1


def test_a_pin_left_by_a_dead_reader_expires(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=1000, pin_s=60, clock=clock)
    put(store, key("a"))
    pin = store.reading(key("a"))
    pin.__enter__()  # never released, as by a killed process
    clock.now += 1
    put(store, key("b"))
    assert present(store, key("a"))
    clock.now += 60
    put(store, key("c"))
    assert not present(store, key("a"))


def killed_when_ready(target, *args) -> int:
    """Run `target(*args, ready)` in a new process, SIGKILL it once it sets `ready`; its pid."""
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=target, args=(*args, ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return proc.pid


def pinning_reader(root: str, k: str, ready) -> None:
    with CacheStore(Path(root), max_bytes=10**7).reading(k):
        ready.set()
        time.sleep(60)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_pins_of_a_killed_reader_can_be_released_at_once(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    a, b = key("a"), key("b")
    put(store, a), put(store, b)
    pid = killed_when_ready(pinning_reader, str(tmp_path), a)
    with store.reading(b):  # a live reader's pin: not the dead one's
        assert store.clear() == 0 and store.stats()["pinned"] == 2
        assert store.release_pins(pid) == 1
        assert store.release_pins(pid) == 0
        assert store.clear() == 1 and not present(store, a) and present(store, b)


def test_reading_creates_on_a_miss_and_yields_none_without_produce(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    with store.reading(key("a")) as entry:
        assert entry is None
    with store.reading(key("a"), writer(b"x"), suffix=".mp4") as entry:
        assert not entry.hit and entry.path.read_bytes() == b"x"
        assert store.stats()["pinned"] == 1
    with store.reading(key("a")) as entry:
        assert entry.hit
    assert store.stats()["pinned"] == 0


# -- verify and clear ------------------------------------------------------------------------------


def test_verify_drops_corrupt_and_missing_entries_and_stray_files(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    good, corrupt, missing = key("good"), key("corrupt"), key("missing")
    for k in (good, corrupt, missing):
        put(store, k)
    path = store.get(corrupt)
    path.write_bytes(b"X" + path.read_bytes()[1:])  # same size: only the checksum tells
    assert store.get(corrupt) == path  # the hot path checks the size only
    store.get(missing).unlink()
    orphan = tmp_path / "objects" / key("orphan")[:2] / (key("orphan") + ".mp4")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"from a render killed between rename and index")
    temp = tmp_path / "objects" / good[:2] / f".tmp-{good}-abc.bin"
    temp.write_bytes(b"half")
    (tmp_path / "locks" / f"{key('killed')}.lock").touch()

    report = store.verify()
    assert report == {
        "checked": 3,
        "ok": 1,
        "missing": 1,
        "corrupt": 1,
        "orphans": 1,
        "temps": 1,
        "locks": 1,
    }
    assert store.get(corrupt) is None and not path.exists()
    assert not orphan.exists() and not temp.exists()
    assert store.get(good) is not None
    assert leftovers(store) == []
    assert_consistent(store)


def test_verify_spares_the_temporary_file_of_a_render_in_progress(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    reports = []

    def produce(path: Path) -> None:
        path.write_bytes(b"partial")
        reports.append(store.verify())
        path.write_bytes(b"complete")

    assert store.get_or_create(key("a"), ".bin", produce).path.read_bytes() == b"complete"
    assert reports[0]["temps"] == reports[0]["locks"] == 0


def test_entries_lists_a_kind_oldest_first_without_the_expired(tmp_path):
    clock = Clock()
    store = CacheStore(tmp_path, max_bytes=10**7, ttl_s=100, clock=clock)
    a, b, c = key("a"), key("b"), key("c")
    for k, kind in ((a, "upload"), (b, "video"), (c, "upload")):
        store.get_or_create(k, ".bin", writer(content(k, 10)), kind=kind)
        clock.now += 10
    sha = {k: hashlib.sha256(content(k, 10)).hexdigest() for k in (a, c)}
    assert [(k, s) for k, s, _ in store.entries("upload")] == [(a, sha[a]), (c, sha[c])]
    clock.now += 75  # a is now 105 s old, over the TTL; c 85 s
    assert [k for k, _, _ in store.entries("upload")] == [c]


def test_clear(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    paths = [put(store, key(n)) for n in "abc"]
    assert store.clear() == 3
    assert not any(p.exists() for p in paths)
    assert store.stats()["entries"] == store.stats()["bytes"] == 0
    assert store.stats()["oldest"] is None


# -- full disk -------------------------------------------------------------------------------------


def _assert_nothing_stored(store: CacheStore, k: str) -> None:
    assert store.get(k) is None
    assert store.stats()["entries"] == 0
    assert list(store.root.joinpath("objects").glob("*/*")) == []
    assert leftovers(store) == []


def test_disk_full_in_produce_is_a_clear_error(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)

    def produce(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match=f"cache disk full at {tmp_path}: No space left on device"):
        store.get_or_create(key("a"), ".mp4", produce)
    _assert_nothing_stored(store, key("a"))


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_disk_full_while_sealing_or_renaming_is_a_clear_error(tmp_path, monkeypatch, call):
    store = CacheStore(tmp_path, max_bytes=10**7)

    def fail(*args):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(UserError, match=f"cache disk full at {tmp_path}: Disk quota exceeded"):
        store.get_or_create(key("a"), ".mp4", writer(b"video"))
    monkeypatch.undo()
    _assert_nothing_stored(store, key("a"))


def test_a_failing_index_insert_removes_the_renamed_file(tmp_path):
    store = CacheStore(tmp_path, max_bytes=10**7)
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:
        db.execute("CREATE TRIGGER fail BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        store.get_or_create(key("a"), ".mp4", writer(b"video"))
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:
        db.execute("DROP TRIGGER fail")
    _assert_nothing_stored(store, key("a"))


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (Linux, as root); skipped elsewhere."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_real_full_disk_is_a_clear_error_and_leaves_the_cache_usable(tiny_fs):
    store = CacheStore(tiny_fs / "cache", max_bytes=10**9)
    with pytest.raises(UserError, match=f"cache disk full at {tiny_fs / 'cache'}"):
        store.get_or_create(key("big"), ".mp4", writer(content(key("big"), 2_000_000)))
    _assert_nothing_stored(store, key("big"))
    assert store.get_or_create(key("small"), ".mp4", writer(b"fits")).path.read_bytes() == b"fits"


# -- concurrency -----------------------------------------------------------------------------------


def slow_producer(k: str, counts: Path):
    """Records each call in counts/<key>, then writes the key's content slowly, in two halves."""

    def produce(path: Path) -> None:
        with open(counts / k, "a") as f:
            f.write(f"{os.getpid()} {threading.get_ident()}\n")
        data = content(k)
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.3)
            f.write(data[len(data) // 2 :])

    return produce


def render_worker(root: str, keys: list[str], counts: str, barrier, results) -> None:
    store = CacheStore(Path(root), max_bytes=10**8)
    barrier.wait()
    out = []
    for k in keys:
        path, hit = store.get_or_create(k, ".bin", slow_producer(k, Path(counts)))
        out.append((k, hit, hashlib.sha256(path.read_bytes()).hexdigest()))
    results.put(out)


def test_processes_render_each_key_exactly_once(tmp_path):
    root, counts = tmp_path / "cache", tmp_path / "counts"
    counts.mkdir()
    shared = [key("shared-1"), key("shared-2")]
    n = 4
    barrier, results = SPAWN.Barrier(n), SPAWN.Queue()
    # each worker: the shared keys (in a rotating order) and one of its own
    plans = [[*shared[i % 2 :], key(f"own-{i}"), *shared[: i % 2]] for i in range(n)]
    workers = [
        SPAWN.Process(target=render_worker, args=(str(root), plan, str(counts), barrier, results))
        for plan in plans
    ]
    for w in workers:
        w.start()
    outcomes = [item for _ in workers for item in results.get(timeout=120)]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0

    keys = {k for k, _, _ in outcomes}
    assert len(keys) == n + 2
    for k in keys:
        assert len((counts / k).read_text().splitlines()) == 1, k  # produced exactly once
        mine = [(hit, digest) for kk, hit, digest in outcomes if kk == k]
        assert sorted(hit for hit, _ in mine) == [False] + [True] * (len(mine) - 1)
        assert {digest for _, digest in mine} == {hashlib.sha256(content(k)).hexdigest()}
    store = CacheStore(root, max_bytes=10**8)
    assert store.stats()["entries"] == len(keys)
    assert leftovers(store) == []
    assert_consistent(store)


def test_threads_render_a_key_once(tmp_path):
    store = CacheStore(tmp_path / "cache", max_bytes=10**8)
    counts = tmp_path / "counts"
    counts.mkdir()
    k, entries = key("a"), []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        entries.append(store.get_or_create(k, ".bin", slow_producer(k, counts)))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len((counts / k).read_text().splitlines()) == 1
    assert sorted(e.hit for e in entries) == [False] + [True] * 5
    assert {e.path.read_bytes() for e in entries} == {content(k)}
    assert_consistent(store)


def killed_writer(root: str, k: str, ready) -> None:
    def produce(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(content(k)[:100_000])
            f.flush()
            ready.set()
            time.sleep(60)

    CacheStore(Path(root), max_bytes=10**8).get_or_create(k, ".mp4", produce)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_write_leaves_nothing_that_is_served(tmp_path):
    k = key("a")
    killed_when_ready(killed_writer, str(tmp_path), k)

    store = CacheStore(tmp_path, max_bytes=10**8)
    assert store.get(k) is None
    with store.reading(k) as entry:
        assert entry is None
    assert len(list(tmp_path.glob("objects/*/.tmp-*"))) == 1  # the half-written file, never indexed
    path, hit = store.get_or_create(k, ".mp4", writer(content(k)))
    assert not hit and path.read_bytes() == content(k)
    assert leftovers(store) == []  # the killed render's temporary and lock files are gone
    assert_consistent(store)
