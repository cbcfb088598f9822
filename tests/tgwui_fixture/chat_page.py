"""TGWUI's chat page as the extension's player meets it, for the headless-browser tests.

A faithful fixture of text-generation-webui v4.7.3 (commit 1dcde41, 2026-05-03): the chat HTML
of `modules/html_generator.py` (`generate_cai_chat_html`, used by every chat style, and
`generate_instruct_html`: the same nesting and classes, with the Markdown conversion reduced to
paragraphs and pass-through HTML blocks), and the update path of `js/global_scope_js.js`
(`handleMorphdomUpdate` → `applyMorphdomUpdate`: one update per animation frame; the last
message only while a reply streams, else the whole chat; `onBeforeElUpdated` returns
`!fromEl.isEqualNode(toEl)`) with the morphdom build TGWUI ships (`morphdom-umd.min.js`, 2.7.5).
`chatbot_wrapper` (`modules/chat.py`) yields the whole chat once, then the last message per
token; a Continue streams the earlier visible reply (its video included) plus the new text.
"""

from __future__ import annotations

import html
from pathlib import Path

TGWUI_VERSION = "v4.7.3 (commit 1dcde41, 2026-05-03)"
MORPHDOM = (Path(__file__).with_name("morphdom-umd.min.js")).read_text(encoding="utf-8")


def markdown(visible: str) -> str:
    """TGWUI's Markdown conversion, reduced: HTML blocks pass through, the rest are paragraphs."""
    parts = [p for p in visible.split("\n\n") if p.strip()]
    return "".join(p if p.startswith("<div") else f"<p>{p}</p>" for p in parts)


def message(index: int, role: str, visible: str, mode: str) -> str:
    """One message as `create_message` writes it (instruct, or cai-chat for the chat modes)."""
    raw = html.escape(html.unescape(visible), quote=True)
    body = f'<div class="message-body">{markdown(visible)}</div>'
    actions = '<div class="message-actions"></div>'
    if mode == "instruct":
        name = "user-message" if role == "user" else "assistant-message"
        return (
            f'<div class="{name}" data-raw="{raw}"data-index={index}>'
            f'<div class="text">{body}{actions}</div></div>'
        )
    circle, who = ("circle-you", "You") if role == "user" else ("circle-bot", "Ara")
    return (
        f'<div class="message" data-raw="{raw}"data-index={index}><div class="{circle}"></div>'
        f'<div class="text"><div class="username">{who}</div>{body}{actions}</div></div>'
    )


def chat_html(visible: list[list[str]], mode: str = "chat", last_message_only: bool = False) -> dict:
    """`chat_html_wrapper`'s answer for the visible history rows [[user, bot], ...]."""
    out = ""
    rows = range(len(visible) - 1, len(visible)) if last_message_only else range(len(visible))
    for i in rows:
        user, bot = visible[i]
        if not last_message_only and user:
            out += message(i, "user", user, mode)
        out += message(i, "assistant", bot, mode)
    if not last_message_only:
        instruct = ' data-mode="instruct"' if mode == "instruct" else ""
        out = f'<div class="chat" id="chat"{instruct}><div class="messages">{out}</div></div>'
    return {"html": out, "last_message_only": last_message_only}


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Text generation web UI</title>
<script>%(morphdom)s</script>
<script>
let pendingMorphdomData = null, morphdomRafId = null;
function handleMorphdomUpdate(data) {
  pendingMorphdomData = data;
  if (!morphdomRafId) {
    morphdomRafId = requestAnimationFrame(() => {
      morphdomRafId = null;
      applyMorphdomUpdate(pendingMorphdomData);
      pendingMorphdomData = null;
    });
  }
}
function applyMorphdomUpdate(data) {
  let target_element, target_html;
  if (data.last_message_only) {
    const childNodes = document.getElementsByClassName("messages")[0].childNodes;
    target_element = childNodes[childNodes.length - 1];
    target_html = data.html;
  } else {
    target_element = document.getElementById("chat").parentNode;
    target_html = "<div class=\\"prose svelte-1ybaih5\\">" + data.html + "</div>";
  }
  morphdom(target_element, target_html, {
    onBeforeElUpdated: function (fromEl, toEl) { return !fromEl.isEqualNode(toEl); },
  });
}
</script></head><body>
<div class="gradio-container"><button id="stop" style="display:none">Stop</button>
<div class="prose svelte-1ybaih5">%(chat)s</div></div>
<script>%(custom_js)s</script></body></html>"""


def page(custom_js: str, visible: list[list[str]], mode: str = "chat") -> str:
    """The page with the chat `visible` and the extension's `custom_js`."""
    return PAGE % {"morphdom": MORPHDOM, "chat": chat_html(visible, mode)["html"], "custom_js": custom_js}
