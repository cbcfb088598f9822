"""The mode selector: which of the six modes fits the current turn, and why.

Inputs: the user's message (Ara's reply only when there is no user message), the local time,
the previous turn's mode and the user's settings (a forced mode; modes that Auto may not pick).
The persona's selector data lives beside its modes.yaml, in `selector/`: the crisis patterns
(`crisis.yaml`), the concept lexicon (`lexicon.yaml`), the acknowledgements
(`acknowledgements.yaml`) and the learned model (`model.json`, rebuilt from `selector/train/`
by `ara-sidecar personas train`). A persona without its own files uses Ara's.

Rules, in order:

1. **Crisis first.** Crisis language (`ara_persona.crisis`: the patterns, typos allowed, or the
   model's crisis head, not asked when the message only acknowledges) → comfort, whatever the
   previous mode, the hour, the disabled modes or a forced mode. The reason says so; a forced
   mode applies again from the next turn.
2. A forced mode wins, even a disabled one.
3. The model gives each mode a probability from the message (a softmax over word and
   character n-grams and lexicon concepts, linear and through a hidden layer); inside the
   late-night window cathedral gets `NIGHT_CATHEDRAL_LOGIT` more; each of the persona's
   `triggers` found in the message adds `TRIGGER_LOGIT` to its mode. Modes that Auto may not
   pick are left out, and so is cathedral outside the late-night window (start inclusive, end
   exclusive, may wrap midnight).
4. Hysteresis. The previous mode stays when the message only acknowledges or asks to go on
   ("ok", "thanks!", "and then?": `ara_persona.acknowledgements`), when the best mode beats it
   by less than `switch_margin` (probability), or when the message is a short follow-up (fewer
   than `follow_up_words` words) that no mode claims with `follow_up_confidence`. Otherwise the
   best mode wins if its probability reaches `min_confidence`; if none does, the default mode
   (cockpit for Ara; if that is disabled, the enabled mode of lowest intensity).

Deterministic, no I/O after the first call (the data files are read once per version), well
under a millisecond per call: `ara-sidecar personas eval` prints the latencies.
"""

from __future__ import annotations

import re
import time as time_module
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from pathlib import Path

import numpy as np

from ara_persona.acknowledgements import (
    ACKNOWLEDGEMENTS_FILE,
    NONE,
    Acknowledgements,
    load_acknowledgements,
)
from ara_persona.classifier import MODEL_FILE, LinearModel, Scores, load_model
from ara_persona.crisis import CrisisHit, find_pattern
from ara_persona.features import clip, fold, word_count
from ara_persona.lexicon import (
    CRISIS_FILE,
    LEXICON_FILE,
    CrisisPatterns,
    Lexicon,
    load_crisis,
    load_lexicon,
    model_lexicon,
)
from ara_persona.model import MODE_NAMES, Persona, PersonaError, SelectorSettings, parse_time

SELECTOR_DIR = "selector"
SHIPPED_SELECTOR = Path(__file__).resolve().parents[2] / "personas" / "ara" / SELECTOR_DIR
TRIGGER_LOGIT = 6.0
NIGHT_CATHEDRAL_LOGIT = 1.0  # inside the late-night window, personal talk leans towards cathedral
LABELS = {
    "cathedral": "late night and personal",
    "comfort": "distress",
    "lab": "technical",
    "teaching": "explanation request",
    "playful": "banter",
    "cockpit": "working",
}


@dataclass(frozen=True)
class Selection:
    """The chosen mode, a short human-readable reason, and whether crisis language chose it."""

    mode: str
    reason: str
    crisis: bool = False


@dataclass(frozen=True)
class SelectorData:
    """A persona's selector files, loaded."""

    crisis: CrisisPatterns
    lexicon: Lexicon | None
    model: LinearModel | None
    known_words: frozenset[str]
    acknowledgements: Acknowledgements = NONE


def selector_file(persona_dir: Path, name: str) -> Path | None:
    """The persona's own `selector/NAME`, else Ara's shipped one, else None."""
    for folder in (Path(persona_dir) / SELECTOR_DIR, SHIPPED_SELECTOR):
        if (folder / name).is_file():
            return folder / name
    return None


