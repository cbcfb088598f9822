"""The selector's data: the documented train/held-out split, the shipped model is the one its
training data gives, and `personas eval` / `personas train` work."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ara_persona import load_persona
from ara_persona.corpus import heldout_text, load_split
from ara_persona.features import fold
from ara_persona.model import MODE_NAMES

ARA = Path(__file__).resolve().parents[1] / "personas" / "ara"
SELECTOR = ARA / "selector"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", fold(text)).strip()


def test_split_never_overlaps():
    train, heldout = load_split(SELECTOR, "train"), load_split(SELECTOR, "heldout")
    first_files = {"modes_a.jsonl", "modes_b.jsonl", "crisis.jsonl"}
    first = [s for s in train if Path(s.where.rsplit(":", 1)[0]).name in first_files]
    assert first and all(not heldout_text(s.text) for s in first)  # the first corpus's documented rule
    assert len(heldout) >= 250  # v18
    train_texts = {_norm(s.text) for s in train} | {_norm(e.user) for e in load_persona(ARA).examples}
    assert not [s.text for s in heldout if _norm(s.text) in train_texts]
    for path in sorted((SELECTOR / "heldout").glob("*.jsonl")):
        assert path.read_text(encoding="utf-8").startswith("# HELD-OUT"), path


def test_corpus_size_languages_and_sets():
    samples = load_split(SELECTOR, "train") + load_split(SELECTOR, "heldout")
    for mode in MODE_NAMES:
        of_mode = [s for s in samples if s.mode == mode and s.kind == "mode"]
        assert len(of_mode) >= 60, mode
        assert len({s.lang for s in of_mode}) >= 5, mode
    assert {s.lang for s in samples if s.kind == "crisis"} >= {"en", "de", "es", "fr", "pt", "it"}
    assert sum(s.kind == "hard_negative" for s in samples) >= 100
    assert all(s.time.hour >= 23 or s.time.hour < 5 for s in samples if s.mode == "cathedral")


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ara_persona", "--personas-dir", str(ARA.parent), "personas", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_eval_cli_prints_the_figures_and_never_held_out_messages():
    done = _cli("eval", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["split"] == "heldout" and figures["samples"] > 250
    assert set(figures["per_mode"]) == set(MODE_NAMES)
    assert 0 <= figures["crisis_recall"] <= 1 and 0 <= figures["hard_negative_false_alarm_rate"] <= 1
    by_lang = figures["crisis_recall_by_lang"]
    assert set(by_lang) >= {"en", "de", "es", "fr", "pt", "it"}
    assert sum(v["n"] for v in by_lang.values()) == figures["crisis_n"]
    assert sum(round(v["recall"] * v["n"]) for v in by_lang.values()) == round(
        figures["crisis_recall"] * figures["crisis_n"]
    )
    assert figures["latency_ms"]["p99"] > 0
    text = _cli("eval", "--errors")
    assert text.returncode == 0 and "confusion" in text.stdout and "errors (" not in text.stdout
    assert re.search(r"by language: de [\d.]+% \(\d+/\d+\), en ", text.stdout)
    train = _cli("eval", "--split", "train", "--errors")
    assert train.returncode == 0 and "split train" in train.stdout
    assert _cli("eval", "nobody").returncode == 1


def test_train_cli_rebuilds_the_shipped_model(tmp_path):
    """`personas train` on a copy of Ara writes a working model that is the shipped one: the same
    corpus and lexicon, the same features, the same weights up to floating-point noise."""
    import shutil

    import numpy as np

    from ara_persona.classifier import load_model

    copy = tmp_path / "personas" / "ara"
    shutil.copytree(ARA, copy, ignore=shutil.ignore_patterns("model.*", "heldout"))
    cmd = [sys.executable, "-m", "ara_persona", "--personas-dir", str(copy.parent), "personas", "train"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads((copy / "selector" / "model.json").read_text(encoding="utf-8"))
    shipped = json.loads((SELECTOR / "model.json").read_text(encoding="utf-8"))
    assert rebuilt["training"]["corpus"] == shipped["training"]["corpus"], "run: ara-sidecar personas train"
    assert rebuilt["training"]["lexicon"] == shipped["training"]["lexicon"], "run: ara-sidecar personas train"
    new, old = load_model(copy / "selector" / "model.json"), load_model(SELECTOR / "model.json")
    assert new.vocab == old.vocab
    worst = float(np.abs(new.weights - old.weights).max()) * rebuilt["scale"]
    assert worst <= 5.01  # units of 1/1000 (SCALE): the same fit up to floating-point noise
    np.testing.assert_allclose(new.hidden.out, old.hidden.out, atol=1e-3)
    from ara_persona import select_mode

    assert select_mode(load_persona(copy), "segfault in my CUDA kernel again", now="12:00").mode == "lab"


def test_personas_check_reports_a_broken_crisis_pattern_with_its_line(tmp_path):
    import shutil

    copy = tmp_path / "ara"
    shutil.copytree(ARA, copy)
    path = copy / "selector" / "crisis.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    marked = (i for i, line in enumerate(lines, 1) if line.startswith("    - ") and "suicidal\\w*|" in line)
    number = next(marked)
    lines[number - 1] = lines[number - 1].replace("suicidal", "(suicidal", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "ara_persona", "personas", "check", str(copy)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"crisis.yaml:{number}: field 'patterns.en': expected a regular expression" in done.stdout


def test_training_without_own_lexicon_uses_the_files_selection_uses(tmp_path):
    """A persona with training data but no lexicon.yaml/crisis.yaml of its own trains on Ara's
    concepts, the ones selection falls back to, so its model's `lex:` features are ever used."""
    import shutil

    from ara_persona.training import build_model

    copy = tmp_path / "ara"
    shutil.copytree(ARA, copy, ignore=shutil.ignore_patterns("model.*", "heldout"))
    train = copy / "selector" / "train"
    for path in sorted(train.glob("*.jsonl"))[1:]:
        path.unlink()
    for name in ("lexicon.yaml", "crisis.yaml"):
        (copy / "selector" / name).unlink()
    from ara_persona.lexicon import load_crisis, load_lexicon, model_lexicon

    model, linear, _ = build_model(load_persona(copy))
    ara = model_lexicon(load_lexicon(SELECTOR / "lexicon.yaml"), load_crisis(SELECTOR / "crisis.yaml"))
    assert model["training"]["lexicon"] == ara.digest
    assert any(name.startswith("lex:cc_") for name in linear.names)


