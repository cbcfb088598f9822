"""Reading and checking model checkpoints, shared by their loaders (Wav2Lip, S3FD, RVC, HuBERT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ara_sidecar.errors import BackendUnavailable

ZIP_MAGIC = b"PK\x03\x04"  # what torch.save writes (a zip archive)
PICKLE_PROTOCOL = 0x80  # the first byte of a pickle (protocol 2 and up): torch.save's legacy format


def file_problem(path: Path) -> str | None:
    """What makes `path` unusable as a weight file, whatever its format, before it is parsed: unreadable,
    empty, or text in place of the weights (a Git LFS pointer, a web page…); None if none of these."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "the file is empty (0 bytes): download it again"
    if head.startswith(b"version https://git-lfs"):
        return (
            f"it is a Git LFS pointer ({size} bytes), not the weights: fetch them with `git lfs pull` "
            "or download the file itself"
        )
    text = head.decode("utf-8", "ignore")
    if len(text.encode()) < len(head) - 3 or not all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return None  # binary: its format decides
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return f"it is a web page ({size} bytes), not weights: the download saved an error or login page"
    return f"it is text ({size} bytes, beginning {text[:40]!r}), not weights"


def read_checkpoint(path: Path, **load: Any) -> Any:
    """`torch.load(path)` on the CPU (`weights_only` unless `load` says otherwise); any failure to
    read it becomes a BackendUnavailable naming the file and the problem (empty, text, neither a zip
    archive nor a pickle, truncated…)."""
    import torch

    problem = file_problem(path)
    if problem is None:
        with open(path, "rb") as f:
            magic = f.read(4)
        is_zip = magic.startswith(ZIP_MAGIC)
        if not is_zip and magic[:1] != bytes([PICKLE_PROTOCOL]):
            problem = (
                "it is neither a zip archive (what torch.save writes) nor a pickle: "
                f"it begins with bytes {magic.hex(' ')}"
            )
        else:
            try:
                return torch.load(path, map_location="cpu", **{"weights_only": True, **load})
            except Exception as exc:  # pickle, zip and format errors come as many types
                problem = _load_problem(path, exc, is_zip)
    raise BackendUnavailable(f"{path} is not a readable PyTorch checkpoint: {problem}")


def _load_problem(path: Path, exc: Exception, is_zip: bool) -> str:
    """What `torch.load`'s failure `exc` means, in words."""
    import zipfile

    size = path.stat().st_size
    message = str(exc)
    if is_zip and not zipfile.is_zipfile(path):
        return f"a truncated or damaged zip archive ({size} bytes): the download may have stopped early"
    if not is_zip and (isinstance(exc, EOFError) or "unexpected EOF" in message or "truncated" in message):
        return f"a truncated pickle ({size} bytes): the download may have stopped early"
    if "WeightsUnpickler error:" in message:  # weights_only: a pickled object that is no tensor
        why = message.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"it holds Python objects besides tensors, which are not loaded ({why})"
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def is_state_dict(data: object) -> bool:
    """Whether `data` is a dict of tensors."""
    import torch

    return isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values())


def shape_mismatches(
    shapes: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]
) -> str | None:
    """What keeps a checkpoint's tensors (`shapes`: key → shape) from fitting a model
    (`expected`), summarised for an error message; None when they fit exactly."""
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [
        f"{k} {tuple(shapes[k])} (expected {tuple(shape)})"
        for k, shape in expected.items()
        if k in shapes and tuple(shapes[k]) != tuple(shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    return "; ".join(problems) or None
