"""DNS rebinding and cross-site writes, for a server without a token (the default): on loopback it
answers only loopback host names and `server.allowed_hosts`; a write from another site's page is
refused unless its origin is in `server.cors_origins`. The web page at / and the text-generation-webui
extension's client (Python, no Origin) keep working."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from live_server import live_server

from ara_sidecar.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
from ara_tgwui.client import SidecarClient

OWN = "http://127.0.0.1:7870"
EVIL = "http://evil.example"


@pytest.fixture
def cfg(settings, tmp_path):
    return settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})


def call(app, method: str, path: str, base: str = OWN, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def upload(app, image: bytes, base: str = OWN, **headers: str) -> httpx.Response:
    return call(
        app, "POST", "/v1/avatars", base, files={"file": ("me.png", image, "image/png")}, headers=headers
    )


def stored_uploads(app) -> int:
    return app.state.service.pipeline.cache.stats()["by_kind"].get("avatar-upload", {}).get("entries", 0)


# -- Host ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/cache/stats", "/v1/personas", "/health", "/"])
def test_a_rebound_host_name_is_refused(cfg, path):
    app = create_app(cfg)
    r = call(app, "GET", path, headers={"Host": "rebind.attacker.example"})
    assert r.status_code == 400 and "server.allowed_hosts" in r.json()["error"]
    r = call(app, "GET", path, headers={"Host": "rebind.attacker.example:7870"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:7870", "localhost:7870", "LOCALHOST", "localhost.", "[::1]:7870", "127.0.0.2", "[::1]"],
)
def test_loopback_host_names_are_answered(cfg, host):
    assert call(create_app(cfg), "GET", "/v1/cache/stats", headers={"Host": host}).status_code == 200


def test_configured_host_names_are_answered(cfg):
    app = create_app(cfg.with_overrides(**{"server.allowed_hosts": ["ara.home.arpa"]}))
    assert call(app, "GET", "/v1/cache/stats", headers={"Host": "ara.home.arpa:7870"}).status_code == 200
    assert call(app, "GET", "/v1/cache/stats", headers={"Host": "other.home.arpa"}).status_code == 400
    anything = create_app(cfg.with_overrides(**{"server.allowed_hosts": ["*"]}))
    assert call(anything, "GET", "/v1/cache/stats", headers={"Host": "other.home.arpa"}).status_code == 200


def test_on_a_public_address_any_host_name_is_answered_unless_listed(cfg):
    app = create_app(cfg, host="0.0.0.0")  # (--insecure: no token)
    assert call(app, "GET", "/v1/cache/stats", headers={"Host": "192.168.1.5:7870"}).status_code == 200
    listed = create_app(cfg.with_overrides(**{"server.allowed_hosts": ["ara.lan"]}), host="0.0.0.0")
    assert call(listed, "GET", "/v1/cache/stats", headers={"Host": "ara.lan"}).status_code == 200
    assert call(listed, "GET", "/v1/cache/stats", headers={"Host": "0.0.0.0:7870"}).status_code == 200
    assert call(listed, "GET", "/v1/cache/stats", headers={"Host": "evil.example"}).status_code == 400


# -- Origin -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},  # a sandboxed frame or a local file
        {"Referer": f"{EVIL}/page.html"},  # no Origin: the page named by the Referer
        {"Origin": "http://127.0.0.1:8080"},  # another port is another origin
        {"Origin": "http://localhost:7870"},  # another host name too
    ],
)
def test_a_cross_site_upload_is_refused_and_not_stored(cfg, astronaut_png, headers):
    app = create_app(cfg)
    r = upload(app, astronaut_png.read_bytes(), **headers)
    assert r.status_code == 403 and "server.cors_origins" in r.json()["error"], r.text
    assert stored_uploads(app) == 0


def test_other_cross_site_writes_are_refused(cfg):
    app = create_app(cfg)
    evil = {"Origin": EVIL}
    assert call(app, "POST", "/v1/render", json={"text": "Hello."}, headers=evil).status_code == 403
    assert call(app, "POST", "/v1/jobs", json={"text": "Hello."}, headers=evil).status_code == 403
    assert call(app, "DELETE", "/v1/jobs/abc", headers=evil).status_code == 403
    assert call(app, "DELETE", "/v1/cache", headers=evil).status_code == 403
    assert call(app, "POST", "/v1/audio", files={"file": ("a.wav", b"x")}, headers=evil).status_code == 403
    assert call(app, "GET", "/v1/personas", headers=evil).status_code == 200  # a read: CORS decides


def test_the_servers_own_page_and_clients_without_origin_may_write(cfg, astronaut_png):
    app = create_app(cfg)
    image = astronaut_png.read_bytes()
    page = {"Origin": OWN, "Referer": f"{OWN}/", "Sec-Fetch-Site": "same-origin"}  # the page at /
    assert upload(app, image, **page).status_code == 201
    local = "http://localhost:7870"
    assert upload(app, image, base=local, Origin=local, Referer=f"{local}/docs").status_code == 201
    assert upload(app, image, Referer=f"{OWN}/").status_code == 201  # Origin left out
    assert upload(app, image).status_code == 201  # not a browser: the extension, curl
    assert call(app, "DELETE", "/v1/cache", headers={"Origin": OWN}).status_code == 200


def test_configured_cors_origins_may_write(cfg, astronaut_png):
    app = create_app(cfg.with_overrides(**{"server.cors_origins": ["http://ui.example:3000"]}))
    r = upload(app, astronaut_png.read_bytes(), Origin="http://ui.example:3000")
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == "http://ui.example:3000"


def test_with_a_token_the_token_decides(cfg):
    app = create_app(cfg, token="t")  # a browser never sends it by itself
    ok = {"Authorization": "Bearer t"}
    assert call(app, "GET", "/v1/cache/stats", headers={"Host": "ara.example", **ok}).status_code == 200
    assert call(app, "GET", "/v1/cache/stats", headers={"Origin": EVIL}).status_code == 401


# -- a real server ----------------------------------------------------------------------------


def test_a_real_server_answers_the_extension_and_refuses_rebinding(cfg, astronaut_png):
    app = create_app(cfg)
    with live_server(app, cfg) as base:
        client = SidecarClient(base)
        avatar_id = client.upload_avatar(astronaut_png)
        assert avatar_id in {ident for _, ident in client.avatars()}
        rebound = httpx.get(f"{base}/v1/cache/stats", headers={"Host": "rebind.attacker.example"})
        assert rebound.status_code == 400
        files = {"file": ("me.png", astronaut_png.read_bytes(), "image/png")}
        cross = httpx.post(f"{base}/v1/avatars", files=files, headers={"Origin": EVIL})
        assert cross.status_code == 403
        own = httpx.post(f"{base}/v1/avatars", files=files, headers={"Origin": base, "Referer": f"{base}/"})
        assert own.status_code == 201
