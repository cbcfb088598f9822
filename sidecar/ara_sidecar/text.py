"""Validating and normalising text before it is spoken, and cutting it into speakable chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ara_sidecar.errors import UserError

_FENCE = re.compile(r"```.*?(```|$)", re.S)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_MARKUP = re.compile(r"[*_`~]+")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# Emoji and pictographs (with their joiners, variation selectors, skin tones and tags): not speech.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_SPACE = re.compile(r"[^\S\n]+")
_ENDS_CLAUSE = re.compile(r"[.!?…:;,]['\"”’)\]]*$")


def normalize_text(text: str) -> str:
    """Text as it will be spoken: Markdown markup, code blocks and emoji removed, whitespace
    collapsed. Headings, list items and paragraphs end with a line break (and a full stop when
    they have no punctuation), so each is spoken and chunked as a sentence of its own."""
    text = _EMOJI.sub("", _LINK.sub(r"\1", _FENCE.sub("\n\n", text)))
    lines = text.splitlines()
    spoken: list[str] = []
    for i, line in enumerate(lines):
        block = bool(_LIST_ITEM.match(line) or _HEADING.match(line))
        line = _MARKUP.sub("", _QUOTE.sub("", _HEADING.sub("", _LIST_ITEM.sub("", line)))).strip()
        if not line:
            continue
        ends_block = (
            block or i + 1 == len(lines) or not lines[i + 1].strip() or _LIST_ITEM.match(lines[i + 1])
        )
        if ends_block and any(ch.isalnum() for ch in line) and not _ENDS_CLAUSE.search(line):
            line += "."
        spoken.append(_SPACE.sub(" ", line) + ("\n" if ends_block else " "))
    return "".join(spoken).strip()


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


# A sentence ends at . ! ? or … (plus closing quotes/brackets) followed by a line break, or by
# white space and then not a lower-case letter ("Wait... what?" and '"Hi." she said' stay one).
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\n|\s+(?![a-z]))")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-–—])[\"'”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie no fig approx inc ltd co mt ca cf".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Chunk:
    """A piece of text spoken and rendered as one unit."""

    text: str
    end: Literal["sentence", "clause", "word"]  # where it was cut: the pause after it follows suit


@dataclass(frozen=True)
class ChunkLimits:
    """Lengths in characters (config `chunking`)."""

    first_max_chars: int  # a longer first sentence is cut at a clause boundary (plays sooner)
    max_chars: int  # longer sentences are cut at clause boundaries, else between words
    min_chars: int  # shorter sentences are merged into the next


def split_sentences(text: str) -> list[str]:
    """Split normalised text into sentences, keeping abbreviations, initials, decimals and
    mid-sentence ellipses intact."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        words = text[start : match.start()].split()
        last = words[-1].lower().rstrip(".") if words else ""
        hard = text.startswith("\n", match.end())
        if (
            not hard
            and match.group().startswith(".")
            and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()))
        ):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [" ".join(s.split()) for s in sentences if s]


def split_chunks(text: str, limits: ChunkLimits) -> list[Chunk]:
    """Cut normalised text into chunks: sentences, short ones merged into the next, long ones cut
    at clause boundaries (else between words), the first kept short so it can play early.

    A chunk depends only on the text up to its own end, so the chunks of a reply's beginning
    are the first chunks of the whole reply (what speculative pre-rendering relies on), except
    the last, which may still merge with what follows."""
    merged: list[str] = []
    for sentence in split_sentences(text):
        if merged and len(merged[-1]) < limits.min_chars:
            merged[-1] = f"{merged[-1]} {sentence}"
        else:
            merged.append(sentence)
    chunks: list[Chunk] = []
    for sentence in merged:
        rest = sentence
        while rest:
            limit = limits.max_chars if chunks else limits.first_max_chars
            head, end, rest = _cut(rest, limit, limits.min_chars)
            chunks.append(Chunk(head, end))
    return chunks


def _cut(sentence: str, limit: int, min_chars: int) -> tuple[str, str, str]:
    """(head, where it ends, rest): `sentence` whole if it fits `limit`, else cut at its last
    clause boundary within the limit, else at its last space within it, else hard; no piece
    shorter than `min_chars` unless the sentence is."""
    if len(sentence) <= limit:
        return sentence, "sentence", ""
    clauses = [m.end() for m in _CLAUSE_END.finditer(sentence, 0, limit + 1) if m.end() >= min_chars]
    if clauses and len(sentence) - clauses[-1] >= min_chars:
        cut, end = clauses[-1], "clause"
    else:
        last = min(limit, len(sentence) - min_chars)  # the last cut that leaves min_chars after it
        cut, end = sentence.rfind(" ", min_chars, last + 1), "word"
        if cut <= 0:
            cut = last if last >= min_chars else len(sentence)
    if cut >= len(sentence):
        return sentence, "sentence", ""
    return sentence[:cut].strip(), end, sentence[cut:].strip()