@lru_cache(maxsize=16)
def _bundle(
    crisis: Path, lexicon: Path | None, model: Path | None, acks: Path | None, stamp: tuple
) -> SelectorData:
    loaded = load_model(model) if model else None
    known = loaded.common_words if loaded else frozenset()
    patterns = load_crisis(crisis)
    words = model_lexicon(load_lexicon(lexicon) if lexicon else None, patterns)
    return SelectorData(patterns, words, loaded, known, load_acknowledgements(acks) if acks else NONE)


_RECHECK_S = 1.0  # how often the files' versions are checked again
_located: dict[Path, tuple[float, tuple]] = {}


def selector_data(persona: Persona) -> SelectorData:
    """The persona's selector data (see the module docstring); PersonaError without crisis patterns.
    Edited files are picked up within a second."""
    now = time_module.monotonic()
    seen = _located.get(persona.directory)
    if seen is None or now - seen[0] > _RECHECK_S:
        crisis = selector_file(persona.directory, CRISIS_FILE)
        if crisis is None:
            missing = persona.directory / SELECTOR_DIR / CRISIS_FILE
            raise PersonaError(f"{missing}: missing (crisis patterns are required)")
        lexicon = selector_file(persona.directory, LEXICON_FILE)
        model = selector_file(persona.directory, MODEL_FILE)
        acks = selector_file(persona.directory, ACKNOWLEDGEMENTS_FILE)
        files = (crisis, lexicon, model, acks)
        stamp = tuple(p.stat().st_mtime_ns if p else 0 for p in files)
        seen = _located[persona.directory] = (now, (*files, stamp))
    return _bundle(*seen[1])


def detect_crisis(
    data: SelectorData, text: str, *, scores: Scores | None = None, acknowledged: bool | None = None
) -> CrisisHit | None:
    """Crisis language in `text`: a pattern or combination, else the model's crisis head (its
    `scores` of `text`, if already computed); None if neither. The model is not asked about a
    message that only acknowledges ("ok.", "sure"): such a message has no words of a crisis, and
    short replies are where the model's false alarms were. `acknowledged`: whether the message
    only acknowledges, if already known."""
    hit = find_pattern(data.crisis, text, data.known_words)
    if acknowledged is None:
        acknowledged = data.acknowledgements.match(text) is not None
    if hit is None and data.model is not None and not acknowledged:
        scores = scores or data.model.score(text, lexicon=data.lexicon)
        if scores.crisis >= data.model.crisis_threshold:
            words = data.model.explain_crisis(scores)
            hit = CrisisHit(", ".join(words) or "the message as a whole", "model")
    return hit


@lru_cache(maxsize=32)
def _triggers(triggers: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, re.Pattern], ...]:
    out = []
    for mode, phrases in triggers:
        for phrase in phrases:
            words = re.sub(r"\s+", " ", fold(phrase)).strip()
            if words:
                out.append((mode, re.compile(rf"(?<!\w){re.escape(words)}(?!\w)")))
    return tuple(out)


def _check(persona: Persona, name: str | None, what: str) -> str | None:
    if name is None:
        return None
    key = name.strip().lower()
    if key not in persona.modes:
        raise PersonaError(f"unknown {what} mode {name!r}; valid modes: {', '.join(persona.modes)}")
    return key


