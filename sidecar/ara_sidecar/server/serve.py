"""`ara-sidecar serve`: run the HTTP service (see `app`) on uvicorn.

It listens on loopback unless told otherwise, and refuses any other address without a token,
unless `--insecure` says that anyone who can reach the port may use it. Ctrl-C or SIGTERM
stops it cleanly: running requests get a few seconds, then the render worker is stopped.
"""

from __future__ import annotations

import argparse
import ipaddress

from ara_sidecar.config import Settings, settings
from ara_sidecar.errors import UserError

GRACEFUL_SHUTDOWN_S = 5


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address, as in a Host header or --host (lower case, no port;
    IPv6 with or without brackets). A host name may resolve to anything: not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(cfg: Settings, host: str, port: int, token: str | None, insecure: bool = False) -> int:
    """Serve until interrupted; returns the exit status."""
    if not is_loopback(host) and not token and not insecure:
        raise UserError(
            f"refusing to listen on {host} without a token: anyone on the network could use the service. "
            "Give --token TOKEN (or set ARA_SERVER_TOKEN), or --insecure if that is really intended"
        )
    import uvicorn

    from ara_sidecar.server.app import create_app

    app = create_app(cfg, token, host=host)
    shown = f"[{host}]" if ":" in host else host
    auth = "a bearer token" if token else "no token"
    print(f"Ara sidecar on http://{shown}:{port} (API docs at /docs; {auth})", flush=True)
    if cfg.cluster.url:
        print(
            f"cluster mode: renders run on `ara-sidecar worker`s ({cfg.cluster.namespace} on Redis)",
            flush=True,
        )
    server = uvicorn.Server(uvicorn_config(app, cfg, host, port))
    server.run()
    return 0 if server.started else 1


def uvicorn_config(app, cfg: Settings, host: str, port: int, **overrides):
    """uvicorn's configuration for the service: `server.max_header_kb`, `header_timeout_s`,
    `keep_alive_s` and `max_connections` enforced by its HTTP protocol (see `limits`)."""
    import uvicorn

    from ara_sidecar.server.limits import protocol_for

    server = cfg.server
    options = dict(
        host=host,
        port=port,
        http=protocol_for(server),
        h11_max_incomplete_event_size=int(server.max_header_kb * 1024),  # should h11 be chosen
        timeout_keep_alive=server.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        access_log=server.access_log,
    )
    return uvicorn.Config(app, **{**options, **overrides})


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = settings()
    server = cfg.server
    return serve(
        cfg,
        host=args.host or server.host,
        port=args.port or server.port,
        token=args.token or server.token,
        insecure=args.insecure,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` sub-command to the `ara-sidecar` parser."""
    p = sub.add_parser("serve", help="run the HTTP service (render jobs, progress, videos)")
    p.add_argument("--host", help="address to listen on (config: server.host, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (config: server.port, default 7870)")
    p.add_argument(
        "--token",
        help="require Authorization: Bearer TOKEN on every endpoint but GET /health "
        "(config: server.token; ARA_SERVER_TOKEN keeps it out of the process list)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without a token (anyone who can reach it may use it)",
    )
    p.set_defaults(func=cmd_serve)
