"""Persona data types."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The six personality modes, from most intimate to most professional.
MODE_NAMES = ("cathedral", "comfort", "lab", "playful", "cockpit", "teaching")


@dataclass(frozen=True)
class VoiceParams:
    """How the voice stage shapes speech for a mode.

    pitch_semitones: f0 shift, duration unchanged (+12 = one octave up).
    speed: tempo factor, pitch unchanged (0.9 = 10 % slower).
    warmth_db: spectral tilt in dB; 0 = neutral/professional, 6 = maximum warmth.
    """

    pitch_semitones: float = 0.0
    speed: float = 1.0
    warmth_db: float = 0.0


@dataclass(frozen=True)
class Mode:
    name: str
    intensity_pct: int
    voice: VoiceParams
    description: str = ""
    triggers: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    guidance: str = ""


@dataclass(frozen=True)
class Persona:
    name: str
    display_name: str
    directory: Path
    default_mode: str
    modes: dict[str, Mode] = field(default_factory=dict)

    def mode(self, name: str | None) -> Mode:
        """The named mode (None = the default); an unknown name lists the valid ones."""
        from ara_persona.loader import PersonaError

        key = self.default_mode if name is None else name.strip().lower()
        if key not in self.modes:
            raise PersonaError(f"unknown mode {name!r} for persona {self.name!r}; valid modes: {', '.join(self.modes)}")
        return self.modes[key]

    @property
    def avatar_path(self) -> Path:
        return self.directory / "avatar.png"
