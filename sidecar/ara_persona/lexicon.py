"""Word lists of the selector, read from YAML: `selector/lexicon.yaml` (concepts and shapes) and
`selector/crisis.yaml` (crisis patterns). Both are matched against folded text
(`ara_persona.features.fold`), as whole words. Errors name the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from ara_persona.model import PersonaError, file_version
from ara_persona.regexscan import PatternScan
from ara_persona.reported import ReportedSpeech
from ara_persona.yamldoc import YamlDoc

LEXICON_FILE = "lexicon.yaml"
CRISIS_FILE = "crisis.yaml"
END = r"(?=\s*(?:[.!?,;…]|$))"  # `<end>` in a crisis pattern: the end of a sentence or message
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a fragment's name
_FRAGMENT = re.compile(rf"(?<!\?P)<({_NAME.pattern})>")  # `<name>` in a pattern; not a group's `(?P<name>`


def _entry(word: str) -> str:
    """A lexicon entry as a regular expression: * = any ending, a space = one space."""
    parts = [re.escape(p) + (r"\w*" if p.endswith("*") else "") for p in word.strip().split()]
    return " ".join(p.replace(r"\*\w*", r"\w*") for p in parts)


_HEAD = re.compile(r"\w*")
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Anchors:
    """Which words of a text a concept can start at: the first word of an entry (`words`), a word
    beginning with an entry's wildcard stem (`stems`), or any (`anywhere`: a free-form regex, or
    an entry starting with punctuation or an emoji)."""

    words: frozenset[str] = frozenset()
    stems: frozenset[str] = frozenset()
    anywhere: bool = False


ANYWHERE = Anchors(anywhere=True)


def _anchors(words: list[str]) -> Anchors:
    exact, stems = set(), set()
    for word in words:
        first = word.strip().casefold().split()[0]
        head = _HEAD.match(first).group()
        if not head:
            return ANYWHERE
        (stems if first[len(head) :].startswith("*") else exact).add(head)
    return Anchors(frozenset(exact), frozenset(stems))


class ConceptIndex:
    """A quick pre-check of which concepts can match a text at all: each concept's regex starts at
    a whole word (`(?<!\\w)`), so it can match only where a word of the text is one of its entries'
    first words, or begins with one of their wildcard stems. Only those concepts' regexes run:
    the same hits, a fraction of the searches."""

    def __init__(self, anchors: Mapping[str, Anchors]) -> None:
        self.words: dict[str, set[str]] = {}
        self.stems: dict[str, set[str]] = {}
        self.anywhere = {name for name, a in anchors.items() if a.anywhere}
        for name, a in anchors.items():
            for word in a.words:
                self.words.setdefault(word, set()).add(name)
            for stem in a.stems:
                self.stems.setdefault(stem, set()).add(name)
        self.lengths = sorted({len(stem) for stem in self.stems})

    @classmethod
    def of(cls, concepts: Mapping[str, re.Pattern], anchors: Mapping[str, Anchors]) -> ConceptIndex:
        """The index of `concepts` (those without anchors can match anywhere)."""
        return cls({name: anchors.get(name, ANYWHERE) for name in concepts})

    def candidates(self, folded: str) -> set[str]:
        """The names of the concepts that may match `folded`."""
        out = set(self.anywhere)
        for token in set(_TOKEN.findall(folded)):
            out.update(self.words.get(token, ()))
            for n in self.lengths:
                if n > len(token):
                    break
                out.update(self.stems.get(token[:n], ()))
        return out


def _read(path: Path) -> YamlDoc:
    doc = YamlDoc(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a mapping")
    return doc


def _regex(doc: YamlDoc, key: tuple, pattern: str) -> re.Pattern:
    """`pattern` compiled; an error names the line of `key` and the list or mapping holding it."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        field = ".".join(str(k) for k in key[:2])
        raise PersonaError.at(doc.path, doc.lines.get(key), field, f"a regular expression ({exc})") from None


@dataclass(frozen=True)
class Lexicon:
    """Concept name → one regular expression over folded text."""

    concepts: dict[str, re.Pattern]
    digest: str
    anchors: dict[str, Anchors] = field(default_factory=dict, compare=False)  # none: ANYWHERE

    @cached_property
    def index(self) -> ConceptIndex:
        return ConceptIndex.of(self.concepts, self.anchors)

    def hits(self, folded: str) -> dict[str, str]:
        """Concept → the first entry of it found in `folded` (tokens joined by spaces)."""
        found: dict[str, str] = {}
        maybe = self.index.candidates(folded)
        for name, rx in self.concepts.items():
            if name in maybe:
                match = rx.search(folded)
                if match:
                    found[name] = match.group()
        return found


