"""Checks shared by the loaders of model checkpoints (Wav2Lip, RVC)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
