"""RVC voice models per persona and mode: modes.yaml's rvc_model, the rvc.model override, loaded models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_rvc import hubert_model, small_config, write_model  # noqa: E402

from ara_persona import VoiceParams  # noqa: E402
from ara_sidecar.audio import Audio  # noqa: E402
from ara_sidecar.digest import file_digest  # noqa: E402
from ara_sidecar.errors import BackendUnavailable  # noqa: E402
from ara_sidecar.voice.rvc import RvcVoice, checkpoint  # noqa: E402

ARA_MODES = Path(__file__).resolve().parents[1] / "personas" / "ara" / "modes.yaml"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """models/ with a small ContentVec and three random voice models; bass has an index beside it."""
    import faiss

    root = tmp_path_factory.mktemp("models")
    hubert_model().save_pretrained(root / "hubert" / "contentvec")
    rvc = root / "rvc"
    rvc.mkdir()
    write_model(rvc / "alto.pth", "v2", True, small_config(40000), seed=1)
    write_model(rvc / "bass.pth", "v2", True, small_config(40000), seed=2)
    write_model(rvc / "tenor.pth", "v1", True, small_config(32000, "2"), seed=3)
    index = faiss.IndexFlatL2(768)
    index.add(np.random.default_rng(0).normal(size=(64, 768)).astype(np.float32))
    faiss.write_index(index, str(rvc / "bass.index"))
    return root


@pytest.fixture(scope="module")
def voice_settings(settings, models_dir):
    return settings.with_overrides(models_dir=str(models_dir), voice="rvc")


@pytest.fixture(scope="module")
def vowel() -> Audio:
    """One second of a vowel-like tone at 22050 Hz: 20 harmonics of an f0 gliding from 110 to 150 Hz."""
    rate = 22050
    phase = 2 * np.pi * np.cumsum(np.linspace(110, 150, rate)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 21))
    return Audio((0.3 * x / np.abs(x).max()).astype(np.float32), rate)


def loaded(settings) -> RvcVoice:
    stage = RvcVoice(settings, "cpu")
    stage.load()
    return stage


def digests(models_dir: Path, name: str, index: str | None = None) -> dict:
    rvc = models_dir / "rvc"
    return {"model": file_digest(rvc / f"{name}.pth"), "index": file_digest(rvc / index) if index else None}


def test_each_mode_converts_with_its_own_model(voice_settings, models_dir, vowel):
    stage = loaded(voice_settings)  # three models and no rvc.model: no default, and load() is fine
    alto, bass = VoiceParams(rvc_model="alto"), VoiceParams(rvc_model="bass")
    assert stage.mode_inputs(alto) == digests(models_dir, "alto")
    assert stage.mode_inputs(bass) == digests(models_dir, "bass", index="bass.index")
    tenor_path = str(models_dir / "rvc" / "tenor.pth")
    assert stage.mode_inputs(VoiceParams(rvc_model=tenor_path)) == digests(models_dir, "tenor")
    out_alto, out_bass = stage.convert(vowel, alto).samples, stage.convert(vowel, bass).samples
    assert not np.allclose(out_alto, out_bass)
    # Each is what a stage configured with that model alone (and its index) makes.
    for name, out in (("alto", out_alto), ("bass", out_bass)):
        only = loaded(voice_settings.with_overrides(**{"rvc.model": name}))
        np.testing.assert_array_equal(only.convert(vowel, VoiceParams()).samples, out)


def test_the_rvc_model_setting_overrides_the_modes(voice_settings, models_dir, vowel):
    stage = loaded(voice_settings.with_overrides(**{"rvc.model": "alto"}))
    bass = VoiceParams(rvc_model="bass")
    assert stage.mode_inputs(bass) == stage.mode_inputs(VoiceParams()) == digests(models_dir, "alto")
    np.testing.assert_array_equal(
        stage.convert(vowel, bass).samples, stage.convert(vowel, VoiceParams()).samples
    )


def test_rvc_index_belongs_to_the_configured_model(voice_settings, models_dir):
    index = str(models_dir / "rvc" / "bass.index")
    chosen_by_mode = RvcVoice(voice_settings.with_overrides(**{"rvc.index": index}), "cpu")
    assert chosen_by_mode.mode_inputs(VoiceParams(rvc_model="alto")) == digests(models_dir, "alto")
    configured = RvcVoice(voice_settings.with_overrides(**{"rvc.index": index, "rvc.model": "alto"}), "cpu")
    expected = digests(models_dir, "alto", index="bass.index")
    assert configured.mode_inputs(VoiceParams(rvc_model="tenor")) == expected


def test_an_unknown_model_names_itself_and_where_it_was_looked_for(voice_settings, models_dir, vowel):
    stage = loaded(voice_settings)
    params = VoiceParams(rvc_model="soprano")
    for call in (lambda: stage.mode_inputs(params), lambda: stage.convert(vowel, params)):
        with pytest.raises(BackendUnavailable) as info:
            call()
        message = str(info.value)
        assert message.startswith("RVC model not found: soprano (looked for "), message
        assert str(models_dir / "rvc" / "soprano.pth") in message and "rvc_model" in message
    no_default = r"no RVC model chosen: .* rvc_model in the persona's modes\.yaml \(found alto\.pth, bass"
    with pytest.raises(BackendUnavailable, match=no_default):
        stage.convert(vowel, VoiceParams())


def test_readiness_checks_the_models_of_the_configured_persona(voice_settings, tmp_path):
    assert "no RVC model chosen" in RvcVoice.readiness(voice_settings).detail  # Ara names none
    (tmp_path / "nova").mkdir()
    modes = ARA_MODES.read_text(encoding="utf-8").replace("display_name: Ara", "rvc_model: alto", 1)
    cfg = voice_settings.with_overrides(user_personas_dir=str(tmp_path), persona="nova")
    for lab_model, ready, detail in (
        ("soprano", False, "RVC model not found: soprano"),
        ("bass", True, "alto.pth; bass.pth, index bass.index, content encoder contentvec, f0 pm"),
    ):
        lab = modes.replace("warmth_db: 1.5, pause_s: 0.35}", f"warmth_db: 1.5, rvc_model: {lab_model}}}", 1)
        assert lab != modes  # the lab mode's voice line was found
        (tmp_path / "nova" / "modes.yaml").write_text(lab, encoding="utf-8")
        readiness = RvcVoice.readiness(cfg)
        assert readiness.ready is ready and detail in readiness.detail, readiness.detail


def test_at_most_two_models_stay_loaded(voice_settings, tmp_path, monkeypatch):
    loads = []
    load_model = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda path: loads.append(path.stem) or load_model(path))
    stage = loaded(voice_settings)
    use = stage._model_for  # what convert() does first, without the conversion
    for name in ("alto", "bass", "alto", "tenor", "alto", "bass"):
        assert use(name).model.path.stem == name
    assert loads == ["alto", "bass", "tenor", "bass"]  # tenor pushed bass out, then bass tenor
    # Loaded models are known by their content: a file replaced on disk is read again.
    mezzo = str(write_model(tmp_path / "mezzo.pth", "v2", True, small_config(40000)))
    first, again = use(mezzo), use(mezzo)
    write_model(tmp_path / "mezzo.pth", "v2", True, small_config(40000), seed=5)
    assert first is again and use(mezzo) is not first
    assert loads[4:] == ["mezzo", "mezzo"]
