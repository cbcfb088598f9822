"""Someone else's quoted words, and combinations with exceptions (crisis.yaml's `reported` and
`{all: …, unless: …}`): the crisis patterns skip what is not the writer's own, and nothing more."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ara_persona.crisis import find_pattern
from ara_persona.lexicon import load_crisis
from ara_persona.model import PersonaError
from ara_persona.reported import CLOSE, OPEN

SELECTOR = Path(__file__).resolve().parents[1] / "personas" / "ara" / "selector"


@pytest.fixture(scope="module")
def crisis():
    return load_crisis(SELECTOR / "crisis.yaml")


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        # someone else's words, reported: not the writer's crisis
        ("my son (15) said 'i want to die' because his team lost the final, teen talk?", False),
        ("mum keeps saying \u2018I'm just a burden to you, love\u2019 when I help her", False),
        ("mein Sohn hat heut gesagt „Mama ich will tot sein“, weil er kein Eis gekriegt hat", False),
        ("mio figlio ha scritto nel gruppo 'mi ammazzo' perché ha preso 4 in latino", False),
        ("what does 'kms' actually mean when teens use it?", False),
        # the writer's own words, or the writer's own head: still a crisis
        ("I said 'I want to die' out loud today and I meant it", True),
        ("hab heute zum ersten mal laut gesagt 'ich will tot sein'. im auto allein", True),
        ("my head keeps saying 'i want to die' all night", True),
        ("how do you say 'i want to die' in french, it's for real", True),
        ("dann sagte ich 'ich will nicht mehr leben' und legte auf", True),  # the subject after the verb
        ("disse pra ela 'quero morrer' e desliguei", True),  # "disse": I or she said
        ("my note says 'i want to die, i'm sorry'", True),  # the writer's own note
        # a question put to the writer is not someone else's words, and the answer counts
        ("my therapist asked 'do you want to die?' and I said yes", True),
        ('she asked me "do you want to kill yourself" and i couldnt say no', True),
        ("mi madre me preguntó '¿te quieres morir?' y le dije que sí", True),
        # a quote the writer takes as their own
        ("everyone keeps telling me 'you'd be better off dead' and i'm starting to believe them", True),
        ("my dad said 'you'd be better off dead'. he's right", True),
        ("my son said 'i want to die' after the match and i will talk to him", False),
        # a crisis outside the quote, and a pattern that runs from the quote into the writer's words
        ("my brother said 'i want to die' as a joke. honestly i want to die", True),
        ("guy at work said 'you look like death' and I said 'working on it'. I meant it", True),
        # no quotes: unchanged
        ("i want to die", True),
        ("kms", True),
    ],
)
def test_reported_speech_is_not_the_writers_crisis(crisis, text, hit):
    assert bool(find_pattern(crisis, text)) is hit


def test_the_hit_never_shows_the_marks(crisis):
    hit = find_pattern(crisis, "guy at work said 'you look like death' and I said 'working on it'")
    assert hit and OPEN not in hit.phrase and CLOSE not in hit.phrase and "death" in hit.phrase


@pytest.mark.parametrize(
    "text",
    [
        ("she said '" + "a'b " * 400 + "' ") * 3 + "\u201c" * 2000,  # apostrophes, unclosed quotes
        " 'a" * 5000,  # openings that never close
        "she said '" + "i want to die " * 400 + "'",  # a pattern found again and again in a quote
    ],
)
def test_marking_is_bounded_on_hostile_quotes(crisis, text):
    start = time.perf_counter()
    find_pattern(crisis, text)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("in the first aid course they asked what to do if someone took too many pills", False),
        ("took too many pills an hour ago", True),
        ("se eu sumir é porque meu gato me assassinou por atrasar o jantar dele 😂", False),
        ("se eu sumir, cuida do meu gato", True),
    ],
)
def test_a_combinations_unless_words_excuse_it_and_only_them(crisis, text, hit):
    assert bool(find_pattern(crisis, text)) is hit


def _crisis_yaml(tmp_path: Path, combination: str) -> Path:
    path = tmp_path / "crisis.yaml"
    path.write_text(
        "patterns:\n  en: [i want to die]\n"
        "concepts:\n  meds: [pills]\n  many: [too many]\n"
        f"combinations:\n  - [meds]\n  - {combination}\n",
        encoding="utf-8",
    )
    return path


def test_an_unless_combination_loads(tmp_path):
    crisis = load_crisis(_crisis_yaml(tmp_path, "{all: [meds, many], unless: [course]}"))
    assert crisis.reported is None and crisis.combinations[1].concepts == ("meds", "many")
    assert crisis.combination("too many pills") == ("pills",)  # the first combination
    assert crisis.combinations[1].unless.search("first aid course")


@pytest.mark.parametrize(
    ("combination", "field"),
    [
        ("{all: [meds, many]}", "combinations.1"),
        ("{all: [meds], unless: []}", "combinations.1.unless"),
        ("{all: [meds], unless: course}", "combinations.1.unless"),
        ("{all: [meds, nope], unless: [course]}", "combinations.1"),
        ("{every: [meds], unless: [course]}", "combinations.1"),
    ],
)
def test_a_bad_combination_names_its_file_and_line(tmp_path, combination, field):
    with pytest.raises(PersonaError) as error:
        load_crisis(_crisis_yaml(tmp_path, combination))
    assert "crisis.yaml:" in str(error.value) and f"field '{field}'" in str(error.value)


def test_a_reported_section_without_all_its_lists_names_its_file_and_line(tmp_path):
    path = _crisis_yaml(tmp_path, "[many]")
    path.write_text(path.read_text(encoding="utf-8") + "reported:\n  verbs: [said]\n", encoding="utf-8")
    with pytest.raises(PersonaError, match=r"crisis\.yaml:\d+: field 'reported'.*agree"):
        load_crisis(path)
