"""What the routes depend on: the service behind them (the app's state)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ara_sidecar.config import Settings
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.jobs import JobManager
from ara_sidecar.server.public import PathRedactor
from ara_sidecar.server.uploads import Uploads


@dataclass
class Service:
    settings: Settings
    pipeline: Pipeline  # on the CPU, not loaded: plans requests, checks uploads, holds the cache
    jobs: JobManager
    uploads: Uploads
    plan_inline: bool  # plan on the event loop where that waits for nothing (see planning._plan_inline)
    redact: PathRedactor = dataclasses.field(default_factory=PathRedactor)  # no server paths over HTTP


async def get_service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(get_service)]
