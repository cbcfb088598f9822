"""Wav2Lip's ONNX Runtime CPU path: same frames as the plain forward, exported once per
checkpoint, and PyTorch when onnx is missing (random-weight checkpoint, as test_wav2lip)."""

from __future__ import annotations

import builtins
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_wav2lip import FPS, _clip, _random_model  # noqa: E402

from ara_sidecar.avatar import load_avatar  # noqa: E402
from ara_sidecar.cache import open_cache  # noqa: E402
from ara_sidecar.lipsync.wav2lip import Wav2Lip, onnx_engine  # noqa: E402


@pytest.fixture(scope="module")
def w2l_settings(settings, tmp_path_factory):
    path = tmp_path_factory.mktemp("wav2lip") / "wav2lip_gan.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _random_model().state_dict().items()}}, path)
    return settings.with_overrides(**{"wav2lip.checkpoint": str(path), "wav2lip.batch_size": 16})


@pytest.fixture(scope="module")
def astronaut(settings, astronaut_png):
    return load_avatar(astronaut_png, max_pixels=settings.limits.max_avatar_pixels, max_side=1024)


def _frames(settings, astronaut, audio) -> np.ndarray:
    backend = Wav2Lip(settings, "cpu")
    return np.stack(list(backend.animate(backend.prepare(astronaut), audio, FPS)))


def test_onnx_path_equals_the_plain_forward(w2l_settings, astronaut, speech):
    audio = _clip(speech, 1.0)
    backend = Wav2Lip(w2l_settings, "cpu")
    backend.load()
    assert backend.engine.session is not None
    fast = np.stack(list(backend.animate(backend.prepare(astronaut), audio, FPS)))
    plain = _frames(w2l_settings.with_overrides(**{"wav2lip.engine": "reference"}), astronaut, audio)
    assert fast.shape == plain.shape
    assert np.abs(fast.astype(int) - plain).max() <= 2


def test_export_is_kept_in_the_cache_per_checkpoint(w2l_settings, monkeypatch, tmp_path):
    exports = []
    export = onnx_engine._export
    monkeypatch.setattr(onnx_engine, "_export", lambda net, path: exports.append(path) or export(net, path))
    settings = w2l_settings.with_overrides(**{"cache.dir": str(tmp_path)})
    for _ in range(2):
        backend = Wav2Lip(settings, "cpu")
        backend.load()
        assert backend.engine.session is not None
    assert len(exports) == 1
    store = open_cache(settings)
    assert store.stats()["by_kind"]["wav2lip-onnx"]["entries"] == 1
    assert store.verify()["ok"] == store.stats()["entries"]  # no partial or unindexed file
    assert store.clear() >= 1  # `cache clear` takes it too: the next load exports again
    Wav2Lip(settings, "cpu").load()
    assert len(exports) == 2


def test_without_a_cache_the_export_is_temporary(w2l_settings, monkeypatch, tmp_path):
    exports = []
    export = onnx_engine._export
    monkeypatch.setattr(onnx_engine, "_export", lambda net, path: exports.append(path) or export(net, path))
    settings = w2l_settings.with_overrides(**{"cache.dir": str(tmp_path / "cache"), "cache.enabled": False})
    backend = Wav2Lip(settings, "cpu")
    backend.load()
    assert backend.engine.session is not None
    assert len(exports) == 1 and not exports[0].exists() and not (tmp_path / "cache").exists()


def test_a_cache_that_cannot_be_written_exports_into_a_temporary_file(w2l_settings, monkeypatch, tmp_path):
    from ara_sidecar.cache import CacheStore

    exports = []
    export = onnx_engine._export
    monkeypatch.setattr(onnx_engine, "_export", lambda net, path: exports.append(path) or export(net, path))
    settings = w2l_settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})
    open_cache(settings)  # made while it could be written
    init = CacheStore.__init__

    def read_only(self, *args, **kwargs):  # then its folder is read-only (or its disk full)
        init(self, *args, **kwargs)
        self.read_only = True

    monkeypatch.setattr(CacheStore, "__init__", read_only)
    backend = Wav2Lip(settings, "cpu")
    backend.load()
    assert backend.engine.session is not None  # ONNX Runtime all the same, not PyTorch
    assert len(exports) == 1 and not exports[0].exists()


def test_missing_onnx_falls_back_to_torch(w2l_settings, astronaut, speech, monkeypatch, caplog):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    backend = Wav2Lip(w2l_settings, "cpu")
    with caplog.at_level(logging.WARNING):
        backend.load()
    assert backend.engine.session is None and backend.engine.memory_format == torch.channels_last
    assert "using PyTorch" in caplog.text and "onnx" in caplog.text
    audio = _clip(speech, 0.4)
    frames = np.stack(list(backend.animate(backend.prepare(astronaut), audio, FPS)))
    plain = _frames(w2l_settings.with_overrides(**{"wav2lip.engine": "reference"}), astronaut, audio)
    assert len(frames) == 10 and np.abs(frames.astype(int) - plain).max() <= 2
