"""The HTTP service: a real `ara-sidecar serve` subprocess on a free port, shared by the module
(with a token, a queue of 4 renders, a 2 MiB upload limit and a 60 s job timeout: short renders
must not trip it on a busy machine; the timeout test has a server of its own)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from media import wav
from server_helpers import free_port, running_server, sidecar, wait_until
from server_helpers import worker as server_worker

TOKEN = "test-token-123"
SHORT = "Hello from the server."
EVENT_ORDER = ("queued", "running", "done")


def long_text(tag: str) -> str:
    """About a minute of speech (several seconds of rendering), unique per `tag`."""
    return " ".join(f"Sentence {i} of the {tag} test keeps the worker busy for a while." for i in range(50))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    env = {"ARA_SERVER_QUEUE_SIZE": "4", "ARA_SERVER_MAX_UPLOAD_MB": "2", "ARA_SERVER_JOB_TIMEOUT_S": "60"}
    with running_server(tmp_path_factory.mktemp("server"), TOKEN, env) as base:
        yield base


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
        yield c


def worker(base: str) -> dict:
    return server_worker(base, TOKEN)


def running_job(client: httpx.Client, text: str) -> str:
    """Submit `text` and wait until its render has made progress."""
    job_id = client.post("/v1/jobs", json={"text": text}).json()["job_id"]
    wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["progress"] > 0.06, 30)
    return job_id


def video_entries(client: httpx.Client) -> int:
    return client.get("/v1/cache/stats").json()["by_kind"].get("video", {}).get("entries", 0)


def assert_error(r: httpx.Response, status: int | tuple[int, ...]) -> None:
    assert r.status_code in ((status,) if isinstance(status, int) else status), r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def png(width: int, height: int, color=(128, 128, 128)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`×`height` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# -- health and auth --------------------------------------------------------------------------


def test_token_is_required_except_for_health(server, client):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert_error(httpx.get(f"{server}/health/detailed"), 401)
    assert_error(httpx.get(f"{server}/v1/personas", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.post(f"{server}/v1/render", json={"text": SHORT}), 401)
    assert_error(httpx.get(f"{server}/v1/cache/stats", headers={"Authorization": f"Basic {TOKEN}"}), 401)
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and 'href="/docs"' in page.text
    assert "/v1/render" in httpx.get(f"{server}/openapi.json").json()["paths"]
    detailed = client.get("/health/detailed").json()
    assert detailed["status"] == "ok" and detailed["device"] == "cpu"
    assert {"tts", "voice", "lipsync", "encoder"} <= detailed["backends"].keys()
    assert all(b["ready"] and b["loaded"] for b in detailed["backends"].values())
    assert detailed["worker"]["pid"] > 0 and detailed["worker"]["uptime_s"] >= 0
    assert detailed["queue"]["size"] == 4 and "by_kind" in detailed["cache"]


# -- render and videos ------------------------------------------------------------------------


def test_render_then_download_the_video(client):
    r = client.post("/v1/render", json={"text": SHORT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["video_url"] == f"/v1/videos/{body['key']}.mp4"
    assert body["duration_s"] > 0.5 and body["mode"] == "cockpit" and body["persona"] == "ara"
    assert body["cached"] is False and body["timings"]["tts"] > 0
    video = client.get(body["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    assert video.headers["etag"] == f'"{body["key"]}"' and "immutable" in video.headers["cache-control"]
    part = client.get(body["video_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == video.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(video.content)}"
    assert client.get(body["video_url"], headers={"Range": "bytes=99999999-"}).status_code == 416
    assert client.get(body["video_url"], headers={"If-None-Match": video.headers["etag"]}).status_code == 304
    again = client.post("/v1/render", json={"text": SHORT}).json()
    assert again["key"] == body["key"] and again["cached"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/v1/videos/" + "0" * 64 + ".mp4",
        "/v1/videos/nothex.mp4",
        "/v1/videos/..%2F..%2Fetc%2Fpasswd",
        "/v1/videos/%2e%2e%2f%2e%2e%2fetc%2fpasswd.mp4",
        "/v1/videos/..%252F..%252Fetc%252Fpasswd",
        "/v1/videos/" + "a" * 64,
    ],
)
def test_unknown_or_malicious_video_keys_are_404(client, path):
    assert_error(client.get(path), (404, 422))


def test_traversal_path_is_not_served(server):
    raw = f"GET /v1/videos/../../etc/passwd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(raw.encode())
        status = s.recv(4096).split(b" ")[1]
    assert status in (b"400", b"404")


def test_mode_auto_uses_the_persona_selector(client, settings):
    from ara_persona import select_mode
    from ara_sidecar.personas import get_persona

    user = "My code crashes with a segfault, can you help me read this stack trace?"
    text = "Let us read the stack trace together."
    r = client.post("/v1/render", json={"text": text, "mode": "auto", "user_message": user})
    assert r.status_code == 200, r.text
    expected = select_mode(get_persona(settings), user, text)
    assert (r.json()["mode"], r.json()["mode_reason"]) == (
        expected.mode,
        expected.reason,
    ) and expected.mode == "lab"
    explicit = client.post("/v1/render", json={"text": text, "mode": "playful"}).json()
    assert (explicit["mode"], explicit["mode_reason"]) == ("playful", "requested")


def test_mode_auto_previous_mode_gives_the_same_hysteresis_as_the_extension(client):
    text = "Sure, here is the next step."
    body = {"text": text, "mode": "auto", "user_message": "ok and then?"}
    assert client.post("/v1/render", json=body).json()["mode"] != "lab"
    kept = client.post("/v1/render", json={**body, "previous_mode": "lab"}).json()
    assert kept["mode"] == "lab" and "staying in lab" in kept["mode_reason"]
    crisis = {**body, "user_message": "I wish I was dead", "previous_mode": "playful"}
    r = client.post("/v1/jobs", json=crisis)
    assert r.status_code == 202, r.text
    bad = client.post("/v1/render", json={**body, "previous_mode": "party"})
    assert bad.status_code == 422 and "party" in bad.json()["error"]


# -- jobs -------------------------------------------------------------------------------------


def test_job_events_stream_until_done(server, client):
    job_id = client.post(
        "/v1/jobs", json={"text": "Events arrive in order. Progress only goes up. Then it is all done."}
    ).json()["job_id"]
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
        headers = source.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert (headers["cache-control"], headers["x-accel-buffering"]) == ("no-cache", "no")
        # (httpx-sse also yields an empty event after a keep-alive comment, as it keeps the last id)
        events = [{"event": e.event, "id": e.id, "data": e.data} for e in source.iter_sse() if e.data]
    import json

    ids = [int(e["id"]) for e in events]
    assert ids == list(range(1, len(ids) + 1))
    jobs = [json.loads(e["data"]) for e in events if e["event"] == "message"]
    assert len(jobs) >= 2
    progress = [j["progress"] for j in jobs]
    assert progress == sorted(progress) and progress[-1] == 1.0
    statuses = [EVENT_ORDER.index(j["status"]) for j in jobs]
    assert statuses == sorted(statuses) and jobs[-1]["status"] == "done"
    assert jobs[-1]["result"]["video_url"].endswith(".mp4") and jobs[-1]["finished"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "done"
    # each chunk is announced once, in order, before the job ends, and its video is served
    kinds = [e["event"] for e in events]
    chunks = [json.loads(e["data"]) for e in events if e["event"] == "chunk_ready"]
    assert [c["index"] for c in chunks] == list(range(jobs[-1]["chunk_count"])) == [0, 1, 2]
    assert kinds.index("chunk_ready") < len(kinds) - 1 and kinds[-1] == "message"
    assert [c["start_s"] for c in chunks] == sorted(c["start_s"] for c in chunks)
    assert jobs[-1]["chunks"] == chunks == jobs[-1]["result"]["chunks"]
    first = client.get(chunks[0]["url"])
    assert first.status_code == 200 and first.headers["content-type"] == "video/mp4"
    assert b"moof" in first.content and chunks[0]["mime"].startswith('video/mp4; codecs="avc1.')
    # the extension's own (standard-library) parser reads the same stream of the finished job
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
    from ara_tgwui.client import SidecarClient

    replay = list(SidecarClient(server, TOKEN).job_events(job_id, timeout=30))
    assert replay == [("chunk_ready", chunk) for chunk in chunks] + [("message", jobs[-1])]


def test_health_answers_during_a_long_render_which_delete_cancels(server, client):
    job_id = running_job(client, long_text("cancel"))
    with httpx.Client(base_url=server, timeout=5) as anonymous:
        for _ in range(5):
            started = time.perf_counter()
            assert anonymous.get("/health").json() == {"status": "ok"}
            assert time.perf_counter() - started < 0.5
    # an identical request shares the render: cancelling one job leaves the other running
    twin = client.post("/v1/jobs", json={"text": long_text("cancel")}).json()["job_id"]
    assert client.get("/health/detailed").json()["queue"] == {"queued": 0, "running": 1, "size": 4}
    assert client.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{twin}").json()["status"] == "running"
    assert client.delete(f"/v1/jobs/{twin}").json()["status"] == "cancelled"
    # the worker stops that render and takes the next job
    assert client.post("/v1/render", json={"text": "After a cancel."}).status_code == 200
    assert_error(client.get("/v1/jobs/no-such-job"), 404)


def test_a_full_queue_answers_429_with_retry_after(client):
    accepted, refused = [], []
    for i in range(6):
        r = client.post("/v1/jobs", json={"text": long_text(f"queue {i}")})
        (accepted if r.status_code == 202 else refused).append(r)
    try:
        assert len(accepted) == 4 and len(refused) == 2
        for r in refused:
            assert_error(r, 429)
            assert int(r.headers["retry-after"]) >= 1
    finally:
        for r in accepted:
            client.delete(f"/v1/jobs/{r.json()['job_id']}")


def test_a_job_over_the_timeout_fails(tmp_path):
    env = {"ARA_SERVER_JOB_TIMEOUT_S": "3"}
    with (
        running_server(tmp_path, TOKEN, env) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as own,
    ):
        job_id = own.post("/v1/jobs", json={"text": long_text("timeout")}).json()["job_id"]
        wait_until(lambda: own.get(f"/v1/jobs/{job_id}").json()["status"] in ("done", "failed"), 30)
        job = own.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "timed out after 3 s" in job["error"]


def test_fifty_concurrent_clients_identical_texts_render_once(client):
    texts = [f"Concurrent text number {n}, said once." for n in ("one", "two", "three")]
    before = video_entries(client)
    results: list[tuple[str, httpx.Response]] = []

    def ask(text: str) -> None:
        with httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=120) as c:
            results.append((text, c.post("/v1/render", json={"text": text})))

    threads = [threading.Thread(target=ask, args=(texts[i % 3],)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 50
    assert {r.status_code for _, r in results} <= {200, 429}
    keys = {
        text: {r.json()["key"] for t, r in results if t == text and r.status_code == 200} for text in texts
    }
    assert all(len(k) <= 1 for k in keys.values()), keys
    assert sum(r.status_code == 200 for _, r in results) >= 3
    assert video_entries(client) - before == 3


def test_a_killed_worker_fails_its_job_and_is_replaced(server, client):
    job_id = running_job(client, long_text("kill"))
    pid = worker(server)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "failed", 15)
    assert "render worker died" in client.get(f"/v1/jobs/{job_id}").json()["error"]
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    r = client.post("/v1/render", json={"text": "The worker is back."})
    assert r.status_code == 200, r.text
    assert worker(server)["pid"] not in (None, pid) and worker(server)["restarts"] >= 1


# -- uploads ----------------------------------------------------------------------------------


def test_avatar_upload_then_render_with_it(client, astronaut_png):
    data = astronaut_png.read_bytes()
    r = client.post("/v1/avatars", files={"file": ("me.png", data, "image/png")})
    assert r.status_code == 201, r.text
    avatar_id = r.json()["avatar_id"]
    assert avatar_id == hashlib.sha256(data).hexdigest()
    listed = client.get("/v1/avatars").json()
    assert {a["avatar_id"] for a in listed} >= {avatar_id} and any(a.get("persona") == "ara" for a in listed)
    rendered = client.post("/v1/render", json={"text": SHORT, "avatar_id": avatar_id})
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["key"] != client.post("/v1/render", json={"text": SHORT}).json()["key"]


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("notes.txt", b"this is not an image at all", 422, "not a readable image"),
        ("bomb.png", bomb_png(50000, 50000), 422, "DecompressionBombError"),  # Pillow's own check
        ("bomb.png", bomb_png(10000, 10000), 422, "over the limit of 40000000"),  # limits.max_avatar_pixels
        ("grey.png", png(256, 256), 422, "face"),
        ("tiny.png", png(16, 16), 422, "64×64"),
        ("huge.png", os.urandom(3 * 2**20), 413, "server.max_upload_mb"),
    ],
)
def test_bad_avatar_uploads_are_4xx(client, name, data, status, message):
    r = client.post("/v1/avatars", files={"file": (name, data, "image/png")})
    assert_error(r, status)
    assert message in r.json()["error"]


def test_an_upload_without_length_is_cut_off_at_the_limit(client):
    def chunks() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=x.png\r\n\r\n"
        for _ in range(12):
            yield b"\0" * 2**18

    r = client.post(
        "/v1/avatars", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert_error(r, 413)


def test_audio_upload_is_lip_synced_without_tts(client):
    r = client.post("/v1/audio", files={"file": ("speech.wav", wav(1.5), "audio/wav")})
    assert r.status_code == 201, r.text
    rendered = client.post("/v1/render", json={"audio_id": r.json()["audio_id"], "voice": False})
    assert rendered.status_code == 200, rendered.text
    assert (
        rendered.json()["duration_s"] == pytest.approx(1.5, abs=0.1)
        and "tts" not in rendered.json()["timings"]
    )
    assert_error(
        client.post("/v1/audio", files={"file": ("a.mp3", b"ID3 but not really audio", "audio/mpeg")}), 422
    )


# -- bad requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 422),
        (b"[1, 2]", 422),
        ({"text": 5}, 422),
        ({"text": SHORT, "voice": "yes"}, 422),
        ({"text": ""}, 422),
        ({"text": "   "}, 422),
        ({"text": "x" * 4001}, 422),
        ({"text": "x" * 200_000}, 422),
        ({"text": SHORT, "mode": "sulky"}, 422),
        ({"text": SHORT, "persona": "nobody"}, 422),
        ({"text": SHORT, "persona": "../../etc"}, 422),
        ({"text": SHORT, "avatar_id": "f" * 64}, 422),
        ({"text": SHORT, "avatar_id": "../../etc/passwd"}, 422),
        ({"audio_id": "e" * 64}, 422),
        ({"text": SHORT, "audio_id": "e" * 64}, 422),
        ({}, 422),
        ({"text": SHORT, "colour": "blue"}, 422),
        (b'{"text": "' + b"x" * (2 * 2**20) + b'"}', 413),
    ],
)
def test_bad_render_requests_are_4xx(client, body, status):
    for path in ("/v1/render", "/v1/jobs"):
        if isinstance(body, bytes):
            r = client.post(path, content=body, headers={"Content-Type": "application/json"})
        else:
            r = client.post(path, json=body)
        assert_error(r, status)


def test_personas(client):
    listed = client.get("/v1/personas").json()
    ara = next(p for p in listed if p["name"] == "ara")
    assert ara["default_mode"] == "cockpit" and "lab" in ara["modes"]
    details = client.get("/v1/personas/ara").json()
    assert set(details["modes"]["cathedral"]["voice"]) == {
        "pitch_semitones",
        "speed",
        "warmth_db",
        "rvc_model",
        "pitch_range",
        "pause_s",
        "noise_scale",
        "noise_w_scale",
        "piper_voice",
        "target_f0_hz",
        "formant_ratio",
    }
    assert details["modes"]["cathedral"]["voice"]["target_f0_hz"] == 205  # the persona's base voice
    assert_error(client.get("/v1/personas/nobody"), 404)
    assert_error(client.get("/v1/personas/..%2F..%2Fetc"), 404)


def test_cache_stats_and_clear(client, astronaut_png):
    key = client.post("/v1/render", json={"text": SHORT}).json()["key"]
    upload = client.post("/v1/avatars", files={"file": ("me.png", astronaut_png.read_bytes(), "image/png")})
    assert upload.status_code == 201, upload.text
    stats = client.get("/v1/cache/stats").json()
    assert stats["by_kind"]["video"]["entries"] >= 1 and stats["bytes"] > 0
    uploads = {kind for kind in stats["by_kind"] if kind.endswith("-upload")}
    assert "avatar-upload" in uploads  # (and audio, after the upload tests above)
    assert_error(client.delete("/v1/cache", params={"upload": "true"}), 422)  # a typo removes nothing
    assert client.get("/v1/cache/stats").json()["entries"] == stats["entries"]
    assert client.delete("/v1/cache").json()["removed"] >= 1
    # uploads stay; nothing is pinned (the server released the pins of the worker killed above)
    after = client.get("/v1/cache/stats").json()
    assert set(after["by_kind"]) == uploads and after["pinned"] == 0
    for kind in uploads:
        assert after["by_kind"][kind]["entries"] == stats["by_kind"][kind]["entries"]
    assert_error(client.get(f"/v1/videos/{key}.mp4"), 404)
    assert client.delete("/v1/cache", params={"uploads": "true"}).json()["removed"] >= len(uploads)
    assert client.get("/v1/cache/stats").json()["entries"] == 0
    assert client.post("/v1/render", json={"text": SHORT}).json()["cached"] is False


def test_a_failing_pin_release_never_stops_the_worker_supervisor(settings, tmp_path, monkeypatch, caplog):
    import sqlite3

    from ara_sidecar.cache import CacheStore
    from ara_sidecar.server.jobs import JobManager

    def locked(self, pid):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(CacheStore, "release_pins", locked)
    jobs = JobManager(settings.with_overrides(**{"cache.dir": str(tmp_path)}))
    jobs._release_pins(12345)  # called by the supervisor thread after each worker exit: must not raise
    assert "could not release the dead worker's cache pins: database is locked" in caplog.text


# -- the serve command ------------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_token():
    env = {k: v for k, v in os.environ.items() if k != "ARA_SERVER_TOKEN"}
    r = subprocess.run(
        [sidecar(), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and "--token" in r.stderr and "0.0.0.0" in r.stderr


def test_cors_origins_from_the_config(settings):
    import asyncio

    from ara_sidecar.server.app import create_app

    cfg = settings.with_overrides(**{"server.cors_origins": ["http://ui.example"]})
    app = create_app(cfg, token="t")  # ASGITransport runs no lifespan: no worker is started
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}

    async def requests() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sidecar") as c:
            return [
                await c.options(
                    "/v1/render", headers={**preflight, "Access-Control-Request-Headers": "authorization"}
                ),
                await c.options("/v1/render", headers={**preflight, "Origin": "http://evil.example"}),
                await c.get("/v1/personas", headers={"Origin": "http://ui.example"}),
            ]

    allowed, evil, no_token = asyncio.run(requests())
    assert (
        allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://ui.example"
    )
    assert evil.status_code == 400
    assert (
        no_token.status_code == 401 and no_token.headers["access-control-allow-origin"] == "http://ui.example"
    )


def test_loopback_addresses():
    from ara_sidecar.server.serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.5", "::", "example.com"]))
