"""Every error the HTTP service sends is the documented `{"error": "…"}` JSON, and nothing it
sends over HTTP names a path on the server's disk (issue #16).

A bad Range got a text/plain 400 and a 416 an empty body; `GET /v1/cache/stats` returned the
cache's folder and failed renders named files in it (`…/objects/1c/.tmp-…`). The app runs
in-process (httpx's ASGI transport, no lifespan: no worker is started).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from ara_sidecar.config import project_root
from ara_sidecar.server.app import create_app
from ara_sidecar.server.public import OPENAI_PATHS, PathRedactor

KEY = "ab" * 32
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)  # only its length matters here
TOKEN = "t0ken"


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    folder = tmp_path / "Ara Cache With Spaces"  # a path a shape-based search would cut short
    folder.mkdir()
    return folder


@pytest.fixture
def app(settings, cache_dir, tmp_path):
    shutil.copytree(project_root() / "personas" / "ara", tmp_path / "personas" / "ara")
    cfg = settings.with_overrides(
        user_personas_dir=str(tmp_path / "personas"),
        **{"cache.dir": str(cache_dir), "server.cors_origins": ["http://ui.example"]},
    )
    app = create_app(cfg, token=TOKEN)
    app.state.service.pipeline.cache.get_or_create(KEY, ".mp4", lambda path: path.write_bytes(VIDEO))
    return app


def requests(app, *calls: tuple[str, str, dict]) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:7870", headers=headers
        ) as c:
            return [await c.request(method, path, **kwargs) for method, path, kwargs in calls]

    return asyncio.run(send())


def private_strings(app) -> list[str]:
    """Folders whose names must not appear in anything sent over HTTP."""
    cache = app.state.service.pipeline.cache.root
    return [str(cache), str(cache.parent), str(project_root()), tempfile.gettempdir(), str(Path.home())]


def assert_json_error(app, response: httpx.Response, status: int | None = None) -> str:
    where = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    assert response.status_code >= 400, where
    assert status is None or response.status_code == status, f"{where}: {response.text}"
    assert response.headers["content-type"] == "application/json", f"{where}: {response.headers}"
    if response.request.method == "HEAD":
        return ""
    error = response.json()["error"]
    if response.request.url.path.startswith(OPENAI_PATHS):  # OpenAI's shape on its routes
        assert set(error) == {"message", "type", "param", "code"}, f"{where}: {response.text}"
        error = error["message"]
    assert isinstance(error, str) and error.strip(), f"{where}: {response.text}"
    for private in private_strings(app):
        assert private not in response.text, f"{where} shows {private}: {response.text}"
    return error


# -- every route, and Starlette's own errors ------------------------------------------------------

BAD_PATH_VALUES = {"job_id": "no-such-job", "name": "nobody"}  # unknown job, video, persona


def http_routes(routes) -> list:
    """The app's routes, those of included routers too (FastAPI wraps them)."""
    found = []
    for route in routes:
        if getattr(route, "methods", None) is not None:
            found.append(route)
        elif hasattr(route, "original_router"):  # no prefixes here: their paths are the app's
            found += http_routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            found += http_routes(route.routes)
    return found


def error_calls(app) -> list[tuple[str, str, dict]]:
    """At least one failing request per route: an unknown path parameter (404), a method the
    route does not take (405), and for bodies, one that is not JSON (422)."""
    calls = []
    for route in http_routes(app.routes):
        path = route.path
        for param, value in BAD_PATH_VALUES.items():
            path = path.replace("{" + param + "}", value)
        methods = route.methods or {"GET"}
        if path != route.path:
            calls += [(method, path, {}) for method in sorted(methods - {"HEAD"}) or ["HEAD"]]
        wrong = "PUT" if "PUT" not in methods else "PATCH"
        calls.append((wrong, path, {}))
        if isinstance(route, APIRoute) and "POST" in methods:
            calls.append(
                ("POST", path, {"content": b"{not json", "headers": {"content-type": "application/json"}})
            )
    return calls