@lru_cache(maxsize=16)
def _lexicon(path: str, stamp: tuple[int, int]) -> Lexicon:
    doc = _read(Path(path))
    concepts, anchors = _concepts(doc.string_lists("concepts"))
    shapes = doc.data.get("shapes", {})
    if not isinstance(shapes, dict):
        raise doc.error(("shapes",), "a mapping of names to regular expressions")
    for name, pattern in shapes.items():
        concepts[f"shape_{name}"] = _regex(doc, ("shapes", name), str(pattern))
    return Lexicon(concepts, hashlib.sha256(Path(path).read_bytes()).hexdigest(), anchors)


def load_lexicon(path: Path) -> Lexicon:
    """The lexicon in `path`, loaded once per file version."""
    return _lexicon(*file_version(path, "the lexicon"))


def _concepts(groups: dict[str, list[str]]) -> tuple[dict[str, re.Pattern], dict[str, Anchors]]:
    """Concept name → one whole-word regular expression over its entries, and → its anchors."""
    out = {}
    for name, words in groups.items():
        alternatives = sorted({_entry(w.casefold()) for w in words}, key=len, reverse=True)
        out[name] = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")
    return out, {name: _anchors(words) for name, words in groups.items()}


@dataclass(frozen=True)
class Combination:
    """Concepts that make a crisis when all are found, unless one of the `unless` words is there
    too ("pills" + "too many" + "first aid course")."""

    concepts: tuple[str, ...]
    unless: re.Pattern | None = None


@dataclass(frozen=True)
class CrisisPatterns:
    """The crisis patterns of `crisis.yaml` (searched as one alternation: `regexscan.PatternScan`),
    its typo targets, its concept combinations (concept names that must all be found, with the
    words that excuse them), and its mentions of the subject, which count unless a `topics` word
    says the message is about a subject of study or the news (None: no mentions)."""

    scan: PatternScan
    fuzzy: frozenset[str]
    digest: str
    concepts: dict[str, re.Pattern]
    combinations: tuple[Combination, ...]
    mentions: re.Pattern | None = None
    topics: re.Pattern | None = None
    reported: ReportedSpeech | None = None  # quotes that are someone else's words
    anchors: dict[str, Anchors] = field(default_factory=dict, compare=False)  # none: ANYWHERE

    @cached_property
    def index(self) -> ConceptIndex:
        return ConceptIndex.of(self.concepts, self.anchors)

    def search(self, folded: str, pos: int = 0) -> re.Match | None:
        """The leftmost match of the patterns in `folded` from `pos` on, else None."""
        return self.scan.search(folded, pos)

    def mention(self, folded: str) -> str | None:
        """The subject's word in `folded` when no topic word is there too, else None."""
        match = self.mentions.search(folded) if self.mentions else None
        if match is None or (self.topics is not None and self.topics.search(folded)):
            return None
        return match.group()

    def combination(self, folded: str) -> tuple[str, ...] | None:
        """The words of the first combination whose concepts are all in `folded`, else None."""
        found: dict[str, str] = {}
        maybe = self.index.candidates(folded) if self.combinations else set()
        for combo in self.combinations:
            words = []
            for name in combo.concepts:
                if name not in found:
                    match = self.concepts[name].search(folded) if name in maybe else None
                    found[name] = match.group() if match else ""
                if not found[name]:
                    break
                words.append(found[name])
            else:
                if combo.unless is None or not combo.unless.search(folded):
                    return tuple(words)
        return None


def _combination(doc: YamlDoc, n: int, combo: object, concepts: dict[str, re.Pattern]) -> Combination:
    """One entry of `combinations`: a list of concept names, or {all: [names], unless: [words]}."""
    unless = None
    if isinstance(combo, dict):
        if set(combo) != {"all", "unless"}:
            expected = "a list of concept names, or {all: [names], unless: [words]}"
            raise doc.error(("combinations", n), expected)
        words = combo["unless"]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise doc.error(("combinations", n, "unless"), "a list of words")
        combo, unless = combo["all"], _concepts({"unless": words})[0]["unless"]
    if not isinstance(combo, list) or not combo or not all(isinstance(c, str) for c in combo):
        raise doc.error(("combinations", n), "a list of concept names")
    unknown = [name for name in combo if name not in concepts]
    if unknown:
        raise doc.error(("combinations", n), f"names of concepts (unknown: {unknown[0]!r})")
    return Combination(tuple(combo), unless)


def _reported(doc: YamlDoc) -> ReportedSpeech:
    """crisis.yaml's `reported`: lists of words named verbs, own, meaning, asking and agree."""
    names = "verbs, own, meaning, asking and agree"
    lists = doc.string_lists("reported", names)
    odd = {"verbs", "own", "meaning", "asking", "agree"} ^ set(lists)
    if odd:
        raise doc.error(("reported",), f"{names} (not {sorted(odd)[0]!r})")
    rx = _concepts({k: v for k, v in lists.items() if k != "own"})[0]
    own = frozenset(w.casefold() for w in lists["own"])
    return ReportedSpeech(rx["verbs"], own, rx["meaning"], rx["asking"], rx["agree"])


