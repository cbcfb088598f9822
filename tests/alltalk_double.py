"""A local stand-in for an AllTalk TTS server, API v1 or v2: the same routes, form parsing,
validation, defaults, status codes, bodies and headers. It speaks a tone whose length follows the
text as AllTalk would pass it to the engine (after its text filtering) and the speed, written as a
16-bit WAV file into its outputs folder.

What it mirrors (keep it in step when either changes):
- v2: erew123/alltalk_tts branch alltalkbeta at 7a59e9c (2025-02-27), tts_server.py, config.py,
  confignew.json and system/tts_engines/{piper,xtts}/ (model_engine.py, model_settings.json), on
  FastAPI 0.112.2 as its requirements pin. Every v2 response of the Piper engine below was
  recorded from that server running here (Piper engine, the joe voice) on 2026-12-06; the XTTS
  engine's capabilities and defaults are from its model_settings.json.
- v1: branch main at 492dbe5 (2025-02-27), tts_server.py on FastAPI 0.110.0 / pydantic 2.6.4,
  from the source (its XTTS model cannot run here). Its 400 bodies carry pydantic's own text,
  whose documentation links name the pydantic version installed here.

Its streaming route (GET /api/tts-generate-streaming, v2) follows the source: XTTS's stream is a
WAV header without lengths, then 16-bit PCM at 24 kHz; an engine failure breaks the stream off
after its headers. v1's streaming route is not mirrored (Ara does not use it).

Switches for the failure tests: `cost_s` (seconds each generation takes, like the Piper engine
starting a process), `delay_s` (a stalled server), `failure` (the engine raises a RuntimeError),
`missing` / `empty` (success, but the file is absent / zero bytes), `drop` (connections closed
without an answer), `ready` (v2's /api/ready text).
"""

from __future__ import annotations

import html
import io
import json
import re
import threading
import time
import uuid
import wave
from email.utils import formatdate
from hashlib import md5, sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

RATE = 22050  # the joe voice's rate (XTTS: 24000)
MAX_CHARS = 2000  # api_def.api_max_characters
# confignew.json api_def.api_allowed_filter: what "standard" and "html" filtering keep
ALLOWED = re.compile(
    "[^a-zA-Z0-9\\s.,;:!?\\-\\'\"$\u0400-\u04ff\u00c0-\u017f\u0150\u0151\u0170\u0171\u011e\u011f"
    "\u0130\u0131\u0900-\u097f\u2018\u2019\u201c\u201d\u3001\u3002\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff"
    "\u3400-\u4dbf\uf900-\ufaff\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff\uac00-\ud7a3"
    "\u1100-\u11ff\u3130-\u318f\uff01\uff0c\uff1a\uff1b\uff1f]"
)
V1_ALLOWED = re.compile(  # v1 filters with a narrower list, written into tts_server.py
    "[^a-zA-Z0-9\\s.,;:!?\\-\\'\"$\u0400-\u04ff\u00c0-\u00ff\u0150\u0151\u0170\u0171\u0900-\u097f"
    "\u2018\u2019\u201c\u201d\u3001\u3002\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
    "\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
    "\uff01\uff0c\uff1a\uff1b\uff1f]"
)
# Recorded: Piper's command fails (exit code 1) on text of only these, e.g. "...", "-", " ";
# "!!!", "♪" or an emoji are spoken (espeak names them).
PIPER_SILENT = re.compile(r"[\s.,;:\-'\"]*")

