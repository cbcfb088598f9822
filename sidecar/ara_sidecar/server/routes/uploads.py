"""Uploads: `POST` and `GET /v1/avatars`, `POST /v1/audio`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from ara_sidecar.server.dependencies import Svc
from ara_sidecar.server.schemas import error_responses

router = APIRouter()


@router.post("/v1/avatars", tags=["avatars"], status_code=201, responses=error_responses(413, 422, 507))
async def upload_avatar(svc: Svc, file: Annotated[UploadFile, File(description="an image")]) -> dict:
    """Upload a portrait; it must decode, fit the pixel limit and show a face."""
    data = await file.read()
    return {"avatar_id": await svc.uploads.run(svc.uploads.add_avatar, data, _filename(file))}


@router.get("/v1/avatars", tags=["avatars"], responses=error_responses())
def list_avatars(svc: Svc) -> list[dict]:
    return svc.uploads.avatars()


@router.post("/v1/audio", tags=["audio"], status_code=201, responses=error_responses(413, 422, 507))
async def upload_audio(svc: Svc, file: Annotated[UploadFile, File(description="WAV/FLAC/OGG/MP3")]) -> dict:
    """Upload speech to lip-sync (render with audio_id instead of text)."""
    data = await file.read()
    return {"audio_id": await svc.uploads.run(svc.uploads.add_audio, data, _filename(file))}


def _filename(file: UploadFile) -> str:
    return Path(file.filename or "upload").name[:128]
