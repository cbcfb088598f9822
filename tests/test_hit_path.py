"""The server's hit path: a repeated request is planned on the event loop (no thread pool) when
that waits for nothing, and a changed input (avatar, modes.yaml) is never served stale."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ara_sidecar.cache.store import CacheBusy, without_waiting
from ara_sidecar.config import project_root
from ara_sidecar.digest import NotMemoized, file_digest, memoized_only
from ara_sidecar.server.app import create_app
from ara_sidecar.server.dependencies import Service
from ara_sidecar.server.planning import _plan, _plan_inline
from ara_sidecar.server.schemas import RenderBody

BODY = RenderBody(text="Hello from the hit path.", mode="cathedral")


@pytest.fixture
def svc(settings, tmp_path) -> Service:
    """A server's service (no worker) with its own cache and its own copy of the persona."""
    shutil.copytree(project_root() / "personas" / "ara", tmp_path / "personas" / "ara")
    personas = str(tmp_path / "personas")
    cfg = settings.with_overrides(user_personas_dir=personas, **{"cache.dir": str(tmp_path)})
    return create_app(cfg).state.service


def rendered(svc: Service, key: str) -> None:
    """What the worker leaves after rendering `key`: its result, and the video in the cache."""
    svc.jobs._results[key] = {"key": key, "duration_s": 1.0, "chunks": []}
    svc.pipeline.cache.get_or_create(key, ".mp4", lambda path: path.write_bytes(b"video"))


def persona_file(svc: Service, name: str) -> Path:
    return svc.settings.path(svc.settings.user_personas_dir) / "ara" / name


def test_file_digests_are_not_read_within_memoized_only(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"one")
    with pytest.raises(NotMemoized), memoized_only():
        file_digest(path)
    digest = file_digest(path)
    with memoized_only():
        assert file_digest(path) == digest
    path.write_bytes(b"other")  # a new size: a new version
    with pytest.raises(NotMemoized), memoized_only():
        file_digest(path)


def test_a_repeated_request_is_planned_on_the_event_loop(svc):
    assert _plan_inline(svc, BODY) is None  # the persona copy's avatar is not digested yet
    key, request, reason, chunks, cached = _plan(svc, BODY)
    assert cached is None
    assert _plan_inline(svc, BODY) == (key, request, reason, chunks, None)
    rendered(svc, key)
    cached = _plan_inline(svc, BODY)[4]
    assert cached["key"] == key and cached["cached"] is True and cached["mode"] == "cathedral"


def test_a_replaced_avatar_or_modes_file_is_not_served_stale(svc, astronaut_png):
    key = _plan(svc, BODY)[0]
    rendered(svc, key)
    assert _plan_inline(svc, BODY)[4] is not None

    shutil.copyfile(astronaut_png, persona_file(svc, "avatar.png"))
    assert _plan_inline(svc, BODY) is None  # the new avatar is digested in a thread
    new_key, *_, cached = _plan(svc, BODY)
    assert new_key != key and cached is None
    rendered(svc, new_key)

    modes = persona_file(svc, "modes.yaml")
    text = modes.read_text(encoding="utf-8")
    slower = text.replace("speed: 0.84, warmth_db: 6.0,", "speed: 0.8, warmth_db: 6.0,")  # cathedral
    assert slower != text
    modes.write_text(slower, encoding="utf-8")
    newer_key, *_, cached = _plan_inline(svc, BODY)  # digests memoized: planned on the loop
    assert newer_key not in (key, new_key) and cached is None


def test_a_busy_cache_index_sends_the_lookup_to_a_thread(svc):
    key = _plan(svc, BODY)[0]
    rendered(svc, key)
    cache = svc.pipeline.cache
    writer = sqlite3.connect(cache.root / "index.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(CacheBusy), without_waiting():
            cache.get(key)
        assert _plan_inline(svc, BODY) is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert _plan_inline(svc, BODY)[4]["key"] == key
    assert cache.stats()["hits"] == 1  # the lookup that found the index busy counted none


def test_alltalk_plans_stay_off_the_event_loop(settings, tmp_path):
    """Its plans may ask the AllTalk server for its facts (a network request)."""
    cfg = settings.with_overrides(tts="alltalk", **{"cache.dir": str(tmp_path)})
    assert create_app(cfg).state.service.plan_inline is False
