"""Speculative pre-rendering: a reply's complete sentences are rendered while it still streams.

The sidecar caches each chunk's video under a key made of the chunk's text, persona, mode,
avatar and backends, and a text's beginning is cut into the same first chunks as the whole text
(`ara_sidecar.text.split_chunks`). So rendering the complete chunks of the reply so far fills
the cache with the first chunks of the final render, which `output_modifier` starts when the
reply is complete: its first frame no longer waits for speech and lip-sync.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ara_tgwui.client import SidecarError
from ara_tgwui.live import LiveManifest
from ara_tgwui.runtime import chat_key, copy_chunk, spoken_text, tgwui_cache_dir

if TYPE_CHECKING:
    from ara_tgwui.runtime import Runtime

log = logging.getLogger("ara_avatar")
_USER = re.compile("(<USER>|<user>|{{user}})")


_REMOTE_TTL_S = 60.0
_remote: dict[str, tuple[float, Any]] = {}  # sidecar URL → (when asked, its ChunkLimits or None)


@functools.cache
def chunk_limits() -> Any:
    """The local config's `ChunkLimits` (config `chunking.*`, read with `ara_sidecar.config`, so
    from the same config file and `ARA_…` variables as a sidecar started by the extension);
    None when they cannot be read."""
    try:
        from ara_sidecar.config import load_settings
        from ara_sidecar.text import ChunkLimits

        cfg = load_settings().chunking
        return ChunkLimits(cfg.first_max_chars, cfg.max_chars, cfg.min_chars)
    except Exception as exc:  # the sidecar's source or its packages missing, an invalid config
        log.warning("Ara: the local chunk limits cannot be read (%s)", exc)
        return None


def sidecar_chunk_limits(client: Any) -> Any:
    """The chunk limits of the sidecar `client` talks to, asked once a minute (a remote sidecar
    may cut text differently from the local config); the local config's when it does not say;
    None when neither is known (no pre-rendering then)."""
    now = time.monotonic()
    asked = _remote.get(client.base_url)
    if asked is None or now - asked[0] > _REMOTE_TTL_S:
        limits = None
        chunking = client.chunking()
        if chunking is not None:
            try:
                from ara_sidecar.text import ChunkLimits

                limits = ChunkLimits(
                    int(chunking["first_max_chars"]), int(chunking["max_chars"]), int(chunking["min_chars"])
                )
            except (ImportError, KeyError, TypeError, ValueError) as exc:
                log.info("Ara: the sidecar's chunk limits are unusable (%s); using the local config", exc)
        asked = _remote[client.base_url] = (now, limits)
    return asked[1] if asked[1] is not None else chunk_limits()


def complete_chunks(spoken: str, limits: Any) -> tuple[str, int]:
    """The longest beginning of `spoken` made of its final chunks (all but the last, which may
    still grow) that the sidecar cuts into exactly those chunks, and their number; ("", 0) if
    none. It is normalised text whose line breaks are doubled, so that normalising it again
    keeps them. (A chunk cut inside a sentence would end it as a whole sentence, with another
    pause and so another key: such a chunk waits for the next one.)"""
    from ara_sidecar.text import normalize_text, split_chunks

    text = normalize_text(spoken)
    chunks = split_chunks(text, limits)
    for count in range(len(chunks) - 1, 0, -1):
        chars = sum(len("".join(c.text.split())) for c in chunks[:count])
        head = re.match(rf"(?:\s*\S){{{chars}}}", text)[0].replace("\n", "\n\n")  # chunks keep all but spaces
        if split_chunks(normalize_text(head), limits) == chunks[:count]:
            return head, count
    return "", 0


def visible_reply(question: str, state: dict) -> Callable[[str], str]:
    """chatbot_wrapper's steps (TGWUI modules/chat.py) from the text generated so far to the visible
    reply that `output_modifier` will get: after the reply being continued (the prompt ends with
    it) or the `<think>` the prompt ends with, without a leading speaker's name in the chat
    modes, HTML-escaped."""
    rows = (state.get("history") or {}).get("internal") or []
    last = str(rows[-1][1] or "") if rows and len(rows[-1]) > 1 else ""
    continued = bool(last) and question.endswith(last)
    thinking = "<think>" if not continued and question.rstrip("\n").endswith("<think>") else ""
    chat = state.get("mode") in ("chat", "chat-instruct")
    names = (f"{state.get('name2', '')}:", f"{state.get('name1', '')}:")

    def visible(reply: str) -> str:
        reply = thinking + reply
        if chat:
            reply = reply if continued else reply.lstrip()
            name = next((n for n in names if reply.startswith(n)), "")
            reply = reply[len(name) :]
        reply = (last if continued else "") + reply
        return html.escape(_USER.sub(str(state.get("name1", "")), reply) if chat else reply)

    return visible


class Prerenderer:
    """Pre-renders one streaming chat reply: `feed` hands over the text generated so far and
    returns at once; a background thread turns it into the reply `output_modifier` will get and
    submits its complete chunks as a sidecar job whenever there are more of them, one job at a
    time (after a job, the newest text). Each chunk rendered is listed in the reply's live
    manifest (`live`, started with the first one), so the page speaks while the reply streams;
    the final render continues that manifest. `stop` ends it and cancels the job in flight
    (what that job has rendered stays cached). Never raises."""

    def __init__(self, runtime: Runtime, question: str, state: dict, user: str):
        self.runtime, self.question, self.state, self.user = runtime, question, state, user
        self.client = runtime.client()
        self._cond = threading.Condition()
        self._text: str | None = None  # the newest text generated so far, not yet looked at
        self._job: str | None = None  # the job in flight
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.submitted = 0  # chunks of the reply sent to pre-render so far
        self.live: LiveManifest | None = None  # the reply's live manifest, from its first chunk on

    def feed(self, generated: str) -> None:
        """The text generated so far (as TGWUI's generation functions yield it)."""
        with self._cond:
            if self._stopped:
                return
            self._text = generated
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ara-prerender", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """No more jobs; the one in flight is cancelled."""
        with self._cond:
            self._stopped = True
            job, self._job = self._job, None
            self._cond.notify()
        if job is not None:
            self.client.cancel_job(job, timeout=2.0)

    def abandon(self) -> None:
        """No final render follows (the generation failed or was replaced): the page drops the
        live player of this reply, unless the final render already finished its manifest."""
        self.stop()
        with self._cond:
            live = self.live
        if live is not None:
            live.finish(None, cancelled=True)

    def _manifest(self, job: str) -> LiveManifest | None:
        """The reply's live manifest, started now if need be (None once stopped)."""
        with self._cond:
            if self._stopped and self.live is None:
                return None
            if self.live is None:
                position = str(self.runtime.params.get("position"))
                self.live = LiveManifest(tgwui_cache_dir(), job, position=position)
            return self.live

    def _run(self) -> None:
        submitted = 0  # chunks in the last job
        try:
            limits = sidecar_chunk_limits(self.client)
            visible = visible_reply(self.question, self.state)
            while limits is not None:
                with self._cond:
                    while self._text is None and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                    generated, self._text = self._text, None
                spoken = spoken_text(visible(generated))
                head, count = complete_chunks(spoken, limits)
                if count > submitted:
                    self._render(head, spoken)
                    submitted = self.submitted = count
        except (SidecarError, ValueError, ImportError, OSError) as exc:  # ValueError: PersonaError
            log.info("Ara: pre-rendering stopped (%s)", exc)
        except Exception:
            log.exception("Ara: pre-rendering failed")
        finally:
            self.stop()

    def check_reuse(self, result: dict) -> None:
        """Log when the final render (its job `result`) did not find the pre-rendered chunks in
        the cache: the sidecar cut the reply or chose its mode differently."""
        chunks = result.get("chunks") if isinstance(result, dict) else None
        if not self.submitted or not isinstance(chunks, list):
            return
        missed = [
            c.get("index") for c in chunks[: self.submitted] if isinstance(c, dict) and not c.get("cached")
        ]
        if missed:
            log.warning(
                "Ara: pre-rendering missed: %d of the %d pre-rendered chunks were rendered again "
                "(the sidecar cut the reply or chose the mode differently)",
                len(missed),
                self.submitted,
            )

    def _render(self, text: str, spoken: str) -> None:
        """Render `text` as the final render most likely will: same persona and avatar, and the
        mode the selector picks for the reply so far (not remembered); wait for the job to end."""
        runtime = self.runtime
        deadline = time.monotonic() + runtime.timeout()
        persona = runtime.persona()
        mode = runtime.choose(persona, self.user, spoken, chat_key(self.state), remember=False).mode
        job = self.client.create_job(
            text,
            timeout=deadline - time.monotonic(),
            persona=persona.name,
            mode=mode,
            avatar_id=runtime.params.get("avatar_id") or None,
            user_message=self.user or None,
        )["job_id"]
        with self._cond:
            stopped = self._stopped
            self._job = None if stopped else job
        if stopped:
            self.client.cancel_job(job, timeout=2.0)
            return
        log.debug("Ara: pre-rendering %d characters (job %s)", len(text), job)
        live: LiveManifest | None = None
        for name, data in self.client.job_events(job, deadline - time.monotonic()):
            if name != "chunk_ready":
                continue
            live = live or self._manifest(job)
            if live is not None:
                copy_chunk(self.client, live, data, deadline)
        with self._cond:
            if self._job == job:
                self._job = None
