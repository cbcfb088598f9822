"""Scaling out (#23), end to end on this machine: two API servers (`ara-sidecar serve`) and two
render workers (`ara-sidecar worker`), real processes, each with its own local cache as if on its
own machine, on one real Redis and one shared folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cluster_helpers import cluster_env, redis_server
from httpx_sse import connect_sse
from server_helpers import free_port, sidecar, wait_until

LONG = (
    "This reply is long on purpose, so that its render takes a while on a small machine. "
    "It goes on for several sentences, each of them its own chunk of video. "
    "Somewhere in the middle of it, a worker may be stopped, or the job cancelled. "
    "Whatever happens, the cluster has to say clearly what became of it. "
    "Another worker takes over where the first one left off, chunk by chunk. "
    "And the last sentence makes sure there is still some work left to do."
)


class Proc:
    """An `ara-sidecar` subprocess with its log."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args, self.env, self.log = args, env, log
        with open(log, "a") as out:
            self.popen = subprocess.Popen([sidecar(), *args], stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(40)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Cluster:
    def __init__(self, tmp: Path, url: str):
        import redis

        self.tmp, self.url = tmp, url
        self.redis = redis.Redis.from_url(url)
        self.env = {**os.environ, **cluster_env(url, tmp / "shared")}
        self.env.pop("ARA_SERVER_TOKEN", None)
        self.apis: dict[str, tuple[Proc, str]] = {}
        self.workers: dict[str, Proc] = {}

    def machine_env(self, name: str) -> dict[str, str]:
        return {**self.env, "ARA_CACHE_DIR": str(self.tmp / name / "cache")}

    def start_api(self, name: str) -> str:
        (self.tmp / name).mkdir(exist_ok=True)
        port = free_port()
        proc = Proc(["serve", "--port", str(port)], self.machine_env(name), self.tmp / name / "log")
        base = f"http://127.0.0.1:{port}"
        self.apis[name] = (proc, base)
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, 60, proc.log.read_text)
        return base

    def start_worker(self, name: str) -> Proc:
        (self.tmp / name).mkdir(exist_ok=True)
        proc = Proc(
            ["worker", "--device", "cpu", "--name", name], self.machine_env(name), self.tmp / name / "log"
        )
        self.workers[name] = proc
        return proc

    def api(self, name: str) -> str:
        return self.apis[name][1]

    def alive_workers(self) -> list[dict]:
        return httpx.get(f"{self.api('api1')}/health/detailed", timeout=10).json()["workers"]

    def wait_workers(self, names: set[str]) -> None:
        def ready() -> bool:
            return {w["id"].split("-")[0] for w in self.alive_workers()} >= names

        wait_until(ready, 120, lambda: "\n".join(p.log.read_text() for p in self.workers.values()))

    def render_state(self, job_id: str) -> dict:
        rid = self.redis.hget(f"ara:job:{job_id}", "rid").decode()
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(f"ara:render:{rid}").items()}

    def stop(self) -> None:
        for proc, _ in self.apis.values():
            proc.stop()
        for proc in self.workers.values():
            proc.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    with redis_server(tmp / "redis") as url:
        c = Cluster(tmp, url)
        try:
            c.start_worker("w1")
            c.start_worker("w2")
            c.start_api("api1")
            c.start_api("api2")
            c.wait_workers({"w1", "w2"})
            yield c
        finally:
            c.stop()


