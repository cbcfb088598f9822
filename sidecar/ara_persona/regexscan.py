"""Many whole-word regular expressions searched at once, each tried only where it can begin.

One alternation of a few hundred patterns (`crisis.yaml`) makes Python's regex engine try every
alternative at every position of the text: the crisis check's cost grew with each pattern. Each
pattern here starts at a whole word (`(?<!\\w)`), and almost always with one of a few letters
("(want|wanna|wish) …" can begin only with w), which the compiled pattern itself tells
(`first_chars`), and most often with one of a few pairs of characters ("wa", "wi": `prefixes`).
So the patterns are grouped by the two characters they can begin with (by the first alone where
the second could be anything), and at each word of the text (or each symbol that some pattern
begins with, such as an emoji: "🪦 me") only the group of its first two characters is tried —
the same matches as the one alternation (the same leftmost match, by the same first pattern), in
a fraction of the time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

try:  # the standard library's own regex parser (public as sre_parse before Python 3.11)
    from re import _constants as _c
    from re import _parser as _p
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

_ZERO_WIDTH = {_c.AT, _c.ASSERT, _c.ASSERT_NOT}
_REPEATS = {op for op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)) if op}


def first_chars(pattern: str) -> frozenset[str] | None:
    """The characters a match of `pattern` can begin with; None when it could begin with any
    (or with nothing: it may match the empty string) or the pattern is not understood."""
    try:
        parsed = _p.parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return None
        found = _firsts(list(parsed))
    except Exception:  # an internal parser of another Python version: no grouping, still correct
        return None
    return frozenset(found) if found else None


def _firsts(items: list) -> set[str] | None:
    if not items:
        return None  # the rest may match the empty string
    op, av = items[0]
    rest = items[1:]
    if op is _c.LITERAL:
        return {chr(av)}
    if op in _ZERO_WIDTH:
        return _firsts(rest)
    if op is _c.SUBPATTERN:
        if av[1] & re.IGNORECASE:  # (?i:…)
            return None
        return _firsts(list(av[-1]) + rest)
    if op is _c.BRANCH:
        out: set[str] = set()
        for alternative in av[1]:
            found = _firsts(list(alternative) + rest)
            if found is None:
                return None
            out |= found
        return out
    if op in _REPEATS:
        low, _high, item = av
        found = _firsts(list(item))
        if found is None or low > 0:
            return found
        after = _firsts(rest)
        return None if after is None else found | after
    if op is _c.IN:
        out = set()
        for sub_op, sub_av in av:
            if sub_op is _c.LITERAL:
                out.add(chr(sub_av))
            elif sub_op is _c.RANGE and sub_av[1] - sub_av[0] < 128:
                out.update(chr(c) for c in range(sub_av[0], sub_av[1] + 1))
            else:
                return None
        return out
    return None


def prefixes(pattern: str, size: int = 2) -> frozenset[str] | None:
    """The strings of `size` characters a match of `pattern` can begin with; None when they are
    too many to list, a match may be shorter, or the pattern is not understood."""
    try:
        parsed = _p.parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return None
        found = _prefixes(list(parsed), size)
    except Exception:  # an internal parser of another Python version: no grouping, still correct
        return None
    return frozenset(found) if found else None


MAX_PREFIXES = 256  # more than this many: grouped by the first character only


def _prefixes(items: list, size: int) -> set[str] | None:
    if size == 0:
        return {""}
    if not items:
        return None  # a match may end before `size` characters
    op, av = items[0]
    rest = items[1:]
    if op is _c.LITERAL or op is _c.IN:
        heads = _firsts([items[0]])
        return None if heads is None else _join(heads, _prefixes(rest, size - 1))
    if op in _ZERO_WIDTH:
        return _prefixes(rest, size)
    if op is _c.SUBPATTERN:
        return None if av[1] & re.IGNORECASE else _prefixes(list(av[-1]) + rest, size)
    if op is _c.BRANCH:
        out: set[str] = set()
        for alternative in av[1]:
            found = _prefixes(list(alternative) + rest, size)
            if found is None or len(out | found) > MAX_PREFIXES:
                return None
            out |= found
        return out
    if op in _REPEATS:
        low, high, item = av
        if high == 0:
            return _prefixes(rest, size)
        again = high == _c.MAXREPEAT or high > 1
        left = [(op, (max(low - 1, 0), high if high == _c.MAXREPEAT else high - 1, item))] if again else []
        once = _prefixes(list(item) + left + rest, size)
        if once is None or low > 0:
            return once
        skip = _prefixes(rest, size)
        return None if skip is None or len(once | skip) > MAX_PREFIXES else once | skip
    return None


def _join(heads: set[str], tails: set[str] | None) -> set[str] | None:
    if tails is None or len(heads) * len(tails) > MAX_PREFIXES:
        return None
    return {h + t for h in heads for t in tails}


class PatternScan:
    """`patterns` (each a regex string) as one search of `(?<!\\w)(?:p1|p2|…)(?!\\w)`."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        firsts_of = {p: first_chars(p) for p in self.patterns}
        free = [p for p in self.patterns if firsts_of[p] is None]
        known = [(p, chars, prefixes(p)) for p, chars in firsts_of.items() if chars is not None]

        def group(fits) -> re.Pattern:  # the patterns that can begin here (and the free ones), in order
            return _whole_words([p for p, chars, pairs in known if fits(chars, pairs)] + free, self.patterns)

        firsts = {c for _, chars, _ in known for c in chars}
        keys = {key for _, _, pairs in known if pairs is not None for key in pairs}
        # by the first two characters where a pattern's are known, else by its first one
        self.pairs = {
            key: group(lambda chars, pairs, key=key: key in pairs if pairs is not None else key[0] in chars)
            for key in keys
        }
        wide = {c for _, chars, pairs in known if pairs is None for c in chars}
        self.buckets = {c: group(lambda chars, pairs, c=c: pairs is None and c in chars) for c in wide}
        self.free = _whole_words(free) if free else None
        symbols = "".join(sorted(re.escape(c) for c in firsts if not _is_word_char(c)))
        # where a pattern can begin: a word's first character, or a symbol some pattern begins with
        self.starts = re.compile(r"(?<!\w)\w" + (f"|[{symbols}]" if symbols else ""))

    def search(self, text: str, pos: int = 0) -> re.Match | None:
        """The leftmost match of any pattern in `text` that starts at `pos` or later, else None."""
        loose = self.free.search(text, pos) if self.free is not None else None
        for word in self.starts.finditer(text, pos):
            start = word.start()
            if loose is not None and start > loose.start():
                break
            rx = self.pairs.get(text[start : start + 2]) or self.buckets.get(text[start])
            if rx is not None:  # (holds the free patterns too, in their place)
                match = rx.match(text, start)
                if match:
                    return match
        return loose

    def alternation(self) -> re.Pattern:
        """The one alternation this search stands for (what `search` must equal)."""
        return _whole_words(self.patterns)


def _is_word_char(c: str) -> bool:
    return re.match(r"\w", c) is not None


def _whole_words(patterns: Sequence[str], order: Sequence[str] = ()) -> re.Pattern:
    """One whole-word alternation of `patterns`, in the order of `order` when given."""
    if order:
        chosen = set(patterns)
        patterns = [p for p in order if p in chosen]
    return re.compile(rf"(?<!\w)(?:{'|'.join(f'(?:{p})' for p in patterns)})(?!\w)")


__all__ = ["PatternScan", "first_chars", "prefixes"]
