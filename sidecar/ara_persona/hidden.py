"""The selector model's hidden layer: one layer of ReLU units over the same features.

`selector/model.hidden.npz` (written by `ara_persona.training`, named and checked by the
`hidden` entry of `model.json`) holds, per feature of the model (in the order of the linear
part's names, `ara_persona.linear`), an embedding row of `units` 4-bit values (−7…7, two to a
byte) and its scale; the units' biases; and the output layer, one column per mode and one for
the crisis head:

    embedding (features, units / 2) uint8: unit 2k in the low half of byte k, unit 2k+1 in the
    high half, each value + 8 · row_scale (features,) float32 · bias (units,) float32 ·
    out (units, modes + 1) float32 · out_bias (modes + 1,) float32

Four bits cost nothing measurable at half the file: in a cross-validation on the training split
that held out whole files, mode accuracy was the same as with 8-bit rows (90.1 %) and crisis
recall within 0.3 points (77.9 against 77.6 %).

A message's hidden units are `relu(Σ value_f · embedding_f + bias)`; their output adds to the
linear part's logits. Given which units are active, that output is linear in the features, so
each feature's share of it is exact (`contributions`): the reasons the selector gives still
name the words that weighed, as for the linear part. Reading it needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ara_persona.model import PersonaError
from ara_persona.npzfile import npz_bytes, read_npz

HIDDEN_FILE = "model.hidden.npz"
ARRAYS = ("embedding", "row_scale", "bias", "out", "out_bias")
LEVELS = 7  # a row's values are -LEVELS…LEVELS times its scale


def pack(values: np.ndarray) -> np.ndarray:
    """(rows, units) int8 in -8…7 → (rows, units / 2) uint8, two values to a byte."""
    nibbles = (values.astype(np.int16) + 8).astype(np.uint8)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def unpack(packed: np.ndarray) -> np.ndarray:
    """The inverse of `pack`."""
    out = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = (packed & 0x0F).astype(np.int8) - 8
    out[:, 1::2] = (packed >> 4).astype(np.int8) - 8
    return out


@dataclass(frozen=True)
class Hidden:
    embedding: np.ndarray  # (features, units) int8, -LEVELS…LEVELS
    row_scale: np.ndarray  # (features,) float32
    bias: np.ndarray  # (units,)
    out: np.ndarray  # (units, outputs)
    out_bias: np.ndarray  # (outputs,)

    @classmethod
    def quantize(cls, embedding: np.ndarray, bias, out, out_bias) -> Hidden:
        """From a float embedding (an even number of units): each row as small integers times its
        own scale."""
        peak = np.abs(embedding).max(axis=1)
        scale = np.where(peak > 0, peak / LEVELS, 1.0).astype(np.float32)
        q = np.clip(np.rint(embedding / scale[:, None]), -LEVELS, LEVELS).astype(np.int8)
        f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
        return cls(q, scale, f32(bias), f32(out), f32(out_bias))

    def select(self, rows: np.ndarray) -> Hidden:
        """Only the features at `rows` (a boolean mask or indices)."""
        return Hidden(self.embedding[rows], self.row_scale[rows], self.bias, self.out, self.out_bias)

    def logits(self, x) -> np.ndarray:
        """The output (messages, outputs) for a feature matrix `x` (messages, features; dense or
        scipy sparse)."""
        weights = self.embedding.astype(np.float32) * self.row_scale[:, None]
        return np.maximum(x @ weights + self.bias, 0.0) @ self.out + self.out_bias

    def contributions(self, index: list[int], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each known feature's exact share of the output (len(index), outputs), and the share of
        the biases (outputs,), for features `index` with `values`."""
        e = self.embedding[index].astype(np.float32) * (self.row_scale[index] * values)[:, None]
        active = (e.sum(axis=0) + self.bias) > 0
        out = self.out[active]
        return e[:, active] @ out, self.bias[active] @ out + self.out_bias

    def to_bytes(self) -> bytes:
        """An .npz archive of the arrays, the same bytes for the same arrays."""
        return npz_bytes({n: pack(self.embedding) if n == "embedding" else getattr(self, n) for n in ARRAYS})

    @classmethod
    def read(cls, path: Path, sha256: str, features: int, outputs: int) -> Hidden:
        """The hidden layer in `path`, checked against `model.json`'s digest and sizes."""
        arrays = read_npz(path, sha256, ARRAYS, "hidden layer")
        packed = arrays["embedding"]
        if packed.dtype != np.uint8 or packed.ndim != 2:
            raise PersonaError(f"{path}: embedding is not 4-bit rows packed in bytes")
        hidden = cls(**{**arrays, "embedding": unpack(packed)})
        units = hidden.bias.shape[0]
        shapes = {
            "embedding": (features, units),
            "row_scale": (features,),
            "out": (units, outputs),
            "out_bias": (outputs,),
        }
        for name, shape in shapes.items():
            found = getattr(hidden, name).shape
            if found != shape:
                raise PersonaError(f"{path}: {name} has shape {found}, expected {shape}")
        return hidden