def submit(base: str, text: str) -> str:
    r = httpx.post(f"{base}/v1/jobs", json={"text": text}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def wait_job(base: str, job_id: str, timeout_s: float = 90) -> dict:
    state: dict = {}

    def finished() -> bool:
        state.update(httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json())
        return state["status"] in ("done", "failed", "cancelled")

    wait_until(finished, timeout_s, lambda: json.dumps(state))
    return state


def test_health_lists_both_workers(cluster):
    health = httpx.get(f"{cluster.api('api2')}/health/detailed", timeout=10).json()
    assert health["status"] == "ok"
    workers = {w["id"].split("-")[0]: w for w in health["workers"]}
    assert set(workers) >= {"w1", "w2"}
    for worker in workers.values():
        assert worker["device"] == "cpu" and worker["models"]["tts"] == "piper"
        assert worker["last_seen_s"] < 3 and worker["queue_depth"] in (0, 1)
    assert health["queue"]["size"] == 16


def test_jobs_spread_over_both_workers(cluster):
    texts = [f"Job number {i} of the spreading test, with a clause or two to render." for i in range(6)]
    apis = [cluster.api("api1"), cluster.api("api2")]
    ids = [(apis[i % 2], submit(apis[i % 2], text)) for i, text in enumerate(texts)]
    for base, job_id in ids:
        assert wait_job(base, job_id)["status"] == "done"
    used = {cluster.render_state(job_id)["worker"].split("-")[0] for _, job_id in ids}
    assert used == {"w1", "w2"}


def test_fifty_identical_requests_through_both_apis_render_once(cluster):
    text = "Fifty people ask for the very same sentence at the very same moment."
    apis = [cluster.api("api1"), cluster.api("api2")]
    with ThreadPoolExecutor(50) as pool:
        ids = list(pool.map(lambda i: (apis[i % 2], submit(apis[i % 2], text)), range(50)))
    results = [wait_job(base, job_id) for base, job_id in ids]
    assert {r["status"] for r in results} == {"done"}
    assert len({r["result"]["key"] for r in results}) == 1
    delivered = {cluster.render_state(job_id).get("worker") for _, job_id in ids} - {None}
    rids = {cluster.redis.hget(f"ara:job:{job_id}", "rid") for _, job_id in ids}
    rendered = [rid for rid in rids if int(cluster.redis.hget(b"ara:render:" + rid, "deliveries") or 0)]
    assert len(rendered) == 1 and len(delivered) == 1
    video = httpx.get(f"{apis[1]}{results[0]['result']['video_url']}", timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_events_from_any_worker_reach_either_api(cluster):
    job_id = submit(cluster.api("api1"), "Events travel from the worker to every API server. Both of them.")
    chunks, last = [], {}
    url = f"{cluster.api('api2')}/v1/jobs/{job_id}/events"
    with httpx.Client(timeout=60) as client, connect_sse(client, "GET", url) as events:
        for event in events.iter_sse():
            if event.event == "chunk_ready":
                chunks.append(json.loads(event.data))
            else:
                last = json.loads(event.data)
    assert last["status"] == "done" and last["progress"] == 1.0
    assert [c["index"] for c in chunks] == list(range(last["chunk_count"])) and len(chunks) >= 2


def test_an_upload_to_one_api_renders_through_the_other(cluster, astronaut_png):
    files = {"file": ("me.png", astronaut_png.read_bytes(), "image/png")}
    upload = httpx.post(f"{cluster.api('api1')}/v1/avatars", files=files, timeout=60)
    assert upload.status_code == 201, upload.text
    body = {
        "text": "A face uploaded to one server, rendered through another.",
        "avatar_id": upload.json()["avatar_id"],
    }
    r = httpx.post(f"{cluster.api('api2')}/v1/render", json=body, timeout=120)
    assert r.status_code == 200, r.text
    video = httpx.get(f"{cluster.api('api1')}{r.json()['video_url']}", timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_openai_speech_is_made_by_a_worker(cluster):
    body = {
        "model": "tts-1",
        "input": "Speech only, spoken by a cluster worker.",
        "voice": "ara",
        "response_format": "wav",
    }
    r = httpx.post(f"{cluster.api('api2')}/v1/audio/speech", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"RIFF" and len(r.content) > 24_000  # about a second of 24 kHz audio at least


def test_cancel_through_the_other_api_stops_the_render(cluster):
    job_id = submit(cluster.api("api1"), LONG + " Cancelled.")
    wait_until(lambda: cluster.render_state(job_id).get("status") == "running", 60)
    r = httpx.delete(f"{cluster.api('api2')}/v1/jobs/{job_id}", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert wait_job(cluster.api("api1"), job_id, 20)["status"] == "cancelled"
    wait_until(lambda: all(w["busy"] is None for w in cluster.alive_workers()), 30)  # it stopped there
    assert cluster.render_state(job_id)["status"] == "cancelled"


def test_api_restart_keeps_jobs_and_videos_reachable(cluster):
    job_id = submit(cluster.api("api1"), "Jobs outlive the API server that took them. So do videos.")
    done = wait_job(cluster.api("api1"), job_id)
    proc, _ = cluster.apis["api1"]
    proc.stop()
    base = cluster.start_api("api1")
    again = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
    assert again["status"] == "done" and again["result"]["key"] == done["result"]["key"]
    video = httpx.get(f"{base}{done['result']['video_url']}", timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert httpx.get(f"{base}/v1/jobs/{'f' * 32}", timeout=10).status_code == 404
    hit = submit(base, "Jobs outlive the API server that took them. So do videos.")
    elsewhere = httpx.get(f"{cluster.api('api2')}/v1/jobs/{hit}", timeout=10).json()
    assert elsewhere["status"] == "done" and elsewhere["result"]["cached"]
    assert elsewhere["result"]["key"] == done["result"]["key"]


def test_a_worker_killed_mid_render_its_job_finishes_on_the_other(cluster):
    job_id = submit(cluster.api("api2"), LONG)
    state: dict = {}

    def running() -> bool:
        state.update(cluster.render_state(job_id))
        return state.get("status") == "running" and len(json.loads(state.get("chunks", "[]"))) >= 1

    wait_until(running, 60, lambda: json.dumps(state))
    victim = state["worker"].split("-")[0]
    os.kill(cluster.workers[victim].popen.pid, signal.SIGKILL)
    # its announcement expires (cluster.worker_timeout_s: 3 s here)
    wait_until(lambda: victim not in {w["id"].split("-")[0] for w in cluster.alive_workers()}, 15)
    done = wait_job(cluster.api("api1"), job_id, 90)
    assert done["status"] == "done", done
    after = cluster.render_state(job_id)
    assert after["deliveries"] == "2" and after["worker"].split("-")[0] != victim
    assert [c["index"] for c in done["chunks"]] == list(range(done["chunk_count"]))
    cluster.start_worker(victim)  # back to two for whatever runs next
    cluster.wait_workers({"w1", "w2"})


def test_a_render_whose_worker_dies_twice_fails_clearly(cluster):
    job_id = submit(cluster.api("api1"), "Twice unlucky. " + LONG)
    state: dict = {}

    def running_on(other_than: str | None) -> bool:
        state.update(cluster.render_state(job_id))
        worker = state.get("worker", "").split("-")[0]
        return state.get("status") == "running" and worker not in ("", other_than)

    killed = []
    for _ in range(2):
        wait_until(lambda: running_on(killed[-1] if killed else None), 60, lambda: json.dumps(state))
        killed.append(state["worker"].split("-")[0])
        os.kill(cluster.workers[killed[-1]].popen.pid, signal.SIGKILL)
    assert sorted(killed) == ["w1", "w2"]
    for name in killed:
        cluster.start_worker(name)
    failed = wait_job(cluster.api("api2"), job_id, 90)
    assert failed["status"] == "failed"
    assert "render worker died while rendering this, 2 times" in failed["error"]
    assert "not retried again" in failed["error"]
    r = httpx.post(f"{cluster.api('api1')}/v1/render", json={"text": "Alive again."}, timeout=120)
    assert r.status_code == 200, r.text
    cluster.wait_workers({"w1", "w2"})


def test_cache_commands_act_on_the_shared_store(cluster):
    text = "A video that the cache commands will clear from every machine."
    first = wait_job(cluster.api("api1"), submit(cluster.api("api1"), text))
    env = cluster.machine_env("admin")
    stats = subprocess.run([sidecar(), "cache", "stats"], env=env, capture_output=True, text=True, check=True)
    assert str(cluster.tmp / "shared") in stats.stdout
    verify = subprocess.run([sidecar(), "cache", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and "corrupt 0" in verify.stdout, verify.stdout + verify.stderr
    clear = subprocess.run([sidecar(), "cache", "clear"], env=env, capture_output=True, text=True, check=True)
    assert "removed" in clear.stdout and not clear.stdout.startswith("removed 0 ")
    video = httpx.get(f"{cluster.api('api2')}{first['result']['video_url']}", timeout=10)
    assert video.status_code == 404  # gone for every API server (and it renders again when asked)
    second = wait_job(cluster.api("api2"), submit(cluster.api("api2"), text))
    assert second["result"]["key"] == first["result"]["key"] and not second["result"]["cached"]


def test_a_render_whose_workers_died_twice_fails_clearly(cluster, settings):
    """The delivery count (as after two dead workers): the third delivery fails the render."""
    from ara_sidecar.cluster.worker import Renderer

    cfg = settings.with_overrides(
        **{"cluster.url": cluster.url, "cluster.store": str(cluster.tmp / "shared")}
    )
    rid = "d" * 32
    cluster.redis.hset(
        f"ara:render:{rid}",
        mapping={
            "key": "e" * 64,
            "status": "running",
            "deliveries": 2,
            "worker": "w9-1-abc",
            "request": "{}",
        },
    )
    renderer = Renderer(cfg, pipeline=None, client=cluster.redis, worker_id="w3-1-abc")  # type: ignore[arg-type]
    renderer(rid)
    state = {k.decode(): v.decode() for k, v in cluster.redis.hgetall(f"ara:render:{rid}").items()}
    assert state["status"] == "failed" and state["error_kind"] == "worker"
    assert "died while rendering this, 2 times (last on w9-1-abc); not retried again" in state["error"]


def test_single_machine_mode_imports_no_cluster_package(tmp_path):
    code = (
        "import sys; from ara_sidecar.config import load_settings;"
        "from ara_sidecar.server.app import create_app; import ara_sidecar.cli; create_app(load_settings());"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'dramatiq')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARA_CLUSTER")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_without_a_cluster_says_what_to_set():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARA_CLUSTER")}
    out = subprocess.run([sidecar(), "worker"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "set cluster.url (ARA_CLUSTER_URL)" in out.stderr


def test_a_full_cluster_queue_is_a_429_but_identical_requests_still_join(cluster, settings):
    import asyncio

    from ara_sidecar.cluster.jobs import ClusterJobManager
    from ara_sidecar.pipeline import RenderRequest
    from ara_sidecar.server.jobs import QueueFull

    overrides = {"cluster.url": cluster.url, "cluster.store": str(cluster.tmp / "shared")}
    cfg = settings.with_overrides(**overrides, **{"cluster.namespace": "nobody", "server.queue_size": 1})

    async def main() -> None:
        jobs = ClusterJobManager(cfg)  # no worker listens on this namespace: renders stay queued
        first = jobs.submit("1" * 64, RenderRequest(text="one"), "requested", 1)
        same = jobs.submit("1" * 64, RenderRequest(text="one"), "requested", 1)
        assert same.render is first.render and first.status == "queued"
        with pytest.raises(QueueFull):
            jobs.submit("2" * 64, RenderRequest(text="two"), "requested", 1)
        jobs.cancel(first)
        assert same.status == "queued"  # still wanted by the other job
        jobs.cancel(same)
        assert same.render.status == "cancelled"

    asyncio.run(main())
