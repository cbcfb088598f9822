"""The selector model's hidden layer: exact per-feature shares, its file, and its checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ara_persona.classifier import LinearModel, load_model
from ara_persona.features import ngram_scale
from ara_persona.hidden import HIDDEN_FILE, LEVELS, Hidden, pack, unpack
from ara_persona.linear import LINEAR_FILE, Linear
from ara_persona.model import MODE_NAMES, PersonaError


def _layer(features: int = 40, units: int = 8, seed: int = 1) -> Hidden:
    rng = np.random.default_rng(seed)
    return Hidden.quantize(
        rng.normal(0, 0.3, (features, units)),
        rng.normal(0, 0.1, units),
        rng.normal(0, 0.5, (units, len(MODE_NAMES) + 1)),
        rng.normal(0, 0.1, len(MODE_NAMES) + 1),
    )


def test_shares_add_up_to_the_layer_output():
    hidden = _layer()
    index, values = [3, 7, 7, 20, 39], np.array([0.5, 0.5, 1.0, 0.25, 1.0], np.float32)
    shares, bias = hidden.contributions(index, values)
    dense = hidden.embedding.astype(np.float64) * hidden.row_scale[:, None]
    units = np.maximum((dense[index] * values[:, None]).sum(axis=0) + hidden.bias, 0.0)
    expected = units @ hidden.out + hidden.out_bias  # the layer's output, computed the plain way
    assert shares.shape == (5, len(MODE_NAMES) + 1)
    np.testing.assert_allclose(shares.sum(axis=0) + bias, expected, rtol=1e-5, atol=1e-6)


def test_batched_logits_match_the_shares():
    from scipy import sparse

    hidden = _layer()
    rows = [([3, 7, 20], [0.5, 1.0, 0.25]), ([], []), ([39, 0], [1.0, 2.0])]
    x = sparse.lil_matrix((len(rows), hidden.embedding.shape[0]), dtype=np.float32)
    for i, (index, values) in enumerate(rows):
        x[i, index] = values
    batched = hidden.logits(x.tocsr())
    for i, (index, values) in enumerate(rows):
        shares, bias = hidden.contributions(index, np.array(values, np.float32))
        np.testing.assert_allclose(batched[i], shares.sum(axis=0) + bias, rtol=1e-5, atol=1e-6)


def test_no_known_feature_gives_the_biases_alone():
    hidden = _layer()
    shares, bias = hidden.contributions([], np.zeros(0, np.float32))
    expected = np.maximum(hidden.bias, 0.0) @ hidden.out + hidden.out_bias
    assert shares.shape == (0, len(MODE_NAMES) + 1)
    np.testing.assert_allclose(bias, expected, rtol=1e-5, atol=1e-6)


def test_quantized_rows_stay_close_to_the_floats():
    rng = np.random.default_rng(0)
    floats = rng.normal(0, 0.2, (30, 16))
    hidden = Hidden.quantize(floats, np.zeros(16), np.zeros((16, 7)), np.zeros(7))
    restored = hidden.embedding.astype(np.float64) * hidden.row_scale[:, None]
    peak = np.abs(floats).max(axis=1, keepdims=True)
    assert np.all(np.abs(restored - floats) <= peak / (2 * LEVELS) + 1e-7)  # half a step at most
    assert np.abs(hidden.embedding).max() <= LEVELS


def test_rows_pack_two_values_to_a_byte_and_back():
    values = np.arange(-8, 8, dtype=np.int8).reshape(2, 8)
    packed = pack(values)
    assert packed.shape == (2, 4) and packed.dtype == np.uint8
    assert packed[0, 0] == (0 | (1 << 4))  # -8 and -7: 0 in the low half, 1 in the high half
    np.testing.assert_array_equal(unpack(packed), values)


def test_a_file_with_unpacked_rows_is_refused(tmp_path):
    import io
    import zipfile

    hidden = _layer()
    buffer = io.BytesIO(hidden.to_bytes())
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "embedding.npy":
                array = io.BytesIO()
                np.lib.format.write_array(array, hidden.embedding)  # int8, as 8-bit files were
                data = array.getvalue()
            dst.writestr(name, data)
    path = tmp_path / HIDDEN_FILE
    path.write_bytes(out.getvalue())
    digest = hashlib.sha256(out.getvalue()).hexdigest()
    with pytest.raises(PersonaError, match="4-bit rows"):
        Hidden.read(path, digest, hidden.embedding.shape[0], len(MODE_NAMES) + 1)


def _linear(features: int) -> Linear:
    weights = np.array([[i, 0, 0, 0, 0, 0, -i] for i in range(features)], dtype=np.int32)
    return Linear(tuple(f"w:word{i}" for i in range(features)), weights)


def _model_files(tmp_path, hidden: Hidden) -> tuple:
    linear = _linear(hidden.embedding.shape[0])
    payload, weights = hidden.to_bytes(), linear.to_bytes()
    data = {
        "format": "ara-selector/2",
        "modes": list(MODE_NAMES),
        "scale": 10000,
        "bias": [0] * 7,
        "crisis_threshold": 0.9,
        "linear": {"file": LINEAR_FILE, "features": 40, "sha256": hashlib.sha256(weights).hexdigest()},
        "hidden": {"file": HIDDEN_FILE, "units": 8, "sha256": hashlib.sha256(payload).hexdigest()},
    }
    (tmp_path / HIDDEN_FILE).write_bytes(payload)
    (tmp_path / LINEAR_FILE).write_bytes(weights)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, data


def test_the_file_is_the_same_bytes_for_the_same_layer_and_reads_back(tmp_path):
    hidden = _layer()
    assert hidden.to_bytes() == _layer().to_bytes()
    path, data = _model_files(tmp_path, hidden)
    model = load_model(path)
    for name in ("embedding", "row_scale", "bias", "out", "out_bias"):
        np.testing.assert_array_equal(getattr(model.hidden, name), getattr(hidden, name))
    # the model's logits are the linear part's plus the layer's
    scores = model.score("word3 word7")
    linear = LinearModel.from_parts(data, _linear(40)).score("word3 word7")
    index = [model.vocab[f] for f in scores.features if f in model.vocab]
    assert index == [3, 7]
    values = np.full(2, ngram_scale(scores.features), np.float32)
    shares, bias = hidden.contributions(index, values)
    layer = shares.sum(axis=0) + bias
    np.testing.assert_allclose(scores.logits, linear.logits + layer[:-1], rtol=1e-5, atol=1e-5)
    linear_crisis = np.log(linear.crisis / (1 - linear.crisis))
    assert scores.crisis == pytest.approx(1 / (1 + np.exp(-(linear_crisis + layer[-1]))), rel=1e-4)


def test_a_layer_that_does_not_belong_to_its_model_json_is_refused(tmp_path):
    path, _ = _model_files(tmp_path, _layer())
    (tmp_path / HIDDEN_FILE).write_bytes(_layer(seed=2).to_bytes())
    with pytest.raises(PersonaError, match=r"does not belong to the model\.json beside it; rebuild"):
        load_model(path)


def test_a_missing_layer_file_is_a_clear_error(tmp_path):
    path, _ = _model_files(tmp_path, _layer())
    (tmp_path / HIDDEN_FILE).unlink()
    with pytest.raises(PersonaError, match="cannot read the selector's hidden layer"):
        load_model(path)


def test_a_layer_of_the_wrong_size_is_refused(tmp_path):
    hidden = _layer(features=12)
    path, data = _model_files(tmp_path, _layer())
    payload = hidden.to_bytes()
    data["hidden"]["sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / HIDDEN_FILE).write_bytes(payload)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PersonaError, match=r"embedding has shape \(12, 8\), expected \(40, 8\)"):
        load_model(path)


def test_training_without_torch_names_the_extra_to_install(monkeypatch):
    import sys

    from scipy import sparse

    from ara_persona.training import _fit_hidden

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    one_hot = np.eye(len(MODE_NAMES))[[0, 1]]
    with pytest.raises(PersonaError, match=r"needs torch: pip install 'ara-avatar\[torch\]'"):
        _fit_hidden(sparse.csr_matrix(np.ones((2, 3))), one_hot, np.ones(2), np.zeros(2), np.ones(2))


def test_the_linear_part_reads_back_and_is_checked(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    path, _ = _model_files(good, _layer())
    model = load_model(path)
    assert model.vocab == {f"w:word{i}": i for i in range(40)}
    assert model.weights[5].tolist() == pytest.approx([5e-4, 0, 0, 0, 0, 0, -5e-4])
    path, _ = _model_files(bad, _layer())
    (bad / LINEAR_FILE).write_bytes(_linear(41).to_bytes())  # not the digest model.json names
    with pytest.raises(PersonaError, match=r"does not belong to the model\.json beside it"):
        load_model(path)


def test_a_model_file_may_only_name_files_beside_it(tmp_path):
    path, data = _model_files(tmp_path, _layer())
    data["linear"]["file"] = "../elsewhere.npz"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PersonaError, match=r"linear\.file must be a file name beside it"):
        load_model(path)


def test_an_older_model_format_asks_for_a_rebuild(tmp_path):
    path, data = _model_files(tmp_path, _layer())
    path.write_text(json.dumps({**data, "format": "ara-selector/1"}), encoding="utf-8")
    with pytest.raises(PersonaError, match=r"format 'ara-selector/1'.*rebuild it: ara-sidecar personas"):
        load_model(path)


def test_a_manifest_whose_feature_count_disagrees_with_its_array_is_refused(tmp_path):
    path, data = _model_files(tmp_path, _layer())
    path.write_text(json.dumps({**data, "linear": {**data["linear"], "features": 39}}), encoding="utf-8")
    with pytest.raises(PersonaError, match=r"linear\.features 39, but 40 names.*rebuild it"):
        load_model(path)
