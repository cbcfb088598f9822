"""Cache keys: stable under re-ordering and equal encodings, sensitive to every input."""

from __future__ import annotations

import copy
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from pydantic import BaseModel

from ara_persona.model import VoiceParams
from ara_sidecar.cache import cache_key, derived_key, is_key
from ara_sidecar.cache import key as key_module

# The parts of a video render, as the pipeline would assemble them.
PARTS = {
    "text": "Hello, I am Ara.",
    "persona": "ara",
    "mode": "lab",
    "voice": {"pitch_semitones": -0.5, "speed": 0.87, "warmth_db": 4.5, "rvc_model": "alto"},
    "avatar_digest": "a" * 64,
    "tts": {"backend": "piper", "voice": "en_US-joe-medium.onnx", "voice_digest": "b" * 64},
    "voice_backend": {"backend": "dsp", "warmth_pivot_hz": 1000},
    "lipsync": {"backend": "animator", "mouth_open_max": 0.12, "blink": True, "model_digest": "c" * 64},
    "sentence_pause_s": 0.25,
    "fps": 25,
    "output": {"format": "mp4", "crf": 20, "preset": "superfast", "audio_sample_rate": 44100},
}


def _leaves(node: object, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for name, value in node.items() for leaf in _leaves(value, (*path, name))]
    return [path]


def _changed(parts: dict, path: tuple) -> dict:
    out = copy.deepcopy(parts)
    node = out
    for name in path[:-1]:
        node = node[name]
    value = node[path[-1]]
    if isinstance(value, bool):
        node[path[-1]] = not value
    elif isinstance(value, str):
        node[path[-1]] = value + "x"
    else:
        node[path[-1]] = value + 0.01
    return out


def test_key_is_a_sha256_hex_digest():
    key = cache_key(PARTS)
    assert is_key(key)
    assert key == cache_key(copy.deepcopy(PARTS))


def test_key_ignores_dict_order_at_every_level():
    reordered = {name: PARTS[name] for name in reversed(PARTS)}
    reordered["voice"] = {"rvc_model": "alto", "warmth_db": 4.5, "speed": 0.87, "pitch_semitones": -0.5}
    reordered["output"] = dict(reversed(list(PARTS["output"].items())))
    assert cache_key(reordered) == cache_key(PARTS)


def test_equal_values_encode_alike():
    assert cache_key({"x": 1}) == cache_key({"x": 1.0}) == cache_key({"x": np.int64(1)})
    assert cache_key({"x": 0.0}) == cache_key({"x": -0.0})
    assert cache_key({"x": 0.25}) == cache_key({"x": np.float64(0.25)}) == cache_key({"x": np.float32(0.25)})
    assert cache_key({"x": (1, "a")}) == cache_key({"x": [1, "a"]})
    assert cache_key({"x": Path("models/a.onnx")}) == cache_key({"x": PurePosixPath("models/a.onnx")})
    defaults = {"pitch_range": 1.0, "pause_s": None, "noise_scale": None, "noise_w_scale": None}
    defaults |= {"piper_voice": None, "target_f0_hz": None, "formant_ratio": 1.0}
    voice = VoiceParams(-0.5, 0.87, 4.5, "alto")
    assert cache_key({"v": voice}) == cache_key({"v": {**PARTS["voice"], **defaults}})


class _Encoder(BaseModel):  # like the config sections
    crf: int = 20
    preset: str = "superfast"


def test_pydantic_models_encode_as_their_fields():
    assert cache_key({"enc": _Encoder()}) == cache_key({"enc": {"crf": 20, "preset": "superfast"}})


def test_distinct_values_encode_apart():
    keys = {cache_key({"x": value}) for value in (None, False, True, 0, 1, "1", "", [], {}, [1], 1.5)}
    assert len(keys) == 11
    assert cache_key({"a": {"b": 1}}) != cache_key({"a.b": 1})


@pytest.mark.parametrize("path", _leaves(PARTS), ids=lambda p: ".".join(p))
def test_every_input_changes_the_key(path):
    assert cache_key(_changed(PARTS, path)) != cache_key(PARTS)


def test_a_missing_or_extra_part_changes_the_key():
    fewer = {name: value for name, value in PARTS.items() if name != "mode"}
    assert cache_key(fewer) != cache_key(PARTS)
    assert cache_key({**PARTS, "mode": None}) != cache_key(PARTS)


def test_pipeline_version_changes_the_key(monkeypatch):
    before = cache_key(PARTS)
    monkeypatch.setattr(key_module, "PIPELINE_VERSION", key_module.PIPELINE_VERSION + 1)
    assert cache_key(PARTS) != before


@pytest.mark.parametrize(
    ("value", "error", "where"),
    [
        ({"a": {1, 2}}, TypeError, "parts['a']"),
        ({"a": b"raw"}, TypeError, "parts['a']"),
        ({"a": [object()]}, TypeError, "parts['a'][0]"),
        ({"a": {1: "x"}}, TypeError, "parts['a']"),
        ({"a": float("nan")}, ValueError, "parts['a']"),
        ({"a": float("inf")}, ValueError, "parts['a']"),
        ({"a": VoiceParams}, TypeError, "parts['a']"),
    ],
)
def test_unsupported_values_are_rejected_with_their_place(value, error, where):
    with pytest.raises(error, match=r"^" + where.replace("[", r"\[").replace("]", r"\]") + ":"):
        cache_key(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0" * 64, True),
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 4, False),
        ("0" * 63, False),
        ("0" * 65, False),
        ("0" * 63 + "\n", False),
        ("../" + "0" * 61, False),
        ("g" * 64, False),
        ("٠" * 64, False),  # Arabic-Indic digits match \d but are no key
        (None, False),
        (b"0" * 64, False),
    ],
)
def test_is_key(value, ok):
    assert is_key(value) is ok


def test_derived_keys_depend_on_kind_order_and_every_part():
    base = derived_key("chunk", "a" * 64, 0.25, "b" * 64)
    assert is_key(base) and base == derived_key("chunk", "a" * 64, 0.25, "b" * 64)
    others = [
        derived_key("speech", "a" * 64, 0.25, "b" * 64),
        derived_key("chunk", "b" * 64, 0.25, "a" * 64),
        derived_key("chunk", "a" * 64, 0.1, "b" * 64),
        derived_key("chunk", "a" * 64, None, "b" * 64),
        derived_key("chunk", "a" * 64 + "\x1f", 0.25, "b" * 64),
    ]
    assert len({base, *others}) == 6
