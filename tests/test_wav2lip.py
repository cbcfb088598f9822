"""Wav2Lip backend: official checkpoint format, mel front end, still-portrait fast path.

The weights are random (no official checkpoint here) but the architecture, keys and file
format are the real ones; BatchNorm statistics are calibrated so activations stay in range.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ara_sidecar import cli, lipsync  # noqa: E402
from ara_sidecar.audio import Audio, resample  # noqa: E402
from ara_sidecar.avatar import load_avatar  # noqa: E402
from ara_sidecar.errors import BackendUnavailable  # noqa: E402
from ara_sidecar.lipsync import frame_count  # noqa: E402
from ara_sidecar.lipsync.wav2lip import Wav2Lip  # noqa: E402
from ara_sidecar.lipsync.wav2lip.audio import mel_windows, melspectrogram  # noqa: E402
from ara_sidecar.lipsync.wav2lip.checkpoint import load_generator  # noqa: E402
from ara_sidecar.lipsync.wav2lip.engine import Engine  # noqa: E402
from ara_sidecar.lipsync.wav2lip.face import FIRST_BLENDED_ROW, blend_mask, padded_crop  # noqa: E402
from ara_sidecar.lipsync.wav2lip.model import StillFaceDecoder, Wav2LipGenerator, bias_maps  # noqa: E402

FPS = 25


def _random_model(seed: int = 0) -> Wav2LipGenerator:
    torch.manual_seed(seed)
    model = Wav2LipGenerator()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = the batch's: activations stay normalised
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 80, 16) * 2, torch.rand(16, 6, 96, 96))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> Wav2LipGenerator:
    return _random_model()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    """The official layout: DataParallel keys under `state_dict`, beside the training state."""
    path = tmp_path_factory.mktemp("wav2lip") / "wav2lip_gan.pth"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "optimizer": {"state": {}, "param_groups": []},
            "global_step": 1,
            "global_epoch": 1,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def w2l_settings(settings, checkpoint):
    return settings.with_overrides(**{"wav2lip.checkpoint": str(checkpoint), "wav2lip.batch_size": 16})


@pytest.fixture(scope="module")
def astronaut(settings, astronaut_png):
    return load_avatar(astronaut_png, max_pixels=settings.limits.max_avatar_pixels, max_side=1024)


def _clip(audio: Audio, seconds: float) -> Audio:
    return Audio(audio.samples[: round(seconds * audio.sample_rate)], audio.sample_rate)


# -- checkpoint ---------------------------------------------------------------------------


def test_official_and_bare_checkpoints_load_with_exact_keys(model, checkpoint, tmp_path):
    reference = model.state_dict()
    assert len(reference) == 352 and sum(p.numel() for p in model.parameters()) == 36_298_035
    assert "audio_encoder.0.conv_block.0.weight" in reference and "output_block.1.bias" in reference
    bare = tmp_path / "bare.pth"
    torch.save(reference, bare)
    for path in (checkpoint, bare):
        loaded = load_generator(path).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in reference.items())


def test_malformed_and_missing_checkpoints_say_what_is_wrong(tmp_path, settings):
    wrong = tmp_path / "syncnet.pth"
    torch.save({"state_dict": {"module.face_encoder.0.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(BackendUnavailable, match=r"syncnet\.pth is not a Wav2Lip generator.*missing"):
        load_generator(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailable, match=r"garbage\.pth is not a readable PyTorch checkpoint"):
        load_generator(garbage)
    empty = settings.with_overrides(models_dir=str(tmp_path / "models"))
    readiness = Wav2Lip.readiness(empty)
    assert not readiness.ready
    assert str(tmp_path / "models" / "wav2lip") in readiness.detail and "wav2lip_gan.pth" in readiness.detail
    with pytest.raises(BackendUnavailable, match=r"wav2lip_gan\.pth"):
        Wav2Lip(empty, "cpu").load()
    assert lipsync.resolve("auto", empty) == "animator"


def test_auto_and_cli_select_wav2lip_when_the_checkpoint_exists(w2l_settings, checkpoint):
    assert lipsync.resolve("auto", w2l_settings) == "wav2lip"
    args = cli.build_parser().parse_args(["info", "--wav2lip-checkpoint", str(checkpoint)])
    assert cli._settings_from_args(args).wav2lip.checkpoint == checkpoint


# -- model --------------------------------------------------------------------------------


def test_still_face_decoder_equals_the_full_forward(model):
    face = torch.rand(1, 6, 96, 96)
    mel = torch.randn(8, 1, 80, 16) * 2
    with torch.no_grad():
        full = model(mel, face.expand(8, -1, -1, -1))
        fast = StillFaceDecoder(model).eval()(mel, *bias_maps(model, face))
    assert full.std() > 0.02  # not saturated: a meaningful comparison
    assert torch.allclose(full, fast, atol=1e-4)


@pytest.mark.parametrize("first_row", [1, 20, FIRST_BLENDED_ROW, 90])
def test_still_face_decoder_computes_only_the_rows_asked_for(model, first_row):
    face = torch.rand(1, 6, 96, 96)
    mel = torch.randn(4, 1, 80, 16) * 2
    with torch.no_grad():
        full = model(mel, face.expand(4, -1, -1, -1))
        lower = StillFaceDecoder(model, first_row).eval()(mel, *bias_maps(model, face))
    assert lower.shape == (4, 3, 96 - first_row, 96)
    assert torch.allclose(full[:, :, first_row:], lower, atol=1e-4)


def test_blend_mask_never_uses_the_rows_the_model_skips():
    for height in [*range(8, 120), 255, 512, 701]:
        mask = blend_mask(height + 7, height)[..., 0]
        source_row = np.floor((np.arange(height) + 0.5) * 96 / height - 0.5)
        assert not mask[source_row < FIRST_BLENDED_ROW].any(), height
        assert mask.max() > 0.5 or height < 20, height  # the lower face still shows


# -- mel front end ------------------------------------------------------------------------


def _independent_mel(wav: np.ndarray) -> np.ndarray:
    """The reference formulas written out plainly: loops, an explicit DFT, scalar mel scale."""

    def hz_to_mel(f: float) -> float:
        return f * 3 / 200 if f < 1000 else 15 + math.log(f / 1000) * 27 / math.log(6.4)

    def mel_to_hz(m: float) -> float:
        return m * 200 / 3 if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27)

    x = [float(wav[0])] + [float(wav[n]) - 0.97 * float(wav[n - 1]) for n in range(1, len(wav))]
    padded = x[400:0:-1] + x + x[-2:-402:-1]  # reflect: the edge sample is not repeated
    window = [0.5 - 0.5 * math.cos(2 * math.pi * n / 800) for n in range(800)]
    dft = np.exp(-2j * np.pi * np.outer(np.arange(401), np.arange(800)) / 800)
    edges = [mel_to_hz(hz_to_mel(55) + i * (hz_to_mel(7600) - hz_to_mel(55)) / 81) for i in range(82)]
    bank = np.zeros((80, 401))
    for band in range(80):
        lo, mid, hi = edges[band : band + 3]
        for k in range(401):
            f = k * 8000 / 400
            bank[band, k] = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid))) * 2 / (hi - lo)
    out = np.zeros((80, 1 + len(wav) // 200))
    for t in range(out.shape[1]):
        frame = np.array([padded[t * 200 + n] * window[n] for n in range(800)])
        spectrum = np.abs(dft @ frame)
        for band in range(80):
            db = 20 * math.log10(max(1e-5, float(bank[band] @ spectrum))) - 20
            out[band, t] = min(4.0, max(-4.0, 8 * (db + 100) / 100 - 4))
    return out


def test_mel_matches_an_independent_implementation(speech):
    wav = resample(_clip(speech, 0.6), 16000).samples
    mel = melspectrogram(wav)
    expected = _independent_mel(wav)
    assert mel.shape == expected.shape == (80, 1 + len(wav) // 200)
    assert mel.min() >= -4 and mel.max() <= 4 and mel.std() > 0.5
    np.testing.assert_allclose(mel, expected, atol=1e-4)


def test_mel_windows_follow_the_reference_indexing(speech):
    audio = _clip(speech, 1.0)
    n = frame_count(audio.duration_s, FPS)
    windows = mel_windows(audio, n, FPS)
    mel = melspectrogram(resample(audio, 16000).samples)
    assert windows.shape == (n, 80, 16)
    for i in range(n):
        start = min(int(i * 80.0 / FPS), mel.shape[1] - 16)
        np.testing.assert_array_equal(windows[i], mel[:, start : start + 16])
    assert mel_windows(_clip(speech, 0.05), 2, FPS).shape == (2, 80, 16)  # shorter than one window


# -- the backend --------------------------------------------------------------------------


def test_backend_animates_the_mouth_and_nothing_else(w2l_settings, astronaut, speech):
    backend = Wav2Lip(w2l_settings, "cpu")
    prepared = pickle.loads(pickle.dumps(backend.prepare(astronaut)))  # as the stage cache stores it
    audio = _clip(speech, 1.6)
    frames = list(backend.animate(prepared, audio, FPS))
    assert len(frames) == frame_count(audio.duration_s, FPS)
    assert all(f.shape == astronaut.image.shape and f.dtype == np.uint8 for f in frames)
    crop = padded_crop(prepared.box, w2l_settings.wav2lip.pads, astronaut.image.shape)
    weights = np.zeros(astronaut.image.shape[:2], np.float32)
    weights[crop.y1 : crop.y2, crop.x1 : crop.x2] = blend_mask(*crop.size)[..., 0]
    video = np.stack(frames).astype(np.int16)
    still = weights == 0
    assert np.array_equal(video[:, still], np.broadcast_to(astronaut.image[still], video[:, still].shape))
    assert still[: (crop.y1 + crop.y2) // 2].all()  # the upper face is never touched
    mouth = weights > 0.9
    assert mouth.sum() > 2000
    motion = np.abs(np.diff(video[:, mouth], axis=0)).mean()
    assert motion > 1.0, motion


def test_fast_path_equals_the_plain_forward(w2l_settings, astronaut, speech):
    audio = _clip(speech, 1.0)
    runs = {}
    for engine in ("fast", "reference"):
        backend = Wav2Lip(w2l_settings.with_overrides(**{"wav2lip.engine": engine}), "cpu")
        runs[engine] = np.stack(list(backend.animate(backend.prepare(astronaut), audio, FPS)))
    assert runs["fast"].shape == runs["reference"].shape
    assert np.abs(runs["fast"].astype(int) - runs["reference"]).max() <= 2


def test_silent_windows_are_computed_once(w2l_settings, astronaut, speech):
    backend = Wav2Lip(w2l_settings, "cpu")
    backend.load()
    computed = []
    run = backend.engine.run
    backend.engine.run = lambda key, face, mels: computed.append(len(mels)) or run(key, face, mels)
    pause = np.zeros(speech.sample_rate, np.float32)
    audio = Audio(np.concatenate([_clip(speech, 0.4).samples, pause]), speech.sample_rate)
    frames = list(backend.animate(backend.prepare(astronaut), audio, FPS))
    assert len(frames) == 35
    assert sum(computed) < 35 - 15  # the 1 s pause: one window for most of its frames
    assert np.array_equal(frames[-1], frames[-10])


# -- engine: out of memory ------------------------------------------------------------------


def _oom_after(engine: Engine, fails: int, above: int = 0):
    """Make `engine._forward` raise CUDA's out-of-memory error `fails` times, or whenever a
    batch is larger than `above`: what a CUDA device does when the batch does not fit."""
    forward = engine._forward
    calls = {"failed": 0}

    def flaky(inputs, mels):
        if calls["failed"] < fails or len(mels) > above > 0:
            calls["failed"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(inputs, mels)

    engine._forward = flaky


def test_out_of_memory_halves_the_batch_and_keeps_every_frame(model, caplog):
    face = np.random.default_rng(0).random((1, 6, 96, 96), np.float32)
    mels = np.random.default_rng(1).normal(0, 2, (20, 80, 16)).astype(np.float32)
    expected = Engine(model, "cpu", "fast", batch_size=32, first_row=FIRST_BLENDED_ROW).run("a", face, mels)
    engine = Engine(model, "cpu", "fast", batch_size=32, first_row=FIRST_BLENDED_ROW)
    _oom_after(engine, fails=0, above=8)
    faces = engine.run("a", face, mels)
    assert engine.batch == 8 and engine.device == "cpu"
    np.testing.assert_allclose(faces, expected, atol=1e-5)
    assert "retrying with batch size 16" in caplog.text and "batch size 8" in caplog.text


def test_out_of_memory_for_one_frame_moves_the_engine_to_the_cpu(model, caplog, monkeypatch):
    face = np.random.default_rng(0).random((1, 6, 96, 96), np.float32)
    mels = np.random.default_rng(1).normal(0, 2, (5, 80, 16)).astype(np.float32)
    engine = Engine(model, "cpu", "fast", batch_size=4, first_row=FIRST_BLENDED_ROW)
    built = []
    build = engine._build
    monkeypatch.setattr(engine, "_build", lambda device: built.append(device) or build(device))
    _oom_after(engine, fails=3)  # batch 4 → 2 → 1 → still out of memory
    faces = engine.run("a", face, mels)
    assert built == ["cpu"] and engine.batch == 4  # rebuilt, with the configured batch size again
    assert faces.shape == (5, 96, 96, 3) and faces[:, FIRST_BLENDED_ROW:].std() > 0.01
    assert "out of memory even for one frame; using the CPU" in caplog.text
