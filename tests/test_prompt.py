"""Prompt assembly: content, the character budget, and idempotent injection over many turns."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ara_persona import MODE_NAMES, build_prompt, inject, load_persona, select_mode, strip_prompt
from ara_persona.prompt import END

ARA = Path(__file__).resolve().parents[1] / "personas" / "ara"
CONTEXT = "The following is a conversation between the user and Ara.\n\nUser: hi\nAra: Hello!"


@pytest.fixture(scope="module")
def ara():
    return load_persona(ARA)


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_block_contents(ara, mode):
    block = build_prompt(ara, mode)
    assert block.startswith(f"<!-- ara-persona:begin ara/{mode} -->\n") and block.endswith("\n" + END)
    assert len(block) <= ara.prompt.max_chars
    assert ara.manifesto in block  # the whole manifesto fits the default budget
    assert ara.modes[mode].guidance in block and f"Current mode: {mode}" in block
    shown = [e for e in ara.examples if e.reply in block]
    assert len(shown) == ara.prompt.examples and all(e.mode == mode for e in shown)
    assert shown == list(ara.examples_for(mode)[: ara.prompt.examples])
    assert block.index(ara.manifesto) < block.index("Current mode") < block.index(shown[0].reply)
    # the persona's safety text rides with every mode's guidance, even a tight budget's
    assert ara.safety and ara.safety in block
    assert ara.safety in build_prompt(ara, mode, max_chars=len(ara.modes[mode].guidance) + 900)


def test_no_safety_text_no_addition(ara):
    block = build_prompt(dataclasses.replace(ara, safety=""), "playful")
    assert "Whatever the mode" not in block and ara.modes["playful"].guidance in block


def test_default_mode_and_examples_argument(ara):
    assert build_prompt(ara) == build_prompt(ara, "cockpit")
    none = build_prompt(ara, "lab", examples=0)
    assert "Examples of how Ara speaks" not in none and not any(e.reply in none for e in ara.examples)
    many = build_prompt(ara, "lab", examples=50, max_chars=100_000)
    assert all(e.reply in many for e in ara.examples_for("lab"))


@pytest.mark.parametrize("budget", [1200, 1500, 2500, 4000, 5000, 6000, 8000, 20000])
@pytest.mark.parametrize("mode", ["cathedral", "lab"])
def test_budget(ara, budget, mode):
    """The guidance always; then whole manifesto paragraphs from the start; then whole examples
    if the whole manifesto fit."""
    block = build_prompt(ara, mode, max_chars=budget, examples=3)
    assert len(block) <= budget
    assert ara.modes[mode].guidance in block
    kept = [p for p in paragraphs(ara.manifesto) if p in block]
    assert kept == paragraphs(ara.manifesto)[: len(kept)]
    examples = [e for e in ara.examples_for(mode) if e.user in block]
    assert all(e.reply in block for e in examples) and len(examples) <= 3
    if examples:
        assert len(kept) == len(paragraphs(ara.manifesto))
    if budget >= 20000:
        assert len(examples) == 3


def test_budget_uses_persona_settings(ara):
    small = dataclasses.replace(ara, prompt=dataclasses.replace(ara.prompt, max_chars=1500, examples=1))
    block = build_prompt(small, "teaching")
    assert len(block) <= 1500 and block == build_prompt(ara, "teaching", max_chars=1500, examples=1)


def test_budget_too_small(ara):
    with pytest.raises(ValueError, match=r"budget of 100 characters is too small for the 'comfort' guidance"):
        build_prompt(ara, "comfort", max_chars=100)


def test_inject_prepends_then_replaces(ara):
    lab, playful = build_prompt(ara, "lab"), build_prompt(ara, "playful")
    once = inject(CONTEXT, lab)
    assert once == f"{lab}\n\n{CONTEXT}"
    assert inject(once, lab) == once
    switched = inject(once, playful)
    assert switched == f"{playful}\n\n{CONTEXT}"
    assert strip_prompt(switched) == CONTEXT
    assert inject("", lab) == lab and inject("  \n", lab) == lab


def test_inject_replaces_in_place_and_removes_copies(ara):
    old, new = build_prompt(ara, "lab"), build_prompt(ara, "comfort")
    context = f"Header line.\n\n{old}\n\nMiddle.\n{old}\nTail."
    result = inject(context, new)
    assert result == f"Header line.\n\n{new}\n\nMiddle.\nTail."
    assert result.count("ara-persona:begin") == 1 and inject(result, new) == result
    assert strip_prompt(result) == "Header line.\n\nMiddle.\nTail."
    assert strip_prompt(CONTEXT) == CONTEXT


def test_injection_over_many_turns_is_idempotent(ara):
    """Inject on every turn of a long conversation: never more than one block, nothing else lost."""
    messages = [e.user for e in ara.examples] * 3
    context = CONTEXT
    previous = None
    for turn, message in enumerate(messages):
        hour = (turn * 7) % 24
        choice = select_mode(ara, message, now=f"{hour:02d}:15", previous=previous)
        block = build_prompt(ara, choice.mode, max_chars=3000)
        context = inject(context, block)
        assert context.count("<!-- ara-persona:begin") == 1 and context.count(END) == 1
        assert context == f"{block}\n\n{CONTEXT}"
        assert inject(context, block) == context
        assert len(block) <= 3000
        previous = choice.mode
    assert strip_prompt(context) == CONTEXT


def test_deterministic(ara):
    assert {build_prompt(ara, "cathedral", max_chars=3000) for _ in range(5)} == {
        build_prompt(ara, "cathedral", max_chars=3000)
    }
