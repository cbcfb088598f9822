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


# A sentence ends at . ! ? or … (plus closing quotes/brackets) followed by white space.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie no fig approx inc ltd co mt ca cf".split()  # noqa: SIM905
)
MIN_SENTENCE_CHARS = 12  # shorter sentences ("Okay.") are merged into the next one


def split_sentences(text: str) -> list[str]:
    """Split normalised text into sentences, keeping abbreviations and initials intact
    and merging very short sentences into the one after them."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        words = text[start : match.start()].split()
        last = words[-1].lower().rstrip(".") if words else ""
        if match.group().startswith(".") and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    merged: list[str] = []
    for sentence in filter(None, sentences):
        if merged and len(merged[-1]) < MIN_SENTENCE_CHARS:
            merged[-1] = f"{merged[-1]} {sentence}"
        else:
            merged.append(sentence)
    return merged
