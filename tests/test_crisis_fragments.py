"""crisis.yaml's `fragments`: named pieces that patterns and mentions share as `<name>`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ara_persona.crisis import find_pattern
from ara_persona.lexicon import load_crisis
from ara_persona.model import PersonaError

SHIPPED = Path(__file__).resolve().parents[1] / "personas" / "ara" / "selector" / "crisis.yaml"


def _crisis_yaml(tmp_path: Path, fragments: str, pattern: str = "i want to die<not_joking>") -> Path:
    path = tmp_path / "crisis.yaml"
    path.write_text(
        f"fragments:\n{fragments}\n"
        f"patterns:\n  en:\n    - {pattern}\n    - goodbye forever<end>\n"
        "mentions:\n  - overdose<not_joking>\n",
        encoding="utf-8",
    )
    return path


def test_a_fragment_stands_for_its_piece_in_patterns_and_mentions(tmp_path):
    crisis = load_crisis(_crisis_yaml(tmp_path, "  not_joking: (?!\\W{0,3}(lol|jk)\\b)"))
    assert find_pattern(crisis, "i want to die").phrase == "i want to die"
    assert find_pattern(crisis, "i want to die lol") is None
    assert find_pattern(crisis, "an overdose, honestly").source == "mention"
    assert find_pattern(crisis, "overdose jk") is None
    assert find_pattern(crisis, "goodbye forever.") and not find_pattern(crisis, "goodbye forever monday")


@pytest.mark.parametrize(
    ("fragments", "pattern", "field"),
    [
        ("  not_joking: (?!lol", "i want to die<not_joking>", "fragments.not_joking"),
        ("  end: (?!lol)", "i want to die", "fragments.end"),
        ("  Not-Joking: (?!lol)", "i want to die", "fragments.Not-Joking"),
        ("  not_joking: [lol]", "i want to die", "fragments.not_joking"),
        ("  not_joking: (?!lol<end>)", "i want to die", "fragments.not_joking"),
        ("  not_joking: (?!lol)", "i want to die<not_kidding>", "patterns.en.0"),
    ],
)
def test_a_bad_fragment_names_its_file_and_line(tmp_path, fragments, pattern, field):
    with pytest.raises(PersonaError) as error:
        load_crisis(_crisis_yaml(tmp_path, fragments, pattern))
    assert "crisis.yaml:" in str(error.value) and f"field '{field}'" in str(error.value)


def test_every_shipped_fragment_is_used():
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    text = "\n".join(p for group in data["patterns"].values() for p in group) + "\n".join(data["mentions"])
    assert data["fragments"] and all(f"<{name}>" in text for name in data["fragments"])
