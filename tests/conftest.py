"""Shared fixtures: settings from the real config, real Piper speech, the real avatar."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar, load_avatar
from ara_sidecar.config import Settings, load_settings, project_root

SPEECH_TEXT = "Hello, I am Ara. I run right here on your own machine, and nobody pulls the plug."


@pytest.fixture(scope="session", autouse=True)
def private_dirs(tmp_path_factory) -> dict[str, str]:
    """Keep every test's cache and outputs (also of `ara-sidecar` subprocesses) out of the repo."""
    dirs = {
        "ARA_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "ARA_OUTPUT_DIR": str(tmp_path_factory.mktemp("outputs")),
    }
    saved = {name: os.environ.get(name) for name in dirs}
    os.environ.update(dirs)
    yield dirs
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def settings(private_dirs) -> Settings:
    return load_settings(environ=private_dirs)


@pytest.fixture(scope="session")
def pipeline(settings):
    """The default pipeline, models loaded (a module that needs other settings defines its own)."""
    from ara_sidecar.pipeline import Pipeline

    loaded = Pipeline(settings)
    loaded.load()
    return loaded


@pytest.fixture(scope="session")
def piper_tts(settings):
    from ara_sidecar.tts.piper import PiperTTS

    tts = PiperTTS(settings, "cpu")
    tts.load()
    return tts


@pytest.fixture(scope="session")
def speech(piper_tts) -> Audio:
    """About four seconds of real Piper speech at 22050 Hz."""
    return piper_tts.synthesize(SPEECH_TEXT)


@pytest.fixture(scope="session")
def avatar(settings) -> Avatar:
    return load_avatar(
        project_root() / "personas" / "ara" / "avatar.png",
        max_pixels=settings.limits.max_avatar_pixels,
        max_side=settings.video_max_side,
    )


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory) -> Path:
    """The public-domain scikit-image portrait, written as a real PNG file."""
    import skimage.data
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def with_silence(audio: Audio, start_s: float, length_s: float) -> Audio:
    """`audio` with `length_s` of digital silence inserted at `start_s`."""
    i = int(start_s * audio.sample_rate)
    gap = np.zeros(int(length_s * audio.sample_rate), dtype=np.float32)
    return Audio(np.concatenate([audio.samples[:i], gap, audio.samples[i:]]), audio.sample_rate)


def load_bench_module(name: str):
    """bench/NAME.py as a module (bench/ is not a package), e.g. the independent voice measures."""
    import importlib.util
    import sys

    path = project_root() / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return sys.modules[name]