def _clock(now: time | datetime | str | None) -> time:
    if now is None:
        return datetime.now().time()
    if isinstance(now, str):
        return parse_time(now)
    if isinstance(now, datetime):
        return now.time()
    return now


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
    data: SelectorData | None = None,
) -> Selection:
    """Choose the mode for this turn (see the module docstring for the rules).

    `now` is the local time ("HH:MM", a time or a datetime; None = the clock). `settings`
    overrides the persona's `selector:` settings, `data` its selector files (a model under
    evaluation, say). Unknown mode names raise PersonaError.
    """
    cfg = settings or persona.selector
    forced = _check(persona, force, "forced")
    blocked = {_check(persona, name, "disabled") for name in disabled}
    asked = _check(persona, previous, "previous")
    clock = _clock(now)
    night = cfg.is_late_night(clock)
    text = user if user.strip() else reply
    data = data or selector_data(persona)

    scores = data.model.score(text, lexicon=data.lexicon) if data.model else None
    ack = data.acknowledgements.match(text)
    hit = detect_crisis(data, text, scores=scores, acknowledged=ack is not None)
    if hit is not None:
        how = "" if hit.source == "pattern" else f" ({hit.source})"
        reason = f"possible crisis{how}: '{hit.phrase}'"
        if forced and forced != "comfort":
            reason += f"; overrides the forced mode {forced} for this turn"
        elif asked and asked != "comfort":
            reason += f"; overrides {asked}"
        return Selection("comfort", reason, crisis=True)
    if forced:
        return Selection(forced, "forced by settings")

    allowed = [m for m in MODE_NAMES if m in persona.modes and m not in blocked]
    if not allowed:
        raise PersonaError("every mode is disabled; enable at least one")
    default = (
        persona.default_mode
        if persona.default_mode in allowed
        else min(allowed, key=lambda m: persona.modes[m].intensity_pct)
    )
    eligible = [m for m in allowed if m != "cathedral" or night]
    model = data.model
    if model is None:
        return Selection(default, "no selector model; default mode")

    logits = np.array(scores.logits, dtype=np.float64)
    folded = re.sub(r"\s+", " ", fold(clip(text))).strip()
    triggered: dict[str, list[str]] = {}
    for mode, rx in _triggers(tuple((m.name, m.triggers) for m in persona.modes.values() if m.triggers)):
        match = rx.search(folded)
        if match and mode in model.modes:
            logits[model.modes.index(mode)] += TRIGGER_LOGIT
            triggered.setdefault(mode, []).append(match.group())
    if night and "cathedral" in model.modes:
        logits[model.modes.index("cathedral")] += NIGHT_CATHEDRAL_LOGIT
    mask = np.array([m in eligible for m in model.modes])
    logits = np.where(mask, logits, -np.inf)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    p = {m: float(probs[i]) for i, m in enumerate(model.modes)}
    best = max(eligible, key=lambda m: (p[m], -MODE_NAMES.index(m)))

    def because(mode: str) -> str:
        label = LABELS[mode] + (f" at {clock:%H:%M}" if mode == "cathedral" else "")
        words = triggered.get(mode, []) + [
            w for w in model.explain(scores, mode) if w not in triggered.get(mode, [])
        ]
        quoted = ", ".join(f"'{w}'" for w in words[:3])
        return f"{label} ({p[mode]:.0%})" + (f": {quoted}" if quoted else "")

    prev = asked if asked in eligible else None
    note = ""
    if asked is not None and prev is None:
        note = (
            " (the late-night window is over)"
            if asked == "cathedral" and asked in allowed
            else f" ({asked} is disabled)"
        )
    if prev is not None and ack is not None:
        return Selection(prev, f"staying in {prev}: '{ack}' only acknowledges")
    if prev is not None and prev != best:
        if p[best] - p[prev] < cfg.switch_margin:
            return Selection(
                prev,
                f"staying in {prev}: {best} ({p[best]:.0%}) not clearly stronger than {prev} ({p[prev]:.0%})",
            )
        words = word_count(text)
        if words < cfg.follow_up_words and p[best] < cfg.follow_up_confidence:
            return Selection(prev, f"staying in {prev}: short follow-up ({words} words), no clear new signal")
    if p[best] >= cfg.min_confidence or best == prev:
        return Selection(best, because(best) + note)
    hint = f" (strongest: {best} {p[best]:.0%})"
    return Selection(default, f"no clear signal; default mode{hint}{note}")


__all__ = [
    "LABELS",
    "Selection",
    "SelectorData",
    "detect_crisis",
    "select_mode",
    "selector_data",
    "selector_file",
]