ENGINES = {  # model_settings.json: capabilities and default voices
    "piper": {
        "manufacturer_name": "Piper",
        "rate": 22050,
        "default_voice": "en_US-ljspeech-high.onnx",  # exists only after AllTalk's first-run download
        "voices": ("en_US-joe-medium.onnx",),
        "caps": {"deepspeed": False, "generationspeed": True, "lowvram": False, "pitch": False},
        "more": {"repetitionpenalty": False, "streaming": False, "temperature": False},
        "languages_capable": False,
    },
    "xtts": {
        "manufacturer_name": "Coqui",
        "rate": 24000,
        "default_voice": "female_01.wav",
        "voices": ("female_01.wav", "male_01.wav"),
        "caps": {"deepspeed": True, "generationspeed": True, "lowvram": True, "pitch": False},
        "more": {"repetitionpenalty": True, "streaming": True, "temperature": True},
        "languages_capable": True,
    },
}
V1_REQUIRED = (
    "text_input",
    "text_filtering",
    "character_voice_gen",
    "narrator_enabled",
    "narrator_voice_gen",
    "text_not_inside",
    "language",
    "output_file_name",
    "output_file_timestamp",
    "autoplay",
    "autoplay_volume",
)
V1_TYPES = {
    "narrator_enabled": bool,
    "output_file_timestamp": bool,
    "autoplay": bool,
    "autoplay_volume": float,
}
V2_TYPES = {
    **dict.fromkeys(("rvccharacter_pitch", "rvcnarrator_pitch", "autoplay_volume", "speed"), float),
    **dict.fromkeys(("temperature", "repetition_penalty", "pitch"), float),
    **dict.fromkeys(("output_file_timestamp", "autoplay", "streaming"), bool),
}
V2_FIELDS = (
    *("text_input", "text_filtering", "character_voice_gen", "rvccharacter_voice_gen", "rvccharacter_pitch"),
    *("narrator_enabled", "narrator_voice_gen", "rvcnarrator_voice_gen", "rvcnarrator_pitch"),
    *("text_not_inside", "language", "output_file_name", "output_file_timestamp", "autoplay"),
    *("autoplay_volume", "streaming", "speed", "temperature", "repetition_penalty", "pitch"),
)
_VOICE = r'^[^<>"|?*]+$'
_LANGUAGES = "auto|ar|zh-cn|zh|cs|nl|en|fr|de|hu|hi|it|ja|ko|pl|pt|ru|es|tr"


class V2Input(BaseModel):
    """tts_server.py's JSONInput (v2): the merged request, checked after the form is parsed."""

    text_input: str = Field(
        ..., max_length=MAX_CHARS, description=f"text_input needs to be {MAX_CHARS} characters or less."
    )
    text_filtering: str = Field(
        ...,
        pattern="^(none|standard|html)$",
        description="text_filtering needs to be 'none', 'standard' or 'html'.",
    )
    character_voice_gen: str = Field(
        ...,
        pattern=_VOICE,
        description="character_voice_gen needs to be the name of a valid voice for the loaded TTS engine.",
    )
    rvccharacter_voice_gen: str = Field(
        ...,
        description="rvccharacter_voice_gen needs to be the name of a valid pth file in the "
        "'folder\\file.pth' format or the word 'Disabled'.",
    )
    rvccharacter_pitch: float = Field(
        ..., description="RVC Character pitch needs to be a number between -24 and 24"
    )
    narrator_enabled: str = Field(
        ...,
        pattern="^(true|false|silent)$",
        description="narrator_enabled needs to be 'true', 'false' or 'silent'.",
    )
    narrator_voice_gen: str = Field(
        ...,
        pattern=_VOICE,
        description="character_voice_gen needs to be the name of a valid voice for the loaded TTS engine.",
    )
    rvcnarrator_voice_gen: str = Field(
        ...,
        description="rvcnarrator_voice_gen needs to be the name of a valid pth file in the "
        "'folder\\file.pth' format or the word 'Disabled'.",
    )
    rvcnarrator_pitch: float = Field(
        ..., description="RVC Narrator pitch needs to be a number between -24 and 24"
    )
    text_not_inside: str = Field(
        ...,
        pattern="^(character|narrator|silent)$",
        description="text_not_inside needs to be 'character', 'narrator' or 'silent'.",
    )
    language: str = Field(
        ...,
        pattern=f"^({_LANGUAGES})$",
        description=f"language needs to be one of the following: {_LANGUAGES.replace('|', ', ')}.",
    )
    output_file_name: str = Field(
        ...,
        pattern="^[a-zA-Z0-9_]+$",
        description="output_file_name needs to be the name without any special characters or file "
        "extension, e.g., 'filename'.",
    )
    output_file_timestamp: bool = Field(..., description="output_file_timestamp needs to be true or false.")
    autoplay: bool = Field(..., description="autoplay needs to be a true or false value.")
    autoplay_volume: float = Field(
        ..., ge=0.1, le=1.0, description="autoplay_volume needs to be from 0.1 to 1.0."
    )
    speed: float = Field(..., ge=0.25, le=2.0, description="speed needs to be between 0.25 and 2.0.")
    pitch: float = Field(..., ge=-10, le=10, description="pitch needs to be between -10 and 10.")
    temperature: float = Field(
        ..., ge=0.1, le=1.0, description="temperature needs to be between 0.1 and 1.0."
    )
    repetition_penalty: float = Field(
        ..., ge=1.0, le=20.0, description="repetition_penalty needs to be between 1.0 and 20.0."
    )


