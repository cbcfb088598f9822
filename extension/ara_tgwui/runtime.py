"""What the hooks do: persona and mode selection, context injection, rendering and delivery.

`Runtime` reads the extension's `params` on every call, so a change in the settings panel
takes effect at the next turn. Nothing here raises into text-generation-webui: the hooks in
`script.py` turn any failure into a plain-text reply with a small note.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ara_tgwui import markup
from ara_tgwui.client import SidecarClient, SidecarError
from ara_tgwui.live import LiveManifest, file_url
from ara_tgwui.sidecar import Install, SidecarProcess, add_to_path, is_local, locate, wait_healthy

if TYPE_CHECKING:
    from ara_tgwui.prerender import Prerenderer

log = logging.getLogger("ara_avatar")

AUTO = "Auto"
BEGIN_CHAT = "<|BEGIN-VISIBLE-CHAT|>"  # TGWUI's user text of the greeting row
SAMPLE_LINE = "Hi, I'm Ara. This is how I sound and look with the current settings."
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.S | re.I)
_KEY = re.compile(r"[^A-Za-z0-9_.-]")


def tgwui_cache_dir() -> Path:
    """`user_data/cache/ara_avatar` of the running TGWUI (its `file/` route serves `user_data/cache`)."""
    try:
        from modules import shared  # text-generation-webui

        user_data = Path(shared.user_data_dir)
    except (ImportError, AttributeError):
        user_data = Path("user_data")
    return user_data / "cache" / "ara_avatar"


def spoken_text(visible: str) -> str:
    """The words to speak: TGWUI's HTML-escaped reply, unescaped, without reasoning blocks."""
    return _THINK.sub(" ", html.unescape(visible)).strip()


