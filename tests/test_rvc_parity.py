"""Parity with the reference implementations (issue #17): RVC's NSF sine source, RMVPE's mel padding,
torchcrepe's decoding as RVC calls it, RVC's unvoiced-f0 fill and segment lengths.

Every expected value is computed here from the reference's own formula, written out below, not from
the project's code: RVC-Project/Retrieval-based-Voice-Conversion-WebUI (its 2024-06 release
`infer/lib/infer_pack/models.py`, `infer/lib/rmvpe.py`, `infer/modules/vc/pipeline.py`,
`configs/config.py`, and main's `infer/vc/pipeline.py`) and torchcrepe 0.0.23 (`decode.py`,
`core.py`, `filter.py`), which RVC pins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from ara_sidecar.voice.rvc import f0 as pitch  # noqa: E402
from ara_sidecar.voice.rvc import rmvpe, synthesizer  # noqa: E402

CENTS0 = 1997.3794084376191  # torchcrepe.convert.bins_to_cents: 20 · bin + this


def bin_hz(b: np.ndarray | float) -> np.ndarray | float:
    return 10 * 2 ** ((CENTS0 + 20 * np.asarray(b)) / 1200)


# -- NSF sine source ----------------------------------------------------------------------------


def reference_sine(f0: np.ndarray, upp: int, sr: int) -> np.ndarray:
    """RVC's SineGen (main's form, the 2024-06 one is the same mod 1): f0 upsampled by repetition,
    rad = f0 / sr per sample, phase = cumsum(rad) — the sum includes the sample itself — and
    sine = 0.1 · sin(2π · phase)."""
    rad = np.repeat(f0.astype(np.float64), upp) / sr
    return 0.1 * np.sin(2 * np.pi * np.cumsum(rad))


def test_nsf_sine_gives_sample_0_of_a_frame_the_phase_of_one_step(monkeypatch):
    monkeypatch.setattr(synthesizer, "NOISE_STD", 0.0)  # voiced: the sine alone
    sr, upp = 40000, 400
    source = synthesizer.SourceModule(sr)
    with torch.no_grad():
        source.l_linear.weight.fill_(1.0)
        source.l_linear.bias.zero_()
    f0 = np.array([220.0, 230.5, 241.0, 110.25, 440.0, 97.3])
    with torch.no_grad():
        out = source(torch.from_numpy(f0).float()[None], upp, torch.Generator().manual_seed(0))
    sine = np.arctanh(out[0, 0].double().numpy())  # tanh(1 · x + 0)
    expected = reference_sine(f0, upp, sr)
    assert sine[0] == pytest.approx(0.1 * math.sin(2 * math.pi * 220 / sr), abs=1e-7)  # not sin(0)
    np.testing.assert_allclose(sine, expected, atol=2e-7)
    starts = np.arange(len(f0)) * upp  # sample 0 of every frame
    np.testing.assert_allclose(sine[starts], expected[starts], atol=2e-7)


def test_nsf_noise_follows_the_reference_random_draws(monkeypatch):
    """With the same seed the noise is the reference's: it draws one uniform number (the overtones'
    start phases) and then randn of the excitation's shape."""
    sr, upp = 32000, 320
    source = synthesizer.SourceModule(sr)
    with torch.no_grad():
        source.l_linear.weight.fill_(1.0)
        source.l_linear.bias.zero_()
    f0 = torch.zeros(1, 5)  # unvoiced: noise of amplitude 0.1 / 3 only
    with torch.no_grad():
        out = np.arctanh(source(f0, upp, torch.Generator().manual_seed(3))[0, 0].double().numpy())
    g = torch.Generator().manual_seed(3)
    torch.rand(1, 1, 1, generator=g)
    expected = torch.randn(1, 5 * upp, 1, generator=g)[0, :, 0].double().numpy() * 0.1 / 3
    np.testing.assert_allclose(out, expected, atol=1e-6)


# -- RMVPE --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rmvpe_net():
    torch.manual_seed(0)
    return rmvpe.rmvpe_network().eval()