class V1Input(BaseModel):
    """tts_server.py's JSONInput (v1), whose name its 400 bodies give."""

    model_config = ConfigDict(title="JSONInput")

    text_input: str = Field(..., max_length=2000)
    text_filtering: str = Field(..., pattern="^(none|standard|html)$")
    character_voice_gen: str = Field(..., pattern="^.*\\.wav$")
    narrator_enabled: bool
    narrator_voice_gen: str = Field(..., pattern="^.*\\.wav$")
    text_not_inside: str = Field(..., pattern="^(character|narrator)$")
    language: str = Field(..., pattern="^(ar|zh-cn|cs|nl|en|fr|de|hu|hi|it|ja|ko|pl|pt|ru|es|tr)$")
    output_file_name: str = Field(..., pattern="^[a-zA-Z0-9_]+$")
    output_file_timestamp: bool
    autoplay: bool
    autoplay_volume: float = Field(..., ge=0.1, le=1.0)


class _Reply(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    """A 220 Hz tone starting and ending at non-zero amplitude."""
    t = np.arange(max(1, round(seconds * rate))) / rate
    return (0.5 * np.cos(2 * np.pi * 220 * t)).astype(np.float32)


def spoken_seconds(text: str, speed: float = 1.0) -> float:
    """How long the double speaks `text` (as the engine received it)."""
    return 0.06 * len(text) / speed


class AllTalkDouble:
    def __init__(
        self,
        outputs: Path,
        api: int = 2,
        engine: str = "piper",
        voices: tuple[str, ...] | None = None,
        rvc_voices: tuple[str, ...] = (),
    ):
        self.outputs, self.api, self.engine = Path(outputs), api, engine
        spec = ENGINES["xtts" if api == 1 else engine]
        self.rate = spec["rate"]
        self.voices = tuple(spec["voices"] if voices is None else voices)
        self.rvc_voices = tuple(rvc_voices)  # RVC is enabled when there are any (posix relative paths)
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.cost_s = self.delay_s = 0.0
        self.failure = False
        self.missing = self.empty = False
        self.drop = 0
        self.ready = "Ready"
        self.shared = True  # output_file_path is the real file (False: a path only AllTalk's machine has)
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, form)
        self.spoken: list[tuple[str, str, float]] = []  # (text the engine got, voice, speed)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AllTalkDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def generations(self) -> list[dict]:
        return [form for method, path, form in self.requests if path == "/api/tts-generate"]

    # -- GET routes ----------------------------------------------------------------------------

    def current_settings(self) -> dict:
        if self.api == 1:
            return {
                "models_available": [
                    {"name": "Coqui", "model_name": "API TTS"},
                    {"name": "Coqui", "model_name": "API Local"},
                    {"name": "Coqui", "model_name": "XTTSv2 Local"},
                ],
                "current_model_loaded": "XTTSv2 Local",
                "deepspeed_available": False,
                "deepspeed_status": False,
                "low_vram_status": False,
                "finetuned_model": False,
            }
        spec = ENGINES[self.engine]
        model = "piper" if self.engine == "piper" else "xttsv2_2.0.3"
        caps, more = spec["caps"], spec["more"]
        return {
            "engines_available": ["parler", "piper", "vits", "xtts", "f5tts"],
            "current_engine_loaded": self.engine,
            "models_available": [{"name": model}],
            "current_model_loaded": model,
            "manufacturer_name": spec["manufacturer_name"],
            "audio_format": "wav",
            "deepspeed_capable": caps["deepspeed"],
            "deepspeed_available": False,
            "deepspeed_enabled": False,
            "generationspeed_capable": caps["generationspeed"],
            "generationspeed_set": 1,
            "lowvram_capable": caps["lowvram"],
            "lowvram_enabled": False,
            "pitch_capable": caps["pitch"],
            "pitch_set": 0,
            "repetitionpenalty_capable": more["repetitionpenalty"],
            "repetitionpenalty_set": 10,
            "streaming_capable": more["streaming"],
            "temperature_capable": more["temperature"],
            "temperature_set": 0.75,
            "ttsengines_installed": True,
            "languages_capable": spec["languages_capable"],
            "multivoice_capable": True,
            "multimodel_capable": True,
        }

    def voice_list(self) -> dict:
        if self.api == 1:
            return {"voices": list(self.voices)}
        return {"status": "success", "voices": list(self.voices) or ["No Voices Found"]}

    def rvc_list(self) -> dict:
        return {"status": "success", "rvcvoices": ["Disabled", *sorted(self.rvc_voices)]}

    # -- generation ----------------------------------------------------------------------------

    def generate(self, form: dict) -> tuple[int, dict]:
        try:
            return 200, (self._generate_v1(form) if self.api == 1 else self._generate_v2(form))
        except _Reply as reply:
            return reply.status, reply.body

    def _generate_v2(self, form: dict) -> dict:
        parsed = _parse_form(form, V2_FIELDS, V2_TYPES, required=("text_input",))
        spec = ENGINES[self.engine]
        defaults = {  # confignew.json api_def, rvc_settings and the engine's model_settings.json
            "text_filtering": "standard",
            "character_voice_gen": spec["default_voice"],
            "rvccharacter_voice_gen": "Disabled",
            "rvccharacter_pitch": 0,
            "narrator_enabled": "false",
            "narrator_voice_gen": spec["default_voice"] if self.engine == "piper" else "male_01.wav",
            "rvcnarrator_voice_gen": "Disabled",
            "rvcnarrator_pitch": 0,
            "text_not_inside": "character",
            "language": "en",
            "output_file_name": "myoutputfile",
            "output_file_timestamp": True,
            "autoplay": False,
            "autoplay_volume": 0.5,
            "speed": 1,
            "temperature": 0.75,
            "repetition_penalty": 10.0,
            "pitch": 0,
        }
        params = {k: parsed[k] if parsed.get(k) is not None else v for k, v in defaults.items()}
        try:
            V2Input(text_input=parsed["text_input"], **params)
        except ValidationError as exc:
            lines = [f"{e['loc'][0]}: {V2Input.model_fields[e['loc'][0]].description}" for e in exc.errors()]
            raise _Reply(400, {"error": "\n".join(lines)}) from None
        text = _clean(parsed["text_input"], params["text_filtering"], ALLOWED)
        voice = params["character_voice_gen"]
        if self.engine == "piper":
            # model_engine.py: models/piper/VOICE with its suffix replaced by .onnx, and its .onnx.json
            if str(PurePosixPath(voice).with_suffix(".onnx")) not in self.voices:
                raise _Reply(500, {"detail": "Model file not found."})
            if PIPER_SILENT.fullmatch(text):
                failed = "Exception while running subprocess: 500: Subprocess failed with return code: 1"
                raise _Reply(500, {"detail": failed})
        elif voice not in self.voices:  # XTTS cannot read the sample: a RuntimeError (not recorded)
            raise _Reply(500, {"status": "generate-failure", "error": "TTS generation failed"})
        if self.failure:
            raise _Reply(500, {"status": "generate-failure", "error": "TTS generation failed"})
        speed = float(params["speed"]) if spec["caps"]["generationspeed"] else 1.0
        name = self._file_name(params["output_file_name"], params["output_file_timestamp"])
        path = self._speak(text, voice, speed, name)
        return {
            "status": "generate-success",
            "output_file_path": str(path) if self.shared else f"/home/alltalk/alltalk_tts/outputs/{name}",
            "output_file_url": f"/audio/{name}",
            "output_cache_url": f"/audiocache/{name}",
        }

    def _generate_v1(self, form: dict) -> dict:
        parsed = _parse_form(form, (*V1_REQUIRED, "streaming"), {**V1_TYPES, "streaming": bool}, V1_REQUIRED)
        try:
            V1Input(**{k: parsed[k] for k in V1_REQUIRED})
        except ValidationError as exc:
            raise _Reply(400, {"error": str(exc)}) from None
        failure = _Reply(500, {"status": "generate-failure", "error": "An error occurred"})
        voice = parsed["character_voice_gen"]
        if voice not in self.voices or self.failure:
            raise failure
        text = _clean(parsed["text_input"], parsed["text_filtering"], V1_ALLOWED, v1=True)
        name = self._file_name(parsed["output_file_name"], parsed["output_file_timestamp"])
        path = self._speak(text, voice, 1.0, name)
        base = f"http://127.0.0.1:{self.server.server_port}"  # v1 answers absolute URLs
        return {
            "status": "generate-success",
            "output_file_path": str(path) if self.shared else f"/home/alltalk/alltalk_tts/outputs/{name}",
            "output_file_url": f"{base}/audio/{name}",
            "output_cache_url": f"{base}/audiocache/{name}",
        }

    def stream(self, query: dict) -> tuple[int, dict | bytes]:
        """GET /api/tts-generate-streaming (v2): (status, JSON body) or (200, the stream's bytes);
        b"" stands for a stream that breaks off after its headers (the engine failed)."""
        missing = [n for n in ("text", "voice", "language", "output_file") if n not in query]
        if missing:
            detail = [
                {"type": "missing", "loc": ["query", n], "msg": "Field required", "input": None}
                for n in missing
            ]
            return 422, {"detail": detail}
        if not ENGINES[self.engine]["more"]["streaming"]:
            return 400, {"error": "Invalid value: Streaming not supported by current TTS engine"}
        if query["voice"] not in self.voices or self.failure:
            return 200, b""
        time.sleep(self.cost_s)
        self.spoken.append((query["text"], query["voice"], 1.0))  # speed and pitch: 1.0, as the route passes
        header = io.BytesIO()
        with wave.open(header, "wb") as w:  # as XTTS's model_engine.py: a header without frames
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            w.writeframes(b"")
        samples = tone(spoken_seconds(query["text"]), 24000)
        return 200, header.getvalue() + (samples * 32767).astype(np.int16).tobytes()

    def _file_name(self, stem: str, timestamp: bool) -> str:
        if not timestamp:
            return f"{stem}.wav"
        return f"{stem}_{int(time.time())}{sha256(str(uuid.uuid4()).encode()).hexdigest()[:5]}.wav"

    def _speak(self, text: str, voice: str, speed: float, name: str) -> Path:
        time.sleep(self.cost_s)
        self.spoken.append((text, voice, speed))
        path = self.outputs / name
        samples = tone(spoken_seconds(text, speed), self.rate)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes((samples * 32767).astype(np.int16).tobytes())
        if self.empty:
            path.write_bytes(b"")
        if self.missing:
            path.unlink()
        return path


