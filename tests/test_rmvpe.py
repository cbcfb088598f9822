"""RMVPE f0: the network in rmvpe.pt's layout (random weights), its mel front end and decoding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_rvc import hubert_model, small_config, write_model  # noqa: E402

from ara_persona import VoiceParams  # noqa: E402
from ara_sidecar.errors import BackendUnavailable  # noqa: E402
from ara_sidecar.voice.rvc import RvcVoice, rmvpe  # noqa: E402
from ara_sidecar.voice.rvc import f0 as pitch  # noqa: E402

# From RVC's infer/lib/rmvpe.py, E2E(4, 1, (2, 2)): 741 entries, BatchNorm counters included.
OFFICIAL_SHAPES = {
    "unet.encoder.bn.weight": (1,),
    "unet.encoder.layers.0.conv.0.conv.0.weight": (16, 1, 3, 3),
    "unet.encoder.layers.0.conv.0.shortcut.weight": (16, 1, 1, 1),
    "unet.encoder.layers.4.conv.3.conv.4.running_var": (256,),
    "unet.intermediate.layers.0.conv.0.shortcut.weight": (512, 256, 1, 1),
    "unet.intermediate.layers.3.conv.3.conv.3.weight": (512, 512, 3, 3),
    "unet.decoder.layers.0.conv1.0.weight": (512, 256, 3, 3),
    "unet.decoder.layers.0.conv2.0.shortcut.weight": (256, 512, 1, 1),
    "unet.decoder.layers.4.conv2.3.conv.1.num_batches_tracked": (),
    "cnn.weight": (3, 16, 3, 3),
    "fc.0.gru.weight_ih_l0": (768, 384),
    "fc.0.gru.weight_hh_l0": (768, 256),
    "fc.0.gru.weight_ih_l0_reverse": (768, 384),
    "fc.1.weight": (360, 512),
    "fc.1.bias": (360,),
}


def official_state(seed: int = 0) -> dict:
    """Random weights stored as rmvpe.pt stores them: a bare state dict, floats in fp16 (about 181 MB)."""
    torch.manual_seed(seed)
    state = rmvpe.rmvpe_network().state_dict()
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """models/ with rmvpe/rmvpe.pt, a small ContentVec folder and a small v2 voice with f0."""
    root = tmp_path_factory.mktemp("models")
    (root / "rmvpe").mkdir()
    torch.save(official_state(), root / "rmvpe" / "rmvpe.pt")
    hubert_model().save_pretrained(root / "hubert" / "contentvec")
    (root / "rvc").mkdir()
    write_model(root / "rvc" / "v2f0.pth", "v2", True, small_config(40000))
    return root


def test_network_has_the_official_layout(models_dir):
    state = rmvpe.rmvpe_network().state_dict()
    assert len(state) == 741
    assert {k: tuple(state[k].shape) for k in OFFICIAL_SHAPES} == OFFICIAL_SHAPES
    net = rmvpe.load_rmvpe(models_dir / "rmvpe" / "rmvpe.pt", "cpu")
    saved = torch.load(models_dir / "rmvpe" / "rmvpe.pt", weights_only=True)
    assert torch.equal(net.state_dict()["fc.1.weight"], saved["fc.1.weight"].float())
    assert not net.training
    assert rmvpe.load_rmvpe(models_dir / "rmvpe" / "rmvpe.pt", "cpu") is net  # cached
    with torch.no_grad():
        assert net(torch.zeros(1, rmvpe.N_MELS, 64)).shape == (1, 64, 360)


def test_mel_filterbank_is_htk_with_area_normalisation():
    def htk(hz: float) -> float:
        return 2595 * math.log10(1 + hz / 700)

    low, high = htk(30), htk(8000)
    edges = [700 * (10 ** ((low + (high - low) * i / 129) / 2595) - 1) for i in range(130)]
    expected = np.zeros((128, 513))
    for m in range(128):
        left, centre, right = edges[m : m + 3]
        for k in range(513):
            hz = k * 16000 / 1024
            if left < hz <= centre:
                expected[m, k] = (hz - left) / (centre - left)
            elif centre < hz < right:
                expected[m, k] = (right - hz) / (right - centre)
        expected[m] *= 2 / (right - left)
    assert htk(1000) == pytest.approx(1000, abs=0.1)
    np.testing.assert_allclose(rmvpe.mel_filterbank(), expected, rtol=1e-9, atol=1e-12)


def test_log_mel_matches_a_direct_stft():
    x = np.random.default_rng(0).normal(scale=0.1, size=4000)
    padded = np.pad(x, 512, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    frames = 1 + len(x) // 160
    magnitude = np.stack(
        [np.abs(np.fft.rfft(padded[t * 160 : t * 160 + 1024] * window)) for t in range(frames)]
    )
    expected = np.log(np.maximum(rmvpe.mel_filterbank() @ magnitude.T, 1e-5))
    got = rmvpe.log_mel(torch.from_numpy(x.astype(np.float32))).numpy()
    assert got.shape == (128, frames)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    silent = rmvpe.log_mel(torch.zeros(4000)).numpy()
    assert np.allclose(silent, math.log(1e-5))


def cents_hz(index: float) -> float:
    return 10 * 2 ** ((pitch.CREPE_CENTS0 + 20 * index) / 1200)


def test_decoding_takes_the_local_weighted_mean_and_the_threshold():
    salience = np.zeros((5, 360), dtype=np.float32)
    salience[0, 100] = 0.9  # a lone peak: its bin
    salience[1, 200], salience[1, 201] = 0.6, 0.2  # pulled a quarter bin up
    salience[2, 150], salience[2, 150 + 5] = 0.8, 0.7  # 5 bins away: outside the ±4 window
    salience[3, 120] = 0.03  # at the threshold: unvoiced
    salience[4, 0], salience[4, 1] = 0.5, 0.5  # the window clipped at the lowest bin
    f0 = rmvpe.decode(salience)
    np.testing.assert_allclose(
        f0, [cents_hz(100), cents_hz(200.25), cents_hz(150), 0, cents_hz(0.5)], rtol=1e-6
    )
    assert rmvpe.decode(salience[3:4], threshold=0.02)[0] == pytest.approx(cents_hz(120))


def test_estimate_gives_one_value_per_frame_on_the_salience_grid(models_dir):
    t = np.arange(16000 * 2) / 16000
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * (t < 1.2)  # a tone, then silence
    for samples in (len(x), 1600):  # 201 mel frames; 11, fewer than one U-Net step of 32
        frames = samples // pitch.HOP
        f0 = pitch.estimate(x[:samples], frames, "rmvpe", models_dir, "cpu")
        assert len(f0) == frames and np.isfinite(f0).all()
        # no 50–1100 Hz range, as in RVC: any pitch of the 360 bins (about 31.7 to 2006 Hz)
        assert ((f0 == 0) | ((f0 >= cents_hz(0)) & (f0 <= cents_hz(359)))).all()


def test_rvc_folder_is_accepted_and_missing_weights_say_where(tmp_path):
    with pytest.raises(BackendUnavailable) as missing:
        pitch.estimate(np.zeros(16000), 100, "rmvpe", tmp_path, "cpu")
    assert "put rmvpe.pt" in str(missing.value) and str(tmp_path / "rmvpe") in str(missing.value)
    (tmp_path / "rvc").mkdir()
    (tmp_path / "rvc" / "rmvpe.pt").write_bytes(b"")
    assert rmvpe.rmvpe_weights(tmp_path) == tmp_path / "rvc" / "rmvpe.pt"
    (tmp_path / "rmvpe").mkdir()
    (tmp_path / "rmvpe" / "rmvpe.pt").write_bytes(b"")
    assert rmvpe.rmvpe_weights(tmp_path) == tmp_path / "rmvpe" / "rmvpe.pt"


def test_malformed_checkpoints_name_the_file_and_the_problem(tmp_path):
    text = tmp_path / "text" / "rmvpe.pt"
    text.parent.mkdir()
    text.write_text("not a checkpoint\n")
    state = official_state()
    state["fc.1.weight"] = torch.zeros(360, 256)
    del state["cnn.bias"]
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": {}}, wrapped)
    cases = [(text, ""), (wrong, "1 missing: cnn.bias"), (wrong, "fc.1.weight is (360, 256), not (360, 512)"),
             (wrapped, "741 missing: unet.encoder.bn.weight"), (wrapped, "1 unexpected: model")]  # fmt: skip
    for path, detail in cases:
        with pytest.raises(BackendUnavailable) as bad:
            rmvpe.load_rmvpe(path, "cpu")
        assert str(path) in str(bad.value) and "rmvpe.pt" in str(bad.value) and detail in str(bad.value)


def test_rvc_stage_with_rmvpe(settings, models_dir, speech):
    overrides = {"models_dir": str(models_dir), "rvc.model": "v2f0", "rvc.f0_method": "rmvpe"}
    stage = RvcVoice(settings.with_overrides(**overrides), "cpu")
    digest = stage.fingerprint()["rmvpe"]
    assert digest is not None and stage.fingerprint()["crepe"] is None
    pm = RvcVoice(stage.settings.with_overrides(**{"rvc.f0_method": "pm"}), "cpu").fingerprint()
    assert pm["rmvpe"] is None
    out = stage.convert(speech, VoiceParams(pitch_semitones=2))
    assert len(out.samples) == len(speech.samples) and np.isfinite(out.samples).all()
