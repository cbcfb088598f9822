"""Limits on connections and request headers, below the application (so before the token is
checked): uvicorn's HTTP protocol (httptools) accepts headers of any size and waits for them
forever, and keeps any number of connections open.

- `server.max_header_kb`: a request line and headers larger than this get 431 and the
  connection is closed (what is read beyond the limit is never buffered).
- `server.header_timeout_s`: a connection must deliver a whole request line and headers within
  this many seconds — of being opened, or of the request's first byte on a kept-alive
  connection (slowloris); else 408 (or, if it sent nothing, just closing it).
- `server.keep_alive_s`: an idle kept-alive connection is closed after this (uvicorn's own).
- `server.max_connections`: connections open at once. One more makes room by closing the
  connection that has waited longest for a request (idle, or still sending its headers);
  where every one is busy with a request (or an event stream), the new one gets 503.
"""

from __future__ import annotations

import json
import time
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ara_sidecar.config import ServerSettings


def protocol_for(server: ServerSettings) -> type[HttpToolsProtocol]:
    """The HTTP protocol class uvicorn should use with these settings."""
    return type(
        "ConfiguredProtocol",
        (LimitedHttpProtocol,),
        {
            "max_header_bytes": int(server.max_header_kb * 1024),
            "header_timeout_s": server.header_timeout_s,
            "max_connections": server.max_connections,
        },
    )


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, a header timeout and a cap on
    connections (the class attributes; see `protocol_for`)."""

    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0
    max_connections = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # reading a request line and headers (or waiting for one)
        self._header_bytes = 0  # bytes received while awaiting headers
        self._headers_parsed = 0  # requests whose headers were complete, on this connection
        self._header_timer: TimerHandle | None = None
        self._waiting_since = time.monotonic()  # since when it has had no request in progress

    # -- connections ------------------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            self._refuse(503, "the server has too many connections open; try again shortly")
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest without a request in progress."""
        waiting = [
            c
            for c in self.connections
            if c is not self and isinstance(c, LimitedHttpProtocol) and c._idle() and c.transport is not None
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since)
        oldest.connections.discard(oldest)  # at once: its connection_lost comes later
        oldest.transport.close()
        return True

    def _idle(self) -> bool:
        busy = self.cycle is not None and not self.cycle.response_complete
        return self._awaiting_headers and not busy and not self.transport.is_closing()

    # -- headers ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._awaiting_headers:
            super().data_received(data)
            return
        room = self.max_header_bytes - self._header_bytes
        if len(data) <= room:
            self._header_bytes += len(data)
            super().data_received(data)
            return
        parsed = self._headers_parsed
        self._header_bytes = self.max_header_bytes
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._headers_parsed == parsed:  # still no end of the headers within the limit
            self._refuse(
                431,
                f"request line and headers over the limit of {self.max_header_bytes // 1024} KiB "
                "(server.max_header_kb)",
            )
            return
        super().data_received(data[room:])  # the body (or the next request)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        if self._header_timer is None:  # a kept-alive connection: from the request's first byte
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_headers, self._header_bytes = False, 0
        self._headers_parsed += 1
        self._stop_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers, self._header_bytes = True, 0
        self._waiting_since = time.monotonic()

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._start_header_timer()  # a pipelined request waits for the one in progress
            return
        if self._header_bytes:
            seconds = f"{self.header_timeout_s:g}"
            self._refuse(
                408, f"request line and headers not received within {seconds} s (server.header_timeout_s)"
            )
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `{"error": message}` and close the connection."""
        phrases = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
        body = json.dumps({"error": message}).encode()
        head = [
            f"HTTP/1.1 {status} {phrases[status]}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            *(["retry-after: 1"] if status == 503 else []),
        ]
        self._stop_header_timer()
        self._awaiting_headers = False
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.transport.close()