def _parse_form(form: dict, fields: tuple, types: dict, required: tuple) -> dict:
    """FastAPI's form parsing: an empty value is a missing one; required fields must be there;
    typed fields are parsed by pydantic; every problem is reported at once (HTTP 422)."""
    parsed, problems = {}, []
    for name in fields:
        value = form.get(name)
        if value is None or value == "":
            if name in required:
                problems.append(
                    {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None}
                )
            parsed[name] = False if name == "streaming" else None
            continue
        try:
            parsed[name] = TypeAdapter(types.get(name, str)).validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            problems.append(
                {"type": error["type"], "loc": ["body", name], "msg": error["msg"], "input": value}
            )
    if problems:
        raise _Reply(422, {"detail": problems})
    return parsed


def _clean(text: str, filtering: str, allowed: re.Pattern, v1: bool = False) -> str:
    """The text the engine gets: tts_clean_text (v2) or the inline filtering of v1, whose "html"
    filtering is its "standard" one (it filters text_input again, not the unescaped text)."""
    if filtering == "none":
        return text
    if filtering == "html" and not v1:
        text = html.unescape(text.replace("***", "").replace("**", "").replace("*", "").replace("\n\n", "\n"))
    if v1:
        text = re.sub(r"\u2026{1,2}", ". ", re.sub(r"([!?.\u3002\uFF1F\uFF01\uFF0C])\1+", r"\1", text))
    else:
        text = re.sub(r"([!?.])\1+", r"\1", text)
    return re.sub(r"\n+", " ", allowed.sub("", text))


