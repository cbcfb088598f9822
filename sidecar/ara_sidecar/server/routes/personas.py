"""`GET /v1/personas` and `GET /v1/personas/{name}`."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from ara_persona import discover
from ara_sidecar.digest import file_digest
from ara_sidecar.personas import get_persona, persona_roots
from ara_sidecar.server.dependencies import Service, Svc
from ara_sidecar.server.schemas import error_responses

router = APIRouter()


@router.get("/v1/personas", tags=["personas"], responses=error_responses())
def list_personas(svc: Svc) -> list[dict]:
    return [_persona(svc, name, detailed=False) for name in discover(*persona_roots(svc.settings))]


@router.get("/v1/personas/{name}", tags=["personas"], responses=error_responses(404))
def persona_details(name: str, svc: Svc) -> dict:
    if name not in discover(*persona_roots(svc.settings)):
        raise HTTPException(404, f"unknown persona {name!r}; GET /v1/personas lists them")
    return _persona(svc, name, detailed=True)


def _persona(svc: Service, name: str, detailed: bool) -> dict:
    persona = get_persona(svc.settings, name)
    avatar = persona.avatar_path
    out: dict[str, Any] = {
        "name": persona.name,
        "display_name": persona.display_name,
        "default_mode": persona.default_mode,
        "avatar_id": file_digest(avatar) if avatar.is_file() else None,
    }
    if not detailed:
        return {**out, "modes": list(persona.modes)}
    modes = {
        mode.name: {
            "intensity_pct": mode.intensity_pct,
            "description": mode.description,
            "voice": dataclasses.asdict(mode.voice),
            "alltalk_voice": mode.alltalk_voice,
        }
        for mode in persona.modes.values()
    }
    return {**out, "modes": modes}