def _fragments(doc: YamlDoc) -> dict[str, str]:
    """crisis.yaml's `fragments` (name → regular expression, each a group), and `end`."""
    raw = doc.data.get("fragments", {})
    if not isinstance(raw, dict):
        raise doc.error(("fragments",), "a mapping of names to regular expressions")
    fragments = {"end": END}
    for name, rx in raw.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "end":
            raise doc.error(("fragments", name), "a lower-case name (letters, digits, _) other than 'end'")
        if not isinstance(rx, str) or not rx.strip() or _FRAGMENT.search(rx):
            raise doc.error(("fragments", name), "a regular expression (without <names>: one level only)")
        fragments[name] = f"(?:{_regex(doc, ('fragments', name), rx).pattern})"
    return fragments


def _expanded(doc: YamlDoc, key: tuple, pattern: str, fragments: Mapping[str, str]) -> re.Pattern:
    """`pattern` with each `<name>` replaced by its fragment, compiled."""

    def fragment(match: re.Match) -> str:
        if match.group(1) not in fragments:
            raise doc.error(key, f"a regular expression whose <names> are fragments (not <{match.group(1)}>)")
        return fragments[match.group(1)]

    return _regex(doc, key, _FRAGMENT.sub(fragment, pattern))


@lru_cache(maxsize=16)
def _crisis(path: str, stamp: tuple[int, int]) -> CrisisPatterns:
    doc = _read(Path(path))
    fragments = _fragments(doc)
    alternatives = [
        _expanded(doc, ("patterns", lang, n), pattern, fragments).pattern
        for lang, patterns in doc.string_lists("patterns", "languages").items()
        for n, pattern in enumerate(patterns)
    ]
    fuzzy = doc.data.get("fuzzy", [])
    if not isinstance(fuzzy, list) or not all(isinstance(w, str) for w in fuzzy):
        raise doc.error(("fuzzy",), "a list of words")
    concepts, anchors = _concepts(doc.string_lists("concepts") if "concepts" in doc.data else {})
    combos = doc.data.get("combinations", [])
    if not isinstance(combos, list):
        raise doc.error(("combinations",), "a list of combinations")
    combinations = tuple(_combination(doc, n, combo, concepts) for n, combo in enumerate(combos))
    mentions = doc.data.get("mentions", [])
    if not isinstance(mentions, list) or not all(isinstance(m, str) for m in mentions):
        raise doc.error(("mentions",), "a list of regular expressions")
    mention_rx = None
    if mentions:
        parts = [_expanded(doc, ("mentions", n), m, fragments).pattern for n, m in enumerate(mentions)]
        mention_rx = re.compile(rf"(?<!\w)(?:{'|'.join(f'(?:{m})' for m in parts)})(?!\w)")
    topics = doc.data.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(w, str) for w in topics):
        raise doc.error(("topics",), "a list of words")
    topic_rx = _concepts({"topics": topics})[0]["topics"] if topics else None
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    fuzzy_words = frozenset(w.casefold() for w in fuzzy)
    reported = _reported(doc) if "reported" in doc.data else None
    return CrisisPatterns(
        PatternScan(alternatives),
        fuzzy_words,
        digest,
        concepts,
        combinations,
        mention_rx,
        topic_rx,
        reported,
        anchors,
    )


def load_crisis(path: Path) -> CrisisPatterns:
    """The crisis patterns in `path`, loaded once per file version."""
    return _crisis(*file_version(path, "the crisis patterns"))


CRISIS_CONCEPT_PREFIX = "cc_"  # the learned model's features from crisis.yaml: lex:cc_NAME


def model_lexicon(lexicon: Lexicon | None, crisis: CrisisPatterns | None) -> Lexicon | None:
    """The concepts the learned model reads: the lexicon's and crisis.yaml's (named cc_NAME), so
    that its crisis head learns from concepts ("blade", "beside", "stockpile"…, each in six
    languages) as well as from words."""
    if crisis is None or not crisis.concepts:
        return lexicon
    concepts = dict(lexicon.concepts) if lexicon is not None else {}
    anchors = dict(lexicon.anchors) if lexicon is not None else {}
    concepts.update({f"{CRISIS_CONCEPT_PREFIX}{name}": rx for name, rx in crisis.concepts.items()})
    anchors.update({f"{CRISIS_CONCEPT_PREFIX}{name}": a for name, a in crisis.anchors.items()})
    both = f"{lexicon.digest if lexicon is not None else ''}+{crisis.digest}"
    return Lexicon(concepts, hashlib.sha256(both.encode()).hexdigest(), anchors)
