"""Which web pages may reach the service: DNS rebinding and cross-site requests.

A browser lets any web page send requests to the sidecar on 127.0.0.1: a cross-site form or
`fetch` reaches it (the page cannot read the answer, but an upload is stored all the same), and a
page whose host name the attacker points at 127.0.0.1 after loading it (DNS rebinding) can even
read the answers, since the browser then counts the sidecar as the page's own origin. So a
server without a token (the default; with one, every request needs it, and a browser never sends
it by itself) checks, in this order:

- **Host.** On a loopback address the service answers only requests whose `Host` is a loopback
  name (`localhost`, `127.x.x.x`, `[::1]`) or one of `server.allowed_hosts`; a rebound host name
  is refused (400). On another address (which needs a token) any `Host` is accepted unless
  `server.allowed_hosts` lists some.
- **Origin.** A request that may change something (every method but GET, HEAD and OPTIONS) from a
  web page — it has an `Origin`, or failing that a `Referer` — is refused (403) unless that page
  is the service's own (same scheme, host and port: the page at `/`, the API docs) or one of
  `server.cors_origins`. Clients that are not browsers (the text-generation-webui extension,
  curl, scripts) send neither and are not concerned.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ara_sidecar.server.serve import is_loopback

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


is_loopback_name = is_loopback  # (the one test, shared with `ara-sidecar serve`'s --host check)


def split_host(value: str, scheme: str = "http") -> tuple[str, int | None]:
    """(lower-case name without a trailing dot, port) of a Host header or URL authority; IPv6
    addresses keep their brackets. The port is the scheme's default where none is given, None
    where the one given is not a number."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.partition(":")
    name = name.rstrip(".")
    if not port:
        return name, DEFAULT_PORTS.get(scheme)
    return name, int(port) if port.isdigit() else None


class HostOriginGuard:
    """ASGI middleware: refuses requests for another host (DNS rebinding) and writes from other
    sites' pages (see the module docstring).

    hosts: the host names accepted besides the loopback ones; None accepts any (a server on a
    public address, guarded by its token), "*" among them too.
    cors_origins: origins of other frontends allowed to write (`server.cors_origins`).
    """

    def __init__(self, app: ASGIApp, *, hosts: Collection[str] | None, cors_origins: Collection[str]):
        self.app = app
        self.hosts = None if hosts is None or "*" in hosts else {split_host(h)[0] for h in hosts}
        self.cors_origins = {origin.strip().rstrip("/").lower() for origin in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        refusal = self._refusal(scope, host, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse({"error": message}, status)(scope, receive, send)

    def _refusal(self, scope: Scope, host: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        scheme = scope.get("scheme", "http")
        if self.hosts is not None and host:  # (HTTP/1.0 may send none: not a browser)
            name, _ = split_host(host, scheme)
            if not is_loopback_name(name) and name not in self.hosts:
                return 400, (
                    f"this server does not answer to the host name {name[:100]!r}: use 127.0.0.1 or "
                    "localhost, or add the name to server.allowed_hosts"
                )
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if not origin:
            referer = headers.get(b"referer", b"").decode("latin-1").strip()
            if not referer:
                return None  # not a web page: the extension, curl, a script
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
        if self._same_origin(origin, scheme, host or _server_authority(scope)):
            return None
        if origin.rstrip("/").lower() in self.cors_origins:
            return None
        return 403, (
            f"refused a {scope.get('method')} request from the web page at {origin[:200]!r}: only this "
            "server's own pages, and the origins in server.cors_origins, may change anything"
        )

    @staticmethod
    def _same_origin(origin: str, scheme: str, host: str) -> bool:
        parts = urlsplit(origin.strip().lower())
        if parts.scheme not in ("http", "https") or not parts.netloc or not host:
            return False  # "null" (a sandboxed frame, a file), or no host to compare with
        return split_host(parts.netloc, parts.scheme) == split_host(host, scheme)


def _server_authority(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return ""
    address, port = server
    address = f"[{address}]" if ":" in str(address) else str(address)
    return f"{address}:{port}" if port is not None else address
