"""AllTalk: speech from a running AllTalk TTS server (https://github.com/erew123/alltalk_tts),
the TTS most text-generation-webui users already run, over its HTTP API (v1 or v2).

The API generation is read from the server: v2's `/api/currentsettings` names the loaded
engine (`current_engine_loaded`), v1's does not. Both generate with `POST /api/tts-generate`
(form fields; v1 requires every field, v2 fills the missing ones from its settings) and answer
with the WAV's path and URL (v1 absolute, v2 relative). From the mode, v2 receives the speed
and pitch where its engine supports them (the voice stage applies the rest), and with
`alltalk.rvc_voice` AllTalk's own RVC converts the voice (the voice stage is then skipped).
"""

from __future__ import annotations

import http.client
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

from ara_persona import Mode, VoiceParams
from ara_sidecar.audio import Audio, load_audio, resample
from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable, UserError
from ara_sidecar.registry import Readiness
from ara_sidecar.tts.base import TTS

OUTPUT_NAME = "ara"  # output_file_name (AllTalk allows ^[a-zA-Z0-9_]+$); a timestamp makes it unique
PROBE_TTL_S = 30.0  # the server's API, engine and voices are read again after this many seconds
FADE_S = 0.005  # raised-cosine fade at each join of the pieces of one long sentence
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_BREAKS = (re.compile(r"[.!?…;:]\s"), re.compile(r",\s"), re.compile(r"\s"))  # best first


@dataclass(frozen=True)
class ServerInfo:
    """What the server said about itself."""

    api: int  # 1 or 2
    engine: str | None  # v2: the loaded TTS engine (xtts, piper, f5tts, …)
    model: str | None
    voices: tuple[str, ...]  # empty when the engine has a single voice
    rvc_voices: tuple[str, ...]  # v2 with RVC enabled
    speed_capable: bool
    pitch_capable: bool

    def describe(self, url: str) -> str:
        engine = f", engine {self.engine}" if self.engine else ""
        model = f", model {self.model}" if self.model else ""
        voices = ", ".join(self.voices[:8]) + (", …" if len(self.voices) > 8 else "")
        rvc = f"; {len(self.rvc_voices)} RVC voices" if self.rvc_voices else ""
        listed = f"{len(self.voices)} voices: {voices or 'none'}"
        return f"AllTalk API v{self.api} at {url}{engine}{model}; {listed}{rvc}"


