"""Where Ara lives on this machine, and the sidecar process the extension may start.

`install.py --tgwui` copies the extension into text-generation-webui and writes
`ara_avatar.json` next to `script.py`: the repository, its `.venv` Python and the
`ara-sidecar` command. Run from a checkout (or through a link), the repository is simply the
folder above the extension.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ara_tgwui.client import SidecarClient

RECORD = "ara_avatar.json"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
log = logging.getLogger("ara_avatar")


@dataclass(frozen=True)
class Install:
    """The Ara checkout the extension belongs to."""

    repo: Path | None
    command: tuple[str, ...]  # how to run `ara-sidecar`; empty if unknown

    @property
    def sidecar_src(self) -> Path | None:
        """The folder holding the `ara_persona` package."""
        return self.repo / "sidecar" if self.repo else None

    @property
    def personas_dir(self) -> Path | None:
        return self.repo / "personas" if self.repo else None


def _venv_command(venv: Path) -> tuple[str, ...]:
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    exe = scripts / ("ara-sidecar.exe" if os.name == "nt" else "ara-sidecar")
    if exe.is_file():
        return (str(exe),)
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    return (str(python), "-m", "ara_sidecar") if python.is_file() else ()


def locate(extension_dir: Path) -> Install:
    """The install recorded in `extension_dir`, else the checkout around it."""
    record = extension_dir / RECORD
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            repo = Path(data["repo"])
            command = tuple(data.get("command") or ()) or _venv_command(repo / ".venv")
            return Install(repo, command)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ara: ignoring the unreadable %s (%s)", record, exc)
    repo = extension_dir.resolve().parent
    if (repo / "sidecar" / "ara_persona").is_dir():
        return Install(repo, _venv_command(repo / ".venv"))
    return Install(None, ())


def is_local(url: str) -> bool:
    """Whether `url` points at this machine (only such a sidecar may be started here)."""
    return (urllib.parse.urlsplit(url).hostname or "") in LOCAL_HOSTS


class SidecarProcess:
    """An `ara-sidecar serve` child process, stopped when Python exits."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._registered = False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, command: tuple[str, ...], url: str, token: str, log_path: Path) -> bool:
        """Start the sidecar for `url` unless this object already runs one; False if impossible."""
        with self._lock:
            if self.running():
                return True
            if not command:
                log.warning("Ara: cannot start the sidecar: no `ara-sidecar` found (run install.py)")
                return False
            parts = urllib.parse.urlsplit(url)
            args = [
                *command,
                "serve",
                "--host",
                parts.hostname or "127.0.0.1",
                "--port",
                str(parts.port or 7870),
            ]
            log_path.parent.mkdir(parents=True, exist_ok=True)
            flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
            env = {**os.environ, "ARA_SERVER_TOKEN": token} if token else None  # not in the process list
            try:
                with open(log_path, "ab") as out:
                    self.process = subprocess.Popen(
                        args,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        creationflags=flags,
                        env=env,
                    )
            except OSError as exc:
                log.warning("Ara: could not start the sidecar (%s)", exc)
                return False
            if not self._registered:
                atexit.register(self.stop)
                self._registered = True
            log.info("Ara: started the sidecar (pid %d, log %s)", self.process.pid, log_path)
            return True

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the sidecar this object started (then kill it after `grace_s`)."""
        with self._lock:
            process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace_s)


def wait_healthy(client: SidecarClient, process: SidecarProcess, deadline: float) -> bool:
    """Poll `/health` until `deadline` (time.monotonic), or until the started process died."""
    while True:
        if client.health(timeout=min(2.0, max(deadline - time.monotonic(), 0.1))):
            return True
        if time.monotonic() >= deadline or (process.process is not None and not process.running()):
            return False
        time.sleep(0.2)


def add_to_path(folder: Path | None) -> None:
    """Make `ara_persona` importable from `folder` unless it already is."""
    try:
        import ara_persona  # noqa: F401
    except ImportError:
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
