"""Validating and normalising text before it is spoken."""

from __future__ import annotations

import re

from ara_sidecar.errors import UserError

_FENCE = re.compile(r"```.*?(```|$)", re.S)
_MARKUP = re.compile(r"(^|\s)#{1,6}\s|[*_`~]+|^\s*>\s?", re.M)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Text as it will be spoken: Markdown markup and code blocks removed, whitespace collapsed."""
    text = _FENCE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _MARKUP.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def check_text(text: str | None, max_chars: int) -> str:
    """The normalised text, or a UserError saying why it cannot be spoken."""
    if text is None or not text.strip():
        raise UserError("text is empty: give the words to speak (--text, or on standard input)")
    if len(text) > max_chars:
        raise UserError(
            f"text is {len(text)} characters, over the limit of {max_chars} (limits.max_text_chars)"
        )
    spoken = normalize_text(text)
    if not any(ch.isalnum() for ch in spoken):
        raise UserError("text has nothing speakable (only markup, code or punctuation)")
    return spoken
