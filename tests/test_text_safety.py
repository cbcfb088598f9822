"""Text no TTS can take, and text that costs too much to plan (issue #16).

Characters a TTS cannot take (NUL and other control characters, lone surrogates, non-characters,
private-use and format characters) are dropped from what is spoken, for every backend, and text
left with nothing speakable is a user error: a 422 over HTTP, `error:` and exit status 2 from
the CLI. Cutting text into chunks is linear in its length, whatever it is made of, and the server
plans on its event loop only requests whose planning is small and bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ara_sidecar.errors import UserError
from ara_sidecar.text import ChunkLimits, check_text, normalize_text, split_chunks

LIMITS = ChunkLimits(first_max_chars=32, max_chars=240, min_chars=12)  # config/sidecar.yaml's
SCRIPT = Path(sys.executable).with_name("ara-sidecar")
UNSPEAKABLE = {
    "NUL": "\0",
    "SOH": "\x01",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "C1 CSI": "\x9b",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "\udcff",
    "non-character U+FFFE": "\ufffe",
    "non-character U+FFFF": "\uffff",
    "non-character U+FDD0": "\ufdd0",
    "non-character U+1FFFE": "\U0001fffe",
    "non-character U+10FFFF": "\U0010ffff",
    "private use": "\ue000",
    "byte-order mark": "\ufeff",
    "zero-width space": "\u200b",
    "right-to-left override": "\u202e",
    "soft hyphen": "\u00ad",
    "unassigned": "\U0003fffd",
}
BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


def unspeakable(text: str) -> set[str]:
    return {ch for ch in text if unicodedata.category(ch) in BAD_CATEGORIES and not ch.isspace()}


# -- characters a TTS cannot take --------------------------------------------------------------


@pytest.mark.parametrize("char", UNSPEAKABLE.values(), ids=UNSPEAKABLE.keys())
def test_unspeakable_characters_are_dropped(char):
    assert normalize_text(f"Hello {char}there{char}.") == "Hello there."
    assert normalize_text(f"Null {char * 3}.") == "Null ."


@pytest.mark.parametrize("space", ["\t", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\u2028", "\u3000"])
def test_white_space_controls_still_separate_words(space):
    assert normalize_text(f"One{space}two.").replace("\n", " ") in ("One two.", "One. two.")


def test_text_left_with_nothing_speakable_is_a_user_error():
    with pytest.raises(UserError, match="nothing speakable"):
        check_text("".join(UNSPEAKABLE.values()) + " \0 .", 4000)


def test_piper_speaks_what_normalisation_leaves(piper_tts):
    """The phonemizer raised ValueError on NUL and UnicodeEncodeError on a lone surrogate."""
    text = check_text("Null \0 here, \ud800 a surrogate\ufffe and \x1b[31mcolour.", 4000)
    assert not unspeakable(text)
    assert piper_tts.synthesize(text).duration_s > 0.5


def test_every_backend_gets_clean_chunks(settings):
    """The plan's chunks are what any TTS backend (Piper, AllTalk) is given to speak."""
    from ara_sidecar.pipeline import Pipeline, RenderRequest

    text = "".join(f"Sentence {name} {char} has it. " for name, char in UNSPEAKABLE.items())
    plan = Pipeline(settings).plan(RenderRequest(text=text))
    assert len(plan.chunks) > 5
    for chunk in plan.chunks:
        assert chunk.text and not unspeakable(chunk.text), chunk.text


def run_cli(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""}
    return subprocess.run(
        [str(SCRIPT), *args], input=stdin, capture_output=True, timeout=300, env=env, check=False
    )


def assert_cli_user_error(result: subprocess.CompletedProcess, needle: str) -> None:
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ara-sidecar: error: ") and needle in lines[0], stderr


def test_cli_speaks_text_with_a_nul_from_stdin(tmp_path):
    out = tmp_path / "x.mp4"
    result = run_cli("render", "-q", "-o", str(out), stdin=b"a \0 b.")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert out.stat().st_size > 0


def test_cli_refuses_stdin_with_only_control_characters(tmp_path):
    result = run_cli("render", "-o", str(tmp_path / "x.mp4"), stdin=b"\0\x01\x1b \x7f")
    assert_cli_user_error(result, "nothing speakable")


def test_cli_refuses_stdin_that_is_not_utf8(tmp_path):
    result = run_cli("render", "-o", str(tmp_path / "x.mp4"), stdin=b"caf\xe9 au lait.")
    assert_cli_user_error(result, "not UTF-8")


