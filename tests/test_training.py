"""Training the selector's model: side-by-side processes give the same model as one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

from ara_persona.corpus import load_split
from ara_persona.model import SelectorSettings
from ara_persona.training import default_jobs, fit_model

SELECTOR = Path(__file__).resolve().parents[1] / "personas" / "ara" / "selector"


def test_parallel_training_gives_the_same_model_as_one_process():
    by_digest = sorted(load_split(SELECTOR, "train"), key=lambda s: hashlib.sha256(s.text.encode()).digest())
    samples = by_digest[:600]
    one = fit_model(samples, SelectorSettings(), None, jobs=1)
    two = fit_model(samples, SelectorSettings(), None, jobs=2)
    (data1, linear1, hidden1), (data2, linear2, hidden2) = one, two
    assert data1 == data2  # threshold, cross-validated figures and the digests of both arrays
    assert linear1.names == linear2.names and (linear1.weights == linear2.weights).all()
    assert hidden1.to_bytes() == hidden2.to_bytes()
    assert data1["training"]["cv_folds"] == 5 and data1["linear"]["features"] == len(linear1.names) > 100


def test_default_jobs_is_bounded_by_the_fits():
    assert 1 <= default_jobs() <= 6


def test_train_refuses_a_bad_number_of_jobs_with_a_clear_error():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ara_persona", "personas", "train", "--jobs", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "expected a number of processes (1 or more), not '0'" in done.stderr
    assert "Traceback" not in done.stderr
