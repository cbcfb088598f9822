"""The cluster's shared cache (cluster/cache.py) on a real Redis and a shared folder (or S3): two
"machines" (each its own local first level) share entries, render a key once, and eviction,
TTL, verify and clear act on the whole cluster."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cluster_helpers import cluster_env, redis_server

from ara_sidecar.cache import CacheStore, cache_key, open_cache
from ara_sidecar.config import load_settings


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["folder", "s3"])
def machines(redis_url, tmp_path, request, monkeypatch):
    """Two shared stores on one Redis namespace and one store (a folder, or an S3 bucket: moto's
    in-process S3), each with its own local level."""
    import redis

    store = str(tmp_path / "shared")
    if request.param == "s3":
        moto = pytest.importorskip("moto", reason="moto (the dev extra) plays S3 for these tests")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.setenv(name, "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mock = moto.mock_aws()
        mock.start()
        request.addfinalizer(mock.stop)
        import boto3

        boto3.client("s3").create_bucket(Bucket="ara-test")
        store = "s3://ara-test/cache"
    namespace = f"t{abs(hash(request.node.name)) % 10**8}"
    env = {**cluster_env(redis_url, store, namespace), "ARA_CACHE_MAX_MB": "0.01"}

    def machine(name: str, **extra: str):
        settings = load_settings({**env, "ARA_CACHE_DIR": str(tmp_path / name), **extra})
        return open_cache(settings)

    yield machine
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)


def test_one_machine_reads_what_another_made_once(machines):
    a, b = machines("a"), machines("b")
    assert not isinstance(a, CacheStore) and a.root == b.root
    key = cache_key({"t": "shared", "i": 1})
    made = []

    def produce(path: Path) -> None:
        made.append(1)
        path.write_bytes(b"video" * 100)

    entry = a.get_or_create(key, ".mp4", produce)
    assert not entry.hit and entry.path.read_bytes() == b"video" * 100
    hit = b.get_or_create(key, ".mp4", produce)
    assert hit.hit and hit.path != entry.path and hit.path.read_bytes() == b"video" * 100  # b's own copy
    assert made == [1]
    with b.reading(key) as pinned:
        assert pinned is not None and pinned.path == hit.path
    assert b.get_bytes(key) == b"video" * 100
    stats = b.stats()
    assert stats["shared"] and stats["entries"] == 1 and stats["hits"] >= 2
    assert stats["by_kind"]["video"]["bytes"] == 500 and stats["oldest"] == stats["newest"]
    assert [row[0] for row in a.entries("video")] == [key] and a.entries("avatar") == []


def test_identical_requests_on_two_machines_produce_once(machines):
    stores = [machines("a"), machines("b")]
    key = cache_key({"t": "concurrent", "i": 2})
    made = []
    start = threading.Barrier(8)

    def produce(path: Path) -> None:
        made.append(1)
        path.write_bytes(b"x" * 1000)

    def ask(i: int) -> None:
        start.wait()
        stores[i % 2].get_or_create(key, ".mp4", produce)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert made == [1]


def test_eviction_and_clear_are_cluster_wide(machines):
    a, b = machines("a"), machines("b")  # cache.max_mb 0.01: about 10 KB in all
    keys = [cache_key({"t": "evict", "i": i}) for i in range(3)]
    for key in keys[:2]:
        a.get_or_create(key, ".bin", lambda p: p.write_bytes(b"y" * 4000))
    assert b.get(keys[1]) is not None  # b's access makes keys[0] the least recently used
    b.get_or_create(keys[2], ".bin", lambda p: p.write_bytes(b"z" * 4000))  # 12 KB: one must go
    assert a.get(keys[0]) is None and a.get(keys[1]) is not None and a.get(keys[2]) is not None
    assert b.clear() == 2
    assert a.get(keys[1]) is None and b.get(keys[2]) is None
    stats = a.stats()
    assert stats["entries"] == 0 and stats["bytes"] == 0 and stats["by_kind"] == {}


def test_ttl_expires_entries_everywhere(machines):
    a = machines("a", ARA_CACHE_TTL_HOURS="1")
    b = machines("b", ARA_CACHE_TTL_HOURS="1")
    key = cache_key({"t": "ttl", "i": 3})
    a.get_or_create(key, ".bin", lambda p: p.write_bytes(b"t" * 10))
    assert b.get(key) is not None
    b._clock = lambda: __import__("time").time() + 7200
    assert b.get(key) is None and a.get(key) is None
    again = cache_key({"t": "ttl", "i": 4})
    a.get_or_create(again, ".bin", lambda p: p.write_bytes(b"u" * 10))
    a._clock = b._clock  # expired, then made again under its lock: counted once
    a.get_or_create(again, ".bin", lambda p: p.write_bytes(b"u" * 10))
    assert b.stats()["by_kind"]["video"]["entries"] == 1 and b.stats()["bytes"] == 10


def test_verify_drops_corrupt_and_missing_shared_files_and_orphans(machines):
    a = machines("a")
    keys = [cache_key({"t": "verify", "i": i}) for i in range(3)]
    for key in keys:
        a.get_or_create(key, ".bin", lambda p: p.write_bytes(b"v" * 100))
    other = a.local.root / "other.bin"
    other.write_bytes(b"w" * 100)
    a.blobs.put(f"{keys[0][:2]}/{keys[0]}.bin", other)  # same size, other content
    a.blobs.delete(f"{keys[1][:2]}/{keys[1]}.bin")
    orphan = f"ab/{'ab' + '0' * 62}.bin"
    a.blobs.put(orphan, other)
    report = machines("b").verify()
    assert (report["checked"], report["ok"], report["corrupt"], report["missing"], report["orphans"]) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert orphan not in {name for name, _ in a.blobs.listing()}
    assert a.get(keys[0]) is None and a.get(keys[2]) is not None