class Runtime:
    """The extension's state between calls: the install, the sidecar and the last mode per chat."""

    def __init__(self, params: dict[str, Any], extension_dir: Path):
        self.params = params
        self.extension_dir = extension_dir
        self.install: Install = locate(extension_dir)
        add_to_path(self.install.sidecar_src)
        self.process = SidecarProcess()
        self._lock = threading.Lock()
        self._personas: dict[str, tuple[tuple, Any]] = {}
        self._modes: dict[tuple, str] = {}  # chat → the mode of its last finished turn
        self._turns: dict[tuple, tuple] = {}  # chat → (turn key, previous mode, selection) of its last turn
        self.prerender: Prerenderer | None = None  # the pre-renderer of the reply streaming now

    # -- settings ---------------------------------------------------------------------

    def client(self) -> SidecarClient:
        return SidecarClient(str(self.params.get("sidecar_url") or ""), str(self.params.get("token") or ""))

    def timeout(self) -> float:
        try:
            return max(float(self.params.get("timeout_s", 60)), 1.0)
        except (TypeError, ValueError):
            return 60.0

    # -- persona and mode -------------------------------------------------------------

    def persona_names(self) -> list[str]:
        from ara_persona import discover

        return sorted(discover(self.install.personas_dir))

    def persona(self):
        """The configured persona, reloaded when one of its files changes."""
        from ara_persona import PersonaError, discover, load_persona

        name = str(self.params.get("persona") or "ara")
        folder = discover(self.install.personas_dir).get(name)
        if folder is None:
            raise PersonaError(f"persona {name!r} not found in {self.install.personas_dir}")
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))
        with self._lock:
            cached = self._personas.get(name)
            if cached is None or cached[0] != stamp:
                cached = self._personas[name] = (stamp, load_persona(folder))
        return cached[1]

    def choose(self, persona, user: str, reply: str, chat: tuple, *, remember: bool):
        """The mode of this turn (persona selector, with the settings' forced and allowed modes).

        One mode per turn: the selection made for a user message (when the context is built,
        before the reply exists) is reused for that turn's voice and video, so the guidance the
        model got and the voice it speaks with agree. `remember` ends the turn: its mode becomes
        the next turn's previous mode. A regenerated turn is chosen against the mode before it.
        """
        from ara_persona import Selection, select_mode

        forced = str(self.params.get("mode") or AUTO)
        allowed = set(self.params.get("auto_modes") or ())
        disabled = [m for m in persona.modes if m not in allowed]
        key = (persona.name, user if user.strip() else reply, forced, tuple(disabled))
        with self._lock:
            turn = self._turns.get(chat)
            previous = self._modes.get(chat)
            if turn is not None and turn[0][1] == key[1]:  # the same user message: the same turn
                previous = turn[1]
        if turn is not None and turn[0] == key:
            selection = turn[2]
        elif forced == AUTO and len(disabled) == len(persona.modes):
            selection = Selection(persona.default_mode, "no mode is allowed for Auto; default mode")
        else:
            selection = select_mode(
                persona,
                user,
                reply,
                now=datetime.now(),
                previous=previous,
                force=None if forced == AUTO else forced,
                disabled=disabled,
            )
        with self._lock:
            self._turns[chat] = (key, previous, selection)
            if remember:
                self._modes[chat] = selection.mode
        return selection

    def inject(self, state: dict, user: str) -> None:
        """Put the persona block for the expected mode into the state's system text (idempotent).

        Chat and chat-instruct use `state['context']`, instruct `state['custom_system_message']`;
        the other field, or both when injection is off, lose any block injected earlier.
        """
        from ara_persona import build_prompt, inject, strip_prompt

        wanted = bool(self.params.get("activate")) and bool(self.params.get("inject_manifesto"))
        target = "custom_system_message" if state.get("mode") == "instruct" else "context"
        block = ""
        if wanted:
            persona = self.persona()
            block = build_prompt(
                persona, self.choose(persona, user, "", chat_key(state), remember=False).mode
            )
        for field in ("context", "custom_system_message"):
            if isinstance(state.get(field), str):
                if field == target and block:
                    state[field] = inject(state[field], block)
                else:
                    state[field] = strip_prompt(state[field])

    # -- the sidecar ------------------------------------------------------------------

    def ensure_sidecar(self, deadline: float) -> SidecarClient:
        """A client of a sidecar that answers, starting a local one if allowed; else SidecarError."""
        client = self.client()
        if client.health(timeout=min(2.0, max(deadline - time.monotonic(), 0.1))):
            return client
        if self.params.get("autostart") and is_local(client.base_url):
            log_path = tgwui_cache_dir() / "sidecar.log"
            token = str(self.params.get("token") or "")
            if self.process.start(self.install.command, client.base_url, token, log_path):
                if wait_healthy(client, self.process, deadline):
                    return client
                if not self.process.running():
                    raise SidecarError(f"the sidecar could not be started (see {log_path})")
                raise SidecarError("the sidecar is still starting; try again in a moment")
            raise SidecarError("the sidecar is not running and could not be started (run install.py)")
        raise SidecarError(f"the sidecar at {client.base_url} is not reachable")

    def render(
        self, text: str, *, user: str, mode: str, persona: str, prerender: Prerenderer | None = None
    ) -> tuple[str, str]:
        """Render `text`: (the video's `src` for the chat — file/ route or sidecar URL — and the
        id of its live player). While it renders, each ready chunk is copied next to the live
        manifest that the page's player follows: the manifest the streaming reply's `prerender`
        started (the page is already playing it), else a new one."""
        deadline = time.monotonic() + self.timeout()
        client = self.ensure_sidecar(deadline)
        live = prerender.live if prerender is not None else None
        try:
            job_id = client.create_job(
                text,
                timeout=deadline - time.monotonic(),
                persona=persona,
                mode=mode,
                avatar_id=self.params.get("avatar_id") or None,
                user_message=user or None,
            )["job_id"]
        except BaseException:
            if live is not None:
                live.finish(None)
            raise
        if live is None or live.data["done"]:
            live = LiveManifest(tgwui_cache_dir(), job_id, position=str(self.params.get("position")))
        src = None
        try:
            result = self._follow(client, job_id, live, deadline)
            if prerender is not None:
                prerender.check_reuse(result)
            src = self._deliver(client, result, deadline)
        finally:
            live.finish(src)
            if src is None:
                client.cancel_job(job_id)  # a timeout or a lost connection: stop the render
        return src, live.element_id

    def _follow(self, client: SidecarClient, job_id: str, live: LiveManifest | None, deadline: float) -> dict:
        """Wait for the job's result, copying each chunk for the live manifest as it is ready."""
        for name, data in client.job_events(job_id, deadline - time.monotonic()):
            if name == "chunk_ready" and live is not None:
                try:
                    copy_chunk(client, live, data, deadline)
                except SidecarError as exc:  # costs the live playback only
                    log.warning("Ara: live playback stopped (%s)", exc)
                    live = None
            elif data.get("status") == "done" and isinstance(data.get("result"), dict):
                return data["result"]
            elif data.get("status") in ("failed", "cancelled"):
                raise SidecarError(str(data.get("error") or f"the render was {data['status']}"))
        raise SidecarError("the sidecar ended the job without a result")

    def _deliver(self, client: SidecarClient, result: dict, deadline: float) -> str:
        """The whole video's `src`: downloaded into TGWUI's cache (file/ route) or the sidecar URL."""
        key = _KEY.sub("_", str(result.get("key") or ""))
        path = str(result.get("video_url") or f"/v1/videos/{key}.mp4")
        if self.params.get("delivery") == "url" or not key:
            return client.url(path)
        dest = tgwui_cache_dir() / f"{key}.mp4"
        if not dest.is_file():
            client.download(path, dest, timeout=max(deadline - time.monotonic(), 1.0))
        return file_url(dest)

    # -- the reply --------------------------------------------------------------------

    def present(
        self, visible: str, state: dict, user: str, mode: str | None = None, *, autoplay: bool | None = None
    ) -> str:
        """The visible reply with Ara's video, or with a note saying why there is none. `mode`
        names the mode to speak in (the voice test); None chooses it as for a chat turn.
        `autoplay` overrides the setting (the greeting's own setting)."""
        prerender = None
        if mode is None:  # a chat reply: the pre-renderer of this reply, if any
            prerender, self.prerender = self.prerender, None
        if prerender is not None:  # its job would compete with this render; its chunks stay cached
            prerender.stop()
        text = spoken_text(visible)
        if not text:
            if prerender is not None:
                prerender.abandon()
            return visible
        try:
            persona = self.persona()
            if mode is not None:
                from ara_persona import Selection

                selection = Selection(persona.mode(mode).name, "the mode chosen for the voice test")
            else:
                selection = self.choose(persona, user, text, chat_key(state), remember=True)
            src, ident = self.render(
                text, user=user, mode=selection.mode, persona=persona.name, prerender=prerender
            )
        except (SidecarError, ValueError, ImportError, OSError) as exc:  # ValueError: PersonaError
            log.warning("Ara: no video for this reply (%s)", exc)
            return failed(visible, str(exc))
        except Exception as exc:  # a bug: never the reply's problem
            log.exception("Ara: no video for this reply")
            return failed(visible, f"{type(exc).__name__}: {exc}")
        finally:
            if prerender is not None:
                prerender.abandon()  # (after a render, its manifest is already finished)
        badge = selection.mode if self.params.get("show_badge") else None
        if selection.crisis:  # shown even without the badge: why the mode changed
            badge = f"{selection.mode} · {selection.reason}"
        block = markup.video(
            src,
            autoplay=bool(self.params.get("autoplay")) if autoplay is None else autoplay,
            mode=badge,
            reason=selection.reason,
            element_id=ident,
        )
        return markup.compose(
            visible,
            block,
            position=str(self.params.get("position")),
            show_text=bool(self.params.get("show_text")),
        )

    def sample(self, mode: str | None = None) -> str:
        """HTML of the sample line rendered with the current settings (the "test voice" button),
        in `mode` when one is named (None or Auto: the mode the settings would choose)."""
        mode = None if mode in (None, "", AUTO) else mode
        line = SAMPLE_LINE if mode is None else SAMPLE_LINE.replace("current settings", f"{mode} mode")
        return self.present(html.escape(line), {"mode": "chat"}, "", mode=mode)


def copy_chunk(client: SidecarClient, live: LiveManifest, chunk: dict, deadline: float) -> None:
    """Copy `chunk` (a `chunk_ready` event) next to `live` and list it there, if it is the
    manifest's next chunk; SidecarError when the copy fails."""
    if not live.wants(chunk):
        return
    dest = live.chunk_path(_KEY.sub("_", str(chunk.get("key"))))
    if not dest.is_file():
        client.download(str(chunk.get("url")), dest, timeout=max(deadline - time.monotonic(), 1.0))
    live.add_chunk(chunk, dest)


def chat_key(state: dict) -> tuple:
    """Which conversation a turn belongs to (the previous mode is kept per conversation)."""
    return (state.get("mode"), state.get("character_menu"), state.get("unique_id"))


def failed(visible: str, reason: str) -> str:
    """The reply as text plus a note."""
    message = "No video: " + reason
    return f"{visible}\n\n{markup.note(message)}" if visible.strip() else markup.note(message)
