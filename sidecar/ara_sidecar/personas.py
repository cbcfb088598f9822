"""The sidecar's view of the persona library: configured roots and lookup by name."""

from __future__ import annotations

from pathlib import Path

from ara_persona import Persona, PersonaError, discover, load_persona
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError


def persona_roots(settings: Settings) -> list[Path]:
    """Shipped personas first, then the user's folder (which wins on a name clash)."""
    roots = [settings.path(settings.personas_dir)]
    if settings.user_personas_dir is not None:
        roots.append(settings.path(settings.user_personas_dir))
    return roots


def get_persona(settings: Settings, name: str | None = None) -> Persona:
    name = name or settings.persona
    found = discover(*persona_roots(settings))
    if name not in found:
        valid = ", ".join(sorted(found)) or "none found"
        raise UserError(f"unknown persona {name!r}; valid personas: {valid}")
    try:
        return load_persona(found[name])
    except PersonaError as exc:
        raise UserError(str(exc)) from None
