"""Persona data types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

# The six personality modes, from most intimate to most professional.
MODE_NAMES = ("cathedral", "comfort", "lab", "playful", "cockpit", "teaching")

_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


class PersonaError(ValueError):
    """A persona is missing or one of its files is malformed."""

    @classmethod
    def at(cls, path: Path, line: int | None, field: str, expected: str) -> PersonaError:
        """The standard message: `FILE:LINE: field 'FIELD': expected WHAT`."""
        where = f"{path}:{line}" if line else str(path)
        return cls(f"{where}: field '{field}': expected {expected}")


def file_version(path: Path, what: str) -> tuple[str, tuple[int, int]]:
    """(path, (modification time, size)): a cache key that changes when the file does;
    PersonaError naming `what` when it cannot be read."""
    try:
        info = Path(path).stat()
    except OSError as exc:
        raise PersonaError(f"{path}: cannot read {what} ({exc})") from None
    return str(path), (info.st_mtime_ns, info.st_size)


def parse_time(text: str) -> time:
    """`"HH:MM"` (24-hour clock) → `datetime.time`; ValueError otherwise."""
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"expected a time as HH:MM (00:00–23:59), got {text!r}")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class VoiceParams:
    """How the voice stage shapes speech for a mode.

    pitch_semitones: f0 shift, duration unchanged (+12 = one octave up).
    speed: tempo factor, pitch unchanged (0.9 = 10 % slower).
    warmth_db: spectral tilt in dB; 0 = neutral/professional, 6 = maximum warmth.
    rvc_model: the RVC voice model (`voice: rvc`): NAME in models/rvc/ (NAME.pth) or a path, resolved
      like the sidecar's rvc.model setting, which overrides it; None = the default model. The DSP
      stage ignores it.
    pitch_range: factor on the f0 contour's excursions around its median, in semitones (1 = as
      spoken, 1.3 = livelier, 0.8 = flatter).
    pause_s: silence between sentences in seconds; None = the sidecar's `sentence_pause_s`.
    noise_scale, noise_w_scale: Piper's own prosody noise (voice variability, and the variability
      of phoneme durations); None = the Piper voice's defaults. Other TTS backends ignore them.

    The persona's base voice (`voice:` at the top of modes.yaml) is copied into every mode:
    piper_voice: the Piper voice (NAME in models/piper/, or None = the sidecar's `piper.voice`).
    target_f0_hz: the median f0 the speech is moved to before `pitch_semitones` (None = the base
      voice's own).
    formant_ratio: scale of the spectral envelope's frequency axis (formants; 1 = unchanged,
      1.15 ≈ a man's vocal tract to a woman's).
    """

    pitch_semitones: float = 0.0
    speed: float = 1.0
    warmth_db: float = 0.0
    rvc_model: str | None = None
    pitch_range: float = 1.0
    pause_s: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    piper_voice: str | None = None
    target_f0_hz: float | None = None
    formant_ratio: float = 1.0

    @property
    def reshapes(self) -> bool:
        """Whether f0 or formants change (the voice stage must analyse and resynthesise)."""
        return (
            self.pitch_semitones != 0
            or self.target_f0_hz is not None
            or self.formant_ratio != 1
            or self.pitch_range != 1
        )


@dataclass(frozen=True)
class FaceParams:
    """How the animated face moves in a mode (`face:` in modes.yaml; personas/README.md)."""

    head_motion: float = 1.0  # head sway and nods, × the animator's sway_degrees
    motion_speed: float = 1.0  # tempo of the head's sway (1 = its natural periods)
    blink_rate_per_min: float = 15.0  # mean blinks per minute
    brow: float = 1.0  # eyebrow raises on questions and emphasis, × a natural raise (0: none)
    smile: float = 0.0  # mouth corners lifted, × a warm smile (0: the portrait's own mouth)


@dataclass(frozen=True)
class Mode:
    name: str
    intensity_pct: int
    voice: VoiceParams
    description: str = ""
    triggers: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    guidance: str = ""
    alltalk_voice: str | None = None  # the AllTalk TTS voice of this mode (None = alltalk.voice)
    face: FaceParams = field(default_factory=FaceParams)  # the face's motion in this mode


@dataclass(frozen=True)
class SelectorSettings:
    """Tuning of the mode selector (`selector:` in modes.yaml); see `ara_persona.selector`.

    late_night_start/late_night_end: the window in which cathedral may be chosen, start
    inclusive, end exclusive; it may wrap past midnight.
    min_confidence: the probability (0–1) the best mode needs to be chosen over the default mode.
    switch_margin: the probability (0–1) by which a new mode must beat the previous one.
    follow_up_words: a message shorter than this keeps the previous mode unless a new mode
      reaches follow_up_confidence (0–1).
    """

    late_night_start: time = time(23, 0)
    late_night_end: time = time(5, 0)
    min_confidence: float = 0.3
    switch_margin: float = 0.3
    follow_up_words: int = 6
    follow_up_confidence: float = 0.9

    def is_late_night(self, now: time) -> bool:
        start, end = self.late_night_start, self.late_night_end
        if start <= end:
            return start <= now < end
        return now >= start or now < end


@dataclass(frozen=True)
class PromptSettings:
    """Prompt assembly defaults (`prompt:` in modes.yaml); see `ara_persona.prompt`.

    max_chars: the whole injected block, markers included, in characters.
    examples: how many dataset examples of the active mode to include at most.
    """

    max_chars: int = 8000
    examples: int = 2


@dataclass(frozen=True)
class Example:
    """One line of dataset.jsonl: a user turn and Ara's reply in a given mode."""

    id: str
    mode: str
    time: time
    user: str
    reply: str
    situation: str = ""
    previous_mode: str | None = None


@dataclass(frozen=True)
class Persona:
    name: str
    display_name: str
    directory: Path
    default_mode: str
    modes: dict[str, Mode] = field(default_factory=dict)
    manifesto: str = ""
    examples: tuple[Example, ...] = ()
    selector: SelectorSettings = SelectorSettings()
    prompt: PromptSettings = PromptSettings()
    safety: str = ""  # added to every mode's guidance: what the crisis check may miss

    def mode(self, name: str | None) -> Mode:
        """The named mode (None = the default); an unknown name lists the valid ones."""
        key = self.default_mode if name is None else name.strip().lower()
        if key not in self.modes:
            raise PersonaError(
                f"unknown mode {name!r} for persona {self.name!r}; valid modes: {', '.join(self.modes)}"
            )
        return self.modes[key]

    def examples_for(self, mode: str) -> tuple[Example, ...]:
        """The dataset examples of `mode`, in file order."""
        return tuple(e for e in self.examples if e.mode == mode)

    @property
    def avatar_path(self) -> Path:
        return self.directory / "avatar.png"
