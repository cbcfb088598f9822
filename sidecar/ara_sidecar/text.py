"""Validating and normalising text before it is spoken, and cutting it into speakable chunks."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from ara_sidecar.errors import UserError

_FENCE = re.compile(r"```.*?(```|$)", re.S)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_MARKUP = re.compile(r"[*_`~]+")
# No brackets inside a link's text or parentheses inside its target: each "[" is tried once (linear).
_LINK = re.compile(r"\[([^\[\]]*)\]\([^()\[\]]*\)")
# Emoji and pictographs (with their joiners, variation selectors, skin tones and tags): not speech.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_SPACE = re.compile(r"[^\S\n]+")
# A bare web address is spoken as its host name ("see example.org"), not character by character.
_URL = re.compile(r"\b(?:https?://|www\.)([^\s/?#<>()\[\]]+)[^\s<>()\[\]]*", re.I)

# Symbols said as words (every TTS backend alike; AllTalk's own filters would delete them).
_FRACTION_NAMES = {2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters")}
_FRACTION = re.compile(r"(?<![\d/.])(\d)/([234])(?![\d/])")
_CURRENCY = re.compile(r"([$€£¥])(\d+(?:,\d{3})*(?:\.\d+)?)")
_CURRENCY_NAMES = {"$": "dollars", "€": "euros", "£": "pounds", "¥": "yen"}
_LATIN = re.compile(r"\b(e\.g|i\.e)\.(?=[\s,;:)]|$)", re.I)
_LATIN_NAMES = {"e.g": "for example", "i.e": "that is"}
_SYMBOLS = (
    (re.compile(r"(?<=\d)\s?%"), " percent"),
    (re.compile(r"(?<=\d)\s?°\s?C\b"), " degrees Celsius"),
    (re.compile(r"(?<=\d)\s?°\s?F\b"), " degrees Fahrenheit"),
    (re.compile(r"°"), " degrees"),
    (re.compile(r"#(?=\d)"), "number "),
    (re.compile(r"\+\+"), " plus plus"),
    (re.compile(r"(?<=\w)\s?\+\s?(?=\w)|(?<![\w+])\+(?=\d)"), " plus "),
    (re.compile(r"&"), " and "),
    (re.compile(r"(?<=\w)@(?=\w)"), " at "),
    (re.compile(r"\s=\s|(?<=\w)=(?=\w)"), " equals "),
    (re.compile(r"(?<=\d)\s?×\s?(?=\d)|(?<=\d)\sx\s(?=\d)|\s×\s"), " times "),
)
_ENDS_CLAUSE = re.compile(r"[.!?…:;,]['\"”’)\]]*$")


# Characters no TTS can take or speak: control characters (NUL breaks the phonemizer), format
# characters (zero-width, bidi, soft hyphen, BOM…), lone surrogates (not encodable), private-use
# and unassigned code points (non-characters among them). Whitespace controls stay white space.
_UNSPEAKABLE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))


def drop_unspeakable(text: str) -> str:
    """`text` without the characters a TTS cannot take (see _UNSPEAKABLE_CATEGORIES); line breaks,
    tabs and other white space are kept. Linear: each distinct character is looked up once."""
    drop = [
        ord(ch)
        for ch in set(text)
        if unicodedata.category(ch) in _UNSPEAKABLE_CATEGORIES and not ch.isspace()
    ]
    return text.translate(dict.fromkeys(drop)) if drop else text


def say_symbols(text: str) -> str:
    """`text` with the symbols a reply uses said as words: 50% → 50 percent, & → and, C++ → C plus
    plus, #1 → number 1, a = b → a equals b, 3/4 → 3 quarters, $5 → 5 dollars, 5°C → 5 degrees
    Celsius, e.g. → for example, i.e. → that is. Linear (no backtracking patterns)."""
    text = _LATIN.sub(lambda m: _LATIN_NAMES[m.group(1).lower()], text)
    text = _CURRENCY.sub(lambda m: f"{m.group(2)} {_CURRENCY_NAMES[m.group(1)]}", text)
    text = _FRACTION.sub(_fraction, text)
    for pattern, words in _SYMBOLS:
        text = pattern.sub(words, text)
    return text


def _fraction(match: re.Match) -> str:
    top, bottom = int(match.group(1)), int(match.group(2))
    if top == 0 or top >= bottom:
        return match.group()
    one, many = _FRACTION_NAMES[bottom]
    return f"{'one' if top == 1 else top} {one if top == 1 else many}"


def _host(match: re.Match) -> str:
    """A web address's host name, with the punctuation that followed the address."""
    address = match.group()
    tail = address[len(address.rstrip(".,;:!?")) :]
    return match.group(1).rstrip(".,;:!?").removeprefix("www.").removeprefix("WWW.") + tail


