"""Planning a render request: validated against the personas, uploads and limits, keyed, and
found in the cache where the worker rendered it before; on the event loop where that waits for
nothing, else in the thread pool."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from ara_persona import PersonaError, select_mode
from ara_sidecar.cache.store import CacheBusy, without_waiting
from ara_sidecar.digest import NotMemoized, memoized_only
from ara_sidecar.errors import UserError
from ara_sidecar.personas import get_persona
from ara_sidecar.pipeline import RenderRequest
from ara_sidecar.server.dependencies import Service
from ara_sidecar.server.jobs import Job
from ara_sidecar.server.schemas import RenderBody

INLINE_PLAN_CHARS = 1000  # longer text is planned in the thread pool (about 1 µs a character)

Planned = tuple[str, RenderRequest, str, int, dict | None]  # JobManager.submit's arguments


async def submit(svc: Service, body: RenderBody) -> Job:
    planned = _plan_inline(svc, body) if svc.plan_inline else None
    if planned is None:
        planned = await run_in_threadpool(_plan, svc, body)
    return await svc.jobs.asubmit(*planned)


def _plan_inline(svc: Service, body: RenderBody) -> Planned | None:
    """`_plan` on the event loop, None where it would wait: for a file digest not yet memoized or
    the cache index being written. A repeated request, such as a cache hit, so skips the thread pool.
    Only small, bounded work runs here: text over INLINE_PLAN_CHARS and mode auto (the selector
    takes milliseconds) are planned in the thread pool, whatever the cache holds."""
    if body.mode == "auto" or len(body.text or "") > INLINE_PLAN_CHARS:
        return None
    try:
        with memoized_only(), without_waiting():
            return _plan(svc, body)
    except (NotMemoized, CacheBusy):
        return None


def _plan(svc: Service, body: RenderBody) -> Planned:
    """Validate a body against the personas, uploads and limits: (cache key, request, mode reason,
    chunk count, the result if the worker rendered this before and the cache still holds it)."""
    persona = get_persona(svc.settings, body.persona)
    mode, reason = body.mode, "requested" if body.mode else "default mode"
    if mode == "auto":
        try:
            selection = select_mode(
                persona, body.user_message or "", body.text or "", previous=body.previous_mode
            )
        except PersonaError as exc:
            raise UserError(str(exc)) from None
        mode, reason = selection.mode, selection.reason
    request = RenderRequest(
        text=body.text,
        audio_path=svc.uploads.audio_path(body.audio_id) if body.audio_id else None,
        persona=persona.name,
        mode=mode,
        avatar_path=svc.uploads.avatar_path(body.avatar_id) if body.avatar_id else None,
        apply_voice=body.voice,
    )
    plan = svc.pipeline.plan(request)
    result = svc.jobs.rendered(plan.key)
    if result is None or svc.pipeline.cache.get(result["key"]) is None:
        return plan.key, request, reason, len(plan.chunks), None
    # as the worker answers a hit; the mode and persona names are this request's (a key has no names)
    cached = {**result, "cached": True, "timings": {}, "mode": plan.mode.name, "persona": plan.persona.name}
    return plan.key, request, reason, len(plan.chunks), cached
