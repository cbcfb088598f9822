"""PatternScan: many whole-word patterns searched as one alternation would, faster."""

from __future__ import annotations

import re

import pytest

from ara_persona.regexscan import PatternScan, first_chars


@pytest.mark.parametrize(
    ("pattern", "chars"),
    [
        ("want to die", {"w"}),
        ("(want|wanna|need) to die", {"w", "n"}),
        ("(s)?uicid\\w*", {"s", "u"}),  # an optional first letter: the next one too
        ("(?<!no )kms", {"k"}),  # look-arounds take no characters
        ("[a-c]x|dy", {"a", "b", "c", "d"}),
        ("(\\w+ ){0,3}suicide", None),  # may begin with any word
        ("x?", None),  # may match nothing
        (".{0,10}die", None),
        ("(?i)die", None),  # case-insensitive: not grouped
    ],
)
def test_first_chars(pattern, chars):
    got = first_chars(pattern)
    assert (set(got) if got is not None else None) == chars


def test_the_same_match_as_one_alternation():
    patterns = [
        "want to die",
        "(want|wanna) to (disappear|vanish)",
        "no point",
        "(\\w+ )?gone",
        "tired of it",
    ]
    one = re.compile(rf"(?<!\w)(?:{'|'.join(f'(?:{p})' for p in patterns)})(?!\w)")
    scan = PatternScan(patterns)
    assert scan.free is not None and set(scan.buckets) == {"w", "n", "t"}
    texts = [
        "i want to disappear",
        "i wanna to vanish",
        "not tired",  # 'tired' needs a whole word: 'not' is none of the patterns
        "so tired, no point",
        "everything is gone and no point",  # the loose pattern starts first
        "no point. want to die",
        "unwanted to die",  # not at a word start
        "",
    ]
    for text in texts:
        a, b = one.search(text), scan.search(text)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), text


def test_patterns_that_begin_with_a_symbol_are_grouped_too():
    patterns = ["(🪦|⚰\ufe0f?)\\s*me", "🔪\\W{0,4}🩸", "(re|again) 🔪", "want to die"]
    one = re.compile(rf"(?<!\w)(?:{'|'.join(f'(?:{p})' for p in patterns)})(?!\w)")
    scan = PatternScan(patterns)
    assert scan.free is None and {"🪦", "⚰", "🔪", "r", "a", "w"} == set(scan.buckets)
    texts = ["my grades 🪦", "🪦 me", "ok ⚰️ me", "x🪦 me", "🔪 🩸", "again 🔪", "🔪 again"]
    texts += ["i want to die 🪦 me", ""]
    for text in texts:
        a, b = one.search(text), scan.search(text)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), text
