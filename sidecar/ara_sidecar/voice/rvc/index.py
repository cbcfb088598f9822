"""Optional feature retrieval: blend content features towards the training set's, RVC's `.index`.

An RVC index is a faiss index (usually `IVF…,Flat`) of the voice's training content features. Each
frame is replaced by the mean of its 8 nearest stored vectors weighted by 1 / distance², then mixed
with the original by `index_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.weights import file_problem

NEIGHBOURS = 8


@dataclass(frozen=True)
class FeatureIndex:
    index: object  # faiss.Index
    vectors: np.ndarray  # (n, dim) every stored vector, for the weighted mean

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def blend(self, feats: np.ndarray, rate: float) -> np.ndarray:
        """feats (frames, dim) float32 → the same shape, `rate` of the way to the retrieved features."""
        k = min(NEIGHBOURS, len(self.vectors))
        dist, ids = self.index.search(np.ascontiguousarray(feats, dtype=np.float32), k)
        weight = np.square(1 / np.maximum(dist, 1e-12))
        weight /= weight.sum(axis=1, keepdims=True)
        retrieved = np.einsum("fk,fkd->fd", weight, self.vectors[ids])
        return (rate * retrieved + (1 - rate) * feats).astype(np.float32)


def load_index(path: Path) -> FeatureIndex:
    try:
        import faiss
    except ModuleNotFoundError:
        raise BackendUnavailable(
            f"the RVC index {path.name} needs the Python package faiss-cpu (pip install faiss-cpu), "
            "or set rvc.index_rate to 0"
        ) from None
    try:
        index = faiss.read_index(str(path))
        vectors = index.reconstruct_n(0, index.ntotal)
    except RuntimeError as exc:  # faiss's own message is a C++ assertion: an empty or text file first
        why = file_problem(path) or str(exc).strip().splitlines()[0]
        raise BackendUnavailable(f"{path} is not a readable faiss index: {why}") from None
    if index.ntotal == 0:
        raise BackendUnavailable(f"the RVC index {path} is empty")
    return FeatureIndex(index, vectors)