def _handler(double: AllTalkDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "content-length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data) -> None:
            self._send(
                status, json.dumps(data, separators=(",", ":")).encode(), {"content-type": "application/json"}
            )

        def _dropped(self) -> bool:
            if double.drop > 0:
                double.drop -= 1
                self.close_connection = True
                return True
            return False

        def _file(self, route: str, name: str) -> None:
            path = double.outputs / name
            if not path.is_file():
                if route == "audio" and double.api == 1:  # v1: FileResponse of a missing file
                    self._send(500, b"Internal Server Error", {"content-type": "text/plain; charset=utf-8"})
                else:
                    self._json(404, {"detail": "File not found"})
                return
            data, stat = path.read_bytes(), path.stat()
            modified = formatdate(stat.st_mtime, usegmt=True)
            if route == "audio":
                tag = md5(f"{stat.st_mtime}-{stat.st_size}".encode()).hexdigest()
                headers = {"content-type": "audio/x-wav", "last-modified": modified, "etag": f'"{tag}"'}
            else:
                headers = {
                    "content-type": "audio/wav",
                    "content-disposition": f'attachment; filename="{name}"',
                    "cache-control": "public, max-age=604800",
                    "etag": str(stat.st_mtime),
                    "last-modified": modified,
                }
            self._send(200, data, headers)

        def _stream(self, status: int, body: dict | bytes) -> None:
            """A StreamingResponse: chunked, audio/wav; an engine failure ends it without its last
            chunk (uvicorn closes the connection)."""
            if isinstance(body, dict):
                self._json(status, body)
                return
            self.send_response(200)
            self.send_header("content-type", "audio/wav")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.close_connection = not body
            for start in range(0, len(body), 8192):
                piece = body[start : start + 8192]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if body:
                self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            double.requests.append(("GET", self.path, {}))
            if self._dropped():
                return
            route = self.path.split("?", 1)[0]
            files = re.fullmatch(r"/(audio|audiocache)/([^/]+)", route)
            if route == "/api/ready":
                self._send(
                    200, (double.ready if double.api == 2 else "Ready").encode(), {}
                )  # no content-type
            elif route == "/api/currentsettings":
                self._json(200, double.current_settings())
            elif route == "/api/voices":
                self._json(200, double.voice_list())
            elif route == "/api/rvcvoices" and double.api == 2:
                self._json(200, double.rvc_list())
            elif files:
                self._file(files.group(1), unquote(files.group(2)))
            elif route == "/api/tts-generate-streaming" and double.api == 2:
                self._stream(
                    *double.stream(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))
                )
            elif route == "/api/tts-generate":
                self._send(
                    405,
                    b'{"detail":"Method Not Allowed"}',
                    {"allow": "POST", "content-type": "application/json"},
                )
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = dict(parse_qsl(body, keep_blank_values=True))
            double.requests.append(("POST", self.path, form))
            if self._dropped():
                return
            if self.path != "/api/tts-generate":
                self._json(404, {"detail": "Not Found"})
                return
            time.sleep(double.delay_s)
            self._json(*double.generate(form))

    return Handler
