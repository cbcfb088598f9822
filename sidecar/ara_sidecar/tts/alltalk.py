"""AllTalk: speech from a running AllTalk TTS server (https://github.com/erew123/alltalk_tts),
the TTS most text-generation-webui users already run, over its HTTP API (v1 or v2).

The API generation is read from the server: v2's `/api/currentsettings` names the loaded
engine (`current_engine_loaded`), v1's does not. Both generate with `POST /api/tts-generate`
(form fields; v1 requires every field, v2 fills the missing ones from its settings) and answer
with the WAV's path and URL (v1 absolute, v2 relative). From the mode, v2 receives the speed
and pitch where its engine supports them (the voice stage applies the rest), and with
`alltalk.rvc_voice` AllTalk's own RVC converts the voice (the voice stage is then skipped).

The text goes unfiltered (`text_filtering=none`): Ara has already said its symbols as words,
and AllTalk's filters would delete every character outside their list. Voices are matched as
users type them (case and extension aside) and sent as the server lists them; with none
configured one is chosen from the list (`pick_voice`). AllTalk's Piper engine starts a process
per request: the cost of a request is measured (`request_cost_s`), so that the planner sends
such a backend few, long chunks.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

from ara_persona import Mode, VoiceParams
from ara_sidecar.audio import Audio, load_audio, resample, silence
from ara_sidecar.config import Settings
from ara_sidecar.digest import must_not_wait
from ara_sidecar.errors import BackendUnavailable, UserError
from ara_sidecar.registry import Readiness
from ara_sidecar.tts.base import TTS

log = logging.getLogger(__name__)

STREAM_NAME = "ara_stream"  # output_file of a streamed generation (AllTalk writes no file for it)
OUTPUT_NAME = "ara"  # output_file_name (AllTalk allows ^[a-zA-Z0-9_]+$); a timestamp makes it unique
PROBE_TTL_S = 30.0  # the server's API, engine and voices are read again after this many seconds
FADE_S = 0.005  # raised-cosine fade at each join of the pieces of one long sentence
SILENCE_RATE = 24000  # Hz of the pause for a reply with nothing speakable at all
COST_PROBE_TEXT = "Hello."  # measures the cost of a request when none is known
COST_SPEECH_S = 2.0  # requests for at most this much speech measure the cost (longer ones add synthesis)
COST_FILE = "alltalk-cost.json"  # in the cache folder: {"URL ENGINE MODEL": seconds}
VOICE_SUFFIXES = {".wav", ".onnx", ".pth", ".json"}
# Words in the names of female voices (XTTS's female_01.wav, Piper's en_US-amy-medium, …)
FEMALE_WORDS = frozenset(
    "female woman girl amy kathleen kristin lessac ljspeech jenny alba cori".split()  # noqa: SIM905
)
NO_VOICES = "No Voices Found"  # v2's list when an engine has no voices installed
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
    streaming_capable: bool = False  # v2: the engine streams (/api/tts-generate-streaming)

    def describe(self, url: str) -> str:
        engine = f", engine {self.engine}" if self.engine else ""
        model = f", model {self.model}" if self.model else ""
        voices = ", ".join(self.voices[:8]) + (", …" if len(self.voices) > 8 else "")
        rvc = f"; {len(self.rvc_voices)} RVC voices" if self.rvc_voices else ""
        listed = f"{len(self.voices)} voices: {voices or 'none'}"
        return f"AllTalk API v{self.api} at {url}{engine}{model}; {listed}{rvc}"


class GenerationFailed(BackendUnavailable):
    """AllTalk answered a generation with an error."""


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
            except http.client.IncompleteRead:  # a streamed answer broke off: the engine failed
                raise GenerationFailed(
                    f"AllTalk at {self.url} broke off its answer to {method} {path.split('?')[0]} "
                    "(its engine failed: see AllTalk's console)"
                ) from None
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
            voices=tuple(str(v) for v in voices if v != NO_VOICES),
            rvc_voices=tuple(str(v) for v in rvc if v != "Disabled"),
            speed_capable=api == 2 and bool(current.get("generationspeed_capable")),
            pitch_capable=api == 2 and bool(current.get("pitch_capable")),
            streaming_capable=api == 2 and bool(current.get("streaming_capable")),
        )

    def stream(self, text: str, voice: str, language: str) -> Audio:
        """`GET /api/tts-generate-streaming`: the speech itself, as the engine makes it (a WAV
        header that gives no length, then 16-bit PCM), at the engine's own speed and pitch."""
        query = urlencode({"text": text, "voice": voice, "language": language, "output_file": STREAM_NAME})
        status, body = self.request("GET", f"/api/tts-generate-streaming?{query}")
        if status != 200 or body[:4] != b"RIFF":
            raise GenerationFailed(
                f"AllTalk at {self.url} could not stream speech (HTTP {status}): {_message(body)}"
            )
        return _decode_stream(body, f"AllTalk at {self.url} streamed speech")

    def generate(self, form: dict[str, str]) -> Audio:
        """`POST /api/tts-generate`, then the WAV it made: from the shared file when AllTalk runs
        on this machine, otherwise from its URL (absolute in v1, relative in v2)."""
        status, body = self.request("POST", "/api/tts-generate", form)
        data = _json(body) or {}
        if status != 200 or data.get("status") != "generate-success":
            raise GenerationFailed(
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
        self._cost_lock = threading.Lock()  # held while the cost is probed (one probe at a time)
        self._cost_s: float | None = None
        self._logged: set[str] = set()

    @property
    def language(self) -> str | None:
        return self.settings.alltalk.language

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
                must_not_wait(f"AllTalk at {self.client.url}")  # not on the event loop (planning)
                self._info, self._probed = self.client.probe(), time.monotonic()
            return self._info

    def voice(self, mode: Mode | None) -> tuple[str | None, str]:
        """The voice to send, as the server lists it, and where it came from: the mode's
        `alltalk_voice`, else `alltalk.voice`, else the persona's (`_persona_voice`), else one
        chosen from the server's list (`pick_voice`; None where it lists none: AllTalk's own
        default)."""
        cfg, info = self.settings.alltalk, self.server()
        wanted, source = (mode.alltalk_voice, "alltalk_voice of mode " + mode.name) if mode else (None, "")
        if wanted is None and cfg.voice is not None:
            wanted, source = cfg.voice, "alltalk.voice"
        if wanted is None:
            wanted, source = self._persona_voice()
            if wanted is not None:
                self._log_once(f"AllTalk at {self.client.url}: speaking with {wanted!r}, the {source}")
        if wanted is None:
            chosen = pick_voice(info.voices, self.settings.persona)
            if chosen is not None:
                self._log_once(
                    f"AllTalk at {self.client.url}: no voice configured (alltalk.voice, or alltalk_voice "
                    f"in the persona's modes.yaml); speaking with {chosen!r} of its voices: "
                    f"{_listing(info.voices)}"
                )
                return chosen, "chosen from the server's voices"
            if info.api == 1:
                raise BackendUnavailable(
                    f"AllTalk v1 at {self.client.url} lists no voices: put a voice sample (.wav) in its "
                    "voices folder, or set alltalk.voice"
                )
            return None, "AllTalk's default voice"
        if not info.voices:
            return wanted, source
        listed = match_voice(wanted, info.voices)
        if listed is None:
            raise BackendUnavailable(
                f"AllTalk at {self.client.url} has no voice {wanted!r} ({source}); its voices: "
                f"{_listing(info.voices)}"
            )
        return listed, source

    def streams(self) -> bool:
        """Whether speech is streamed: `alltalk.streaming`, an engine that streams (v2, e.g. XTTS),
        and no AllTalk RVC (the streaming route applies none, nor the mode's speed)."""
        cfg, info = self.settings.alltalk, self.server()
        return cfg.streaming and info.streaming_capable and cfg.rvc_voice is None and bool(info.voices)

    def _persona_voice(self) -> tuple[str | None, str]:
        """The `alltalk_voice` the configured persona gives its default mode, else another mode."""
        from ara_sidecar.personas import get_persona  # the persona of `settings.persona`

        try:
            persona = get_persona(self.settings)
        except UserError:
            return None, ""
        modes = [persona.modes.get(persona.default_mode), *persona.modes.values()]
        mode = next((m for m in modes if m is not None and m.alltalk_voice), None)
        if mode is None:
            return None, ""
        return mode.alltalk_voice, f"alltalk_voice of persona {persona.name} (mode {mode.name})"

    def mode_inputs(self, mode: Mode | None) -> dict:
        """The form fields (all but the text) that `synthesize` sends for `mode`."""
        cfg, info = self.settings.alltalk, self.server()
        voice, _source = self.voice(mode)
        if voice is not None and self.streams():
            return {"streaming": "true", "voice": voice, "language": cfg.language}
        form = {
            "text_filtering": "none",  # Ara normalised the text: AllTalk's filters would delete symbols
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
        if rvc is not None:
            rvc = match_voice(rvc, info.rvc_voices)
            if rvc is None:
                listed = _listing(info.rvc_voices) if info.rvc_voices else "none (enable RVC in AllTalk)"
                raise BackendUnavailable(
                    f"AllTalk at {self.client.url} has no RVC voice {cfg.rvc_voice!r} (alltalk.rvc_voice); "
                    f"its RVC voices: {listed}"
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
        info, streams = self.server(), self.streams()
        return replace(
            params,
            speed=1.0 if info.speed_capable and not streams else params.speed,
            pitch_semitones=0.0 if info.pitch_capable and not streams else params.pitch_semitones,
        )

    def synthesize(self, text: str, mode: Mode | None = None) -> Audio:
        form = self.mode_inputs(mode)
        pieces = split_text(text, self.settings.alltalk.max_chars)
        # Text with nothing to say ("...", "-") makes AllTalk's engines fail: a pause instead.
        spoken = [self._generate({"text_input": p, **form}, mode) if speakable(p) else None for p in pieces]
        rate = next((a.sample_rate for a in spoken if a is not None), SILENCE_RATE)
        return join_audio(
            [a or Audio(silence(pause_s(p), rate), rate) for a, p in zip(spoken, pieces, strict=True)]
        )

    def _generate(self, form: dict[str, str], mode: Mode | None) -> Audio:
        started = time.monotonic()
        try:
            if form.get("streaming"):
                audio = self.client.stream(form["text_input"], form["voice"], form["language"])
            else:
                audio = self.client.generate(form)
        except GenerationFailed as exc:
            voice, source = self.voice(mode)
            info = self.server()
            raise GenerationFailed(
                f"{exc} (voice {voice or 'AllTalk default'!r}: {source}; its voices: {_listing(info.voices)})"
            ) from None
        if audio.duration_s <= COST_SPEECH_S:  # the time of a short request is its fixed cost
            self._learn_cost(time.monotonic() - started)
        return audio

    # -- the cost of a request ---------------------------------------------------------------

    def request_cost_s(self) -> float:
        """`alltalk.request_cost_s`, else the quickest short generation (≤ COST_SPEECH_S of speech)
        measured against this server and engine (remembered in the cache folder), else measured
        now with one short request."""
        configured = self.settings.alltalk.request_cost_s
        if configured is not None:
            return configured
        with self._cost_lock:
            if self._cost_s is None:
                self._cost_s = _remembered_costs(self._cost_file()).get(self._cost_key())
            if self._cost_s is None:
                must_not_wait(f"AllTalk at {self.client.url}")
                self._generate({"text_input": COST_PROBE_TEXT, **self.mode_inputs(None)}, None)
            return self._cost_s or 0.0

    def _learn_cost(self, seconds: float) -> None:
        if self._cost_s is not None and seconds >= self._cost_s:
            return
        self._cost_s = seconds
        path = self._cost_file()
        try:
            costs = _remembered_costs(path)
            costs[self._cost_key()] = round(seconds, 3)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{threading.get_ident()}")
            partial.write_text(json.dumps(costs, indent=1, sort_keys=True), encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            self._log_once(f"cannot remember AllTalk's cost per request in {path}: {exc}")

    def _cost_key(self) -> str:
        info = self.server()
        return f"{self.client.url} {info.engine or 'v1'} {info.model}"

    def _cost_file(self) -> Path:
        return self.settings.path(self.settings.cache.dir) / COST_FILE

    def _log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning(message)

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


def match_voice(wanted: str, listed: tuple[str, ...]) -> str | None:
    """The listed voice that `wanted` names: the same name, else the same ignoring case, with or
    without its extension (en_US-joe-medium, EN_US-JOE-MEDIUM.onnx → en_US-joe-medium.onnx)."""
    if wanted in listed:
        return wanted
    key = _voice_key(wanted)
    return next((v for v in listed if key in (_voice_key(v), v.casefold())), None)


def pick_voice(listed: tuple[str, ...], persona: str) -> str | None:
    """A voice when none is configured: one named after the persona, else a female one, else the
    first listed; None when the server lists none."""
    named = [v for v in listed if persona.casefold() in _words(v)]
    female = [v for v in listed if _words(v) & FEMALE_WORDS]
    return next(iter(named or female or listed), None)


def speakable(text: str) -> bool:
    """Whether `text` has anything to say (a letter or digit)."""
    return any(ch.isalnum() for ch in text)


def pause_s(text: str) -> float:
    """The pause that stands in for unspeakable text ("...", "-")."""
    return min(1.0, max(0.2, 0.1 * len(text.strip())))


def _voice_key(name: str) -> str:
    name = name.replace("\\", "/").casefold()
    return name.rsplit(".", 1)[0] if Path(name).suffix in VOICE_SUFFIXES else name


def _words(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", _voice_key(name)))


def _listing(voices: tuple[str, ...]) -> str:
    return ", ".join(voices[:12]) + (f", … ({len(voices)} in all)" if len(voices) > 12 else "") or "none"


def _remembered_costs(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return (
        {k: float(v) for k, v in data.items() if isinstance(v, int | float)} if isinstance(data, dict) else {}
    )


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


def _decode_stream(data: bytes, what: str) -> Audio:
    """A streamed WAV: its header (whose lengths are zero) for the format, the rest as PCM."""
    try:
        with wave.open(io.BytesIO(data[:44])) as header:
            rate, width, channels = header.getframerate(), header.getsampwidth(), header.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise BackendUnavailable(f"{what}, which is not a WAV stream: {exc}") from None
    pcm = data[44 : 44 + (len(data) - 44) // (width * channels) * width * channels]
    if width != 2 or not pcm:
        raise BackendUnavailable(f"{what}, {len(pcm)} bytes of {8 * width}-bit audio: no speech")
    samples = np.frombuffer(pcm, np.int16).reshape(-1, channels).mean(axis=1) / 32768.0
    return Audio(samples.astype(np.float32), rate)


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