class AllTalkClient:
    """AllTalk's HTTP API. Connection errors are retried once; AllTalk's own failures and
    timeouts raise BackendUnavailable naming the server and what it said."""

    def __init__(self, url: str, connect_timeout_s: float, timeout_s: float):
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._prefix = parts.path.rstrip("/")
        self.local = self._host in _LOOPBACK  # its files are on this machine
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of `method path`, `form` sent URL-encoded."""
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        for _attempt in range(2):
            try:
                return self._once(method, path, body, headers)
            except TimeoutError:
                raise BackendUnavailable(
                    f"AllTalk at {self.url} did not answer {method} {path} in time "
                    f"(alltalk.connect_timeout_s {self.connect_timeout_s:g} s, "
                    f"alltalk.timeout_s {self.timeout_s:g} s)"
                ) from None
            except (OSError, http.client.HTTPException) as exc:  # refused, reset or dropped: retry once
                error = exc
        raise BackendUnavailable(
            f"cannot reach AllTalk at {self.url} ({error or type(error).__name__}): is it running? "
            "(alltalk.url, ARA_ALLTALK_URL)"
        )

    def _once(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = kind(self._host, self._port, timeout=self.connect_timeout_s)
        try:
            conn.connect()
            conn.sock.settimeout(self.timeout_s)
            conn.request(method, self._prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> dict:
        status, body = self.request("GET", path)
        data = _json(body)
        if status != 200 or data is None:
            raise BackendUnavailable(
                f"AllTalk at {self.url}: GET {path} failed (HTTP {status}): {_message(body)}"
            )
        return data

    def probe(self) -> ServerInfo:
        """Reachability, API generation, engine and voices."""
        status, body = self.request("GET", "/api/ready")
        if status != 200:
            raise BackendUnavailable(
                f"{self.url} does not look like AllTalk: GET /api/ready answered HTTP {status}"
            )
        if body.decode(errors="replace").strip() != "Ready":
            raise BackendUnavailable(
                f"AllTalk at {self.url} is not ready ({body.decode(errors='replace').strip()!r}): "
                "load a TTS engine in AllTalk"
            )
        current = self.get_json("/api/currentsettings")
        api = 2 if "current_engine_loaded" in current else 1
        voices = (
            self.get_json("/api/voices").get("voices") or []
        )  # v2: an error status for single-voice engines
        rvc = (self.get_json("/api/rvcvoices").get("rvcvoices") or []) if api == 2 else []
        return ServerInfo(
            api=api,
            engine=current.get("current_engine_loaded") if api == 2 else None,
            model=current.get("current_model_loaded"),
            voices=tuple(str(v) for v in voices),
            rvc_voices=tuple(str(v) for v in rvc if v != "Disabled"),
            speed_capable=api == 2 and bool(current.get("generationspeed_capable")),
            pitch_capable=api == 2 and bool(current.get("pitch_capable")),
        )

    def generate(self, form: dict[str, str]) -> Audio:
        """`POST /api/tts-generate`, then the WAV it made: from the shared file when AllTalk runs
        on this machine, otherwise from its URL (absolute in v1, relative in v2)."""
        status, body = self.request("POST", "/api/tts-generate", form)
        data = _json(body) or {}
        if status != 200 or data.get("status") != "generate-success":
            raise BackendUnavailable(
                f"AllTalk at {self.url} could not generate speech (HTTP {status}): {_message(body)}"
            )
        link = str(data.get("output_file_url") or "")
        shared = Path(str(data.get("output_file_path") or ""))
        if self.local and data.get("output_file_path") and shared.is_file():
            audio, where = shared.read_bytes(), str(shared)
        else:
            parts = urlsplit(link)
            status, audio = self.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            where = link
            if status != 200:
                raise BackendUnavailable(
                    f"AllTalk at {self.url} reported success but its file {link or '(no URL)'} "
                    f"is missing (HTTP {status})"
                )
        if not audio:
            raise BackendUnavailable(f"AllTalk at {self.url} reported success but its file {where} is empty")
        return _decode(
            audio, Path(urlsplit(where).path).suffix or ".wav", f"AllTalk at {self.url} sent {where}"
        )


class AllTalkTTS(TTS):
    name = "alltalk"

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        cfg = settings.alltalk
        self.client = AllTalkClient(cfg.url, cfg.connect_timeout_s, cfg.timeout_s)
        self._info: ServerInfo | None = None
        self._probed = 0.0
        self._lock = threading.Lock()

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        cfg = settings.alltalk
        client = AllTalkClient(cfg.url, cfg.connect_timeout_s, cfg.connect_timeout_s)
        try:
            return Readiness(True, client.probe().describe(client.url))
        except BackendUnavailable as exc:
            return Readiness(False, str(exc))

    def server(self) -> ServerInfo:
        """The server's facts, read at most every PROBE_TTL_S seconds."""
        with self._lock:
            if self._info is None or time.monotonic() - self._probed > PROBE_TTL_S:
                self._info, self._probed = self.client.probe(), time.monotonic()
            return self._info

    def mode_inputs(self, mode: Mode | None) -> dict:
        """The form fields (all but the text) that `synthesize` sends for `mode`."""
        cfg, info = self.settings.alltalk, self.server()
        voice = (mode.alltalk_voice if mode else None) or cfg.voice
        if voice is None and info.api == 1:
            raise BackendUnavailable(
                f"AllTalk v1 at {self.client.url} needs a voice: set alltalk.voice (or alltalk_voice in "
                f"the persona's modes.yaml); its voices: {', '.join(info.voices) or 'none'}"
            )
        if voice is not None and info.voices and voice not in info.voices:
            raise BackendUnavailable(
                f"AllTalk at {self.client.url} has no voice {voice!r}; its voices: {', '.join(info.voices)}"
            )
        form = {
            "text_filtering": "html",  # AllTalk strips markup and characters it cannot speak
            "narrator_enabled": "false",
            "language": cfg.language,
            "output_file_name": OUTPUT_NAME,
            "output_file_timestamp": "true",
            "autoplay": "false",
        }
        if voice is not None:
            form["character_voice_gen"] = voice
        if info.api == 1:
            return {
                **form,
                "narrator_voice_gen": voice,
                "text_not_inside": "character",
                "autoplay_volume": "0.8",
            }
        params, rvc = (mode.voice, cfg.rvc_voice) if mode else (VoiceParams(), None)
        if rvc is not None and rvc not in info.rvc_voices:
            raise BackendUnavailable(
                f"AllTalk at {self.client.url} has no RVC voice {rvc!r} (alltalk.rvc_voice); its RVC voices: "
                f"{', '.join(info.rvc_voices) or 'none (enable RVC in AllTalk)'}"
            )
        form["rvccharacter_voice_gen"] = rvc or "Disabled"  # explicit: AllTalk's own default may be on
        if rvc is not None:
            form["rvccharacter_pitch"] = f"{np.clip(params.pitch_semitones, -24, 24):g}"
        elif info.pitch_capable:
            form["pitch"] = f"{np.clip(params.pitch_semitones, -10, 10):g}"
        if info.speed_capable:
            form["speed"] = f"{np.clip(params.speed, 0.25, 2.0):g}"
        return form

    def voice_stage_params(self, params: VoiceParams) -> VoiceParams | None:
        if self.settings.alltalk.rvc_voice is not None:
            return None
        info = self.server()
        return replace(
            params,
            speed=1.0 if info.speed_capable else params.speed,
            pitch_semitones=0.0 if info.pitch_capable else params.pitch_semitones,
        )

    def synthesize(self, text: str, mode: Mode | None = None) -> Audio:
        form = self.mode_inputs(mode)
        pieces = [
            self.client.generate({"text_input": piece, **form})
            for piece in split_text(text, self.settings.alltalk.max_chars)
        ]
        return join_audio(pieces)

    def fingerprint(self) -> dict:
        info = self.server()
        return {
            "backend": self.name,
            "url": self.client.url,
            "api": info.api,
            "engine": info.engine,
            "model": info.model,
            "max_chars": self.settings.alltalk.max_chars,
        }


