"""Reading and checking model checkpoints, shared by their loaders (Wav2Lip, S3FD, RVC, HuBERT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ara_sidecar.errors import BackendUnavailable


def read_checkpoint(path: Path, **load: Any) -> Any:
    """`torch.load(path)` on the CPU (`weights_only` unless `load` says otherwise); any failure to
    read it becomes a BackendUnavailable naming the file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", **{"weights_only": True, **load})
    except Exception as exc:  # pickle, zip and format errors come as many types
        raise BackendUnavailable(f"{path} is not a readable PyTorch checkpoint: {exc}") from None


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
