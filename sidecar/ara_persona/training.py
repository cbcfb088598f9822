"""Fit the selector's model (linear heads and a hidden layer) on a persona's training corpus and
write `selector/model.json`, `selector/model.linear.npz` and `selector/model.hidden.npz`.

    ara-sidecar personas train [PERSONA] [--jobs N]   (or: python -m ara_persona personas train)

Reproducible: the same corpus files give the same model files on the same machine and versions
(a deterministic L-BFGS fit, weights rounded to integers of 1/`SCALE`; the hidden layer seeded
and trained in one thread). The cross-validation's folds and the final fit are independent:
`jobs` processes fit them side by side, with the same result as one. Only
`selector/train/*.jsonl` is read; the held-out files never are. Needs numpy and scipy (the
sidecar's dependencies) and torch for the hidden layer (`pip install 'ara-avatar[torch]'`);
using the model needs only numpy. The concept lexicon and crisis concepts (features of the
model) are the persona's own `selector/lexicon.yaml` and `crisis.yaml`, else Ara's, as selection
finds them.

- Mode head: multinomial logistic regression over the six modes, L2-regularised, each mode
  weighing the same. Crisis messages are left out (the crisis check before it decides them), and
  so are short follow-ups labelled with their previous mode (the hysteresis decides them).
  (Scaling its features as the crisis head's below gained 0.8 points of cross-validated
  accuracy but made it sure of itself on short follow-ups — "ok and then?" 95 % cockpit —
  which the hysteresis must keep in the previous mode; so it is not done.)
- Hidden layer (`ara_persona.hidden`): `HIDDEN_UNITS` ReLU units over the same features with an
  output per mode and one for the crisis head, trained with AdamW and dropout on both heads'
  losses and weights at once. The model's logits are the mean of the linear heads' and the
  hidden layer's (each part's weights are halved in the file): a geometric-mean ensemble, as
  sure of itself as either part alone, which the hysteresis's probabilities need (the sum made
  "ok and then?" 94 % cockpit, the mean 78 %). In a cross-validation that held
  out whole corpus files (new writers, as the held-out split has), it raised mode accuracy from
  88.6 to 90.5 % and, with the linear crisis head, the crisis messages found at the same
  false-alarm budget by about two points.
- Crisis head: logistic regression, crisis messages against everything else, hard negatives
  weighted `HARD_NEGATIVE_WEIGHT`×, over features scaled by their naive-Bayes log-count ratio
  (NBSVM, Wang & Manning 2012: how much more often a feature occurs in crisis messages than in
  the others, smoothed by `NB_ALPHA`); the scale is folded into the weights, so using the model
  is unchanged. In cross-validation it finds 66 % of the crisis messages where the plain
  regression found 60 %, at the same false-alarm budget. It backs up the crisis patterns,
  which are checked first, so it must not cry wolf: its threshold is the lowest at which a
  5-fold cross-validation on the training split raised at most `HARD_NEGATIVE_ALARMS` false
  alarms on hard negatives and `OTHER_ALARMS` on other messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ara_persona.classifier import FORMAT, MODEL_FILE, LinearModel
from ara_persona.corpus import Sample, load_split
from ara_persona.features import message_features, ngram_scale, vocabulary, weight, word_count
from ara_persona.hidden import HIDDEN_FILE, Hidden
from ara_persona.lexicon import (
    CRISIS_FILE,
    LEXICON_FILE,
    Lexicon,
    load_crisis,
    load_lexicon,
    model_lexicon,
)
from ara_persona.linear import LINEAR_FILE, Linear
from ara_persona.model import MODE_NAMES, Persona, PersonaError, SelectorSettings

SCALE = 1_000
DEFAULTS = SelectorSettings()
MIN_DOCS = 2  # a feature must occur in at least this many training messages
L2_MODE = 0.03
L2_CRISIS = 0.005
NB_ALPHA = 0.5  # the crisis head's naive-Bayes smoothing (in weighted messages)
HARD_NEGATIVE_WEIGHT = 3.0
FOLDS = 5
HARD_NEGATIVE_ALARMS = 0.015  # the crisis head's false-alarm budget in cross-validation: hard negatives …
OTHER_ALARMS = 0.01  # … and other messages
THRESHOLD_MARGIN = 0.0  # logits added to the threshold those budgets give
HIDDEN_UNITS = 64
HIDDEN_EPOCHS = 8
HIDDEN_BATCH = 64
HIDDEN_LEARNING_RATE = 2e-3
HIDDEN_DROPOUT = 0.3
HIDDEN_WEIGHT_DECAY = 1e-5
HIDDEN_SEED = 0


def _matrix(docs: Sequence[dict[str, str]], vocab: dict[str, int]):
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        scale = ngram_scale(doc)
        for name in doc:
            j = vocab.get(name)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(weight(name, scale))
    shape = (len(docs), len(vocab))
    return sparse.csr_matrix((np.array(vals), (np.array(rows), np.array(cols))), shape=shape)


def _fit(x, targets: np.ndarray, weights: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression (targets: one-hot rows; one column = logistic): (W, b)."""
    from scipy.optimize import minimize

    _n, d = x.shape
    k = targets.shape[1]
    binary = k == 1

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        if binary:
            p = 1.0 / (1.0 + np.exp(-z))
            nll = -(targets * np.log(p + 1e-12) + (1 - targets) * np.log(1 - p + 1e-12))
            diff = p - targets
        else:
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            nll = -(targets * logp).sum(axis=1, keepdims=True)
            diff = np.exp(logp) - targets
        diff = diff * weights[:, None]
        value = float((nll[:, 0] * weights).sum() + 0.5 * l2 * (w * w).sum())
        grad = np.concatenate([(x.T @ diff + l2 * w).ravel(), diff.sum(axis=0)])
        return value, grad

    theta0 = np.zeros(d * k + k)
    result = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-7})
    return result.x[: d * k].reshape(d, k), result.x[d * k :]


