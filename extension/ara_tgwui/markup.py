"""The HTML that the extension puts into chat replies: the video, the mode badge and notes.

TGWUI renders visible replies through its Markdown pipeline: every line gets a hard line
break appended, backslashes are doubled, and `&quot;…&quot;` pairs become `<q>` elements.
So the markup is one line, starts at the beginning of a line inside a `<div>` (Python-Markdown
passes such block-level HTML through unchanged), uses forward slashes in paths and never
writes `&quot;` (attribute values use `&#34;`).
"""

from __future__ import annotations

import html
import re
import time

CSS_CLASS = "ara-avatar"
_AUTOPLAY = re.compile(r'(<video class="ara-avatar-video"[^>]*?) (?:data-ara-)?autoplay(?:="\d*")?(?=[ >])')


def attr(value: str) -> str:
    """`value` escaped for a double-quoted attribute, without `&quot;`."""
    return html.escape(value, quote=True).replace("&quot;", "&#34;")


def text(value: str) -> str:
    """`value` escaped as element content."""
    return html.escape(value, quote=False)


def video(
    src: str, *, autoplay: bool, mode: str | None = None, reason: str = "", element_id: str = ""
) -> str:
    """The `<div>` holding the video and, when `mode` is given, a small mode badge. `element_id`
    pairs it with the page's live player of the same reply (player.js). `autoplay` marks the
    video with the time it was made: the page's player plays it once while it is fresh, so a
    page reload never replays it (an `autoplay` attribute would)."""
    play = f' data-ara-autoplay="{int(time.time())}"' if autoplay else ""
    tag = f'<video class="ara-avatar-video" src="{attr(src)}" controls playsinline{play}></video>'
    badge = ""
    if mode:
        title = f' title="{attr(reason)}"' if reason else ""
        badge = f'<span class="ara-avatar-badge"{title}>{text(mode)}</span>'
    ident = f' id="{attr(element_id)}"' if element_id else ""
    return f'<div class="{CSS_CLASS}"{ident}>{tag}{badge}</div>'


def note(message: str) -> str:
    """A small, unobtrusive line saying why there is no video."""
    return f'<div class="{CSS_CLASS}-note">{text(message)}</div>'


def compose(reply: str, block: str, *, position: str = "before", show_text: bool = True) -> str:
    """The visible reply: `block` before or after the (already escaped) reply text."""
    if not show_text or not reply.strip():
        return block
    return f"{block}\n\n{reply}" if position == "before" else f"{reply}\n\n{block}"


_BLOCK = re.compile(
    r'<div class="ara-avatar"[^>]*><video class="ara-avatar-video"[^>]*></video>.*?</div>(?:\n\n)?'
)
_NOTE = re.compile(r'(?:\n\n)?<div class="ara-avatar-note">[^<]*</div>')


def without_video(visible: str) -> str:
    """`visible` without Ara's video blocks and notes (a reply continued from one that had them)."""
    return _NOTE.sub("", _BLOCK.sub("", visible)) if "ara-avatar" in visible else visible


def without_autoplay(visible: str) -> str:
    """`visible` with autoplay removed from Ara's videos, so a redraw does not replay them."""
    return _AUTOPLAY.sub(r"\1", visible) if "ara-avatar-video" in visible else visible


CSS = """
.ara-avatar { margin: 0.25em 0 0.5em 0; max-width: 100%; }
.ara-avatar .ara-avatar-video { display: block; width: 100%; max-width: min(100%, 360px); height: auto;
  max-height: 60vh; border-radius: 10px; background: #000; }
.ara-avatar .ara-avatar-badge { display: inline-block; margin-top: 0.2em; padding: 0 0.5em;
  font-size: 0.75em; line-height: 1.6; border-radius: 0.8em; opacity: 0.7; border: 1px solid currentColor; }
.ara-avatar-note { margin-top: 0.3em; font-size: 0.75em; opacity: 0.6; font-style: italic; }
"""
