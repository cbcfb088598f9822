"""The selector model's linear part: `selector/model.linear.npz` (written by
`ara_persona.training`, named and checked by the `linear` entry of `model.json`) holds the
features' names and, per feature, one weight per mode and one for the crisis head:

    names (bytes,) uint8: the names in UTF-8, one per line · weights (features, modes + 1) int32:
    units of 1/`scale` (model.json's)

The hidden layer's rows (`ara_persona.hidden`) follow the same order. Reading it needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ara_persona.model import PersonaError
from ara_persona.npzfile import npz_bytes, read_npz

LINEAR_FILE = "model.linear.npz"


@dataclass(frozen=True)
class Linear:
    names: tuple[str, ...]
    weights: np.ndarray  # (features, outputs) int32, units of 1/scale

    def to_bytes(self) -> bytes:
        names = np.frombuffer("\n".join(self.names).encode("utf-8"), dtype=np.uint8)
        return npz_bytes({"names": names, "weights": self.weights.astype(np.int32)})

    @classmethod
    def read(cls, path: Path, sha256: str, outputs: int) -> Linear:
        """The linear part in `path`, checked against `model.json`'s digest and its outputs."""
        arrays = read_npz(path, sha256, ("names", "weights"), "linear weights")
        names, weights = arrays["names"], arrays["weights"]
        if names.dtype != np.uint8 or names.ndim != 1 or weights.dtype != np.int32:
            raise PersonaError(f"{path}: names must be UTF-8 bytes and weights int32")
        try:
            text = names.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            raise PersonaError(f"{path}: the feature names are not UTF-8") from None
        listed = tuple(text.split("\n")) if text else ()
        if weights.shape != (len(listed), outputs):
            expected = (len(listed), outputs)
            raise PersonaError(f"{path}: weights have shape {weights.shape}, expected {expected}")
        if len(set(listed)) != len(listed):
            raise PersonaError(f"{path}: a feature is named twice")
        return cls(listed, weights)
