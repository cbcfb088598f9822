"""Ara's talking avatar for text-generation-webui: every chat reply comes with a talking video.

TGWUI loads this file as the extension `ara_avatar` (`python server.py --extensions
ara_avatar`), applies the saved settings `ara_avatar-KEY` to `params`, calls `setup()` once and
then the hooks below. The rendering runs in Ara's sidecar, a separate process with an HTTP API.
No hook raises: failures leave the reply as text with a small note.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # the helper package next to this file (TGWUI may load us by path)
    sys.path.insert(0, str(_HERE))

from ara_tgwui import markup  # noqa: E402
from ara_tgwui.live import player_script  # noqa: E402
from ara_tgwui.prerender import Prerenderer  # noqa: E402
from ara_tgwui.runtime import AUTO, BEGIN_CHAT, Runtime, tgwui_cache_dir  # noqa: E402

log = logging.getLogger("ara_avatar")

MODES = ("cathedral", "comfort", "lab", "playful", "cockpit", "teaching")  # ara_persona.MODE_NAMES
_TURN = "_ara_avatar_turn"  # the user's message of the turn in progress, kept in TGWUI's state

params = {
    "activate": True,
    "mode": AUTO,  # "Auto" or one of MODES
    "auto_modes": list(MODES),  # the modes Auto may pick
    "inject_manifesto": True,
    "autoplay": True,
    "greeting_video": True,  # a New chat's greeting gets a video too
    "autoplay_greeting": False,  # ... which plays at once (off: a click plays it)
    "prerender": True,  # render complete sentences while the reply streams
    "show_text": True,
    "position": "before",  # the video "before" or "after" the text
    "show_badge": True,
    "delivery": "file",  # "file": cached under user_data/cache, served by TGWUI; "url": from the sidecar
    "sidecar_url": "http://127.0.0.1:7870",
    "token": "",
    "autostart": True,
    "timeout_s": 60,
    "persona": "ara",
    "avatar_id": "",
}

runtime = Runtime(params, _HERE)


def setup() -> None:
    """Start the local sidecar in the background if it is not running (never fails TGWUI's startup)."""
    try:
        if params["activate"] and params["autostart"]:
            deadline = time.monotonic() + max(float(params["timeout_s"]), 30.0)
            threading.Thread(target=_warm_up, args=(deadline,), name="ara-sidecar-start", daemon=True).start()
    except Exception:
        log.exception("Ara: setup failed; the extension will retry when a reply needs a video")


def _warm_up(deadline: float) -> None:
    try:
        runtime.ensure_sidecar(deadline)
    except Exception as exc:
        log.warning("Ara: the sidecar is not available yet (%s)", exc)


def _last_user(state: dict) -> str:
    """The user's text of the last history row (the turn being regenerated or continued)."""
    rows = (state.get("history") or {}).get("internal") or []
    text = rows[-1][0] if rows and rows[-1] else ""
    return "" if text == BEGIN_CHAT else str(text or "")


def _remember_and_inject(state: dict, user: str | None) -> None:
    """Remember the turn's user text (None: the history's last one) and inject the persona
    block for it; never raises."""
    try:
        user = _last_user(state) if user is None else user
        state[_TURN] = user
        runtime.inject(state, user)
    except (ValueError, ImportError, OSError) as exc:  # ValueError: PersonaError
        log.warning("Ara: the persona was not injected (%s)", exc)
    except Exception:
        log.exception("Ara: could not update the context")


def state_modifier(state: dict) -> dict:
    """Before each generation: inject the persona block and remember the turn's user text."""
    _remember_and_inject(state, None)
    return state


def chat_input_modifier(text: str, visible_text: str, state: dict) -> tuple[str, str]:
    """A new user message: remember it and re-inject the block for the mode it suggests."""
    _remember_and_inject(state, text)
    return text, visible_text


def output_modifier(string: str, state: dict, is_chat: bool = False) -> str:
    """After the whole reply: the visible chat reply gets the talking video (chat UI only).

    `string` is TGWUI's HTML-escaped visible reply; the internal history keeps the plain text.
    The API path (its state has no `chat_style`) and non-chat generation get `string` unchanged.
    """
    greeting = isinstance(state, dict) and _TURN not in state  # start_new_chat calls only this hook
    user = state.pop(_TURN, "") if isinstance(state, dict) else ""
    if not (is_chat and params["activate"] and isinstance(state, dict) and "chat_style" in state):
        return string
    if greeting and not params["greeting_video"]:
        return string
    try:
        autoplay = bool(params["autoplay"]) and (not greeting or bool(params["autoplay_greeting"]))
        return runtime.present(markup.without_video(string), state, user, autoplay=autoplay)
    except Exception:
        log.exception("Ara: no video for this reply")
        return string


def _tgwui_generation() -> bool:
    """Whether TGWUI's own generation functions can be imported (not outside TGWUI)."""
    try:
        from modules.text_generation import generate_reply_custom, generate_reply_HF  # noqa: F401
        from modules.utils import check_model_loaded  # noqa: F401
    except Exception:  # ImportError outside TGWUI; never fail its startup
        return False
    return True


def _start_prerender(question: str, state: dict, is_chat: bool) -> Prerenderer | None:
    """A pre-renderer for the chat reply about to stream (the last one stops); None where
    `output_modifier` adds no video or pre-rendering is off, and for Impersonate (the user's
    text, which must not be spoken)."""
    if not (
        is_chat
        and params["activate"]
        and params["prerender"]
        and isinstance(state, dict)
        and "chat_style" in state
        and _TURN in state  # set by state_modifier, which chatbot_wrapper calls; Impersonate does not
    ):
        return None
    if runtime.prerender is not None:  # a reply that never reached output_modifier
        runtime.prerender.abandon()
    runtime.prerender = Prerenderer(runtime, question, state, str(state.get(_TURN) or ""))
    return runtime.prerender


if _tgwui_generation():

    def custom_generate_reply(question, original_question, state, stopping_strings=None, is_chat=False):
        """TGWUI's own generation, chosen as `_generate_reply` chooses it (ara_tgwui/generation.py:
        read from TGWUI's source), with every item passed on
        unchanged (errors too) while the reply so far goes to the pre-renderer.

        TGWUI uses the `custom_generate_reply` of the first extension that has one: listed after
        another such extension, Ara does not pre-render; listed before it, Ara replaces it."""
        from ara_tgwui.generation import generation_function
        from modules import shared, text_generation
        from modules.utils import check_model_loaded

        if not check_model_loaded()[0]:
            yield ""
            return
        generate = generation_function(shared.model, text_generation)
        prerender = _start_prerender(question, state, is_chat)
        try:
            for reply in generate(question, original_question, state, stopping_strings, is_chat=is_chat):
                if prerender is not None:
                    prerender.feed(reply)
                yield reply
        except BaseException:  # no output_modifier follows (after Stop it already ran)
            if prerender is not None:
                prerender.abandon()
            raise
        finally:
            if prerender is not None:
                prerender.stop()


def history_modifier(history: dict) -> dict:
    """Before each generation: older replies lose autoplay, so a redraw does not replay them."""
    try:
        for row in history.get("visible", []):
            if len(row) > 1 and isinstance(row[1], str):
                row[1] = markup.without_autoplay(row[1])
    except Exception:
        log.exception("Ara: could not update the history")
    return history


def custom_css() -> str:
    """Video, badge and note styles for every chat style."""
    return markup.CSS


def custom_js() -> str:
    """The progressive player: a reply's video starts with its first chunk (see ara_tgwui/player.js)."""
    try:
        return player_script(tgwui_cache_dir())
    except Exception:
        log.exception("Ara: the progressive player is not available; videos appear when complete")
        return ""


def ui() -> None:
    """The settings panel (gradio is imported only here)."""
    from ara_tgwui.panel import build

    build(params, runtime, MODES)
