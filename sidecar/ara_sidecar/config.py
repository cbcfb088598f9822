"""The sidecar's configuration: one validated object built from `config/sidecar.yaml`,
an optional user file (`ARA_CONFIG`), `ARA_…` environment variables and CLI overrides.

The YAML file is the single source of defaults; the models below are the schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ara_sidecar.errors import UserError

ENV_PREFIX = "ARA_"


def project_root() -> Path:
    """The repository root (or `ARA_HOME`): where config/, personas/ and models/ live."""
    return _root(os.environ.get("ARA_HOME"))


@lru_cache(maxsize=4)
def _root(home: str | None) -> Path:
    return Path(home).expanduser().resolve() if home else Path(__file__).resolve().parents[2]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    max_text_chars: int = Field(gt=0)
    max_avatar_pixels: int = Field(gt=0)
    max_audio_s: float = Field(gt=0)


class ChunkingSettings(_Section):
    first_max_chars: int = Field(ge=10)
    max_chars: int = Field(ge=20)
    min_chars: int = Field(ge=0)
    clause_pause_s: float = Field(ge=0, le=5)


class CacheSettings(_Section):
    enabled: bool
    dir: Path
    max_mb: float = Field(gt=0)
    ttl_hours: float | None = Field(default=None, gt=0)


class PiperSettings(_Section):
    voice: str
    threads: int = Field(ge=0)


class AllTalkSettings(_Section):
    url: str = Field(pattern=r"^https?://[^/\s]+")
    voice: str | None = Field(default=None, min_length=1)
    language: str = Field(pattern=r"^[a-z]{2}(-[a-z]{2})?$|^auto$")
    rvc_voice: str | None = Field(default=None, min_length=1)
    connect_timeout_s: float = Field(gt=0)
    timeout_s: float = Field(gt=0)
    max_chars: int = Field(ge=50)
    request_cost_s: float | None = Field(default=None, ge=0)
    streaming: bool = True


class DspSettings(_Section):
    warmth_pivot_hz: float = Field(gt=50, lt=8000)


class AnimatorSettings(_Section):
    mouth_open_max: float = Field(gt=0, le=0.6)
    attack_s: float = Field(gt=0, le=1)
    release_s: float = Field(gt=0, le=1)
    silence_db: float = Field(lt=0)
    blink_interval_s: float = Field(ge=0)
    sway_degrees: float = Field(ge=0, le=5)


class Wav2LipSettings(_Section):
    checkpoint: Path | None = None
    detector: Literal["haar", "s3fd"]
    pads: tuple[int, int, int, int]
    engine: Literal["fast", "reference"]
    batch_size: int = Field(ge=0, le=4096)


class RvcSettings(_Section):
    model: str | None = Field(default=None, min_length=1)
    index: Path | None = None
    hubert: Path | None = None
    f0_method: Literal["pm", "harvest", "crepe", "crepe-tiny", "rmvpe"]
    index_rate: float = Field(ge=0, le=1)
    protect: float = Field(ge=0, le=0.5)
    rms_mix_rate: float = Field(ge=0, le=1)
    transpose: float = Field(ge=-36, le=36)
    speaker: int = Field(ge=0)
    unvoiced_f0: Literal["zero", "interpolate"] = "zero"


class EncoderSettings(_Section):
    crf: int = Field(ge=0, le=51)
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ]
    x264_params: str = Field(pattern=r"^[A-Za-z0-9_.=:-]*$")
    threads: int = Field(ge=0, le=64)
    audio_bitrate_kbps: int = Field(ge=32, le=512)
    audio_sample_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000] | None


class ServerSettings(_Section):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    token: str | None = Field(default=None, min_length=1)
    cors_origins: list[str]
    allowed_hosts: list[str]
    queue_size: int = Field(ge=1)
    job_timeout_s: float = Field(gt=0)
    max_upload_mb: float = Field(gt=0)
    max_header_kb: float = Field(ge=4)
    header_timeout_s: float = Field(gt=0)
    keep_alive_s: float = Field(gt=0)
    max_connections: int = Field(ge=4)
    access_log: bool


class ClusterSettings(_Section):
    """Scaling out (`ara-sidecar serve` and `worker` on a shared Redis; see ara_sidecar.cluster)."""

    url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://")
    store: str | None = Field(default=None, min_length=1)  # a folder, or s3://BUCKET[/PREFIX]
    s3_endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    namespace: str = Field(default="ara", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    heartbeat_s: float = Field(default=2.0, gt=0)
    worker_timeout_s: float = Field(default=30.0, gt=0)
    job_ttl_hours: float = Field(default=24.0, gt=0)


class Settings(_Section):
    device: Literal["auto", "cpu", "cuda", "mps"]
    personas_dir: Path
    user_personas_dir: Path | None
    models_dir: Path
    output_dir: Path
    persona: str
    mode: str | None
    fps: int = Field(ge=1, le=60)
    video_max_side: int = Field(ge=64, le=4096)
    sentence_pause_s: float = Field(ge=0, le=5)
    chunking: ChunkingSettings
    tts: str
    voice: str
    lipsync: str
    cache: CacheSettings
    limits: Limits
    piper: PiperSettings
    alltalk: AllTalkSettings
    dsp: DspSettings
    animator: AnimatorSettings
    wav2lip: Wav2LipSettings
    rvc: RvcSettings
    encoder: EncoderSettings
    server: ServerSettings
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project root."""
        value = Path(value).expanduser()
        return value if value.is_absolute() else project_root() / value

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with top-level or dotted (`piper.voice`) keys replaced, re-validated."""
        data = self.model_dump()
        for key, value in overrides.items():
            _set_path(data, key.split("."), value)
        return _validate(data, "command-line options")


def _set_path(data: dict, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _deep_merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _env_overrides(defaults: dict, environ: Mapping[str, str]) -> dict:
    """Map `ARA_A_B` onto key path a.b for every key the defaults define."""
    found: dict = {}

    def walk(node: dict, prefix: list[str]) -> None:
        for key, value in node.items():
            path = [*prefix, key]
            if isinstance(value, dict):
                walk(value, path)
                continue
            name = ENV_PREFIX + "_".join(path).upper()
            if name in environ:
                # YAML parsing gives numbers, booleans and `null` their types.
                _set_path(found, path, yaml.safe_load(environ[name]) if environ[name] else None)

    walk(defaults, [])
    return found


def _validate(data: dict, source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise UserError(f"invalid configuration (from {source}): {problems}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults file, then the `ARA_CONFIG` file, then `ARA_…` variables."""
    environ = os.environ if environ is None else environ
    defaults_path = project_root() / "config" / "sidecar.yaml"
    data = _read_yaml(defaults_path)
    sources = [str(defaults_path)]
    user_file = environ.get("ARA_CONFIG")
    if user_file:
        data = _deep_merge(data, _read_yaml(Path(user_file).expanduser()))
        sources.append(user_file)
    env = _env_overrides(data, environ)
    if env:
        data = _deep_merge(data, env)
        sources.append("ARA_* environment variables")
    return _validate(data, ", ".join(sources))


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
