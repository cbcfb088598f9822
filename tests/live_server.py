"""An app served by uvicorn in a thread, configured as `ara-sidecar serve` configures it (header
and connection limits included), without the lifespan (no render worker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from server_helpers import free_port

from ara_sidecar.server.serve import uvicorn_config


@contextmanager
def live_server(app, cfg, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with the settings `cfg` on a free port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, cfg, host, port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
