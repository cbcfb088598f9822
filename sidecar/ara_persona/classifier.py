"""The learned part of the selector: a linear model over word and character n-grams, and a
hidden layer over the same features.

`selector/model.json` (written by `ara_persona.training` from the persona's training corpus)
is a small manifest; the arrays lie beside it, each named with its SHA-256:

    {"format": "ara-selector/2", "modes": [...six names...], "scale": 1000,
     "bias": [b_mode1, …, b_mode6, b_crisis], "crisis_threshold": 0.5,
     "linear": {"file": "model.linear.npz", "sha256": …, "features": 142851},
     "hidden": {"file": "model.hidden.npz", "sha256": …, "units": 64},   (optional)
     "common_words": [...], "training": {…how it was built: corpus digests, settings, sizes…}}

`model.linear.npz` (`ara_persona.linear`) holds each feature of `ara_persona.features` with one
weight per mode and one for the crisis head, integers divided by `scale`; `model.hidden.npz`
(`ara_persona.hidden`) a layer of hidden units over the same features whose output adds to the
logits.

A message is a bag of binary features (`ara_persona.features.weight`); the mode head is a
softmax over the six modes, the crisis head a logistic unit. Scoring is a few hundred dict
look-ups and small numpy sums. `explain` names the words that pushed a mode up most (the
hidden layer's share of each word included, exactly).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ara_persona.features import message_features, ngram_scale, weight
from ara_persona.hidden import Hidden
from ara_persona.lexicon import Lexicon
from ara_persona.linear import Linear
from ara_persona.model import MODE_NAMES, PersonaError, file_version

MODEL_FILE = "model.json"
FORMAT = "ara-selector/2"


@dataclass(frozen=True)
class Scores:
    """A message's logits per mode (in `LinearModel.modes` order) and its crisis probability."""

    logits: np.ndarray
    crisis: float
    features: dict[str, str]
    rows: np.ndarray  # the model's rows of the known features, times their values
    words: tuple[str, ...]  # the word each row came from


class LinearModel:
    """The mode and crisis heads of one `model.json` (its linear part and its hidden layer)."""

    def __init__(
        self,
        modes: tuple[str, ...],
        vocab: dict[str, int],
        weights: np.ndarray,
        bias: np.ndarray,
        crisis_threshold: float,
        training: dict | None = None,
        hidden: Hidden | None = None,
    ):
        self.modes = modes
        self.vocab = vocab
        self.weights = weights  # (features, modes + 1), float32
        self.bias = bias
        self.crisis_threshold = crisis_threshold
        self.training = training or {}
        self.hidden = hidden
        self.common_words: frozenset[str] = frozenset()  # words of ordinary (not crisis) training messages

    @classmethod
    def from_parts(
        cls, data: dict, linear: Linear, hidden: Hidden | None = None, where: str = "model"
    ) -> LinearModel:
        """The model of `model.json`'s content `data`, its linear part and its hidden layer."""
        try:  # (the format is checked by `_load`, with its own message, before the arrays are read)
            modes = tuple(data["modes"])
            if sorted(modes) != sorted(MODE_NAMES):
                raise ValueError(f"modes {modes}")
            scale = float(data["scale"])
            width = len(modes) + 1
            if linear.weights.shape != (len(linear.names), width):
                raise ValueError(f"linear weights of shape {linear.weights.shape}")
            named = (data.get("linear") or {}).get("features", len(linear.names))
            if named != len(linear.names):
                raise ValueError(f"linear.features {named}, but {len(linear.names)} names in the array file")
            weights = linear.weights.astype(np.float32) / scale
            bias = np.asarray(data["bias"], dtype=np.float32) / scale
            if bias.shape != (width,):
                raise ValueError(f"bias of {bias.size} values, expected {width}")
            threshold = float(data["crisis_threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PersonaError(
                f"{where}: not a selector model ({exc}); rebuild it: ara-sidecar personas train"
            ) from None
        vocab = {n: i for i, n in enumerate(linear.names)}
        model = cls(modes, vocab, weights, bias, threshold, data.get("training"), hidden)
        model.common_words = frozenset(data.get("common_words", ()))
        return model

    def score(self, text: str, *, lexicon: Lexicon | None = None) -> Scores:
        feats = message_features(text, lexicon=lexicon)
        known = [(self.vocab[f], f, w) for f, w in feats.items() if f in self.vocab]
        scale = ngram_scale(feats)
        values = np.array([weight(f, scale) for _, f, _ in known], dtype=np.float32)
        index = [i for i, _, _ in known]
        rows = self.weights[index] * values[:, None]
        bias = self.bias
        if self.hidden is not None:
            shares, hidden_bias = self.hidden.contributions(index, values)
            rows, bias = rows + shares, bias + hidden_bias
        z = rows.sum(axis=0) + bias
        crisis = 1.0 / (1.0 + math.exp(-float(z[-1])))
        return Scores(z[:-1], crisis, feats, rows, tuple(w for _, _, w in known))

    def explain(self, scores: Scores, mode: str, *, top: int = 3) -> list[str]:
        """The words that raised `mode` over the other modes most, strongest first."""
        return self._top_words(scores, self.modes.index(mode), top)

    def explain_crisis(self, scores: Scores, *, top: int = 3) -> list[str]:
        return self._top_words(scores, len(self.modes), top)

    def _top_words(self, scores: Scores, column: int, top: int) -> list[str]:
        if not len(scores.rows):
            return []
        if column < len(self.modes):
            own = scores.rows[:, column]
            others = np.delete(scores.rows[:, : len(self.modes)], column, axis=1).mean(axis=1)
            push = own - others
        else:
            push = scores.rows[:, column]
        by_word: dict[str, float] = {}
        for word, value in zip(scores.words, push.tolist(), strict=False):
            if word:
                by_word[word] = by_word.get(word, 0.0) + value
        ranked = sorted(by_word.items(), key=lambda kv: (-kv[1], kv[0]))
        return [w for w, v in ranked if v > 0][:top]


@lru_cache(maxsize=16)
def _load(path: str, stamp: tuple[int, int]) -> LinearModel:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read the selector model ({exc})") from None
    if not isinstance(data, dict):
        raise PersonaError(f"{path}: not a selector model (expected a JSON object)")
    if data.get("format") != FORMAT:
        raise PersonaError(
            f"{path}: not a selector model of this version (format {data.get('format')!r}, "
            f"expected {FORMAT!r}); rebuild it: ara-sidecar personas train"
        )
    try:
        outputs = len(data["bias"])
    except (KeyError, TypeError) as exc:
        raise PersonaError(f"{path}: not a selector model (bias: {exc})") from None
    linear = Linear.read(*_beside(path, data, "linear"), outputs)
    hidden = None
    if data.get("hidden") is not None:
        hidden = Hidden.read(*_beside(path, data, "hidden"), len(linear.names), outputs)
    return LinearModel.from_parts(data, linear, hidden, path)


def _beside(path: str, data: dict, key: str) -> tuple[Path, str]:
    """The file that `model.json`'s entry `key` names (beside it, never elsewhere) and its digest."""
    try:
        name, digest = str(data[key]["file"]), str(data[key]["sha256"])
    except (KeyError, TypeError) as exc:
        raise PersonaError(f"{path}: not a selector model ({key}: {exc})") from None
    if Path(name).name != name or name in ("", ".", ".."):
        raise PersonaError(f"{path}: {key}.file must be a file name beside it, not {name!r}")
    return Path(path).with_name(name), digest


def load_model(path: Path) -> LinearModel:
    """The model in `path`, loaded once per file version."""
    return _load(*file_version(path, "the selector model"))