def _log_count_ratio(x, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per feature: log of its smoothed share of the (weighted) positive messages that hold it
    over its share of the negative ones (NBSVM's r)."""
    present = (x > 0).astype(np.float64)
    pos = NB_ALPHA + present[positive].T @ weights[positive]
    neg = NB_ALPHA + present[~positive].T @ weights[~positive]
    return np.log((pos / pos.sum()) / (neg / neg.sum()))


def _follow_up(sample: Sample, settings: SelectorSettings) -> bool:
    """A short follow-up labelled with its previous mode: the selector's hysteresis decides it."""
    return sample.previous == sample.mode and word_count(sample.text) < settings.follow_up_words


def _fit_heads(
    samples: Sequence[Sample],
    docs: Sequence[dict[str, str]],
    vocab: dict[str, int],
    settings: SelectorSettings = DEFAULTS,
):
    from scipy import sparse

    x = _matrix(docs, vocab)
    modes = np.zeros((len(samples), len(MODE_NAMES)))
    for i, s in enumerate(samples):
        modes[i, MODE_NAMES.index(s.mode)] = 1.0
    crisis = np.array([[1.0 if s.crisis else 0.0] for s in samples])
    weight = np.array([HARD_NEGATIVE_WEIGHT if s.kind == "hard_negative" else 1.0 for s in samples])
    balance = len(samples) / (
        len(MODE_NAMES) * np.maximum(modes.sum(axis=0), 1)
    )  # every mode weighs the same
    keep = [not s.crisis and not _follow_up(s, settings) for s in samples]
    weight_mode = (modes @ balance) * np.array(keep, dtype=float)
    w_mode, b_mode = _fit(x, modes, weight_mode, L2_MODE)
    ratio = _log_count_ratio(x, crisis[:, 0] > 0, weight)
    w_crisis, b_crisis = _fit(x @ sparse.diags(ratio), crisis, weight, L2_CRISIS)
    w_crisis = w_crisis * ratio[:, None]
    embedding, bias, out, out_bias = _fit_hidden(x, modes, weight_mode, crisis[:, 0], weight)
    half = 0.5  # the model's logits are the mean of the two parts': their geometric-mean ensemble
    linear = np.hstack([w_mode, w_crisis]) * half, np.concatenate([b_mode, b_crisis]) * half
    return *linear, (embedding, bias, out * half, out_bias * half)


def _fit_hidden(x, modes: np.ndarray, weight_mode: np.ndarray, crisis: np.ndarray, weight_crisis: np.ndarray):
    """The hidden layer's float arrays (embedding, bias, out, out_bias), trained on both heads:
    `modes` one-hot with `weight_mode` per message, `crisis` 0/1 with `weight_crisis`."""
    try:
        import torch
        from torch.nn import functional
    except ImportError:
        raise PersonaError(
            "training the selector's hidden layer needs torch: pip install 'ara-avatar[torch]'"
        ) from None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in the same order: the same model, run after run
    try:
        torch.manual_seed(HIDDEN_SEED)
        x = x.tocsr()
        embed = torch.nn.EmbeddingBag(x.shape[1], HIDDEN_UNITS, mode="sum")
        torch.nn.init.normal_(embed.weight, std=0.05)
        bias = torch.nn.Parameter(torch.zeros(HIDDEN_UNITS))
        out = torch.nn.Linear(HIDDEN_UNITS, modes.shape[1] + 1)
        drop = torch.nn.Dropout(HIDDEN_DROPOUT)
        params = [*embed.parameters(), bias, *out.parameters()]
        opt = torch.optim.AdamW(params, lr=HIDDEN_LEARNING_RATE, weight_decay=HIDDEN_WEIGHT_DECAY)
        as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        target, w_mode = torch.tensor(modes.argmax(axis=1)), as_tensor(weight_mode)
        y_crisis, w_crisis = as_tensor(crisis), as_tensor(weight_crisis)
        rng = np.random.default_rng(HIDDEN_SEED)
        for _ in range(HIDDEN_EPOCHS):
            order = rng.permutation(x.shape[0])
            for start in range(0, len(order), HIDDEN_BATCH):
                rows = order[start : start + HIDDEN_BATCH]
                batch = x[rows]
                units = embed(
                    torch.from_numpy(batch.indices.astype(np.int64)),
                    torch.from_numpy(batch.indptr[:-1].astype(np.int64)),
                    per_sample_weights=torch.from_numpy(batch.data.astype(np.float32)),
                )
                z = out(drop(torch.relu(units + bias)))
                mode_loss = functional.cross_entropy(z[:, :-1], target[rows], reduction="none")
                crisis_loss = functional.binary_cross_entropy_with_logits(
                    z[:, -1], y_crisis[rows], reduction="none"
                )
                loss = (mode_loss * w_mode[rows] + crisis_loss * w_crisis[rows]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        arrays = (embed.weight, bias, out.weight.T, out.bias)
        return tuple(a.detach().numpy().astype(np.float64) for a in arrays)
    finally:
        torch.set_num_threads(threads)


def _fold(sample: Sample) -> int:
    return int(hashlib.sha256(sample.text.encode("utf-8")).hexdigest()[8:16], 16) % FOLDS


def default_jobs() -> int:
    """Processes for training: one per CPU core, at most one per fit (the folds and the final)."""
    return max(1, min(os.cpu_count() or 1, FOLDS + 1))


def _in_parallel(calls: Sequence[tuple[Callable, tuple]], jobs: int) -> list:
    """The results of `calls` (function, arguments), in their order, run by `jobs` processes."""
    if jobs <= 1 or len(calls) <= 1:
        return [function(*args) for function, args in calls]
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked torch or BLAS threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=context) as pool:
        futures = [pool.submit(function, *args) for function, args in calls]
        return [f.result() for f in futures]


def _fold_logits(samples: list[Sample], docs: list[dict], tests: list[dict], settings: SelectorSettings):
    """The crisis head's logits for the messages `tests`, fitted on `samples` alone."""
    vocab = {n: j for j, n in enumerate(vocabulary(docs, MIN_DOCS))}
    w, b, layer = _fit_heads(samples, docs, vocab, settings)
    x = _matrix(tests, vocab)
    return (x @ w[:, -1]) + b[-1] + Hidden.quantize(*layer).logits(x)[:, -1]


def _fold_calls(samples: Sequence[Sample], docs: Sequence[dict[str, str]], settings: SelectorSettings):
    """One `_fold_logits` call per fold, and each fold's message indices."""
    calls, tests = [], []
    for k in range(FOLDS):
        train = [i for i, s in enumerate(samples) if _fold(s) != k]
        test = [i for i, s in enumerate(samples) if _fold(s) == k]
        args = ([samples[i] for i in train], [docs[i] for i in train], [docs[i] for i in test], settings)
        calls.append((_fold_logits, args))
        tests.append(test)
    return calls, tests


def crisis_threshold(samples: Sequence[Sample], logits: np.ndarray) -> tuple[float, dict]:
    """The crisis head's threshold from its cross-validated `logits` on the training samples, and
    its figures."""
    positives = np.array([s.crisis for s in samples])
    hard = np.array([s.kind == "hard_negative" for s in samples])
    others = ~positives & ~hard
    cuts = [np.quantile(logits[hard], 1 - HARD_NEGATIVE_ALARMS)] if hard.any() else []
    cuts += [np.quantile(logits[others], 1 - OTHER_ALARMS)] if others.any() else []
    cut = float(max(cuts)) + THRESHOLD_MARGIN if cuts else 0.0
    figures = {
        "cv_folds": FOLDS,
        "cv_model_crisis_recall": float((logits[positives] >= cut).mean()) if positives.any() else None,
        "cv_hard_negative_alarms": float((logits[hard] >= cut).mean()) if hard.any() else None,
        "cv_other_alarms": float((logits[others] >= cut).mean()) if others.any() else None,
    }
    return 1.0 / (1.0 + math.exp(-cut)), figures


def _final_fit(samples: Sequence[Sample], docs: Sequence[dict[str, str]], settings: SelectorSettings):
    """The vocabulary's names and the heads fitted on every sample."""
    names = vocabulary(docs, MIN_DOCS)
    w, b, layer = _fit_heads(samples, docs, {n: j for j, n in enumerate(names)}, settings)
    return names, w, b, layer


def fit_model(
    samples: Sequence[Sample],
    settings: SelectorSettings,
    lexicon: Lexicon | None,
    *,
    threshold: bool = True,
    jobs: int = 1,
) -> tuple[dict, Linear, Hidden]:
    """`model.json`'s content, the linear part and the hidden layer fitted on `samples` (without
    `threshold`: crisis threshold 1.0); `jobs` processes fit the folds and the final model."""
    docs = [message_features(s.text, lexicon=lexicon) for s in samples]
    calls, tests = _fold_calls(samples, docs, settings) if threshold else ([], [])
    *folds, (names, w, b, layer) = _in_parallel([*calls, (_final_fit, (samples, docs, settings))], jobs)
    if threshold:
        logits = np.zeros(len(samples))
        for test, values in zip(tests, folds, strict=True):
            logits[test] = values
        cut, figures = crisis_threshold(samples, logits)
    else:
        cut, figures = 1.0, {}
    hidden = Hidden.quantize(*layer)
    common = vocabulary(
        (
            {n: "" for n in d if n.startswith("w:")}
            for d, s in zip(docs, samples, strict=True)
            if not s.crisis
        ),
        2,
    )
    weights = np.rint(w * SCALE).astype(np.int32)
    used = weights.any(axis=1) | hidden.embedding.any(axis=1)
    hidden = hidden.select(used)
    linear = Linear(tuple(n for n, keep in zip(names, used, strict=True) if keep), weights[used])
    data = {
        "format": FORMAT,
        "modes": list(MODE_NAMES),
        "scale": SCALE,
        "bias": [round(float(v) * SCALE) for v in b],
        "crisis_threshold": round(cut, 6),
        "linear": {
            "file": LINEAR_FILE,
            "features": len(linear.names),
            "sha256": hashlib.sha256(linear.to_bytes()).hexdigest(),
        },
        "hidden": {
            "file": HIDDEN_FILE,
            "units": HIDDEN_UNITS,
            "sha256": hashlib.sha256(hidden.to_bytes()).hexdigest(),
        },
        "common_words": [
            n[2:] for n in common if n[2:].isalpha()
        ],  # never typo-corrected by the crisis check
        "training": {
            "samples": len(samples),
            "features": len(linear.names),
            "min_docs": MIN_DOCS,
            "l2_mode": L2_MODE,
            "l2_crisis": L2_CRISIS,
            "nb_alpha": NB_ALPHA,
            "hard_negative_weight": HARD_NEGATIVE_WEIGHT,
            "threshold_margin": THRESHOLD_MARGIN,
            "hard_negative_alarm_budget": HARD_NEGATIVE_ALARMS,
            "other_alarm_budget": OTHER_ALARMS,
            "hidden_units": HIDDEN_UNITS,
            "hidden_epochs": HIDDEN_EPOCHS,
            "hidden_batch": HIDDEN_BATCH,
            "hidden_learning_rate": HIDDEN_LEARNING_RATE,
            "hidden_dropout": HIDDEN_DROPOUT,
            "hidden_weight_decay": HIDDEN_WEIGHT_DECAY,
            "hidden_seed": HIDDEN_SEED,
            **figures,
        },
    }
    return data, linear, hidden


def build_model(persona: Persona, *, jobs: int = 1) -> tuple[dict, Linear, Hidden]:
    """`model.json`'s content, the linear part and the hidden layer for `persona`, fitted on its
    training split by `jobs` processes."""
    from ara_persona.selector import SELECTOR_DIR, selector_file

    folder = Path(persona.directory) / SELECTOR_DIR
    samples = load_split(folder, "train")
    lexicon_path, crisis_path = (selector_file(persona.directory, n) for n in (LEXICON_FILE, CRISIS_FILE))
    lexicon = load_lexicon(lexicon_path) if lexicon_path else None
    lexicon = model_lexicon(lexicon, load_crisis(crisis_path) if crisis_path else None)
    data, linear, hidden = fit_model(samples, persona.selector, lexicon, jobs=jobs)
    files = sorted((folder / "train").glob("*.jsonl"))
    data["training"] = {
        "corpus": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        "lexicon": lexicon.digest if lexicon else None,
        **data["training"],
    }
    return data, linear, hidden


def fold_models(persona: Persona, *, jobs: int = 1) -> list[tuple[list[Sample], object]]:
    """For each of the 5 folds of the training split: (its samples, the selector data with a
    model fitted on the other folds, crisis head off) — an honest estimate on the training split
    alone, for tuning without the held-out files (`ara-sidecar personas eval --cv`)."""
    from ara_persona import selector

    samples = load_split(persona.directory / "selector", "train")
    data = selector.selector_data(persona)
    folds = [[s for s in samples if _fold(s) != k] for k in range(FOLDS)]
    calls = [(_fit_without_threshold, (train, persona.selector, data.lexicon)) for train in folds]
    fitted = _in_parallel(calls, jobs)
    out = []
    for k, (manifest, linear, hidden) in enumerate(fitted):
        model = LinearModel.from_parts(manifest, linear, hidden)
        bundle = selector.SelectorData(
            data.crisis, data.lexicon, model, model.common_words, data.acknowledgements
        )
        out.append(([s for s in samples if _fold(s) == k], bundle))
    return out


def _fit_without_threshold(samples: Sequence[Sample], settings: SelectorSettings, lexicon: Lexicon | None):
    return fit_model(samples, settings, lexicon, threshold=False)


def write_model(persona: Persona, *, jobs: int | None = None) -> Path:
    """Fit and write `selector/model.json` and its arrays beside it (by `jobs` processes, default
    `default_jobs()`); returns the first's path."""
    data, linear, hidden = build_model(persona, jobs=default_jobs() if jobs is None else jobs)
    path = Path(persona.directory) / "selector" / MODEL_FILE
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    files = (
        (path.with_name(LINEAR_FILE), linear.to_bytes()),
        (path.with_name(HIDDEN_FILE), hidden.to_bytes()),
        (path, (text + "\n").encode()),  # last: it names the others' digests
    )
    for target, content in files:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(target)
    return path
