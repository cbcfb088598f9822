"""`POST /v1/render` and the jobs: `POST /v1/jobs`, `GET /v1/jobs/{id}`, its events, `DELETE`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from ara_sidecar.server.dependencies import Service, Svc
from ara_sidecar.server.jobs import Job
from ara_sidecar.server.planning import submit
from ara_sidecar.server.schemas import ChunkView, JobView, RenderBody, RenderOutput, error_responses

FAILURE_STATUS = {"user": 422, "storage": 507, "timeout": 504, "worker": 503, "internal": 500}
router = APIRouter()


@router.post(
    "/v1/render",
    tags=["render"],
    response_model=RenderOutput,
    responses=error_responses(409, 413, 422, 429, 500, 503, 504, 507),
)
async def render(body: RenderBody, svc: Svc) -> Response:
    """Render and wait for the video."""
    job = await submit(svc, body)
    await job.wait()
    if job.status == "done":  # already a validated model: sent as is (the cache-hit path)
        return Response(_output(job).model_dump_json(), media_type="application/json")
    status = 409 if job.status == "cancelled" else FAILURE_STATUS[job.render.error_kind or "internal"]
    raise HTTPException(status, job.render.error or "the render was cancelled")


@router.post("/v1/jobs", tags=["jobs"], status_code=202, responses=error_responses(413, 422, 429))
async def create_job(body: RenderBody, svc: Svc) -> dict[str, str]:
    """Queue a render; follow it with GET /v1/jobs/{id} or its events."""
    job = await submit(svc, body)
    return {"job_id": job.id}


@router.get("/v1/jobs/{job_id}", tags=["jobs"], responses=error_responses(404))
async def get_job(job_id: str, svc: Svc) -> JobView:
    return _view(await _job(svc, job_id), svc)


async def _found_job(job_id: str, svc: Svc) -> Job:
    """The job as a dependency: an unknown id is a 404 before an event stream starts."""
    return await _job(svc, job_id)


@router.get(
    "/v1/jobs/{job_id}/events",
    tags=["jobs"],
    response_class=EventSourceResponse,
    responses=error_responses(404, stream=True),
)
async def job_events(job: Annotated[Job, Depends(_found_job)], svc: Svc) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: `chunk_ready` (a chunk as in `chunks`) as soon as each chunk's video
    exists, and the job (as GET /v1/jobs/{id}) at every change until it ends."""
    # FastAPI sends the headers, and a comment line whenever the stream has been quiet for 15 s;
    # a client that goes away cancels this generator.
    count = sent = 0
    async for changed in job.changes(keepalive_s=60):
        if not changed:  # (quiet for a minute: FastAPI's comment lines keep the connection open)
            continue
        view = _view(job, svc)
        for chunk in view.chunks[sent:]:
            count += 1
            yield ServerSentEvent(raw_data=chunk.model_dump_json(), event="chunk_ready", id=str(count))
        sent = len(view.chunks)
        count += 1
        yield ServerSentEvent(raw_data=view.model_dump_json(), id=str(count))


@router.delete("/v1/jobs/{job_id}", tags=["jobs"], responses=error_responses(404))
async def cancel_job(job_id: str, svc: Svc) -> JobView:
    """Cancel a job (a finished job is left as it is)."""
    job = await _job(svc, job_id)
    await svc.jobs.acancel(job)
    return _view(job, svc)


async def _job(svc: Service, job_id: str) -> Job:
    job = await svc.jobs.aget(job_id)
    if job is None:
        raise HTTPException(404, f"no such job: {job_id[:64]!r} (unknown, or finished long ago)")
    return job


def _output(job: Job) -> RenderOutput:
    result = job.render.result
    assert result is not None
    return RenderOutput(
        key=result["key"],
        video_url=f"/v1/videos/{result['key']}.mp4",
        duration_s=result["duration_s"],
        mode=result["mode"],
        mode_reason=job.mode_reason,
        cached=result["cached"],
        timings=result["timings"],
        persona=result["persona"],
        chunks=[_chunk(c) for c in result.get("chunks", [])],
    )


def _chunk(chunk: dict[str, Any]) -> ChunkView:
    return ChunkView(**chunk, url=f"/v1/videos/{chunk['key']}.mp4")


def _view(job: Job, svc: Service) -> JobView:
    render = job.render
    return JobView(
        job_id=job.id,
        status=job.status,
        stage=render.stage,
        progress=render.progress,
        chunk_count=render.chunk_count,
        chunks=[_chunk(c) for c in render.chunks],
        created=job.created,
        finished=job.finished,
        result=_output(job) if job.status == "done" else None,
        error=svc.redact(render.error or "") if job.status == "failed" else None,
    )
