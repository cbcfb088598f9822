"""Rendering chunk by chunk: each chunk a streamable MP4 of its own, announced in order as soon as
it exists, cached under its own key, and joined into the whole reply without visible or audible
seams."""

from __future__ import annotations

import av
import numpy as np
import pytest
from media import probe

from ara_sidecar.pipeline import ChunkVideo, RenderRequest

REPLY = (
    "The first sentence is short. The second one is quite a bit longer than the first one was. "
    "A third closes it."
)


@pytest.fixture(scope="module")
def rendered(pipeline):
    chunks: list[ChunkVideo] = []

    def on_chunk(chunk: ChunkVideo) -> None:
        assert chunk.path.is_file()  # it exists when announced
        chunks.append(chunk)

    result = pipeline.render(RenderRequest(text=REPLY), on_chunk=on_chunk)
    return result, chunks


def test_chunks_are_announced_in_order_and_each_holds_its_own_sentence(pipeline, rendered):
    result, chunks = rendered
    plan = pipeline.plan(RenderRequest(text=REPLY))
    assert [c.index for c in chunks] == [0, 1, 2] and {c.count for c in chunks} == {3}
    assert [c.key for c in chunks] == [c.key for c in plan.chunks]
    assert result.chunks == [c.describe() for c in chunks]
    # each chunk lasts as long as its own sentence spoken alone (plus the pause): in order
    fps = pipeline.settings.fps
    for chunk, piece in zip(chunks, plan.chunks, strict=True):
        alone = pipeline.tts.synthesize(piece.text, plan.mode)
        alone = pipeline.voice.convert(alone, pipeline.tts.voice_stage_params(plan.mode.voice))
        expected = np.ceil((alone.duration_s + piece.pause_s) * fps - 1e-6) / fps
        assert chunk.duration_s == pytest.approx(expected, abs=0.2), piece.text  # Piper varies a little
    starts = np.cumsum([0.0] + [c.duration_s for c in chunks[:-1]])
    assert [c.start_s for c in chunks] == pytest.approx(list(starts))


def test_chunk_files_are_streamable_and_start_at_zero(rendered):
    _, chunks = rendered
    for chunk in chunks:
        data = chunk.path.read_bytes()
        assert b"moof" in data[:4096] or b"moov" in data[:64]
        assert data.find(b"moof") > 0 and data.find(b"mvex") > 0  # fragmented MP4 (Media Source)
        with av.open(str(chunk.path)) as box:
            video = box.streams.video[0]
            assert video.start_time == 0 and video.codec_context.has_b_frames == 0
            first = next(box.decode(video))
            assert first.time == 0.0
        assert chunk.mime.startswith('video/mp4; codecs="avc1.') and chunk.mime.endswith('mp4a.40.2"')


def test_whole_video_is_the_chunks_joined_without_seams(rendered):
    result, chunks = rendered
    whole = probe(result.path)
    assert whole.video_s == pytest.approx(sum(c.duration_s for c in chunks), abs=1e-6)
    assert whole.audio_s == pytest.approx(whole.video_s, abs=0.03)
    assert len(whole.frames) == result.frames == round(whole.video_s * 25)
    # the picture is the chunks' frames, bit for bit (copied, not re-encoded): no visible jump
    frames = [f for c in chunks for f in probe(c.path).frames]
    assert len(frames) == len(whole.frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, whole.frames, strict=True))
    # every seam falls in the pause after a sentence: quiet on both sides, no click
    rate = whole.audio_rate
    for chunk in chunks[1:]:
        seam = round(chunk.start_s * rate)
        window = whole.audio[seam - rate // 50 : seam + rate // 100]  # 20 ms before, 10 ms after
        assert np.abs(window).max() < 0.01, (chunk.index, np.abs(window).max())
    assert np.abs(whole.audio).max() > 0.1  # and there is speech


def test_a_later_reply_reuses_the_chunks_it_shares(pipeline, rendered):
    _, chunks = rendered
    again: list[ChunkVideo] = []
    text = "A brand new opening line. " + REPLY.split(". ", 1)[1]
    result = pipeline.render(RenderRequest(text=text), on_chunk=again.append)
    assert not result.cached
    assert [c.cached for c in again] == [False, True, True]
    assert [c.key for c in again[1:]] == [c.key for c in chunks[1:]]


def test_without_the_cache_chunk_files_are_temporary(pipeline, tmp_path):
    seen: list[ChunkVideo] = []
    out = tmp_path / "whole.mp4"
    result = pipeline.render(RenderRequest(text=REPLY), out, use_cache=False, on_chunk=seen.append)
    assert result.path == out and len(seen) == 3 and not any(c.path.exists() for c in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.mp4"]