def test_rmvpe_pads_the_mel_with_zeros_to_a_multiple_of_32_frames(rmvpe_net):
    x = np.random.default_rng(1).normal(scale=0.1, size=16000 + 37)
    mel = rmvpe.log_mel(torch.from_numpy(x.astype(np.float32)))[None]
    n_frames = mel.shape[-1]
    assert n_frames == 101 and n_frames % 32 != 0
    # RMVPE.mel2hidden: n_pad = 32 * ((n_frames - 1) // 32 + 1) - n_frames; F.pad(mel, (0, n_pad)),
    # mode "constant" (zeros); hidden[:, :n_frames]
    n_pad = 32 * ((n_frames - 1) // 32 + 1) - n_frames
    with torch.no_grad():
        expected = rmvpe_net(F.pad(mel, (0, n_pad), mode="constant"))[0, :n_frames].numpy()
        reflected = rmvpe_net(F.pad(mel, (0, n_pad), mode="reflect"))[0, :n_frames].numpy()
    got = rmvpe.salience(x, rmvpe_net, "cpu")
    assert got.shape == (n_frames, 360)
    np.testing.assert_allclose(got[-8:], expected[-8:], atol=1e-6)  # the last frames, next to the pad
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(reflected[-8:] - expected[-8:]).max() > 1e-3  # the test tells the paddings apart


def test_rmvpe_keeps_pitches_outside_50_to_1100_hz():
    """RMVPE.decode: f0 = 10 · 2^(cents / 1200) with cents the salience-weighted mean of the 9 bins
    around the peak, 0 where the peak is at most 0.03; no range is imposed."""
    salience = np.zeros((3, 360), dtype=np.float32)
    salience[0, 5] = 0.9  # about 35 Hz
    salience[1, 330] = 0.9  # about 1500 Hz
    salience[2, 100] = 0.03
    np.testing.assert_allclose(rmvpe.decode(salience), [bin_hz(5), bin_hz(330), 0.0], rtol=1e-6)


# -- CREPE ---------------------------------------------------------------------------------------


def reference_viterbi(probs: np.ndarray) -> np.ndarray:
    """torchcrepe.decode.viterbi of one (frames, 360) matrix of network outputs, as
    torchcrepe.postprocess calls it for fmin 50, fmax 1100:
      minidx = floor((1200·log2(50/10) − CENTS0) / 20) = 39, maxidx = ceil(… 1100 …) = 308;
      outputs below minidx and from maxidx on set to −inf; softmax over the bins;
      transition[i, j] = max(12 − |i − j|, 0), each row normalised;
      librosa.sequence.viterbi: uniform start, log(p + tiny) with tiny that of float32, and
      V[t, j] = log p[t, j] + max_k (V[t − 1, k] + log A[k, j]), the first k on ties."""
    minidx = math.floor((1200 * math.log2(50 / 10) - CENTS0) / 20)
    maxidx = math.ceil((1200 * math.log2(1100 / 10) - CENTS0) / 20)
    assert (minidx, maxidx) == (39, 308)
    logits = probs.astype(np.float32).copy()
    logits[:, :minidx] = -np.inf
    logits[:, maxidx:] = -np.inf
    soft = np.exp(logits - logits.max(axis=1, keepdims=True))
    soft = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    xx, yy = np.meshgrid(range(360), range(360))
    transition = np.maximum(12 - abs(xx - yy), 0)
    transition = transition / transition.sum(axis=1, keepdims=True)
    tiny = np.finfo(np.float32).tiny
    log_a = np.log(transition + tiny)
    log_p = np.log(soft + np.float32(tiny)).astype(np.float64)
    value = log_p[0] + np.log(1 / 360 + tiny)
    back = []
    for t in range(1, len(probs)):
        pointer = np.empty(360, dtype=np.int64)
        new = np.empty(360)
        for j in range(360):
            scores = value + log_a[:, j]
            pointer[j] = int(np.argmax(scores))
            new[j] = log_p[t, j] + scores[pointer[j]]
        back.append(pointer)
        value = new
    path = [int(np.argmax(value))]
    for pointer in reversed(back):
        path.append(int(pointer[path[-1]]))
    return np.array(path[::-1])


def test_crepe_decoder_is_torchcrepes_viterbi_on_a_known_salience_matrix():
    frames = 12
    probs = np.full((frames, 360), 0.01, dtype=np.float32)
    steady = np.array([100, 100, 101, 101, 102, 102, 102, 103, 103, 103, 104, 104])
    probs[np.arange(frames), steady] = 0.9
    probs[5, 250] = 0.95  # a stronger lone peak 148 bins away: Viterbi cannot jump there
    probs[8, 20] = 0.99  # below 50 Hz: out of range
    path = reference_viterbi(probs)
    assert path.tolist() == steady.tolist()
    f0, periodicity = pitch.crepe_decode(probs)
    np.testing.assert_allclose(f0, bin_hz(path), rtol=1e-9)  # no dither
    np.testing.assert_allclose(periodicity, probs[np.arange(frames), path])  # the output at the path
    assert periodicity[5] == pytest.approx(0.9)  # not the peak at bin 250
    # a random matrix: the same path as the reference's algorithm
    rng = np.random.default_rng(0)
    noisy = (rng.random((40, 360)) ** 8).astype(np.float32)
    noisy[np.arange(40), 150 + np.cumsum(rng.integers(-3, 4, 40))] += 0.5
    np.testing.assert_array_equal(pitch.crepe_decode(noisy)[0], bin_hz(reference_viterbi(noisy)))


def test_crepe_filters_are_torchcrepes_at_the_edges_too():
    """torchcrepe.filter.median(x, 3): reflect-padded values with a zero-padded mask, so at either end
    the window holds two values and the median index (2 − 1) // 2 = 0 takes the lower;
    torchcrepe.filter.mean(x, 3): a zero-padded sum over the count of values, so two at either end.
    RVC then zeroes f0 where the filtered periodicity is below 0.1."""
    x = np.array([0.5, 0.05, 0.3, 0.2, 0.9, 0.08])
    np.testing.assert_allclose(pitch.edge_median3(x), [0.05, 0.3, 0.2, 0.3, 0.2, 0.08])
    np.testing.assert_allclose(
        pitch.edge_mean3(x), [0.55 / 2, 0.85 / 3, 0.55 / 3, 1.4 / 3, 1.18 / 3, 0.98 / 2]
    )


def test_crepe_bin_range_for_rvcs_50_to_1100_hz():
    assert pitch.crepe_bin_range() == (39, 308)


# -- RVC pipeline --------------------------------------------------------------------------------


def test_fill_unvoiced_is_rvc_mains_interpolation():
    """main's get_f0: uv = f0 == 0; f0[uv] = np.interp(np.where(uv)[0], np.where(~uv)[0], f0[~uv])."""
    f0 = np.array([0.0, 0.0, 100.0, 0.0, 0.0, 160.0, 0.0])
    np.testing.assert_allclose(pitch.fill_unvoiced(f0), [100, 100, 100, 120, 140, 160, 160])
    assert (pitch.fill_unvoiced(np.zeros(4)) == 0).all()  # nothing voiced: np.interp fails, zeros kept


def test_segment_lengths_are_rvcs_per_device(settings, monkeypatch):
    """configs/config.py device_config: is_half → x_pad, x_query, x_center, x_max = 3, 10, 60, 65,
    else 1, 6, 38, 41; and 1, 5, 30, 32 on a GPU of gpu_mem <= 4, gpu_mem = int(GiB + 0.4)."""
    import ara_sidecar.voice.rvc as rvc

    def values(seg: rvc.Segmenting) -> tuple[float, float, float, float]:
        return seg.pad_s, seg.query_s, seg.centre_s, seg.longest_s

    assert values(rvc.segmenting(half=False, gpu_gib=None)) == (1, 6, 38, 41)
    assert values(rvc.segmenting(half=True, gpu_gib=80)) == (3, 10, 60, 65)
    assert values(rvc.segmenting(half=True, gpu_gib=4)) == (1, 5, 30, 32)
    assert values(rvc.RvcVoice(settings, "cpu").segmenting()) == (1, 6, 38, 41)

    class Properties:
        total_memory = 0

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    stage = rvc.RvcVoice(settings, "cuda")  # fp16 on CUDA
    for total, expected in (
        (80 * 2**30, (3, 10, 60, 65)),
        (int(3.7 * 2**30), (1, 5, 30, 32)),  # int(3.7 + 0.4) = 4
        (int(4.7 * 2**30), (3, 10, 60, 65)),  # int(4.7 + 0.4) = 5
    ):
        Properties.total_memory = total
        assert values(stage.segmenting()) == expected
