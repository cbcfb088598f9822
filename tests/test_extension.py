"""The text-generation-webui extension, driven exactly as TGWUI drives it.

`Chat` below replays the call order of TGWUI's `modules/chat.py` (chatbot_wrapper,
start_new_chat) and the argument handling of `modules/extensions.py` against a sidecar on
loopback: mostly `SidecarDouble`, a fast stand-in faithful to the sidecar's API (jobs, their
event stream with chunk_ready events, videos; this file also runs as a stand-in
`ara-sidecar serve` command), and in `test_real_sidecar_server` the real `ara-sidecar serve`.
"""

from __future__ import annotations

import copy
import hashlib
import html
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from inspect import signature
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "extension"
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8


# -- the sidecar stand-in ------------------------------------------------------------------


class SidecarDouble(ThreadingHTTPServer):
    """The sidecar's HTTP API on loopback: health, render, jobs, videos, avatars, personas."""

    daemon_threads = True

    def __init__(self, port: int = 0, token: str = "", delay_s: float = 0.0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.token, self.delay_s = token, delay_s
        self.requests: list[tuple[str, str, dict]] = []
        self.videos: dict[str, bytes] = {}
        self.avatars: list[str] = []
        self.jobs: dict[str, dict] = {}
        self.fail: tuple[int, dict] | None = None
        self.ended: dict[str, int] = {}  # job_id: how many requests had come when its event stream ended

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def renders(self) -> list[dict]:
        return [body for method, path, body in self.requests if path in ("/v1/render", "/v1/jobs")]

    def render(self, body: dict) -> dict:
        """The result of a render (each of its two chunks' videos is stored too)."""
        mode = body.get("mode") or "auto"
        mode = "cockpit" if mode == "auto" else mode
        digest = json.dumps([body["text"], mode, body.get("persona"), body.get("avatar_id")]).encode()
        key = hashlib.sha256(digest).hexdigest()
        cached = key in self.videos
        chunks = []
        for i in range(2):
            chunk_key = hashlib.sha256(f"{key}/{i}".encode()).hexdigest()
            self.videos[chunk_key] = VIDEO + chunk_key.encode()
            chunks.append(
                {
                    "index": i,
                    "count": 2,
                    "key": chunk_key,
                    "url": f"/v1/videos/{chunk_key}.mp4",
                    "start_s": 0.75 * i,
                    "duration_s": 0.75,
                    "mime": 'video/mp4; codecs="avc1.64001f, mp4a.40.2"',
                    "cached": cached,
                }
            )
        self.videos[key] = VIDEO + key.encode()
        return {
            "key": key,
            "video_url": f"/v1/videos/{key}.mp4",
            "duration_s": 1.5,
            "mode": mode,
            "mode_reason": "as requested",
            "cached": cached,
            "timings": {"tts": 0.01},
            "persona": body.get("persona") or "ara",
            "chunks": chunks,
        }

    def job(self, body: dict) -> dict:
        """A new job, as GET /v1/jobs/{id} shows it once done."""
        job_id = f"job{len(self.jobs)}"
        result = self.render(body)
        self.jobs[job_id] = {
            "job_id": job_id,
            "status": "done",
            "stage": "video",
            "progress": 1.0,
            "chunk_count": 2,
            "chunks": result["chunks"],
            "created": time.time(),
            "result": result,
        }
        return self.jobs[job_id]

    def events(self, handler: _Handler, job: dict) -> None:
        """The job's event stream: chunk_ready per chunk, a keepalive while "rendering"
        (delay_s), then the finished job."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        count = 0
        for chunk in job.get("chunks", []):
            count += 1
            handler.wfile.write(f"event: chunk_ready\ndata: {json.dumps(chunk)}\nid: {count}\n\n".encode())
            handler.wfile.flush()
        handler.wfile.write(b": ping\n\n")  # FastAPI's keep-alive comment
        handler.wfile.flush()
        time.sleep(self.delay_s)
        finished = json.dumps({**job, "finished": time.time()})
        handler.wfile.write(f"data: {finished}\nid: {count + 1}\n\n".encode())
        handler.wfile.flush()
        self.ended[job["job_id"]] = len(self.requests)
        handler.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    server: SidecarDouble

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, data: bytes, ctype: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode())

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if self.headers.get("Content-Type") == "application/json" else {}
        path = self.path.split("?")[0]
        self.server.requests.append((method, path, body))
        if path == "/health":
            return self._json(200, {"status": "ok"})
        if path == "/health/detailed":
            chunking = getattr(self.server, "chunking", None)
            return self._json(200, {"status": "ok", **({"chunking": chunking} if chunking else {})})
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._json(401, {"error": "missing or wrong token"})
        if method == "POST" and path == "/v1/render":
            if self.server.fail:
                return self._json(*self.server.fail)
            time.sleep(self.server.delay_s)
            return self._json(200, self.server.render(body))
        if method == "POST" and path == "/v1/jobs":
            if self.server.fail:
                return self._json(*self.server.fail)
            return self._json(202, {"job_id": self.server.job(body)["job_id"]})
        match = re.fullmatch(r"/v1/jobs/(\w+)(/events)?", path)
        if match:
            job = self.server.jobs.get(match[1])
            if job is None:
                return self._json(404, {"error": "unknown job"})
            if method == "DELETE":
                return self._json(200, job)
            return self.server.events(self, job) if match[2] else self._json(200, job)
        match = re.fullmatch(r"/v1/videos/(\w+)\.mp4", path)
        if method == "GET" and match:
            data = self.server.videos.get(match[1])
            if data is None:
                return self._json(404, {"error": "unknown video"})
            span = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if span:
                start, end = int(span[1]), int(span[2] or len(data) - 1)
                headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"}
                return self._send(206, data[start : end + 1], "video/mp4", headers)
            return self._send(200, data, "video/mp4", {"Accept-Ranges": "bytes"})
        if method == "POST" and path == "/v1/avatars":
            if b'name="file"; filename=' not in raw:
                return self._json(422, {"detail": [{"msg": "Field required", "loc": ["body", "file"]}]})
            avatar_id = hashlib.sha256(raw).hexdigest()
            self.server.avatars.append(avatar_id)
            return self._json(201, {"avatar_id": avatar_id})
        if method == "GET" and path == "/v1/avatars":
            listed = [{"avatar_id": "0" * 64, "persona": "ara"}]
            return self._json(200, listed + [{"avatar_id": a, "uploaded": 1.0} for a in self.server.avatars])
        if method == "GET" and path == "/v1/personas":
            return self._json(200, {"personas": [{"name": "ara"}]})
        return self._json(404, {"error": f"no route {method} {path}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def serve_double(argv: list[str]) -> None:
    """`python test_extension.py serve --host H --port P`: the stand-in command (token: env)."""
    args = dict(zip(argv[1::2], argv[2::2], strict=False))
    SidecarDouble(int(args["--port"]), os.environ.get("ARA_SERVER_TOKEN", "")).serve_forever()


if __name__ == "__main__":
    serve_double(sys.argv[1:])
    raise SystemExit(0)

import pytest  # noqa: E402  (not needed by the stand-in command above)

# -- text-generation-webui, as far as the extension sees it ------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_extension(script: Path = EXTENSION / "script.py", name: str = "user_ext_ara_avatar"):
    """Import script.py the way TGWUI imports a user extension (by path, under its own name)."""
    spec = importlib.util.spec_from_file_location(name, str(script))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def apply_settings(ext, settings: dict) -> None:
    """TGWUI's `apply_settings`: saved `ara_avatar-KEY` values override `params`."""
    for key in ext.params:
        if f"ara_avatar-{key}" in settings:
            ext.params[key] = settings[f"ara_avatar-{key}"]


def apply_string_extension(ext, name: str, text: str, state: dict, is_chat: bool = False) -> str:
    """TGWUI's `_apply_string_extensions`: state passed when the hook takes two arguments."""
    func = getattr(ext, name)
    names = [k for k in signature(func).parameters if k != "is_chat"]
    args = [text, state] if len(names) == 2 else [text]
    kwargs = {"is_chat": is_chat} if "is_chat" in signature(func).parameters else {}
    return func(*args, **kwargs)


def ui_state(mode: str) -> dict:
    """The part of TGWUI's interface state that chat generation reads."""
    return {
        "mode": mode,
        "chat_style": "cai-chat",
        "name1": "You",
        "name2": "Ara",
        "context": "Ara is the user's local assistant.",
        "custom_system_message": "" if mode != "instruct" else "Answer briefly.",
        "greeting": "Hi, I'm Ara. What are we working on?",
        "user_bio": "",
        "character_menu": "Ara",
        "unique_id": "20260101-00-00-00",
        "history": {"internal": [], "visible": [], "metadata": {}},
        "stream": True,
    }


class Chat:
    """One conversation, with TGWUI's call order for each kind of turn."""

    def __init__(self, ext, mode: str = "chat", state: dict | None = None):
        self.ext = ext
        self.state = state or ui_state(mode)
        self.prompts: list[str] = []  # the system text the model saw, per generation

    @property
    def history(self) -> dict:
        return self.state["history"]

    def start_new_chat(self) -> None:
        """`start_new_chat`: the greeting goes through output_modifier, nothing else is called."""
        history = {"internal": [], "visible": [], "metadata": {}}
        greeting = self.state["greeting"]
        if self.state["mode"] != "instruct" and greeting:
            history["internal"].append(["<|BEGIN-VISIBLE-CHAT|>", greeting])
            visible = apply_string_extension(
                self.ext, "output_modifier", html.escape(greeting), self.state, True
            )
            history["visible"].append(["", visible])
        self.state["history"] = history

    def turn(self, text: str, reply: str, *, regenerate=False, _continue=False, stop=False) -> str:
        """`chatbot_wrapper` (non-streaming end state): returns the visible reply."""
        state = self.state
        output = copy.deepcopy(state["history"])
        output = self.ext.history_modifier(output)
        state = self.ext.state_modifier(state)
        if not (regenerate or _continue):
            visible_text = html.escape(text)
            text, visible_text = self.ext.chat_input_modifier(text, visible_text, state)
            output["internal"].append([text, ""])
            output["visible"].append([visible_text, ""])
        else:
            text, visible_text = output["internal"][-1][0], output["visible"][-1][0]
            last_reply = [output["internal"][-1][1], output["visible"][-1][1]]
        system = state["custom_system_message"] if state["mode"] == "instruct" else state["context"]
        self.prompts.append(system)
        prompt = f"{system}\n{text}\n" + (last_reply[0] if _continue else f"{state['name2']}:")
        self.generate(state, prompt, reply)
        assert "<video" not in json.dumps(output["internal"])  # the model never sees HTML
        if stop:  # shared.stop_everything: the partial visible reply goes through output_modifier
            output["internal"][-1] = [text, reply]
            output["visible"][-1] = [visible_text, html.escape(reply)]
            output["visible"][-1][1] = apply_string_extension(
                self.ext, "output_modifier", output["visible"][-1][1], state, True
            )
        elif _continue:
            output["internal"][-1] = [text, last_reply[0] + reply]
            full = html.escape(output["internal"][-1][1])
            output["visible"][-1][1] = apply_string_extension(self.ext, "output_modifier", full, state, True)
        else:
            output["internal"][-1] = [text, reply]
            output["visible"][-1] = [visible_text, html.escape(reply)]
            output["visible"][-1][1] = apply_string_extension(
                self.ext, "output_modifier", output["visible"][-1][1], state, True
            )
        state["history"] = output
        return output["visible"][-1][1]

    def generate(self, state: dict, prompt: str, reply: str) -> None:
        """`generate_reply`: the extension's `custom_generate_reply`, when it has one (only with the
        `generation` fixture's TGWUI), streams `reply` from the fake model."""
        custom = getattr(self.ext, "custom_generate_reply", None)
        if custom is not None:
            sys.modules["modules.text_generation"].reply = reply
            assert list(custom(prompt, prompt, state, [], is_chat=True))[-1] == reply


TGWUI_SELECTION = Path(__file__).resolve().parent / "tgwui_fixture" / "text_generation.py"


@pytest.fixture
def tgwui(tmp_path, monkeypatch):
    """TGWUI's `modules.shared` (its user_data folder) and its working directory."""
    modules = types.ModuleType("modules")
    shared = types.ModuleType("modules.shared")
    shared.user_data_dir = Path("user_data")
    modules.shared = shared
    monkeypatch.setitem(sys.modules, "modules", modules)
    monkeypatch.setitem(sys.modules, "modules.shared", shared)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def sidecar():
    server = SidecarDouble()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def ext(tgwui, sidecar):
    module = load_extension()
    apply_settings(module, {"ara_avatar-sidecar_url": sidecar.url, "ara_avatar-autostart": False})
    module.setup()
    yield module
    module.runtime.process.stop()


TURNS = [
    ("I keep getting a CUDA out of memory error in train.py, here is the traceback", "Let's look at it."),
    ("ok, and then?", "Then lower the batch size and retry."),
    ("Can you explain how attention works, step by step?", "Sure. First, the queries..."),
    ("haha you're such a nerd, tell me a joke", 'Fine: "Why did the GPU cross the road?"'),
    ("I'm so overwhelmed today, everything is falling apart", "I'm here. One thing at a time."),
    ("thanks", "Anytime & always <3"),
]


def _video_src(visible: str) -> str:
    match = re.search(r'<video class="ara-avatar-video" src="([^"]+)"', visible)
    assert match, visible
    return match[1]


# -- many turns against the sidecar -----------------------------------------------------


@pytest.mark.parametrize("mode", ["chat", "chat-instruct", "instruct"])
def test_many_turns_get_videos_and_history_stays_clean(ext, sidecar, tgwui, mode):
    chat = Chat(ext, mode)
    chat.start_new_chat()
    for i, (user, reply) in enumerate(TURNS):
        visible = chat.turn(user, reply)
        src = _video_src(visible)
        assert src.startswith("file/user_data/cache/ara_avatar/") and src.endswith(".mp4")
        assert (tgwui / src[len("file/") :]).read_bytes().startswith(VIDEO)
        assert visible.index("<video") < visible.index(html.escape(reply))  # position "before"
        assert visible.count("<video") == 1 and "data-ara-autoplay=" in visible
        assert chat.history["internal"][-1] == [user, reply]  # internal history keeps plain text
        older = chat.history["visible"][:-1]
        assert all("autoplay" not in row[1] for row in older), f"turn {i}: old reply still autoplays"
    assert "ara-avatar-badge" in visible
    renders = sidecar.renders()
    greeting = 0 if mode == "instruct" else 1
    assert len(renders) == len(TURNS) + greeting
    assert [r.get("user_message") for r in renders[greeting:]] == [u for u, _ in TURNS]
    assert renders[greeting]["text"] == TURNS[0][1] and renders[-1]["text"] == "Anytime & always <3"
    assert renders[greeting]["mode"] == "lab" and renders[greeting + 4]["mode"] == "comfort"
    assert {r["persona"] for r in renders} == {"ara"}
    field, other = (
        ("custom_system_message", "context") if mode == "instruct" else ("context", "custom_system_message")
    )
    for system in chat.prompts:  # one persona block per generation, never stacked
        assert system.count("<!-- ara-persona:begin") == 1 and system.count("<!-- ara-persona:end -->") == 1
    assert chat.state[field].count("<!-- ara-persona:begin") == 1
    assert "ara-persona" not in chat.state[other]
    original = "Answer briefly." if mode == "instruct" else "Ara is the user's local assistant."
    assert chat.state[field].endswith(original)
    assert "ara-persona:begin ara/lab" in chat.prompts[0]  # the user's message picks the mode


def test_regenerate_continue_and_stop_use_the_turns_user_message(ext, sidecar):
    chat = Chat(ext)
    chat.turn("why does my python script segfault?", "Probably a C extension.")
    chat.turn("", "Most likely a native extension.", regenerate=True)
    chat.turn("", " Check the core dump.", _continue=True)
    chat.turn("stop there", "Stopp", stop=True)
    users = [r.get("user_message") for r in sidecar.renders()]
    assert users == ["why does my python script segfault?"] * 3 + ["stop there"]
    assert sidecar.renders()[2]["text"] == "Most likely a native extension. Check the core dump."
    assert chat.history["internal"][0][1] == "Most likely a native extension. Check the core dump."
    assert chat.history["visible"][-1][1].count("<video") == 1


def test_greeting_is_rendered_without_a_user_message(ext, sidecar):
    chat = Chat(ext)
    chat.start_new_chat()
    assert "<video" in chat.history["visible"][0][1]
    assert chat.history["internal"][0] == ["<|BEGIN-VISIBLE-CHAT|>", chat.state["greeting"]]
    assert "user_message" not in sidecar.renders()[0]
    assert "autoplay" not in chat.history["visible"][0][1]  # by default a New chat does not start talking
    ext.params["autoplay_greeting"] = True
    chat.start_new_chat()
    assert "data-ara-autoplay=" in chat.history["visible"][0][1]
    ext.params["greeting_video"] = False
    chat.start_new_chat()
    assert chat.history["visible"][0][1] == html.escape(chat.state["greeting"])
    assert len(sidecar.renders()) == 2
    assert "data-ara-autoplay=" in chat.turn("hello", "Hi there.")  # replies still autoplay


def test_a_stopped_continue_holds_one_video(ext, sidecar):
    """Stop during Continue: TGWUI hands output_modifier the earlier visible reply (its video
    included) plus the new text; the reply keeps one video, of the whole text."""
    chat = Chat(ext)
    first = chat.turn("tell me about rails", "Rails are steel.")
    state = ext.state_modifier(chat.state)
    visible = apply_string_extension(ext, "output_modifier", first + " And long.", state, True)
    assert visible.count("<video") == 1 and visible.count("ara-avatar-badge") == 1
    assert sidecar.renders()[-1]["text"] == "Rails are steel. And long."


def test_api_and_non_chat_paths_get_plain_text(ext, sidecar):
    api_state = {k: v for k, v in ui_state("instruct").items() if k != "chat_style"}  # the API's state
    api_state = ext.state_modifier(api_state)
    assert ext.chat_input_modifier("hello", "hello", api_state) == ("hello", "hello")
    assert apply_string_extension(ext, "output_modifier", "Hello &amp; welcome", api_state, True) == (
        "Hello &amp; welcome"
    )
    state = ext.state_modifier(ui_state("chat"))  # Default/Notebook tabs: is_chat=False
    assert apply_string_extension(ext, "output_modifier", "plain", state, False) == "plain"
    assert sidecar.renders() == []
    assert "_ara_avatar_turn" not in state and "_ara_avatar_turn" not in api_state


def test_disabled_extension_leaves_replies_and_context_alone(ext, sidecar):
    chat = Chat(ext)
    chat.turn("hello there", "Hi.")
    assert "ara-persona" in chat.state["context"]
    ext.params["activate"] = False
    visible = chat.turn("how are you?", "Fine.")
    assert visible == "Fine." and chat.state["context"] == "Ara is the user's local assistant."
    assert len(sidecar.renders()) == 1


# -- settings ---------------------------------------------------------------------------


def test_settings_shape_the_reply(ext, sidecar):
    chat = Chat(ext)
    ext.params.update(position="after", autoplay=False, show_badge=False, mode="playful")
    visible = chat.turn("Tell me about quantization.", "It shrinks weights.")
    assert visible.index("It shrinks weights.") < visible.index("<video")
    assert "autoplay" not in visible and "ara-avatar-badge" not in visible
    assert sidecar.renders()[-1]["mode"] == "playful" and "ara/playful" in chat.prompts[-1]
    ext.params.update(show_text=False, mode="Auto", auto_modes=["cockpit", "teaching"])
    visible = chat.turn("I'm so sad and overwhelmed", "I'm here.")
    assert visible.startswith('<div class="ara-avatar" id="ara-job') and "I'm here." not in visible
    assert sidecar.renders()[-1]["mode"] in ("cockpit", "teaching")
    ext.params.update(show_text=True, inject_manifesto=False)
    chat.turn("and now?", "Now.")
    assert "ara-persona" not in chat.state["context"]
    ext.params.update(delivery="url", avatar_id="av123")
    visible = chat.turn("one more", "Sure.")
    assert _video_src(visible).startswith(sidecar.url + "/v1/videos/")
    assert sidecar.renders()[-1]["avatar_id"] == "av123"


def test_test_voice_speaks_in_the_mode_chosen_for_the_test(ext, sidecar):
    """ "Test in mode" lets users hear each mode; Auto keeps the settings' choice."""
    ext.params.update(mode="lab", show_badge=True)
    for mode in ("cathedral", "playful"):
        html = ext.runtime.sample(mode)
        assert sidecar.renders()[-1]["mode"] == mode and f"{mode} mode" in html
        assert "<video" in html and mode in html
    ext.runtime.sample("Auto")
    assert sidecar.renders()[-1]["mode"] == "lab"  # the forced mode of the settings
    assert "the current settings" in sidecar.renders()[-1]["text"]


def test_settings_round_trip_through_tgwui_settings_yaml(tgwui):
    import yaml

    ext = load_extension()
    defaults = copy.deepcopy(ext.params)
    assert set(ext.params) >= {"sidecar_url", "token", "autostart", "timeout_s", "mode"}
    changed = {"sidecar_url": "http://10.0.0.5:7870", "token": "s3cret", "autostart": False, "timeout_s": 12}
    changed |= {"mode": "lab", "auto_modes": ["lab", "cockpit"], "position": "after", "delivery": "url"}
    ext.params.update(changed)
    saved = {f"ara_avatar-{k}": v for k, v in ext.params.items()}  # TGWUI's save_settings
    loaded = yaml.safe_load(yaml.dump(saved))
    again = load_extension()
    assert again.params == defaults
    apply_settings(again, loaded)
    assert again.params == {**defaults, **changed}
    assert tuple(again.MODES) == __import__("ara_persona").MODE_NAMES


# -- injection -------------------------------------------------------------------------


def test_injection_is_idempotent_and_follows_the_mode(ext):
    state = ui_state("chat")
    for _ in range(5):
        state = ext.state_modifier(state)
        ext.chat_input_modifier("there's a traceback in my code", "", state)
    assert state["context"].count("<!-- ara-persona:begin ara/lab -->") == 1
    assert state["context"].count("ara-persona:begin") == 1
    ext.chat_input_modifier("haha, tell me a joke", "", state)
    assert "ara/playful" in state["context"] and state["context"].count("ara-persona:begin") == 1
    state["mode"] = "instruct"
    ext.state_modifier(state)
    assert (
        "ara-persona" not in state["context"]
        and state["custom_system_message"].count("ara-persona:begin") == 1
    )
    ext.params["inject_manifesto"] = False
    ext.state_modifier(state)
    assert "ara-persona" not in state["custom_system_message"] + state["context"]
    assert state["context"] == "Ara is the user's local assistant." and state["custom_system_message"] == ""


def test_history_modifier_only_removes_autoplay_from_aras_videos(ext):
    history = {
        "internal": [["hi", "a"], ["x", "b"]],
        "visible": [
            ["hi", ext.markup.video("file/a.mp4", autoplay=True) + "\n\na"],
            ["x", '<audio src="file/b.wav" controls autoplay></audio>\n\nb'],
        ],
    }
    out = ext.history_modifier(copy.deepcopy(history))
    assert "autoplay" not in out["visible"][0][1] and "controls playsinline" in out["visible"][0][1]
    assert out["visible"][1] == history["visible"][1] and out["internal"] == history["internal"]


def test_the_client_reads_the_event_stream_format(monkeypatch):
    """What FastAPI's EventSourceResponse may send: keep-alive comments, `id:` after `data:`,
    `retry:`, CRLF line ends, an event split over several `data:` lines (joined with newlines)."""
    import contextlib
    import io

    monkeypatch.syspath_prepend(str(EXTENSION))
    from ara_tgwui.client import SidecarClient

    chunk = {"index": 0, "url": "/v1/videos/k.mp4", "note": "a\nb"}
    stream = (
        b": ping\n\nretry: 3000\n\n"
        b"event: chunk_ready\ndata: " + json.dumps(chunk).encode() + b"\nid: 1\n\n"
        b": ping\r\n\r\n"
        b'data: {"status": "running",\r\ndata:  "finished": null}\r\nid: 2\r\n\r\n'
        b"event: other\nid: 3\n\n"  # no data: nothing, and its name is not kept for the next event
        b'data:{"status": "done",\ndata: "text": "x\\ny",\ndata: "finished": 1.5}\nid: 4\n\n'
        b'data: {"after": "the end"}\n\n'
    )
    client = SidecarClient("http://127.0.0.1:9")
    client._open = lambda *args: contextlib.nullcontext(io.BytesIO(stream))
    assert list(client.job_events("job", timeout=5)) == [
        ("chunk_ready", chunk),
        ("message", {"status": "running", "finished": None}),
        ("message", {"status": "done", "text": "x\ny", "finished": 1.5}),
    ]


# -- failures are never fatal ---------------------------------------------------------


def _note(visible: str) -> str:
    match = re.search(r'<div class="ara-avatar-note">(.*?)</div>', visible)
    assert match, visible
    return match[1]


def test_sidecar_down_gives_text_and_a_note_quickly(tgwui):
    ext = load_extension()
    ext.params.update(sidecar_url=f"http://127.0.0.1:{free_port()}", autostart=False, timeout_s=5)
    ext.setup()
    started = time.monotonic()
    visible = Chat(ext).turn("hello", "Hi & welcome.")
    assert time.monotonic() - started < 3
    assert visible.startswith("Hi &amp; welcome.") and "not reachable" in _note(visible)
    assert "<video" not in visible


def test_slow_sidecar_times_out_after_timeout_s(ext, sidecar):
    sidecar.delay_s = 4.0
    ext.params["timeout_s"] = 1
    started = time.monotonic()
    visible = Chat(ext).turn("hello", "Hi.")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5, elapsed
    assert visible.startswith("Hi.") and "within 1 s" in _note(visible)


def test_sidecar_errors_and_token(ext, sidecar):
    sidecar.fail = (422, {"detail": "text is 5000 characters, over the limit of 4000"})
    visible = Chat(ext).turn("hello", "Hi.")
    assert "422" in _note(visible) and "over the limit of 4000" in _note(visible)
    sidecar.fail, sidecar.token = None, "s3cret"
    assert "token" in _note(Chat(ext).turn("hello", "Hi."))
    ext.params["token"] = "s3cret"
    assert "<video" in Chat(ext).turn("hello", "Hi.")


def test_unknown_persona_and_broken_settings_are_not_fatal(ext, sidecar):
    ext.params.update(persona="nobody", timeout_s="soon")
    chat = Chat(ext)
    chat.start_new_chat()
    visible = chat.turn("hello", "Hi.")
    assert visible.startswith("Hi.") and "nobody" in _note(visible)
    ext.setup()


def test_extension_without_its_repository_still_loads(tmp_path):
    """Copied without install.py's record, without PyYAML: TGWUI still starts, replies stay text."""
    import shutil

    copy_dir = tmp_path / "extensions" / "ara_avatar"
    shutil.copytree(EXTENSION, copy_dir, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import importlib.util, sys\n"
        f"path = {str(copy_dir / 'script.py')!r}\n"
        "spec = importlib.util.spec_from_file_location('user_ext_ara_avatar', path)\n"
        "ext = importlib.util.module_from_spec(spec); spec.loader.exec_module(ext)\n"
        f"ext.params.update(sidecar_url='http://127.0.0.1:{free_port()}', autostart=False)\n"
        "ext.setup()\n"
        "state = ext.state_modifier({'mode': 'chat', 'chat_style': 'cai-chat', 'context': 'c',"
        " 'custom_system_message': '', 'history': {'internal': [], 'visible': []}})\n"
        "print(ext.output_modifier('Hi.', state, is_chat=True))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Hi.") and "ara-avatar-note" in done.stdout


# -- the sidecar lifecycle --------------------------------------------------------------


def test_autostart_starts_the_sidecar_and_stops_it_at_exit(tgwui):
    ext = load_extension()
    port = free_port()
    double = (sys.executable, str(Path(__file__).resolve()))  # stands in for `ara-sidecar`
    ext.runtime.install = ext.runtime.install.__class__(ext.runtime.install.repo, double)
    ext.params.update(sidecar_url=f"http://127.0.0.1:{port}", token="tok", timeout_s=20)
    ext.setup()  # starts it in the background
    visible = Chat(ext).turn("hello", "Hi.")
    process = ext.runtime.process.process
    try:
        assert "<video" in visible, visible
        assert process is not None and process.poll() is None
        assert process.args[-5:] == ["serve", "--host", "127.0.0.1", "--port", str(port)]  # token: env
        assert (tgwui / "user_data" / "cache" / "ara_avatar" / "sidecar.log").is_file()
    finally:
        ext.runtime.process.stop()  # what atexit does when TGWUI exits
    assert process.poll() is not None


def test_autostart_without_a_sidecar_command_gives_a_note(tgwui):
    ext = load_extension()
    ext.runtime.install = ext.runtime.install.__class__(ext.runtime.install.repo, ())
    ext.params.update(sidecar_url=f"http://127.0.0.1:{free_port()}", timeout_s=5)
    ext.setup()
    visible = Chat(ext).turn("hello", "Hi.")
    assert "could not be started" in _note(visible)


def test_real_sidecar_server(tgwui):
    """Turns in chat and instruct mode against `ara-sidecar serve`, started by autostart."""
    if not (ROOT / "sidecar" / "ara_sidecar" / "server").is_dir():
        pytest.skip("sidecar/ara_sidecar/server is not there yet")
    ext = load_extension()
    ext.params.update(sidecar_url=f"http://127.0.0.1:{free_port()}", timeout_s=300)
    try:
        for mode, turns in (("chat", TURNS[:3]), ("instruct", TURNS[3:5])):
            chat = Chat(ext, mode)
            for user, reply in turns:
                visible = chat.turn(user, reply)
                src = _video_src(visible)
                assert (tgwui / src[len("file/") :]).read_bytes()[4:8] == b"ftyp"
                assert chat.history["internal"][-1] == [user, reply]
            assert all(system.count("ara-persona:begin") == 1 for system in chat.prompts)
        assert ">lab</span>" in Chat(ext).turn(
            "the traceback says KeyError in app.py", "Check the dict keys."
        )
    finally:
        ext.runtime.process.stop()


# -- pre-rendering while the reply streams ----------------------------------------------


STREAMED = (
    "Well, that is a really good question about trains. The engine turns the wheels, and they roll. "
    "It is quite simple.\n\n- The wheels roll on rails.\n- The brakes stop them. "
    "That is all there is to it, really."
)


@pytest.fixture
def generation(tgwui, monkeypatch):
    """TGWUI's generation functions as `custom_generate_reply` imports them: the loaded model
    streams `reply` word by word (a word per `token_s`), raising `fail` after its first words;
    `calls` names the function used."""
    spec = importlib.util.spec_from_file_location("modules.text_generation", TGWUI_SELECTION)
    text_generation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(text_generation)  # TGWUI's `_generate_reply` selection, faithfully
    text_generation.reply, text_generation.token_s, text_generation.fail = "", 0.0, None
    text_generation.calls = []

    def function(name: str):
        def generate(question, original_question, state, stopping_strings=None, is_chat=False):
            text_generation.calls.append(name)
            words = text_generation.reply.split(" ")
            for i in range(1, len(words) + 1):
                time.sleep(text_generation.token_s)
                if text_generation.fail is not None and i == 3:
                    raise text_generation.fail
                yield " ".join(words[:i])

        return generate

    text_generation.generate_reply_HF = function("HF")
    text_generation.generate_reply_custom = function("custom")
    utils = types.ModuleType("modules.utils")
    shared = sys.modules["modules.shared"]
    utils.check_model_loaded = lambda: (shared.model is not None, "No model is loaded.")
    shared.model = type("LlamaServer", (), {})()
    monkeypatch.setitem(sys.modules, "modules.text_generation", text_generation)
    monkeypatch.setattr(sys.modules["modules"], "text_generation", text_generation, raising=False)
    monkeypatch.setitem(sys.modules, "modules.utils", utils)
    return text_generation


@pytest.fixture
def streaming(generation, sidecar):
    """The extension loaded inside a TGWUI that has generation functions (so it pre-renders)."""
    module = load_extension()
    apply_settings(module, {"ara_avatar-sidecar_url": sidecar.url, "ara_avatar-autostart": False})
    yield module
    if module.runtime.prerender is not None:
        module.runtime.prerender.stop()


def chunks_of(text: str) -> list:
    from ara_tgwui.prerender import chunk_limits

    from ara_sidecar.text import normalize_text, split_chunks

    return split_chunks(normalize_text(text), chunk_limits())


def wait_for(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_streamed_reply_is_prerendered_in_complete_chunks(streaming, sidecar, generation):
    sidecar.delay_s, generation.token_s = 0.15, 0.03
    streaming.params["avatar_id"] = "av1"
    user = "I get a traceback in train.py, how do trains work?"
    visible = Chat(streaming).turn(user, STREAMED)
    assert "<video" in visible and generation.calls == ["custom"]
    *ahead, final = sidecar.renders()
    assert final["text"] == STREAMED and len(ahead) >= 2
    whole = chunks_of(STREAMED)
    counts = [len(chunks_of(job["text"])) for job in ahead]
    assert counts == sorted(set(counts)) and counts[-1] < len(whole)  # growing, never the last chunk
    for job, count in zip(ahead, counts, strict=True):  # complete chunks of the reply, never a part
        assert chunks_of(job["text"]) == whole[:count]
        assert {k: job[k] for k in ("persona", "mode", "avatar_id", "user_message")} == {
            k: final[k] for k in ("persona", "mode", "avatar_id", "user_message")
        }
    calls = [(method, path) for method, path, _ in sidecar.requests]
    posts = [i for i, call in enumerate(calls) if call == ("POST", "/v1/jobs")]
    for i in range(len(ahead)):  # a job is submitted once the last one has ended or was cancelled
        over = [sidecar.ended.get(f"job{i}", len(calls))]
        over += [n for n, call in enumerate(calls) if call == ("DELETE", f"/v1/jobs/job{i}")]
        assert min(over) <= posts[i + 1]


def test_feed_never_blocks_and_the_final_render_cancels_the_prerender(streaming, sidecar):
    sidecar.delay_s = 2.0  # each job's event stream takes 2 s
    state = streaming.state_modifier(ui_state("chat"))
    streaming.chat_input_modifier("how do trains work?", "", state)
    prerender = streaming._start_prerender("prompt", state, True)
    words = STREAMED.split(" ")
    started = time.monotonic()
    for i in range(1, len(words) + 1):
        prerender.feed(" ".join(words[:i]))
    assert time.monotonic() - started < 0.1  # while a job takes 2 s
    wait_for(lambda: "job0" in sidecar.jobs)
    visible = apply_string_extension(streaming, "output_modifier", html.escape(STREAMED), state, True)
    assert "<video" in visible
    calls = [(method, path) for method, path, _ in sidecar.requests]
    posts = [i for i, call in enumerate(calls) if call == ("POST", "/v1/jobs")]
    assert len(posts) == 2 and posts[0] < calls.index(("DELETE", "/v1/jobs/job0")) < posts[1]
    assert sidecar.renders()[-1]["text"] == STREAMED


def test_the_streaming_reply_is_listed_for_the_page_from_its_first_chunk(streaming, sidecar, tgwui):
    """Pre-rendered chunks go into the reply's live manifest while it streams (the page speaks
    from the first one); the final render continues that manifest and its block shares its id."""
    manifest = tgwui / "user_data/cache/ara_avatar/live.json"
    assert "live.json" in streaming.custom_js()
    assert json.loads(manifest.read_text())["job"] is None  # the page's first polls find a file
    state = streaming.state_modifier(ui_state("chat"))
    streaming.chat_input_modifier("how do trains work?", "", state)
    prerender = streaming._start_prerender("prompt", state, True)
    words = STREAMED.split(" ")
    for i in range(1, len(words) + 1):
        prerender.feed(" ".join(words[:i]))
    wait_for(lambda: manifest.is_file() and json.loads(manifest.read_text())["chunks"])
    live = json.loads(manifest.read_text())
    assert not live["done"] and live["chunks"][0]["index"] == 0
    assert live["chunks"][0]["src"].startswith("file/")
    assert manifest.stat().st_size % 16384 == 0  # a constant size: no Content-Length mismatch
    visible = apply_string_extension(streaming, "output_modifier", html.escape(STREAMED), state, True)
    done = json.loads(manifest.read_text())
    assert done["job"] == live["job"] and done["done"] and done["final"] == _video_src(visible)
    assert [c["index"] for c in done["chunks"]] == list(range(len(done["chunks"])))  # each once, in order
    assert f'id="{done["element_id"]}"' in visible


def test_an_abandoned_stream_cancels_its_live_player(streaming, sidecar, generation, tgwui):
    manifest = tgwui / "user_data/cache/ara_avatar/live.json"
    generation.reply, generation.fail = STREAMED, RuntimeError("out of memory")
    generation.token_s = 0.0
    state = streaming.state_modifier(ui_state("chat"))
    prerender = streaming._start_prerender("prompt", state, True)
    prerender.feed(STREAMED)
    wait_for(lambda: manifest.is_file() and json.loads(manifest.read_text())["chunks"])
    with pytest.raises(RuntimeError):
        list(streaming.custom_generate_reply("prompt", "prompt", state, None, is_chat=True))
    assert json.loads(manifest.read_text())["cancelled"]  # the regenerate's new stream replaced it


def test_impersonate_is_not_spoken(streaming, sidecar, generation):
    """Impersonate streams the user's text through the same hook (is_chat=True) without
    chatbot_wrapper's state_modifier: nothing is pre-rendered, so the page never speaks it."""
    generation.reply = STREAMED
    items = list(streaming.custom_generate_reply("You:", "You:", ui_state("chat"), None, is_chat=True))
    assert items[-1] == STREAMED and streaming.runtime.prerender is None and sidecar.renders() == []


def test_no_prerender_off_chat_or_when_disabled(streaming, sidecar, generation):
    generation.reply = STREAMED
    chat = ui_state("chat")
    api = {k: v for k, v in chat.items() if k != "chat_style"}
    for state, is_chat, settings in (
        (chat, False, {}),  # Default/Notebook tabs
        (api, True, {}),  # the API
        (chat, True, {"prerender": False}),
        (chat, True, {"activate": False}),
    ):
        streaming.params.update({"prerender": True, "activate": True, **settings})
        items = list(streaming.custom_generate_reply("prompt", "prompt", state, None, is_chat=is_chat))
        assert items[-1] == STREAMED and streaming.runtime.prerender is None
    assert sidecar.renders() == []


def test_generation_function_follows_tgwuis_own_list(streaming, generation, monkeypatch):
    """The class list is read from TGWUI's `_generate_reply` source: a loader TGWUI adds or
    renames is routed where TGWUI routes it; unreadable source → the custom loaders' interface."""
    from ara_tgwui import generation as choice

    shared = sys.modules["modules.shared"]
    assert choice.custom_model_names(generation) == {"LlamaServer", "Exllamav3Model", "TensorRTLLMModel"}
    source = re.sub(
        r"(['\"])TensorRTLLMModel\1", '"NewServerModel"', TGWUI_SELECTION.read_text(encoding="utf-8")
    )
    renamed = types.ModuleType("modules.text_generation")
    renamed.__file__ = str(TGWUI_SELECTION)
    monkeypatch.setattr(
        choice.inspect, "getsource", lambda fn: source if fn is renamed._generate_reply else ""
    )
    exec(compile(source, str(TGWUI_SELECTION), "exec"), renamed.__dict__)
    new, old = type("NewServerModel", (), {})(), type("TensorRTLLMModel", (), {})()
    assert choice.generation_function(new, renamed) is renamed.generate_reply_custom
    assert choice.generation_function(old, renamed) is renamed.generate_reply_HF
    unreadable = types.ModuleType("elsewhere")
    unreadable._generate_reply = lambda: None  # getsource gives "" → no list
    unreadable.generate_reply_custom, unreadable.generate_reply_HF = "custom", "HF"
    streamer = type("Anything", (), {"generate_with_streaming": lambda self, prompt, state: iter(())})()
    assert choice.generation_function(streamer, unreadable) == "custom"
    assert choice.generation_function(type("LlamaForCausalLM", (), {})(), unreadable) == "HF"
    assert shared.model is not None


def test_one_mode_per_turn_and_crisis_over_a_forced_mode(ext, sidecar):
    """The guidance the model gets and the voice/video of the same turn share one mode; crisis
    language gets the comfort guidance and voice even with "playful" forced, for that turn only."""
    comfort = ext.runtime.persona().modes["comfort"].guidance.split("\n")[0]
    playful = ext.runtime.persona().modes["playful"].guidance.split("\n")[0]
    ext.params["mode"] = "playful"
    chat = Chat(ext)
    visible = chat.turn("I wish I was dead", "I'm here with you. Can you tell me what is happening?")
    assert comfort in chat.prompts[-1] and playful not in chat.prompts[-1]
    assert sidecar.renders()[-1]["mode"] == "comfort"
    assert "comfort · possible crisis" in html.unescape(visible)  # the badge itself says why
    safety = " ".join(ext.runtime.persona().safety.split()[:8])
    assert safety in " ".join(chat.prompts[-1].split())  # the persona's safety text, in every mode
    chat.turn("ok, tell me something silly", "A penguin walks into a bar…")
    assert playful in chat.prompts[-1] and sidecar.renders()[-1]["mode"] == "playful"
    assert safety in " ".join(chat.prompts[-1].split())
    ext.params["mode"] = "Auto"  # Auto: the reply never changes the mode chosen from the message
    chat.turn("my build fails with a segfault in the CUDA kernel", "Haha, jokes aside: a joke, a pun, lol!")
    lab = ext.runtime.persona().modes["lab"].guidance.split("\n")[0]
    assert sidecar.renders()[-1]["mode"] == "lab" and lab in chat.prompts[-1]


def test_no_generation_hook_outside_tgwui(ext):
    assert not hasattr(ext, "custom_generate_reply")  # TGWUI's generation functions are not there


def test_custom_generate_reply_is_tgwuis_own_generation(streaming, generation):
    shared = sys.modules["modules.shared"]
    generation.reply = "Hello there, how are you?"
    expected = ["Hello", "Hello there,", "Hello there, how", "Hello there, how are", generation.reply]
    state = {"mode": "instruct"}  # no chat_style: nothing to pre-render
    for model, function in (("Exllamav3Model", "custom"), ("TensorRTLLMModel", "custom"), ("Llama", "HF")):
        shared.model = type(model, (), {})()
        assert list(streaming.custom_generate_reply("q", "q", state, ["\nYou:"], is_chat=False)) == expected
        assert generation.calls[-1] == function
    shared.model = None  # _generate_reply's answer when no model is loaded
    assert list(streaming.custom_generate_reply("q", "q", state)) == [""]
    assert len(generation.calls) == 3
    shared.model, generation.fail = type("LlamaServer", (), {})(), RuntimeError("out of memory")
    items = []
    with pytest.raises(RuntimeError) as raised:
        state = streaming.state_modifier(ui_state("chat"))
        items.extend(streaming.custom_generate_reply("q", "q", state, None, is_chat=True))
    assert raised.value is generation.fail and items == ["Hello", "Hello there,"]
    assert streaming.runtime.prerender._stopped


def test_prerender_sees_the_reply_as_output_modifier_gets_it():
    from ara_tgwui.prerender import visible_reply

    state = ui_state("chat")
    state["history"]["internal"] = [["hi", "Earlier reply."], ["go on", "It <USER> began"]]
    assert visible_reply("ctx\ngo on\nAra:", state)("  Ara: Tom & <user>") == " Tom &amp; You"
    assert visible_reply("ctx\nIt <USER> began", state)(" and ended.") == "It You began and ended."
    assert visible_reply("<|im_start|>assistant\n<think>\n", state)("why</think>Yes.") == (
        "&lt;think&gt;why&lt;/think&gt;Yes."
    )
    instruct = {**state, "mode": "instruct"}
    assert visible_reply("q", instruct)(" Ara: <user>") == " Ara: &lt;user&gt;"


def test_prerendered_chunks_are_cached_for_the_final_render(tgwui, generation, monkeypatch):
    """Against `ara-sidecar serve`: the final render finds the pre-rendered chunks in the cache."""
    if not (ROOT / "sidecar" / "ara_sidecar" / "server").is_dir():
        pytest.skip("sidecar/ara_sidecar/server is not there yet")
    ext = load_extension()
    from ara_tgwui.client import SidecarClient

    created, ended, results = {}, [], []
    create_job, job_events, follow = SidecarClient.create_job, SidecarClient.job_events, ext.runtime._follow

    def create_and_note(client, text, timeout, **fields):
        answer = create_job(client, text, timeout, **fields)
        created[answer["job_id"]] = text
        return answer

    def events_and_note(client, job_id, timeout):
        yield from job_events(client, job_id, timeout)
        ended.append(job_id)

    monkeypatch.setattr(SidecarClient, "create_job", create_and_note)
    monkeypatch.setattr(SidecarClient, "job_events", events_and_note)
    ext.runtime._follow = lambda *args: results.append(follow(*args)) or results[-1]
    ext.params.update(sidecar_url=f"http://127.0.0.1:{free_port()}", timeout_s=300)
    from ara_tgwui import prerender

    from ara_sidecar.text import ChunkLimits

    sidecars = prerender.chunk_limits()  # the sidecar started here reads the same config
    # A local config unlike the sidecar's (as with a remote sidecar): the sidecar's own limits are used.
    monkeypatch.setattr(prerender, "chunk_limits", lambda: ChunkLimits(8, 20, 4))

    def chunks_of(text: str) -> list:
        from ara_sidecar.text import normalize_text, split_chunks

        return split_chunks(normalize_text(text), sidecars)

    reply = generation.reply = "Sure, I can help with that. First, check the logs. Then restart the service."
    try:
        ext.runtime.ensure_sidecar(time.monotonic() + 120)
        state = ext.state_modifier(ui_state("chat"))
        ext.chat_input_modifier("the server keeps crashing", "", state)
        stream = ext.custom_generate_reply("prompt", "prompt", state, None, is_chat=True)
        assert next(item for item in stream if item == reply)  # the whole reply, the generation not over
        wait_for(lambda: any(len(chunks_of(created[job])) == 2 for job in ended), 300)
        assert list(stream) == []  # the generation ends
        visible = ext.output_modifier(html.escape(reply), state, is_chat=True)
        assert "<video" in visible
        assert [chunk["cached"] for chunk in results[-1]["chunks"]] == [True, True, False]
    finally:
        ext.runtime.process.stop()


def test_prerender_asks_the_sidecar_how_it_chunks_and_logs_misses(ext, sidecar, caplog):
    from ara_tgwui import prerender

    from ara_sidecar.text import ChunkLimits

    sidecar.chunking = {"first_max_chars": 50, "max_chars": 300, "min_chars": 5, "clause_pause_s": 0.1}
    client = ext.runtime.client()
    prerender._remote.clear()
    assert prerender.sidecar_chunk_limits(client) == ChunkLimits(50, 300, 5)
    sidecar.chunking = None  # a sidecar that does not say: the local config
    prerender._remote.clear()
    assert prerender.sidecar_chunk_limits(client) == prerender.chunk_limits()
    job = prerender.Prerenderer(ext.runtime, "q", ui_state("chat"), "hi")
    job.submitted = 2
    with caplog.at_level("WARNING", logger="ara_avatar"):
        job.check_reuse(
            {"chunks": [{"index": 0, "cached": True}, {"index": 1, "cached": True}, {"index": 2}]}
        )
        assert "missed" not in caplog.text
        job.check_reuse({"chunks": [{"index": 0, "cached": False}, {"index": 1, "cached": True}]})
    assert "pre-rendering missed: 1 of the 2 pre-rendered chunks" in caplog.text


# -- TGWUI's Markdown rendering ------------------------------------------------------


def tgwui_markdown(visible: str) -> str:
    """The steps of TGWUI's `process_markdown_content` that matter to raw HTML."""
    markdown = pytest.importorskip("markdown")
    text = visible.replace("\\", "\\\\")
    text = re.sub(r"&quot;(.*?)&quot;", r"<q>&quot;\1&quot;</q>", text, flags=re.S)
    text = "".join(line + "  \n" for line in text.split("\n")).strip()
    out = markdown.markdown(text, extensions=["fenced_code", "tables"])
    return out.replace("\\\\", "\\")


@pytest.mark.parametrize("position", ["before", "after"])
def test_video_html_survives_markdown(ext, sidecar, position):
    ext.params["position"] = position
    reply = 'Here is **bold**, a "quote", C:\\path and a list:\n\n- one\n- two'
    visible = Chat(ext).turn("show me", reply)
    rendered = tgwui_markdown(visible)
    tag = re.search(r"<video [^>]*></video>", visible)[0]
    assert tag in rendered and '<div class="ara-avatar" id="ara-job' in rendered
    assert "<strong>bold</strong>" in rendered and "<li>one" in rendered
    assert "<p><video" not in rendered and "&lt;video" not in rendered


def test_note_survives_markdown(tgwui):
    ext = load_extension()
    ext.params.update(sidecar_url=f"http://127.0.0.1:{free_port()}", autostart=False)
    rendered = tgwui_markdown(Chat(ext).turn("hello", "Hi *there*."))
    assert '<div class="ara-avatar-note">' in rendered and "<em>there</em>" in rendered


# -- gradio 4.37.2 (TGWUI's build) -----------------------------------------------------


GRADIO_SCRIPT = """
import hashlib, importlib.util, json, sys
import gradio as gr
import gradio_client.utils as client_utils
assert gr.__version__ == "4.37.2", gr.__version__
_schema_type = client_utils._json_schema_to_python_type  # PyPI's 4.37.2 fails on a `true` schema at
client_utils._json_schema_to_python_type = lambda schema, defs=None: (  # launch; TGWUI's build does not
    "Any" if isinstance(schema, bool) else _schema_type(schema, defs)
)
spec = importlib.util.spec_from_file_location("user_ext_ara_avatar", sys.argv[1])
ext = importlib.util.module_from_spec(spec); spec.loader.exec_module(ext)
ext.params.update(sidecar_url=sys.argv[2], token=sys.argv[3], autostart=False, timeout_s=120)
before = dict(ext.params)
with gr.Blocks(css=ext.custom_css()) as demo:
    with gr.Column(elem_id="extensions"):
        ext.ui()
assert ext.params == before
fns = list(demo.fns.values() if isinstance(demo.fns, dict) else demo.fns)
by_name = {f.fn.__name__: f.fn for f in fns}
setters = [f.fn for f in fns if f.fn.__name__ == "update"]
setters[0](False)  # the first control: "Talking video with every reply"
assert ext.params["activate"] is False
setters[0](True)
image = sys.argv[4]
update, note = by_name["upload_avatar"](image)  # the Upload control's handler, as gradio calls it
digest = hashlib.sha256(open(image, "rb").read()).hexdigest()
assert ext.params["avatar_id"] == digest, (ext.params["avatar_id"], note)
assert "Avatar uploaded" in note and update["value"] == digest
refreshed = by_name["refresh_avatars"]()
assert digest in [value for _, value in refreshed["choices"]]
sample = by_name["sample"]("Auto")  # "Test voice": the sample line, rendered with the uploaded avatar
assert "<video" in sample, sample[-500:]
playful = by_name["sample"]("playful")  # "Test in mode": each mode can be heard
assert "<video" in playful and "playful" in playful and playful != sample, playful[-500:]
# After a reload the panel shows the settings in force: every control's value is read at load.
for key in ("mode", "auto_modes", "activate", "autoplay", "greeting_video", "autoplay_greeting", "avatar_id"):
    assert f"current_{key}" in by_name, key
ext.params["mode"] = "lab"
assert by_name["current_mode"]() == "lab"  # what the Mode dropdown shows on the next page load
ext.params["mode"] = "Auto"
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[5]), prevent_thread_lock=True, show_api=False)
print(json.dumps({"handlers": len(fns), "components": len(demo.blocks), "avatar_id": digest}), flush=True)
sys.stdin.read()  # served until the test closes stdin
"""


def test_ui_builds_and_works_with_gradio_4_37_2(tmp_path):
    """The panel in TGWUI's gradio (4.37.2, a Python of its own: ARA_GRADIO437_PYTHON, which
    `install.py --test` creates) against a real `ara-sidecar serve`: every control is wired,
    an upload returns the image's digest, Refresh lists it, Test voice renders."""
    python = os.environ.get("ARA_GRADIO437_PYTHON")
    if not python:
        pytest.skip("ARA_GRADIO437_PYTHON is not set (install.py --test sets it)")
    from server_helpers import running_server

    script = tmp_path / "build_ui.py"
    script.write_text(GRADIO_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar"), "GRADIO_ANALYTICS_ENABLED": "False"}
    port = free_port()
    args = [str(EXTENSION / "script.py"), "", "panel-token", str(ROOT / "personas" / "ara" / "avatar.png")]
    with running_server(tmp_path, "panel-token", {}) as base:
        args[1] = base
        with subprocess.Popen(
            [python, str(script), *args, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        ) as panel:
            try:
                line = " "
                while line and not line.startswith("{"):  # gradio prints its URL first
                    line = panel.stdout.readline()
                assert line.startswith("{"), panel.stderr.read()[-3000:] if panel.poll() is not None else line
                assert json.loads(line)["handlers"] > 10
                layout = panel_layout(f"http://127.0.0.1:{port}/", tmp_path)
            finally:
                panel.stdin.close()
                panel.wait(timeout=30)
    for width, sizes in layout.items():  # buttons as tall as a button, nothing wider than the page
        assert sizes["refresh"] < 60 and sizes["test"] < 60 and not sizes["overflow"], (width, sizes)


def panel_layout(url: str, tmp_path: Path) -> dict:
    """The heights of the panel's buttons and whether the page scrolls sideways, at common widths
    (a headless Chromium; skipped without one)."""
    from browser import CHROMEDRIVER, CHROMIUM, start_chromium

    if not (CHROMIUM and CHROMEDRIVER):
        return {}
    driver = start_chromium(tmp_path / "profile")
    sizes = {}
    try:
        for width in (1366, 1024, 768, 480):
            driver.set_window_size(width, 900)
            driver.get(url)
            wait_for(
                lambda: driver.execute_script("return document.querySelectorAll('button').length > 2"), 60
            )
            time.sleep(0.5)
            sizes[width] = driver.execute_script(
                "const height = (text) => Array.from(document.querySelectorAll('button'))"
                "  .find((b) => b.textContent.trim() === text).getBoundingClientRect().height;"
                "return {refresh: height('Refresh avatars'), test: height('Test voice'),"
                " overflow: document.documentElement.scrollWidth > window.innerWidth + 1};"
            )
    finally:
        driver.quit()
    return sizes