def normalize_text(text: str) -> str:
    """Text as it will be spoken: characters no TTS can take (NUL and other control characters,
    lone surrogates, non-characters…), Markdown markup, code blocks and emoji removed, a bare web
    address said as its host name, symbols said as words (`say_symbols`), whitespace collapsed.
    Headings, list items and paragraphs end with a line break (and a full stop when they have no
    punctuation), so each is spoken and chunked as a sentence of its own."""
    text = drop_unspeakable(text)
    text = _EMOJI.sub("", _LINK.sub(r"\1", _FENCE.sub("\n\n", text)))
    text = _URL.sub(_host, text)
    lines = text.splitlines()
    spoken: list[str] = []
    for i, line in enumerate(lines):
        block = bool(_LIST_ITEM.match(line) or _HEADING.match(line))
        line = _MARKUP.sub("", _QUOTE.sub("", _HEADING.sub("", _LIST_ITEM.sub("", line))))
        line = say_symbols(line).strip()
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
        raise UserError("text has nothing speakable (only markup, code, punctuation or control characters)")
    return spoken


# A sentence ends at . ! ? or … (plus closing quotes/brackets) followed by a line break, or by
# white space and then not a lower-case letter ("Wait... what?" and '"Hi." she said' stay one).
# A match starts only at the first mark of a run (the lookbehind): a run that does not end a
# sentence is tried once, not once per mark (which made long runs of "!" quadratic).
_SENTENCE_END = re.compile(r"(?<![.!?…])[.!?…]+[\"'”’)\]]*(?=\n|\s(?!\s*[a-z]))")
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


# Chunk sizing for a TTS backend with a fixed cost per request (see `limits_for_cost`).
REQUEST_SHARE = 0.15  # the cost may be at most this share of a chunk's speech
CHARS_PER_S = 15.0  # characters of a reply spoken per second (about 150 words a minute)
NEGLIGIBLE_COST_S = 0.25  # below this the limits are kept as configured
SIZED_MAX_CHARS = 1000  # the longest chunk sizing makes


def limits_for_cost(limits: ChunkLimits, request_cost_s: float) -> ChunkLimits:
    """`limits` for a TTS backend that costs `request_cost_s` per request besides the speech:
    as configured where that is negligible, else chunks long enough that the cost stays under
    REQUEST_SHARE of their speech, and no short first chunk (it would pay the cost once more).
    The cost is rounded up to a power of two first (erring towards fewer requests), so that the
    chunking, and with it the cache keys, stay put while measurements vary a little."""
    if request_cost_s < NEGLIGIBLE_COST_S:
        return limits
    cost_s = 2.0 ** math.ceil(math.log2(request_cost_s))
    wanted = math.ceil(cost_s / REQUEST_SHARE * CHARS_PER_S)
    min_chars = min(SIZED_MAX_CHARS // 2, max(limits.min_chars, wanted))
    max_chars = min(SIZED_MAX_CHARS, max(limits.max_chars, 2 * min_chars))
    return ChunkLimits(first_max_chars=max_chars, max_chars=max_chars, min_chars=min_chars)


def split_sentences(text: str) -> list[str]:
    """Split normalised text into sentences, keeping abbreviations, initials, decimals and
    mid-sentence ellipses intact."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        last = _last_word(text, start, match.start()).lower().rstrip(".")
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


def _last_word(text: str, start: int, end: int) -> str:
    """The last white-space separated word of text[start:end] ("" if none), found by scanning
    back from `end`: what precedes a sentence mark, without splitting the whole sentence so far
    (quadratic over a run of abbreviations or initials, which do not end the sentence)."""
    while end > start and text[end - 1].isspace():
        end -= 1
    begin = end
    while begin > start and not text[begin - 1].isspace():
        begin -= 1
    return text[begin:end]


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
