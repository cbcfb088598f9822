"""The OpenAI-compatible speech endpoint, driven by the official `openai` package against a real
`ara-sidecar serve` (with a token, sent as OpenAI clients send their API key): every format
decodes (PyAV) to the speech's duration, it streams, it shares the video's speech cache, and
errors arrive as the package's exception types with the server's message."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import av
import httpx
import pytest
from server_helpers import running_server

openai = pytest.importorskip("openai", reason="needs the openai package (the dev extra)")

TOKEN = "openai-speech-token-789"
TEXT = "The lighthouse keeper counted the ships. Then she wrote their names in the long blue book."
LONG = (
    "First, the kettle. Then the window, which sticks in winter and opens only with a shove. "
    "After that the plants, each of them thirsty in its own way. The cat watches all of this. "
    "She has opinions about the order. Finally, the letters, which can wait until tomorrow."
)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("openai"), TOKEN, {}) as base:
        yield base


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0, timeout=120)


def duration(data: bytes, response_format: str) -> float:
    """Seconds of sound in `data`, decoded by PyAV (pcm: 24 kHz 16-bit mono, by definition)."""
    if response_format == "pcm":
        return len(data) / 2 / 24_000
    samples, rate = 0, None
    with av.open(io.BytesIO(data)) as box:
        for frame in box.decode(audio=0):
            samples, rate = samples + frame.samples, frame.sample_rate
    return samples / rate


@pytest.fixture(scope="module")
def reference(client) -> float:
    """The speech's duration from the raw PCM."""
    return duration(
        client.audio.speech.create(model="ara", voice="ara-lab", input=TEXT, response_format="pcm").content,
        "pcm",
    )


def test_models_and_voices_for_pickers(client, server):
    ids = [model.id for model in client.models.list()]
    assert "ara" in ids and "piper" in ids
    # Open WebUI asks for the voices without its key: they are open, like /health
    voices = httpx.get(f"{server}/v1/audio/voices", timeout=10).json()["voices"]
    assert {"ara", "ara-cathedral", "ara-lab"} <= {v["id"] for v in voices}
    assert {"id": "ara"} in httpx.get(f"{server}/v1/audio/models", timeout=10).json()["models"]


@pytest.mark.parametrize("response_format", FORMATS)
def test_each_format_decodes_to_the_speech(client, reference, response_format):
    assert 3.0 < reference < 12.0
    whole = client.audio.speech.create(
        model="ara", voice="ara-lab", input=TEXT, response_format=response_format
    )
    assert duration(whole.content, response_format) == pytest.approx(reference, abs=0.12)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="ara-lab", input=TEXT, response_format=response_format
    ) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-ara-mode"] == "lab"
        parts = list(response.iter_bytes())
    assert duration(b"".join(parts), response_format) == pytest.approx(reference, abs=0.12)
    if response_format == "wav":
        assert b"".join(parts)[:4] == b"RIFF"


def test_the_first_sentence_streams_before_the_rest_is_spoken(server):
    body = {"model": "ara", "voice": "ara-playful", "input": LONG, "response_format": "pcm"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    arrivals = []
    with httpx.stream("POST", f"{server}/v1/audio/speech", json=body, headers=auth, timeout=120) as r:
        assert r.status_code == 200
        for data in r.iter_raw():
            arrivals.append((time.perf_counter() - started, len(data)))
    first, whole = arrivals[0][0], arrivals[-1][0]
    assert len(arrivals) >= 3 and first < 0.5 * whole, arrivals


def test_speed_changes_the_tempo(client, reference):
    fast = client.audio.speech.create(
        model="ara", voice="ara-lab", input=TEXT, response_format="wav", speed=2.0
    )
    assert duration(fast.content, "wav") == pytest.approx(reference / 2, rel=0.05)


def test_speech_and_video_share_the_speech_cache(client, server):
    text = "A sentence spoken once. And heard twice, in the video too."
    speech = client.audio.speech.create(model="ara", voice="ara-teaching", input=text, response_format="pcm")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    video = httpx.post(
        f"{server}/v1/render", json={"text": text, "mode": "teaching"}, headers=auth, timeout=120
    ).json()
    assert "tts" not in video["timings"] and "voice" not in video["timings"]  # the speech was cached
    # the video's sound is the speech, each chunk padded to whole frames
    assert 0 <= video["duration_s"] - duration(speech.content, "pcm") < len(video["chunks"]) / 25 + 0.01


def test_auto_mode_reads_instructions(client):
    with client.audio.speech.with_streaming_response.create(
        model="ara",
        voice="ara",
        input="Let us look at this together.",
        instructions="my code segfaults in cuda",
    ) as response:
        assert response.headers["x-ara-mode"] == "lab"


@pytest.mark.parametrize(
    ("change", "error", "words", "param"),
    [
        ({"voice": "nobody"}, "BadRequestError", "unknown voice 'nobody'", "voice"),
        ({"voice": "ara-sulking"}, "BadRequestError", "no mode 'sulking'", "voice"),
        ({"model": "tts-9"}, "BadRequestError", "unknown model 'tts-9'", "model"),
        ({"speed": 9.0}, "BadRequestError", "speed", "speed"),
        ({"response_format": "ogg"}, "BadRequestError", "response_format", "response_format"),
        ({"input": "🙂"}, "BadRequestError", "nothing speakable", "input"),
    ],
)
def test_errors_are_the_packages_exceptions(client, change, error, words, param):
    args = {"model": "ara", "voice": "ara", "input": "Hello.", **change}
    with pytest.raises(getattr(openai, error)) as caught:
        client.audio.speech.create(**args)
    assert caught.value.status_code == 400
    assert words in caught.value.message
    assert caught.value.body["param"] == param and caught.value.body["type"] == "invalid_request_error"


def test_a_wrong_key_is_an_authentication_error(server):
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.audio.speech.create(model="ara", voice="ara", input="Hello.")
    assert "token" in caught.value.message and caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_a_client_that_goes_away_stops_the_speech(server):
    text = " ".join(f"Sentence {i} keeps the worker busy for a while longer." for i in range(60))
    body = {"model": "ara", "voice": "ara-comfort", "input": text, "response_format": "pcm"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("POST", f"{server}/v1/audio/speech", json=body, headers=auth, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_raw())
    # seconds of synthesis left: the worker is free again at once
    deadline = time.monotonic() + 3
    while httpx.get(f"{server}/health/detailed", headers=auth, timeout=10).json()["queue"]["running"]:
        assert time.monotonic() < deadline, "the speech went on without its client"
        time.sleep(0.1)