def test_every_route_and_starlettes_own_errors_answer_json(app):
    calls = error_calls(app)
    covered = {route.path for route in http_routes(app.routes)}
    assert {"/v1/render", "/v1/jobs/{job_id}/events", "/v1/videos/{name}", "/docs"} <= covered
    json_headers = {"content-type": "application/json"}
    calls += [
        ("GET", "/no/such/route", {}),  # the router's 404
        ("POST", "/v1/render", {"content": b"\xff\xfe", "headers": json_headers}),  # not UTF-8
        ("POST", "/v1/render", {"content": b'{"text": "hi"}', "headers": {"content-type": "text/plain"}}),
        ("POST", "/v1/render", {"content": b"x" * (2**20 + 1), "headers": json_headers}),  # 413
        ("POST", "/v1/avatars", {"content": b"xx", "headers": {"content-type": "multipart/form-data"}}),
        ("DELETE", "/v1/cache", {"params": {"upload": "true"}}),
        ("HEAD", "/v1/videos/nothing.mp4", {}),
        (
            "OPTIONS",
            "/v1/render",
            {"headers": {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}},
        ),
    ]
    responses = requests(app, *calls)
    for response in responses:
        assert_json_error(app, response)
    statuses = {r.status_code for r in responses}
    assert {400, 404, 405, 413, 422} <= statuses, statuses
    not_allowed = next(r for r in responses if r.status_code == 405)
    assert "allow" in not_allowed.headers  # the headers of the original answer are kept

    # and without the token: 401
    async def anonymous() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:7870"
        ) as c:
            return await c.get("/v1/cache/stats")

    assert_json_error(app, asyncio.run(anonymous()), 401)


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=5-2", 400),
        ("bytes=abc", 400),
        ("lines=0-5", 400),
        ("garbage", 400),
        (f"bytes={len(VIDEO) + 10}-", 416),
        (f"bytes={len(VIDEO)}-{len(VIDEO) + 5}", 416),
    ],
)
def test_range_errors_are_json(app, range_header, status):
    """They were Starlette's text/plain 400 and an empty 416."""
    (response,) = requests(app, ("GET", f"/v1/videos/{KEY}.mp4", {"headers": {"Range": range_header}}))
    error = assert_json_error(app, response, status)
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{len(VIDEO)}"
        assert str(len(VIDEO)) in error
    assert response.headers["content-length"] == str(len(response.content))


def test_good_ranges_and_videos_are_untouched(app):
    whole, part, head = requests(
        app,
        ("GET", f"/v1/videos/{KEY}.mp4", {}),
        ("GET", f"/v1/videos/{KEY}.mp4", {"headers": {"Range": "bytes=4-11"}}),
        ("HEAD", f"/v1/videos/{KEY}.mp4", {}),
    )
    assert whole.status_code == 200 and whole.content == VIDEO
    assert part.status_code == 206 and part.content == VIDEO[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(VIDEO)}"
    assert head.status_code == 200 and head.headers["content-length"] == str(len(VIDEO))


def test_the_documented_statuses_include_the_range_400(app):
    (schema,) = requests(app, ("GET", "/openapi.json", {}))
    video = schema.json()["paths"]["/v1/videos/{name}"]["get"]["responses"]
    assert {"400", "404", "416"} <= set(video)


# -- no server paths over HTTP ---------------------------------------------------------------------


def test_cache_stats_and_health_show_no_cache_folder(app):
    stats, health = requests(app, ("GET", "/v1/cache/stats", {}), ("GET", "/health/detailed", {}))
    assert stats.status_code == 200 and health.status_code == 200
    assert "root" not in stats.json() and "root" not in health.json()["cache"]
    assert stats.json()["entries"] == 1
    for private in private_strings(app):
        assert private not in stats.text and private not in health.text


