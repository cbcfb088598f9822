"""A local stand-in for an AllTalk TTS server, API v1 or v2, written from AllTalk's API docs and
source: the same routes, form fields, validation, status codes and JSON shapes. It speaks a
tone whose length follows the text and the speed, as a real 16-bit WAV file in its outputs folder.

Switches for the failure tests: `delay_s` (slow answers to generate), `failure` (v2
generate-failure), `reject` (400 {"error"}), `missing` / `empty` (success, but the file is
absent / zero bytes), `drop` (connections closed without an answer), `ready` (the /api/ready text)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

RATE = 24000  # XTTS's output rate
VOICES = ("female_01.wav", "male_01.wav")
RVC_VOICES = ("Disabled", "ara\\ara.pth")
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
V1_PATTERNS = {
    "text_filtering": r"none|standard|html",
    "character_voice_gen": r".*\.wav",
    "narrator_voice_gen": r".*\.wav",
    "text_not_inside": r"character|narrator",
    "language": r"ar|zh-cn|cs|nl|en|fr|de|hu|hi|it|ja|ko|pl|pt|ru|es|tr",
    "output_file_name": r"[a-zA-Z0-9_]+",
}
V2_PATTERNS = {
    "text_filtering": r"none|standard|html",
    "character_voice_gen": r'[^<>"|?*]+',
    "narrator_enabled": r"true|false|silent",
    "language": r"auto|ar|zh-cn|zh|cs|nl|en|fr|de|hu|hi|it|ja|ko|pl|pt|ru|es|tr",
    "output_file_name": r"[a-zA-Z0-9_]+",
}
V2_RANGES = {
    "speed": (0.25, 2.0),
    "pitch": (-10, 10),
    "rvccharacter_pitch": (-24, 24),
    "autoplay_volume": (0.1, 1),
}
_BOOLS = {
    "true": True,
    "1": True,
    "on": True,
    "yes": True,
    "false": False,
    "0": False,
    "off": False,
    "no": False,
}


def tone(seconds: float, pitch: float = 0.0) -> np.ndarray:
    """A 220 Hz tone (shifted by `pitch` semitones) starting and ending at non-zero amplitude."""
    t = np.arange(max(1, round(seconds * RATE))) / RATE
    return (0.5 * np.cos(2 * np.pi * 220 * 2 ** (pitch / 12) * t)).astype(np.float32)


class AllTalkDouble:
    def __init__(self, outputs: Path, api: int = 2, pitch_capable: bool = False):
        self.outputs, self.api, self.pitch_capable = Path(outputs), api, pitch_capable
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.delay_s = 0.0
        self.failure: str | None = None
        self.reject: str | None = None
        self.missing = self.empty = False
        self.drop = 0
        self.ready = "Ready"
        self.shared = True  # output_file_path is the real file (False: a path only AllTalk's machine has)
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, form)
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

    # -- routes ------------------------------------------------------------------------------

    def current_settings(self) -> dict:
        if self.api == 1:
            return {
                "models_available": [{"name": "Coqui", "model_name": "XTTSv2 Local"}],
                "current_model_loaded": "XTTSv2 Local",
                "deepspeed_available": False,
                "deepspeed_status": False,
                "low_vram_status": False,
                "finetuned_model": False,
            }
        return {
            "engines_available": ["piper", "vits", "xtts"],
            "current_engine_loaded": "xtts",
            "models_available": [{"name": "xttsv2_2.0.3"}],
            "current_model_loaded": "xttsv2_2.0.3",
            "manufacturer_name": "Coqui",
            "audio_format": "wav",
            "generationspeed_capable": True,
            "generationspeed_set": 1,
            "pitch_capable": self.pitch_capable,
            "pitch_set": 0,
            "multivoice_capable": True,
            "streaming_capable": True,
        }

    def generate(self, form: dict) -> tuple[int, dict]:
        problem = self.validate(form)
        if problem is not None:
            return problem
        if self.reject is not None:
            return 400, {"error": self.reject}
        if self.failure is not None:
            return (400 if self.api == 2 else 500), {
                "status": "generate-failure",
                "error": self.failure if self.api == 2 else "An error occurred",
            }
        name = form["output_file_name"]
        if _BOOLS[form.get("output_file_timestamp", "true").lower()]:
            name = f"{name}_{int(time.time())}{uuid.uuid4().hex[:5]}"
        path = self.outputs / f"{name}.wav"
        speed = float(form.get("speed", 1.0))
        samples = tone(0.06 * len(form["text_input"]) / speed, float(form.get("pitch", 0)))
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((samples * 32767).astype(np.int16).tobytes())
        if self.empty:
            path.write_bytes(b"")
        if self.missing:
            path.unlink()
        shown = str(path) if self.shared else f"/home/alltalk/alltalk_tts/outputs/{path.name}"
        base = self.url if self.api == 1 else ""  # v1 answers absolute URLs, v2 relative ones
        return 200, {
            "status": "generate-success",
            "output_file_path": shown,
            "output_file_url": f"{base}/audio/{path.name}",
            "output_cache_url": f"{base}/audiocache/{path.name}",
        }

    def validate(self, form: dict) -> tuple[int, dict] | None:
        """FastAPI's 422 for a missing required field, AllTalk's own 400 for an invalid one."""
        required = V1_REQUIRED if self.api == 1 else ("text_input",)
        missing = [name for name in required if name not in form]
        if missing:
            detail = [
                {"loc": ["body", n], "msg": "field required", "type": "value_error.missing"} for n in missing
            ]
            return 422, {"detail": detail}
        bools = ("narrator_enabled", "output_file_timestamp", "autoplay") if self.api == 1 else ("autoplay",)
        for name in bools:
            if name in form and form[name].lower() not in _BOOLS:
                return 422, {
                    "detail": [{"loc": ["body", name], "msg": "value could not be parsed to a boolean"}]
                }
        errors = []
        limit = 2000
        if len(form["text_input"]) > limit:
            errors.append(f"text_input needs to be {limit} characters or less.")
        for name, pattern in (V1_PATTERNS if self.api == 1 else V2_PATTERNS).items():
            if name in form and not re.fullmatch(pattern, form[name]):
                errors.append(f"{name}: string does not match regex {pattern!r}")
        ranges = {"autoplay_volume": (0.1, 1)} if self.api == 1 else V2_RANGES
        for name, (lo, hi) in ranges.items():
            if name in form and not lo <= float(form[name]) <= hi:
                errors.append(f"{name} needs to be between {lo} and {hi}.")
        if self.api == 2 and form.get("rvccharacter_voice_gen", "Disabled") not in RVC_VOICES:
            errors.append("rvccharacter_voice_gen needs to be the name of a valid pth file")
        return (400, {"error": "; ".join(errors)}) if errors else None


def _handler(double: AllTalkDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data) -> None:
            self._send(status, json.dumps(data).encode())

        def _dropped(self) -> bool:
            if double.drop > 0:
                double.drop -= 1
                self.close_connection = True
                return True
            return False

        def do_GET(self) -> None:
            double.requests.append(("GET", self.path, {}))
            if self._dropped():
                return
            if self.path == "/api/ready":
                self._send(200, double.ready.encode(), "text/plain; charset=utf-8")
            elif self.path == "/api/currentsettings":
                self._json(200, double.current_settings())
            elif self.path == "/api/voices":
                self._json(
                    200,
                    {"voices": list(VOICES)}
                    if double.api == 1
                    else {"status": "success", "voices": list(VOICES)},
                )
            elif self.path == "/api/rvcvoices" and double.api == 2:
                self._json(200, {"status": "success", "rvcvoices": list(RVC_VOICES)})
            elif re.fullmatch(r"/(audio|audiocache)/[\w.]+", self.path):
                path = double.outputs / self.path.rsplit("/", 1)[1]
                if path.is_file():
                    self._send(200, path.read_bytes(), "audio/wav")
                else:
                    self._json(404, {"detail": "File not found"})
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
