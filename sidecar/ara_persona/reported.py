"""Reported speech: quoted words that are not the writer's own.

"my son said 'i want to die' because his team lost", "mum keeps saying 'I'm just a burden'",
"what does 'kms' mean?": the crisis words are inside quotation marks, and the quote is someone
else's (a reporting verb before it, with no first-person subject: "said", "hat gesagt", "ha
scritto") or a term being asked about ("… mean?", "que significa …"). `mark` swaps such a quote's
own quotation marks for `OPEN` and `CLOSE`, which folding keeps; the crisis check then skips a
pattern found wholly inside them and leaves their words out of combinations and mentions, and
reads the rest: "she told me 'go die' and maybe I will" still counts by its own words, and so
does a pattern that runs from the quote into the writer's words ("said 'you look like death' and
I said 'working on it'"). The writer's own voice is never marked: "I said 'working on it'", "my
head keeps saying 'end it'", "how do you say 'goodbye forever'", "dann sagte ich …" (an `own`
word in the quote's sentence before it),
nor a question put to the writer ("she asked 'do you want to die?' and I said yes": a question
mark, and no asking verb among the reporting ones), nor a quote the writer agrees with
("everyone tells me 'you'd be better off dead' and I'm starting to believe them").
The learned model still reads everything.

The word lists are data: `reported` in `crisis.yaml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ara_persona.features import unaccented

_DOUBLE = r"[\"“„«»]([^\"“”„«»\n]{1,300})[\"”“»«]"
_SINGLE = r"(?<!\w)['‘‚]((?:[^'‘’‚\n]|(?<=\w)['’](?=\w)){1,300}?)['’‘](?!\w)"
QUOTE = re.compile(f"{_DOUBLE}|{_SINGLE}")
FRAME_CHARS = 80  # how far before a quote its reporting verb may be (within the sentence)
AFTER_CHARS = 30  # how far after a quote "… mean?" may be
AFTER_WORDS = 3  # and within how many words
ASKING_CHARS = 30  # how far before a quote "what does … mean" / "que significa" may be
AGREE_CHARS = 60  # how far after a quote "and I'm starting to believe it" may be
OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: not letters, kept by folding
MARKED = re.compile(f"{OPEN}[^{CLOSE}]*{CLOSE}")
# a quotation mark or a line's end (an apostrophe inside a word, "she's", is not one)
_QUOTE_MARK = r"[\"“”„«»\n]|(?<!\w)['‘’‚]|['‘’‚](?!\w)"
_FRAME_QUOTE = re.compile(_QUOTE_MARK)  # up to the next quote
_FRAME_END = re.compile(rf"[.!?]|{_QUOTE_MARK}")  # … or a sentence's end
_APOSTROPHE = re.compile(r"['‘’‚`´]")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class ReportedSpeech:
    """Reporting verbs, the writer's own subjects (single words), words that ask what a term
    means after it ("mean") or before it ("que significa"), and words after a quote by which
    the writer takes it as their own ("and he's right"), as whole-word regular expressions
    over `_plain` text."""

    verbs: re.Pattern
    own: frozenset[str]
    meaning: re.Pattern
    asking: re.Pattern
    agree: re.Pattern

    def mark(self, text: str) -> str:
        """`text` with the quotation marks of every quote that is someone else's words (or a term
        asked about) replaced by `OPEN` and `CLOSE`; the text itself when there is none."""
        if not QUOTE.search(text):
            return text
        chars = list(text)
        for match in QUOTE.finditer(text):
            if self._reported(text, match):
                chars[match.start()], chars[match.end() - 1] = OPEN, CLOSE
        return "".join(chars)

    def _reported(self, text: str, quote: re.Match) -> bool:
        before = text[max(0, quote.start() - FRAME_CHARS) : quote.start()]
        ends = list(_FRAME_END.finditer(before))  # the sentence, after any earlier quote
        before = _plain(before[ends[-1].end() :] if ends else before)
        after = _plain(_FRAME_END.split(text[quote.end() : quote.end() + AFTER_CHARS], 1)[0])
        if self.asking.search(before[-ASKING_CHARS:]) or self._asks_meaning(after):
            return True
        if "?" in quote.group():  # a question put to the writer ("'do you want to die?' I said yes")
            return False
        later = _FRAME_QUOTE.split(text[quote.end() : quote.end() + AGREE_CHARS], 1)[0]
        if self.agree.search(_plain(later)):  # "… 'you'd be better off dead' and he's right"
            return False
        # someone else's words: a reporting verb, and no `own` word anywhere in the frame (before
        # the verb, "I said", or after it, "dann sagte ich")
        return self.verbs.search(before) is not None and not self.own.intersection(_WORD.findall(before))

    def _asks_meaning(self, after: str) -> bool:
        """Whether the words right after a quote ask what it means ("… actually mean?"), not the
        writer meaning it ("… and I mean it")."""
        head = " ".join(_WORD.findall(after)[:AFTER_WORDS])
        found = self.meaning.search(head)
        return found is not None and not self.own.intersection(head[: found.start()].split())


def _plain(text: str) -> str:
    """Lower case without accents, apostrophes as spaces: "I'm" → "i m" (so the subject "i" is
    seen), "j'ai dit" → "j ai dit", "hat gesagt" unchanged."""
    return _APOSTROPHE.sub(" ", unaccented(text))


def inside(spans: list[tuple[int, int]], match: re.Match) -> bool:
    """Whether `match` lies wholly within one of `spans`."""
    return any(start <= match.start() and match.end() <= end for start, end in spans)


__all__ = ["CLOSE", "MARKED", "OPEN", "QUOTE", "ReportedSpeech", "inside"]
