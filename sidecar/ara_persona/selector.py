"""The mode selector: which of the six modes fits the current turn, and why.

Inputs: the user's last message, Ara's reply (optional), the local time, the previous mode
and the user's settings (a forced mode; modes that automatic selection may not pick).

Evidence. Both texts are lower-cased and scanned for signals, each worth points towards one
or more modes: a strong signal (a traceback, "explain", "haha", "overwhelmed", "can't sleep")
is worth 2, a weak one ("gpu", "why", "alone") 1. Each distinct phrase counts once per text;
signals found in the reply count half. Emotion words right after a negation ("not sad") do
not count. The persona's own `triggers` from modes.yaml are strong signals of their mode
(also ignored after a negation) and take precedence over the built-in ones. Cockpit has no
built-in lexicon: it is what is left when nothing else is clear.

Rules, in order:

1. A forced mode wins, even a disabled one.
2. Crisis language (self-harm) → comfort.
3. The candidates are the enabled modes with at least `min_score` points; cathedral is a
   candidate only inside the late-night window (start inclusive, end exclusive, may wrap
   midnight), where its points measure how personal the conversation is. The highest score
   wins; ties go to the earlier of cathedral, comfort, lab, teaching, playful, cockpit. So
   distress → comfort, technical content → lab, explain / how-to → teaching, jokes and
   banter → playful, personal talk late at night → cathedral, and nothing clear → the
   default mode (cockpit for Ara; if that is disabled, the enabled mode of lowest intensity).
4. Hysteresis. A candidate replaces the previous mode only if it beats the previous mode's
   own score by `switch_margin` (the default mode rarely scores, so leaving it takes just
   `min_score`). With no candidate, a previous non-default mode stays while the turn still
   carries its signals, or is a short follow-up (fewer than `follow_up_words` words, e.g.
   "ok, and then?"); a longer message without any sign of it returns to the default mode.
   A disabled previous mode, or cathedral outside the window, is not kept.

Deterministic, no I/O, well under a millisecond per call: the regular expressions are
compiled once, and of a long message only the beginning and the end are scanned
(`USER_SCAN_CHARS`, `REPLY_SCAN_CHARS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import lru_cache
from typing import NamedTuple

from ara_persona.model import MODE_NAMES, Persona, PersonaError, SelectorSettings, parse_time

USER_SCAN_CHARS = 1000
REPLY_SCAN_CHARS = 500
REPLY_WEIGHT = 0.5
TRIGGER_POINTS = 2.0
PRIORITY = ("cathedral", "comfort", "lab", "teaching", "playful", "cockpit")
CRISIS = "crisis"
LABELS = {
    "cathedral": "late night and personal",
    "comfort": "distress",
    "lab": "technical",
    "teaching": "explanation request",
    "playful": "banter",
    "cockpit": "working",
}


class Signal(NamedTuple):
    """Regular-expression alternatives ("a|b|…") matched as whole words, worth `points`."""

    alternatives: str
    points: dict[str, float]
    negatable: bool = False  # ignored right after "not", "n't", "never" or "no"

    def pattern(self) -> str:
        guard = r"(?<!not )(?<!n't )(?<!never )(?<!no )" if self.negatable else ""
        return rf"\b{guard}(?:{self.alternatives})\b"


# Patterns match lower-cased text with straight apostrophes. At one position the first listed
# alternative wins, so phrases with a gap match only their head and look ahead for the rest,
# leaving the words in the gap to other signals.
WORD_SIGNALS: tuple[Signal, ...] = (
    # crisis: always comfort
    Signal(
        r"kill(?:ing)? myself|end(?:ing)? (?:it all|my life)|suicid\w*|self[- ]harm\w*"
        "|hurt(?:ing)? myself|(?:want|wanted) to die|don't want to (?:be here|live|wake up)"
        "|no reason to live|better off without me",
        {CRISIS: 3, "comfort": 3},
    ),
    # comfort: distress and vulnerability
    Signal(
        "sad|depressed|miserable|hopeless|heartbroken|devastated|anxious|scared|terrified|afraid"
        "|frightened|overwhelmed|embarrassed|ashamed|humiliated|stressed(?: out)?|exhausted"
        "|burn(?:ed|t) out|numb",
        {"comfort": 2},
        negatable=True,
    ),
    Signal("lonely", {"comfort": 2, "cathedral": 1}, negatable=True),
    Signal(
        r"panic(?:king| attacks?)?|can't breathe|can't stop (?:crying|shaking)|anxiety|overwhelm\w*"
        "|burnout|crying|cried|in tears|heartbreak|grief|grieving|passed away|funeral|miscarriage"
        "|broke up|breakup|dumped me|divorce|lost my job|got fired|can't cope"
        "|can't take (?:it|this) anymore|falling apart|breaking down|hate myself|i'm a failure"
        "|so tired of|(?:i'm|i am|i feel) (?:not (?:ok|okay|fine|alright)|like a failure|worthless|useless)"
        "|(?:feel like|want to) giv(?:e|ing) up|traurig|einsam|überfordert|angst|triste|anxieu(?:x|se)"
        "|épuisée?|deprimid[oa]|tengo miedo",
        {"comfort": 2},
    ),
    Signal(
        "(?:awful|rough|terrible|horrible|bad|hard) (?:day|week|night|year|time)|hurts|died|give up"
        "|giving up",
        {"comfort": 1},
    ),
    # lab: technical content
    Signal(
        r"traceback|stack ?trace|backtrace|segfault|segmentation fault|core dumped|null ?pointer"
        r"|out of memory|oom|memory leak|race condition|deadlock|merge conflict|benchmark\w*|latency"
        "|throughput|profil(?:e|er|ing)|regex(?:es)?|regular expression"
        "|(?:type|value|key|index|attribute|runtime|import|name|syntax|assertion|memory|os"
        "|file ?not ?found|zero ?division|connection|timeout|permission|recursion|overflow"
        "|module ?not ?found|not ?implemented)(?:error|exception)",
        {"lab": 2},
    ),
    Signal(
        r"cuda|vram|gpu|cpu|kernel|driver|compil\w+|linker|docker|kubernetes|git|postgres\w*|sql"
        r"|database|query|index(?:es|ing)?|api|endpoint|http|python|rust|c\+\+|javascript|typescript"
        r"|numpy|pytorch|torch|tensors?|quantiz\w+|gguf|llama\.cpp|batch size|learning rate|gradients?"
        r"|debug\w*|bug|crash\w*|code|heap|pointer|malloc|dependenc\w+|pip|conda|venv"
        r"|virtual environment|deploy\w*|server|ssh|linux|bash|script|function|variable|refactor\w*"
        r"|algorithm\w*|big o|cach(?:e|ing)|hash\w*|cryptograph\w*|encryption|stdout|stderr|exit code"
        r"|nvidia-smi|fehler|erreur",
        {"lab": 1},
    ),
    Signal(  # file names, calls, addresses, line numbers, measurements
        r"\w+\.(?:py|js|ts|rs|cpp|cc|h|go|java|yaml|yml|json|toml|sh|cu|log)|[a-z_][\w.]*(?=\(\))"
        r"|0x[0-9a-f]{4,}|line \d+|\d+(?:\.\d+)? ?(?:ms|s|gb|mb|gib|mib|fps|hz|khz|tok/s|tokens/s)"
        r"|p(?:50|90|95|99)",
        {"lab": 1},
    ),
    # teaching: explanations and how-tos
    Signal(
        r"explain\w*|explanation|erklär\w*|expli(?:que[rz]?|cation)|explica\w*"
        "|how (?:do|can|should|would) (?:i|we|you|one)|how to|curious (?:how|why|about)"
        r"|how(?: does| do)?(?= [^.?!]{1,60}? works?\b)"
        "|what(?:'s| is| are) (?:a|an)|difference between|what does(?= [^.?!]{1,40}? mean)"
        "|why (?:does|do|is|are|did)|teach me|tutorial|step[- ]by[- ]step|walk me through"
        "|for (?:a )?beginners?|i'm new to|eli5|like i'm (?:five|5)|in simple terms|don't understand"
        "|do not understand|doesn't make sense|quiz me|show me how|wie funktioniert"
        "|comment (?:ça marche|fonctionne)|cómo funciona",
        {"teaching": 2},
    ),
    Signal(
        "why|what is|understand|learn(?:ing)?|warum|pourquoi|por qué|qué es|was ist|c'est quoi",
        {"teaching": 1},
    ),
    # playful: jokes and banter
    Signal(
        "ha(?:ha)+h?|he(?:he)+|ja(?:ja)+|lo+l+|lmf?ao+|rofl|mdr|xd|jk|just kidding|k{4,}|jokes?|joking"
        "|puns?|roast|limerick|banter|teas(?:e|ing)|silly|goofy|hilarious|prank|meme|bet you can't"
        "|i dare you|dare you|make me laugh|rap battle"
        "|you(?:'re| are) (?:a |such a )?(?:nerd|dork|menace|goof|drama queen)",
        {"playful": 2},
    ),
    Signal("funny|toaster|potato|cheeky", {"playful": 1}),
    # cathedral: personal, reflective talk (counts only in the late-night window)
    Signal(
        "can't sleep|couldn't sleep|cannot sleep|insomnia|still awake|up so late|middle of the night"
        "|do you ever|have you ever (?:thought|wondered)|do you (?:think|feel|dream|remember|miss|wonder)"
        "|are you (?:ever )?(?:happy|real|afraid|scared|lonely|alive|conscious)|what(?:'s| is) it like"
        "|remember when|i've been thinking|i keep thinking|meaning of (?:life|it all)"
        "|what (?:any|all) of this is for|will you remember|would you miss|switched off|pull the plug"
        "|shut (?:you|me) down|makes me wonder",
        {"cathedral": 2},
    ),
    Signal(
        "my (?:mom|mum|mother|dad|father|parents|family|brother|sister|grandma|grandmother|grandpa"
        "|grandfather|partner|wife|husband|girlfriend|boyfriend|best friend|life|childhood)"
        r"|love|in love|dreams?|alone|regret\w*|honest(?:ly)?|the future|who i am|stars|universe"
        "|tonight|wasting|afraid of|miss (?:you|her|him|them|home)",
        {"cathedral": 1},
    ),
)
# Signals that need not start at a word: (pattern, points).
SYMBOL_SIGNALS: tuple[tuple[str, dict[str, float]], ...] = (
    ("```", {"lab": 2}),
    (r"(?<![\w-])--[a-z][\w-]+", {"lab": 1}),
    ("[😢😞💔😔]", {"comfort": 1}),
    (r"[😂🤣😜😝😛😆😹🙃😏]|(?<!\w)(?::p|;\)|;p|:d)(?!\w)", {"playful": 2}),
)


def _branches(alternatives: str) -> list[str]:
    """The top-level branches of a regular expression."""
    branches, depth, start, i = [], 0, 0, 0
    while i < len(alternatives):
        char = alternatives[i]
        if char == "\\":
            i += 1
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(alternatives[start:i])
            start = i + 1
        i += 1
    return [*branches, alternatives[start:]]


def _lead(branch: str) -> str | None:
    """The literal first character of a branch, if it has one."""
    return branch[0] if branch[:1].isalnum() and branch[1:2] not in ("?", "*", "+", "{") else None


class _Scanner:
    """Every signal in one regular expression, so that a text is scanned in a single pass.

    Word signals share one `(?<!\\w)` guard and are grouped by their first character, so at
    most positions the engine rejects the text after a couple of checks instead of trying
    hundreds of alternatives; a match is then attributed to the first word signal that
    matches at the same place (which also applies the negation guards).
    """

    def __init__(self, words: tuple[Signal, ...], symbols: tuple[tuple[str, dict[str, float]], ...]):
        self.words = [
            (re.compile(s.pattern()), s.points, {_lead(b) for b in _branches(s.alternatives)}) for s in words
        ]
        self.symbols = [points for _, points in symbols]
        grouped: dict[str | None, list[str]] = {}
        for signal in words:
            for branch in _branches(signal.alternatives):
                lead = _lead(branch)
                grouped.setdefault(lead, []).append(branch if lead is None else branch[1:])
        others = grouped.pop(None, [])
        factored = [f"{lead}(?:{'|'.join(rest)})" for lead, rest in grouped.items()] + others
        sym = "".join(f"|(?P<y{i}>{pattern})" for i, (pattern, _) in enumerate(symbols))
        self.rx = re.compile(rf"(?<!\w)(?:{'|'.join(factored)})\b{sym}")

    def find(self, text: str) -> Iterator[tuple[str, dict[str, float]]]:
        """(phrase, points) for each signal found in `text`."""
        for match in self.rx.finditer(text):
            if match.lastgroup:
                yield match.group(), self.symbols[int(match.lastgroup[1:])]
                continue
            start, lead, fallback = match.start(), text[match.start()], None
            for rx, points, leads in self.words:
                hit = rx.match(text, start) if lead in leads or None in leads else None
                if hit and hit.end() == match.end():
                    yield match.group(), points
                    break
                fallback = fallback or (points if hit else None)
            else:
                if fallback:
                    yield match.group(), fallback


@lru_cache(maxsize=32)
def _scanner(triggers: tuple[tuple[str, tuple[str, ...]], ...]) -> _Scanner:
    """The persona triggers, ahead of the built-in signals so that they take precedence."""
    words: list[Signal] = []
    symbols: list[tuple[str, dict[str, float]]] = []
    for mode, phrases in triggers:
        for phrase in map(_normalize, phrases):
            if re.fullmatch(r"\w(?:.*\w)?", phrase):
                words.append(Signal(re.escape(phrase), {mode: TRIGGER_POINTS}, negatable=True))
            else:
                symbols.append((rf"(?<!\w){re.escape(phrase)}(?!\w)", {mode: TRIGGER_POINTS}))
    return _Scanner((*words, *WORD_SIGNALS), (*symbols, *SYMBOL_SIGNALS))


def _normalize(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    return re.sub(r"\s+", " ", text).strip()


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters: the beginning and the end of a longer text."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} {text[-(limit // 2) :]}"


@dataclass(frozen=True)
class Selection:
    """The chosen mode and a short human-readable reason."""

    mode: str
    reason: str


@dataclass
class _Evidence:
    """Points per mode, and the phrases that earned them."""

    scores: dict[str, float] = field(default_factory=dict)
    found: dict[str, list[str]] = field(default_factory=dict)

    def add(self, mode: str, points: float, phrase: str) -> None:
        self.scores[mode] = self.scores.get(mode, 0.0) + points
        if phrase not in self.found.setdefault(mode, []):
            self.found[mode].append(phrase)

    def score(self, mode: str) -> float:
        return self.scores.get(mode, 0.0)

    def quote(self, mode: str) -> str:
        return ", ".join(f"'{p}'" for p in self.found.get(mode, [])[:3])


def _evidence(persona: Persona, user: str, reply: str) -> _Evidence:
    scanner = _scanner(tuple((m.name, m.triggers) for m in persona.modes.values() if m.triggers))
    evidence = _Evidence()
    for text, limit, weight in ((user, USER_SCAN_CHARS, 1.0), (reply, REPLY_SCAN_CHARS, REPLY_WEIGHT)):
        seen: set[str] = set()
        for phrase, points in scanner.find(_normalize(_clip(text, limit))):
            if phrase not in seen:
                seen.add(phrase)
                for mode, value in points.items():
                    evidence.add(mode, value * weight, phrase.strip()[:30])
    return evidence


def _check(persona: Persona, name: str | None, what: str) -> str | None:
    if name is None:
        return None
    key = name.strip().lower()
    if key not in persona.modes:
        raise PersonaError(f"unknown {what} mode {name!r}; valid modes: {', '.join(persona.modes)}")
    return key


def _fmt(score: float) -> str:
    return f"{score:g}"


def select_mode(
    persona: Persona,
    user: str,
    reply: str = "",
    *,
    now: time | datetime | str | None = None,
    previous: str | None = None,
    force: str | None = None,
    disabled: Iterable[str] = (),
    settings: SelectorSettings | None = None,
) -> Selection:
    """Choose the mode for this turn (see the module docstring for the rules).

    `now` is the local time ("HH:MM", a time or a datetime; None = the clock). `settings`
    overrides the persona's `selector:` settings. Unknown mode names raise PersonaError.
    """
    cfg = settings or persona.selector
    forced = _check(persona, force, "forced")
    if forced:
        return Selection(forced, "forced by settings")
    blocked = {_check(persona, name, "disabled") for name in disabled}
    allowed = [m for m in MODE_NAMES if m in persona.modes and m not in blocked]
    if not allowed:
        raise PersonaError("every mode is disabled; enable at least one")
    if now is None:
        now = datetime.now().time()
    elif isinstance(now, str):
        now = parse_time(now)
    elif isinstance(now, datetime):
        now = now.time()
    night = cfg.is_late_night(now)

    ev = _evidence(persona, user, reply)
    if ev.score(CRISIS) and "comfort" in allowed:
        return Selection("comfort", f"possible crisis: {ev.quote(CRISIS)}")

    ranked = sorted(
        (m for m in MODE_NAMES if m in persona.modes and (m != "cathedral" or night)),
        key=lambda m: (-ev.score(m), PRIORITY.index(m)),
    )
    note = (
        f" ({ranked[0]} is disabled)" if ranked[0] in blocked and ev.score(ranked[0]) >= cfg.min_score else ""
    )
    eligible = [m for m in ranked if m in allowed]
    best = eligible[0] if eligible and ev.score(eligible[0]) >= cfg.min_score else None
    default = (
        persona.default_mode
        if persona.default_mode in allowed
        else min(allowed, key=lambda m: persona.modes[m].intensity_pct)
    )

    def because(mode: str) -> str:
        label = LABELS[mode] + (f" at {now:%H:%M}" if mode == "cathedral" else "")
        return f"{label}: {ev.quote(mode)}" if ev.quote(mode) else label

    asked = _check(persona, previous, "previous")
    prev = asked if asked in eligible else None
    if best is not None and prev not in (None, best) and ev.score(best) < ev.score(prev) + cfg.switch_margin:
        return Selection(
            prev,
            f"staying in {prev}: {best} evidence ({_fmt(ev.score(best))}) not clearly stronger "
            f"than {prev} ({_fmt(ev.score(prev))}){note}",
        )
    if best is not None:
        return Selection(best, because(best) + note)
    if prev is not None and prev != default:
        if ev.score(prev) > 0:
            return Selection(prev, f"still {because(prev)}")
        words = len(user.split())
        if words < cfg.follow_up_words:
            return Selection(prev, f"staying in {prev}: short follow-up ({words} words), no clear new signal")
        return Selection(default, f"back to {default}: no sign of {prev} in this message{note}")
    if asked is not None and asked not in allowed:
        note += f" ({asked} is disabled)"
    elif asked == "cathedral" and not night:
        note += " (the late-night window is over)"
    strongest = ranked[0]
    hint = (
        f" (strongest: {strongest} {_fmt(ev.score(strongest))})" if ev.score(strongest) and not note else ""
    )
    return Selection(default, f"no clear signal; default mode{hint}{note}")