def test_backend_details_show_no_paths(settings, tmp_path):
    """Wav2Lip without its checkpoint names the folder it looked in: a path on the server."""
    pytest.importorskip("torch")
    models = tmp_path / "my models"
    cfg = settings.with_overrides(lipsync="wav2lip", models_dir=str(models), **{"cache.dir": str(tmp_path)})
    app = create_app(cfg, token=TOKEN)
    (health,) = requests(app, ("GET", "/health/detailed", {}))
    detail = health.json()["backends"]["lipsync"]["detail"]
    assert "wav2lip_gan.pth" in detail and str(models) not in detail and str(tmp_path) not in health.text


def test_a_failed_job_names_no_server_path(app, cache_dir):
    """As the worker reports an I/O error inside the cache: over HTTP only the file's name."""
    svc = app.state.service
    leaked = cache_dir / "objects" / "1c" / ".tmp-3f2a.mp4"
    error = f"render failed: FileNotFoundError: [Errno 2] No such file or directory: '{leaked}'"

    async def fail_the_render() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:7870", headers=headers
        ) as c:
            waiting = asyncio.create_task(c.post("/v1/render", json={"text": "This render fails."}))
            while not svc.jobs.jobs:
                await asyncio.sleep(0.01)
            job = next(iter(svc.jobs.jobs.values()))
            svc.jobs._finish(job.render, "failed", error=error, kind="internal")
            return [await waiting, await c.get(f"/v1/jobs/{job.id}")]

    rendered, polled = asyncio.run(fail_the_render())
    assert assert_json_error(app, rendered, 500) == (
        "render failed: FileNotFoundError: [Errno 2] No such file or directory: '…/.tmp-3f2a.mp4'"
    )
    assert polled.json()["error"] == assert_json_error(app, rendered)
    assert str(cache_dir) not in polled.text


def test_a_user_error_names_no_server_path(app, tmp_path):
    """The persona's avatar is gone: the CLI names its path, HTTP only its name."""
    (tmp_path / "personas" / "ara" / "avatar.png").unlink()
    (response,) = requests(app, ("POST", "/v1/jobs", {"json": {"text": "Hello."}}))
    error = assert_json_error(app, response, 422)
    assert "avatar.png" in error and "…/" in error


def test_an_unexpected_error_names_no_server_path(app, cache_dir, monkeypatch):
    def broken() -> dict:
        raise PermissionError(13, "Permission denied", str(cache_dir / "index.sqlite3"))

    monkeypatch.setattr(app.state.service.pipeline.cache, "stats", broken)
    (response,) = requests(app, ("GET", "/v1/cache/stats", {}))
    error = assert_json_error(app, response, 500)
    assert error == "internal error: PermissionError: [Errno 13] Permission denied: '…/index.sqlite3'"


# -- the redactor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("No such file: '/srv/ara/cache/objects/1c/.tmp-ab.mp4'", "No such file: '…/.tmp-ab.mp4'"),
        ("avatar not found: /home/jo/ara/personas/x/avatar.png.", "avatar not found: …/avatar.png."),
        (r"C:\Users\Jane Doe\ara\models\wav2lip\x.pth is empty", "…/x.pth is empty"),
        (r"see C:\Temp\a.log, then retry", "see …/a.log, then retry"),
        ("/opt/Ara Home/models/rvc/v.pth: bad (x)", "…/v.pth: bad (x)"),
        ("expected /v1/videos/KEY.mp4 with a key", "expected /v1/videos/KEY.mp4 with a key"),
        ("GET /v1/personas lists them; /health too", "GET /v1/personas lists them; /health too"),
        ("AllTalk at http://127.0.0.1:7851/api/ready did not answer", None),
        ("text/plain and/or 1/2 of a / b, /x", None),
        ("unknown avatar_id abc: upload it with POST /v1/avatars", None),
    ],
)
def test_paths_are_redacted_to_their_names(message, shown):
    redact = PathRedactor([r"C:\Users\Jane Doe", "/opt/Ara Home"])
    assert redact(message) == (message if shown is None else shown)
