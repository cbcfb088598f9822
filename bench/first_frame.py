"""Benchmark: time to the first playable chunk and to the whole video, through the job API.

    .venv/bin/python bench/first_frame.py [--runs 5]

Starts `ara-sidecar serve` (a temporary cache, no token), warms it up (the worker loads its
models and renders a reply of other text, so the avatar analysis is cached), then renders a
fixed six-sentence reply `--runs` times, each time with another name in every sentence so no
chunk is in the cache. Per run, from sending `POST /v1/jobs` (the event stream
`GET /v1/jobs/{id}/events` is opened as soon as it answers): the first `chunk_ready` event
(t_first), that chunk's video fetched in full (playable), the `done` snapshot (t_whole), the
ratio t_first / t_whole, the video's duration and the real-time factor (t_whole / duration).
Columns "queue", "speech" and "video" split t_first by the snapshots: until the job runs,
until the first chunk's speech is made, until its video is made. "slack": the least time by
which a later chunk arrived before playback, begun when the first chunk was playable, needed it
(negative: a stall). Reports the median and the range of each figure. Targets (issue "Fast
first frame"): first chunk ≤ 0.5 s after the request and ≤ 25 % of the whole-video time, on a
2-core CPU with a warm server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from httpx_sse import connect_sse
from render import REPLY as WARM_UP_REPLY
from render import machine_line
from service import HOST, NAMES, call, start_server

from ara_sidecar.text import split_sentences

# {name}: another four-letter name each run, in every chunk (the first sentence is cut in two).
REPLY = (
    "{name}, I went through the build logs you sent me this morning, "
    "and I think {name} was right about the cause. "
    "The failure is in the audio tests {name} added last week, "
    "not in the video encoder as we first thought. "
    "One of the recordings {name} made for them has a different sample rate from the others. "
    "The resampler rounds its length down, so the last frame of {name}'s clip goes missing. "
    "The fix is a single line in the loader, and I would add a test for {name}'s files as well. "
    "Shall I walk you and {name} through the change, or would you rather read the diff first?"
)
FIRST_TARGET_S = 0.5
SHARE_TARGET = 0.25


@dataclass
class Run:
    first_s: float  # POST → first chunk_ready event
    playable_s: float  # POST → first chunk's video fetched
    whole_s: float  # POST → done snapshot
    duration_s: float  # the whole video
    chunks: int
    queue_s: float  # POST → first snapshot with the job running
    first_speech_s: float  # POST → first snapshot with the first chunk's speech made
    slack_s: float  # least lead of a later chunk over playback begun when the first was playable

    @property
    def share(self) -> float:
        return self.first_s / self.whole_s

    @property
    def rtf(self) -> float:
        return self.whole_s / self.duration_s


def variant(i: int) -> str:
    """REPLY with the i-th name: six sentences no cache holds, not even one of them."""
    return REPLY.format(name=NAMES[i])


def measure(client: httpx.Client, text: str) -> Run:
    """One job, followed on its event stream; the first chunk is fetched in a second thread,
    as a player would, so the stream is read on time."""
    marks: dict[str, float] = {}
    with ThreadPoolExecutor(1) as pool:
        start = time.perf_counter()
        response = client.post("/v1/jobs", json={"text": text})
        response.raise_for_status()
        job_id = response.json()["job_id"]

        def fetch(url: str) -> float:
            size = len(client.get(url).raise_for_status().content)
            assert size > 0, url
            return time.perf_counter() - start

        playable, ready = None, []  # ready: (seconds, start_s) of each chunk_ready
        with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as events:
            for event in events.iter_sse():
                if not event.data:  # (after a keep-alive comment httpx-sse yields an empty event)
                    continue
                now = time.perf_counter() - start
                kind, body = event.event, json.loads(event.data)
                if kind == "chunk_ready":
                    assert not body["cached"], body
                    ready.append((now, body["start_s"]))
                    if playable is None:
                        marks["first"] = now
                        playable = pool.submit(fetch, body["url"])
                    continue
                if body["status"] == "running":
                    marks.setdefault("queue", now)
                    if body["progress"] > 0:  # the first chunk's speech is made (the face follows)
                        marks.setdefault("speech", now)
                if body["status"] in ("done", "failed", "cancelled"):
                    marks["whole"] = now
                    break
        if body["status"] != "done":
            raise SystemExit(f"job {job_id} {body['status']}: {body.get('error')}")
        result = body["result"]
        assert result["cached"] is False and playable is not None, result
        playable_s = playable.result()
        return Run(
            first_s=marks["first"],
            playable_s=playable_s,
            whole_s=marks["whole"],
            duration_s=result["duration_s"],
            chunks=body["chunk_count"],
            queue_s=marks.get("queue", float("nan")),
            first_speech_s=marks.get("speech", float("nan")),
            slack_s=min((playable_s + start - t for t, start in ready[1:]), default=float("nan")),
        )


COLUMNS = (  # header, format, value
    ("first", "{:7.3f} s", lambda r: r.first_s),
    ("playable", "{:7.3f} s", lambda r: r.playable_s),
    ("whole", "{:7.3f} s", lambda r: r.whole_s),
    ("first/whole", "{:8.1f} %", lambda r: r.share * 100),
    ("RTF", "{:6.3f}", lambda r: r.rtf),
    ("queue", "{:6.3f} s", lambda r: r.queue_s),
    ("speech", "{:6.3f} s", lambda r: r.first_speech_s - r.queue_s),
    ("video", "{:6.3f} s", lambda r: r.first_s - r.first_speech_s),
    ("slack", "{:6.3f} s", lambda r: r.slack_s),
)


def table(runs: list[Run]) -> None:
    widths = [max(len(h), len(f.format(0.0))) for h, f, _ in COLUMNS]
    print("run     " + "  ".join(h.rjust(w) for (h, _, _), w in zip(COLUMNS, widths, strict=True)))

    def row(label: str, values: list[float]) -> None:
        cells = (f.format(v).rjust(w) for (_, f, _), v, w in zip(COLUMNS, values, widths, strict=True))
        print(f"{label:<8}" + "  ".join(cells))

    for i, run in enumerate(runs):
        row(str(i + 1), [value(run) for _, _, value in COLUMNS])
    for label, pick in (("median", statistics.median), ("min", min), ("max", max)):
        row(label, [pick(value(r) for r in runs) for _, _, value in COLUMNS])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help=f"measured renders (1–{len(NAMES)})")
    args = parser.parse_args()
    if not 1 <= args.runs <= len(NAMES):
        parser.error(f"--runs must be between 1 and {len(NAMES)} (one name per run)")
    sentences = split_sentences(variant(0))
    words = len(variant(0).split())
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp) / "cache", Path(tmp) / "server.log")
        try:
            status, body = call(port, "POST", "/v1/render", {"text": WARM_UP_REPLY})  # warm-up
            assert status == 200 and body["cached"] is False, body
            runs = []
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=300) as client:
                for i in range(args.runs):
                    runs.append(measure(client, variant(i)))
        finally:
            proc.terminate()
            proc.wait(30)
    durations = [r.duration_s for r in runs]
    print(
        f"reply: {len(sentences)} sentences, {words} words, {runs[0].chunks} chunks; speech (the video) "
        f"{statistics.median(durations):.2f} s ({min(durations):.2f}–{max(durations):.2f}); "
        f"{args.runs} runs, each with another name in every sentence (nothing cached)"
    )
    table(runs)
    first = statistics.median(r.first_s for r in runs)
    share = statistics.median(r.share for r in runs)
    print(
        f"first chunk ≤ {FIRST_TARGET_S:g} s after the request: {verdict(first <= FIRST_TARGET_S)} "
        f"(median {first:.3f} s)"
    )
    print(
        f"first chunk ≤ {SHARE_TARGET * 100:g} % of the whole-video time: {verdict(share <= SHARE_TARGET)} "
        f"(median {share * 100:.1f} %)"
    )


if __name__ == "__main__":
    from record import recorded

    with recorded("first_frame"):
        main()
