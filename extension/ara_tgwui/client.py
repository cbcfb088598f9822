"""A small HTTP client of the sidecar's API (standard library only).

Every failure — refused connection, timeout, HTTP error, malformed answer — is raised as
`SidecarError` with a short message fit for the chat note.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 16


class SidecarError(Exception):
    """The sidecar could not be reached or refused the request."""


class SidecarClient:
    """Calls to the sidecar at `base_url`, with a bearer `token` when one is set."""

    def __init__(self, base_url: str, token: str = ""):
        self.base_url = base_url.strip().rstrip("/") or "http://127.0.0.1:7870"
        self.token = token.strip()
        # The sidecar is local or on the LAN: environment proxies would only get in the way.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def url(self, path: str) -> str:
        """An absolute URL for an API path (absolute URLs are returned unchanged)."""
        if urllib.parse.urlsplit(path).scheme in ("http", "https"):
            return path
        return self.base_url + "/" + path.lstrip("/")

    def _open(self, method: str, path: str, timeout: float, body: bytes | None = None, ctype: str = ""):
        request = urllib.request.Request(self.url(path), data=body, method=method)
        request.add_header("Accept", "application/json")
        if ctype:
            request.add_header("Content-Type", ctype)
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            return self._opener.open(request, timeout=max(timeout, 0.05))
        except urllib.error.HTTPError as exc:
            raise SidecarError(_http_message(exc)) from None
        except TimeoutError:
            raise SidecarError(f"the sidecar did not answer within {timeout:.0f} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise SidecarError(f"the sidecar did not answer within {timeout:.0f} s") from None
            raise SidecarError(f"the sidecar at {self.base_url} is not reachable ({exc.reason})") from None
        except (OSError, ValueError) as exc:
            raise SidecarError(f"the sidecar at {self.base_url} is not reachable ({exc})") from None

    def _json(self, method: str, path: str, timeout: float, payload: Any = None, **kwargs) -> Any:
        body = kwargs.pop("body", None)
        if payload is not None:
            body, kwargs["ctype"] = json.dumps(payload).encode(), "application/json"
        try:
            with self._open(method, path, timeout, body, **kwargs) as response:
                raw = response.read()
        except TimeoutError:
            raise SidecarError(f"the sidecar did not answer within {timeout:.0f} s") from None
        except OSError as exc:
            raise SidecarError(f"the connection to the sidecar failed ({exc})") from None
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise SidecarError(f"the sidecar sent an answer that is not JSON ({path})") from None

    def health(self, timeout: float = 2.0) -> bool:
        """Whether the sidecar answers `GET /health`."""
        try:
            answer = self._json("GET", "/health", timeout)
        except SidecarError:
            return False
        return isinstance(answer, dict) and answer.get("status") == "ok"

    def chunking(self, timeout: float = 2.0) -> dict | None:
        """How the sidecar cuts text into chunks (`GET /health/detailed`'s `chunking`); None if unknown."""
        try:
            answer = self._json("GET", "/health/detailed", timeout)
        except SidecarError:
            return None
        chunking = answer.get("chunking") if isinstance(answer, dict) else None
        return chunking if isinstance(chunking, dict) else None

    def create_job(self, text: str, timeout: float, **fields: Any) -> dict:
        """`POST /v1/jobs` (fields as for `render`) → {job_id}."""
        body = {"text": text, **{k: v for k, v in fields.items() if v not in (None, "")}}
        answer = self._json("POST", "/v1/jobs", timeout, body)
        if not isinstance(answer, dict) or not answer.get("job_id"):
            raise SidecarError("the sidecar did not return a job_id")
        return answer

    def cancel_job(self, job_id: str, timeout: float = 5.0) -> None:
        """`DELETE /v1/jobs/{id}`; errors are ignored (the job may be gone already)."""
        with contextlib.suppress(SidecarError):
            self._json("DELETE", f"/v1/jobs/{urllib.parse.quote(job_id)}", timeout)

    def job_events(self, job_id: str, timeout: float) -> Iterator[tuple[str, dict]]:
        """`GET /v1/jobs/{id}/events`: (event name, data) pairs — ("chunk_ready", chunk) and
        ("message", job) — until the job has ended; SidecarError after `timeout` seconds."""
        path = f"/v1/jobs/{urllib.parse.quote(job_id)}/events"
        deadline = time.monotonic() + timeout
        with self._open("GET", path, timeout) as response:
            # The event stream format: `event:` and `data:` lines (several data lines are joined
            # with newlines), a blank line ends an event; comments (`:`), `id:` and `retry:` are skipped.
            name, data = "message", []
            try:
                for raw in response:
                    if time.monotonic() > deadline:
                        break
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line:
                        if data:
                            try:
                                event = json.loads("\n".join(data))
                            except ValueError:
                                raise SidecarError("the sidecar sent an event that is not JSON") from None
                            yield name, event
                            if name == "message" and event.get("finished"):
                                return
                        name, data = "message", []
            except TimeoutError:
                pass
            except OSError as exc:
                raise SidecarError(f"the connection to the sidecar failed ({exc})") from None
        if time.monotonic() < deadline:
            raise SidecarError("the sidecar ended the job's event stream before the job ended")
        raise SidecarError(f"the video was not ready within {timeout:.0f} s")

    def download(self, path: str, dest: Path, timeout: float) -> Path:
        """Save the video at API `path` as `dest` (written to a temporary file, then renamed)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".mp4", dir=str(dest.parent))
        try:
            with os.fdopen(fd, "wb") as out, self._open("GET", path, timeout) as response:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
            os.replace(tmp, dest)
        except TimeoutError:
            raise SidecarError(f"the video download did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise SidecarError(f"the video could not be saved ({exc})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def avatars(self, timeout: float = 5.0) -> list[tuple[str, str]]:
        """`GET /v1/avatars` as (label, avatar_id) pairs."""
        answer = self._json("GET", "/v1/avatars", timeout)
        items = answer.get("avatars", []) if isinstance(answer, dict) else answer
        pairs = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                ident = str(item.get("avatar_id") or "")
                label = f"{item['persona']}'s avatar" if item.get("persona") else f"uploaded {ident[:12]}"
            else:
                ident = label = str(item)
            if ident:
                pairs.append((label, ident))
        return pairs

    def upload_avatar(self, image: Path, timeout: float = 60.0) -> str:
        """`POST /v1/avatars` (multipart field `file`) → the new avatar_id."""
        boundary = uuid.uuid4().hex
        data = Path(image).read_bytes()
        name = Path(image).name.replace('"', "")
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self._json(
            "POST", "/v1/avatars", timeout, body=body, ctype=f"multipart/form-data; boundary={boundary}"
        )
        if not isinstance(answer, dict) or not answer.get("avatar_id"):
            raise SidecarError("the sidecar did not return an avatar_id")
        return str(answer["avatar_id"])


def _http_message(exc: urllib.error.HTTPError) -> str:
    """The sidecar's own error message (`error` or FastAPI's `detail`), else the HTTP status."""
    detail = ""
    try:
        data = json.loads(exc.read() or b"null")
        if isinstance(data, dict):
            detail = data.get("error") or data.get("detail") or ""
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    except (OSError, ValueError):
        pass
    if exc.code in (401, 403) and not detail:
        detail = "the token was refused"
    return f"sidecar error {exc.code}: {detail or exc.reason}"