def split_text(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at the last sentence or clause end,
    else the last space, else hard."""
    pieces = []
    text = text.strip()
    while len(text) > limit:
        window = text[: limit + 1]
        cut = next((m.end() for b in _BREAKS for m in reversed(list(b.finditer(window)))), limit)
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    return [p for p in [*pieces, text] if p]


def join_audio(pieces: list[Audio]) -> Audio:
    """Concatenate at the first piece's rate, each join faded out and in (no click)."""
    rate = pieces[0].sample_rate
    parts = [resample(p, rate).samples.copy() for p in pieces]
    n = max(1, round(FADE_S * rate))
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    for i, samples in enumerate(parts):
        k = min(n, len(samples))
        if i > 0:
            samples[:k] *= ramp[:k]
        if i + 1 < len(parts):
            samples[len(samples) - k :] *= ramp[::-1][n - k :]
    return Audio(np.concatenate(parts), rate)


def _decode(data: bytes, suffix: str, what: str) -> Audio:
    with tempfile.TemporaryDirectory(prefix="ara-alltalk-") as tmp:
        path = Path(tmp) / f"speech{suffix}"
        path.write_bytes(data)
        try:
            return load_audio(path)
        except UserError as exc:
            raise BackendUnavailable(f"{what}, which is not audio: {exc}") from None


def _json(body: bytes) -> dict | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _message(body: bytes) -> str:
    """AllTalk's error text: `error`, `message` or FastAPI's `detail`, else the body itself."""
    data = _json(body) or {}
    text = data.get("error") or data.get("message") or data.get("detail")
    if isinstance(text, list):  # FastAPI's 422: [{"loc": [...], "msg": ...}, …]
        text = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in text)
    return str(text or body.decode(errors="replace").strip()[:300] or "no message")
