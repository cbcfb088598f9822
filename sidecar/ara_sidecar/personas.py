"""The sidecar's view of the persona library: configured roots and lookup by name."""

from __future__ import annotations

import os
from functools import lru_cache
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


def missing_files(settings: Settings, persona: Persona) -> list[str]:
    """What `persona` names that this installation lacks: with `tts: piper`, a `piper_voice`
    (base or per mode) not found under models/piper/ (`personas check` reports it)."""
    if settings.tts != "piper":
        return []
    from ara_sidecar.errors import BackendUnavailable
    from ara_sidecar.tts.piper import voice_path

    problems = []
    for name in sorted({m.voice.piper_voice for m in persona.modes.values() if m.voice.piper_voice}):
        try:
            voice_path(settings, name)
        except BackendUnavailable as exc:
            problems.append(f"voice.piper_voice: {exc}")
    return problems


def get_persona(settings: Settings, name: str | None = None) -> Persona:
    name = name or settings.persona
    roots = persona_roots(settings)
    found = _discover(tuple(roots), tuple(_mtime(root) for root in roots))
    if name not in found:
        found = discover(*roots)  # a persona folder may have been completed since
    if name not in found:
        valid = ", ".join(sorted(found)) or "none found"
        raise UserError(f"unknown persona {name!r}; valid personas: {valid}")
    folder = found[name]
    with os.scandir(folder) as entries:
        files = [(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries if e.is_file()]
    stamp = tuple(sorted(files))
    try:
        return _load(folder, stamp)
    except PersonaError as exc:
        raise UserError(str(exc)) from None


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


@lru_cache(maxsize=8)
def _discover(roots: tuple[Path, ...], stamp: tuple[int, ...]) -> dict[str, Path]:
    """`discover`, again only when a root folder changes (`stamp`: their mtimes)."""
    return discover(*roots)


@lru_cache(maxsize=32)
def _load(folder: Path, stamp: tuple) -> Persona:
    """Parse a persona once per version of its files (`stamp`: names, mtimes, sizes)."""
    return load_persona(folder)