def test_concept_index_finds_exactly_what_every_regex_finds():
    """The lexicons' quick pre-check (ConceptIndex) never hides a hit: over the whole training
    split, the concepts found and the crisis combinations equal a search with every regex."""
    from ara_persona.features import clip
    from ara_persona.selector import selector_data

    data = selector_data(load_persona(ARA))
    lexicon, crisis = data.lexicon, data.crisis
    assert lexicon is not None and lexicon.index.words and lexicon.index.stems
    for sample in load_split(SELECTOR, "train"):
        folded = re.sub(r"\s+", " ", fold(clip(sample.text)))
        every = {n: m.group() for n, rx in lexicon.concepts.items() if (m := rx.search(folded))}
        assert lexicon.hits(folded) == every, sample.where
        maybe = crisis.index.candidates(folded)
        assert all(name in maybe for name, rx in crisis.concepts.items() if rx.search(folded)), sample.where


def test_crisis_scan_finds_what_the_one_alternation_finds():
    """crisis.yaml's patterns grouped by first character (PatternScan) give the very match of
    the single alternation they replace, over the whole training split."""
    from ara_persona.features import clip
    from ara_persona.selector import selector_data

    crisis = selector_data(load_persona(ARA)).crisis
    assert crisis.scan.free is None  # every pattern starts at known letters (or symbols: emoji)
    one = crisis.scan.alternation()
    for sample in load_split(SELECTOR, "train"):
        folded = re.sub(r"\s+", " ", fold(clip(sample.text, 2000))).strip()
        a, b = one.search(folded), crisis.search(folded)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), sample.where