@pytest.fixture
def app(settings, tmp_path):
    from ara_sidecar.server.app import create_app

    return create_app(settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")}))


def asgi_requests(app, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:7870"
        ) as c:
            return [await c.request(method, path, **kwargs) for method, path, kwargs in requests]

    return asyncio.run(send())


def test_http_text_with_a_nul_is_planned_and_only_controls_is_a_422(app):
    """It was accepted, then failed in the worker: 500 `render failed: ValueError: embedded null
    character`."""
    from ara_sidecar.server.planning import _plan
    from ara_sidecar.server.schemas import RenderBody

    raw = {"content-type": "application/json"}
    accepted, refused = asgi_requests(
        app,
        ("POST", "/v1/jobs", {"content": b'{"text": "Null \\u0000."}', "headers": raw}),
        ("POST", "/v1/jobs", {"content": b'{"text": "\\u0000\\u0001\\u001b"}', "headers": raw}),
    )
    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 422 and "nothing speakable" in refused.json()["error"]
    request = _plan(app.state.service, RenderBody(text="Null \0."))[1]
    plan = app.state.service.pipeline.plan(request)
    assert [c.text for c in plan.chunks] == ["Null ."]


# -- linear splitting ---------------------------------------------------------------------------


def pathological(n: int) -> dict[str, str]:
    """Texts of about `n` characters that made splitting (or normalising) super-linear, or might."""
    cases = {}
    for mark in ".!?…,;:-–—'\"”’)]([*_`~#>/\\":
        cases[f"run {mark}"] = mark * (n - 1) + "a"
        cases[f"run {mark} space"] = (mark + " ") * (n // 2) + "a"
        cases[f"word{mark} space"] = ("A" + mark + " ") * (n // 3)
    cases |= {
        "spaces": " " * (n - 2) + "ab",
        "line breaks": "\n" * (n - 2) + "ab",
        "digits with dots": "1." * (n // 2) + "a",
        "decimals": "3.14 " * (n // 5),
        "initials": "J. " * (n // 3),
        "abbreviations": "Mr. " * (n // 4),
        "nested brackets": "(" * (n // 2) + "a" + ")" * (n // 2),
        "nested links": "[" * (n // 2) + "a" + "]" * (n // 2),
        "open links": "[a](" * (n // 4),
        "fences": "```" * (n // 3),
        "emoji": "🎉" * (n - 1) + "a",
        "list items": "- " * (n // 2),
        "one long word": "a" * (n - 1) + ".",
        "ellipses": "Wait... " * (n // 8),
        "quoted": '"Hi." ' * (n // 6),
        "closers": "!" + ")" * (n - 2) + "a",
        "dashes": "a - " * (n // 4),
        "controls": "\0a" * (n // 2),
        "mixed": ("Dr. A. (b) [c](d) 1.5! ... “e.” - f; 🎉 ") * (n // 40),
    }
    return cases


def split_seconds(text: str) -> float:
    """The fastest of three: normalise, check and cut `text` (as the pipeline plans it)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(UserError):
            split_chunks(check_text(text, len(text)), LIMITS)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("name", pathological(100))
def test_splitting_pathological_text_is_linear(name):
    """A run of 3,999 "!" took 0.4 s (within limits.max_text_chars); ten times as long, 40 s."""
    small = split_seconds(pathological(4000)[name])
    assert small < 0.05, f"{name}: {small * 1000:.1f} ms for 4,000 characters"
    large = split_seconds(pathological(40_000)[name])
    assert large < 0.5, f"{name}: {large * 1000:.1f} ms for 40,000 characters"


PIECES = st.sampled_from(
    [*".!?…,;:-–—'\"”’)]([ \n\t*_`#>1aA\0🎉\ud800", "Mr.", "e.g.", "J. ", "...", "](", "```", "- "]
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(pieces=st.lists(PIECES, min_size=1, max_size=40), repeat=st.integers(1, 400))
def test_splitting_fuzz_stays_within_budget(pieces, repeat):
    text = ("".join(pieces) * repeat)[:4000]
    start = time.perf_counter()
    try:
        chunks = split_chunks(check_text(text, 4000), LIMITS)
    except UserError:
        return
    assert time.perf_counter() - start < 0.05, (len(text), text[:80])
    assert chunks and all(c.text.strip() and not unspeakable(c.text) for c in chunks)


# -- what the event loop plans --------------------------------------------------------------------


def test_only_small_plans_run_on_the_event_loop(app, monkeypatch):
    """Memoized or not, a long text or mode auto (the selector) is planned in the thread pool."""
    from ara_sidecar.server import planning

    planned_on: dict[str, list[bool]] = {}
    plan = planning._plan

    def recording(svc, body):
        planned_on.setdefault(body.text[:5], []).append(threading.get_ident() == loop_thread)
        return plan(svc, body)

    monkeypatch.setattr(planning, "_plan", recording)
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    bodies = {
        "short": {"text": "short text, planned inline once memoized."},
        "!!!!!": {"text": "!" * 3999 + "a"},
        "auto ": {"text": "auto mode asks the selector.", "mode": "auto", "user_message": "hi " * 300},
    }
    requests = [("POST", "/v1/jobs", {"json": body}) for body in bodies.values() for _ in range(3)]
    for response in asgi_requests(app, *requests):
        assert response.status_code == 202, response.text
    assert planned_on["short"][-1] is True  # the instrument works
    assert not any(planned_on["!!!!!"]) and not any(planned_on["auto "])


def test_the_event_loop_never_stalls_on_pathological_texts(app):
    """Twenty requests of a run of "!" kept GET /health waiting 5.9 s: each was planned on the
    event loop in 0.4 s. Here a 5 ms timer ticks on while they are served."""
    from ara_sidecar.server.planning import _plan
    from ara_sidecar.server.schemas import RenderBody

    _plan(app.state.service, RenderBody(text="Warm up."))  # file digests memoized: plans may run inline

    async def longest_stall() -> float:
        stalls, done = [0.0], asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                stalls.append(now - last - 0.005)
                last = now

        ticker = asyncio.create_task(tick())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:7870"
        ) as c:
            posts = [c.post("/v1/jobs", json={"text": "!" * 3990 + f"a{i}"}) for i in range(20)]
            assert all(r.status_code in (202, 429) for r in await asyncio.gather(*posts))
            assert (await c.get("/health")).status_code == 200
        done.set()
        await ticker
        return max(stalls)

    assert asyncio.run(longest_stall()) < 0.2
