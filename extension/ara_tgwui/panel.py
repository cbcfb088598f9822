"""The settings panel shown in TGWUI's extensions area (built with TGWUI's gradio 4.37.2).

Every control writes straight into `params`, which TGWUI saves as `ara_avatar-KEY` in
`user_data/settings.yaml` ("Save extensions settings" in the Session tab). Every control's
value is read from `params` whenever the page loads (gradio calls a callable value on each
load), so after a reload the panel shows the settings in force, not those of TGWUI's start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ara_tgwui import markup
from ara_tgwui.client import SidecarError
from ara_tgwui.runtime import AUTO, Runtime

log = logging.getLogger("ara_avatar")
DEFAULT_AVATAR = ("Persona's own avatar", "")


def _setter(params: dict[str, Any], key: str, convert: Callable[[Any], Any] | None = None) -> Callable:
    def update(value: Any) -> None:
        params[key] = convert(value) if convert else value

    return update


def _timeout(value: Any) -> float:
    try:
        return max(float(value), 1.0)
    except (TypeError, ValueError):
        return 60.0


def _avatar_choices(runtime: Runtime, current: str) -> list[tuple[str, str]]:
    """The sidecar's avatars (a quick query; none if it is not running)."""
    try:
        found = runtime.client().avatars(timeout=3.0)
    except SidecarError as exc:
        log.info("Ara: no avatar list (%s)", exc)
        found = []
    choices = [DEFAULT_AVATAR, *found]
    if current and current not in (ident for _, ident in choices):
        choices.append((current, current))
    return choices


def current(params: dict[str, Any], key: str) -> Callable[[], Any]:
    """The value of `params[key]` when the page loads (a gradio component's callable value)."""

    def value() -> Any:
        return params[key]

    value.__name__ = f"current_{key}"
    return value


def build(params: dict[str, Any], runtime: Runtime, modes: tuple[str, ...]) -> None:
    """Create the controls inside the current gradio Blocks context."""
    import gradio as gr

    try:
        personas = runtime.persona_names()
    except Exception as exc:  # ara_persona missing or the personas folder unreadable
        log.warning("Ara: no persona list (%s)", exc)
        personas = []
    if params["persona"] not in personas:
        personas.append(params["persona"])
    avatars = [DEFAULT_AVATAR] + ([(params["avatar_id"],) * 2] if params["avatar_id"] else [])

    now = partial(current, params)
    with gr.Accordion("Ara: talking avatar", open=True):
        with gr.Row():
            activate = gr.Checkbox(value=now("activate"), label="Talking video with every reply")
            inject = gr.Checkbox(value=now("inject_manifesto"), label="Inject manifesto and mode guidance")
            autoplay = gr.Checkbox(value=now("autoplay"), label="Autoplay")
            show_text = gr.Checkbox(value=now("show_text"), label="Show the text")
            show_badge = gr.Checkbox(value=now("show_badge"), label="Show the mode")
            prerender = gr.Checkbox(value=now("prerender"), label="Render ahead while it streams")
            greeting = gr.Checkbox(value=now("greeting_video"), label="Video for a new chat's greeting")
            autoplay_greeting = gr.Checkbox(value=now("autoplay_greeting"), label="Autoplay the greeting")
        with gr.Row():
            mode = gr.Dropdown(choices=[AUTO, *modes], value=now("mode"), label="Mode")
            auto_modes = gr.CheckboxGroup(
                choices=list(modes), value=now("auto_modes"), label="Modes Auto may pick"
            )
        with gr.Row():
            position = gr.Radio(["before", "after"], value=now("position"), label="Video position")
            delivery = gr.Radio(
                [("Through text-generation-webui", "file"), ("Straight from the sidecar", "url")],
                value=now("delivery"),
                label="Video delivery",
            )
            persona = gr.Dropdown(
                choices=personas, value=now("persona"), label="Persona", allow_custom_value=True
            )
        with gr.Row():
            sidecar_url = gr.Textbox(value=now("sidecar_url"), label="Sidecar URL")
            token = gr.Textbox(value=now("token"), label="Sidecar token", type="password")
            timeout = gr.Number(value=now("timeout_s"), label="Timeout (seconds)", minimum=1)
            autostart = gr.Checkbox(value=now("autostart"), label="Start a local sidecar if needed")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=240):
                avatar = gr.Dropdown(
                    choices=avatars, value=now("avatar_id"), label="Avatar", allow_custom_value=True
                )
                refresh = gr.Button("Refresh avatars", size="sm")
            with gr.Column(scale=1, min_width=240):
                upload = gr.Image(
                    type="filepath", label="Upload an avatar (a face photo)", sources=["upload"], height=180
                )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=240):
                test_mode = gr.Dropdown(choices=[AUTO, *modes], value=AUTO, label="Test in mode")
                test = gr.Button("Test voice", size="sm")
            with gr.Column(scale=2, min_width=240):
                result = gr.HTML()

    for control, key in (
        (activate, "activate"),
        (inject, "inject_manifesto"),
        (autoplay, "autoplay"),
        (show_text, "show_text"),
        (show_badge, "show_badge"),
        (prerender, "prerender"),
        (greeting, "greeting_video"),
        (autoplay_greeting, "autoplay_greeting"),
        (mode, "mode"),
        (position, "position"),
        (delivery, "delivery"),
        (persona, "persona"),
        (sidecar_url, "sidecar_url"),
        (token, "token"),
        (autostart, "autostart"),
        (avatar, "avatar_id"),
    ):
        control.change(_setter(params, key), control, None)
    auto_modes.change(_setter(params, "auto_modes", list), auto_modes, None)
    timeout.change(_setter(params, "timeout_s", _timeout), timeout, None)

    def refresh_avatars():
        return gr.update(choices=_avatar_choices(runtime, params["avatar_id"]), value=params["avatar_id"])

    def upload_avatar(path):
        if not path:
            return gr.update(), ""
        try:
            client = runtime.ensure_sidecar(time.monotonic() + runtime.timeout())
            params["avatar_id"] = client.upload_avatar(path, timeout=runtime.timeout())
        except Exception as exc:
            return gr.update(), markup.note(f"The avatar was not uploaded: {exc}")
        choices = _avatar_choices(runtime, params["avatar_id"])
        return gr.update(choices=choices, value=params["avatar_id"]), markup.note("Avatar uploaded.")

    refresh.click(refresh_avatars, None, avatar)
    upload.upload(upload_avatar, upload, [avatar, result])
    test.click(runtime.sample, test_mode, result)
