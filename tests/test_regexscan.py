"""PatternScan: many whole-word patterns searched as one alternation would, faster."""

from __future__ import annotations

import re

import pytest

from ara_persona.regexscan import PatternScan, first_chars, prefixes


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
    assert scan.free is not None and set(scan.pairs) == {"wa", "no", "ti"} and not scan.buckets
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
    assert scan.free is None and {"🪦", "⚰", "🔪"} == set(scan.buckets)
    assert {"re", "ag", "wa"} == set(scan.pairs)
    texts = ["my grades 🪦", "🪦 me", "ok ⚰️ me", "x🪦 me", "🔪 🩸", "again 🔪", "🔪 again"]
    texts += ["i want to die 🪦 me", ""]
    for text in texts:
        a, b = one.search(text), scan.search(text)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), text


@pytest.mark.parametrize(
    ("pattern", "pairs"),
    [
        ("want to die", {"wa"}),
        ("(want|wanna|need) to die", {"wa", "ne"}),
        ("(s)?uicid\\w*", {"su", "ui"}),
        ("(?<!no )kms", {"km"}),
        ("[a-c]x|dy", {"ax", "bx", "cx", "dy"}),
        ("a{2,5}b", {"aa"}),
        ("(re|again) 🔪", {"re", "ag"}),
        ("a", None),  # a match of one character
        ("a?b", None),  # "b" alone
        ("(ab)*c", None),
        ("k\\w+", None),  # any word character second
        ("[a-z][a-z]x", None),  # 676 pairs: too many to list
    ],
)
def test_prefixes(pattern, pairs):
    got = prefixes(pattern)
    assert (set(got) if got is not None else None) == pairs


def test_two_character_groups_keep_the_alternations_order():
    """Patterns grouped by their first two characters, by their first only, or not at all, give
    the same leftmost match by the same first pattern as one alternation, on many texts."""
    import random

    patterns = ["ab c", "a?b", "abc", "(ab|b)c", "b", "a b", "(x|ab)+", "\\w+ c", "ba", "a{2}"]
    one = re.compile(rf"(?<!\w)(?:{'|'.join(f'(?:{p})' for p in patterns)})(?!\w)")
    scan = PatternScan(patterns)
    assert scan.pairs and scan.buckets and scan.free is not None
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice("abcx ") for _ in range(rng.randint(0, 12)))
        a, b = one.search(text), scan.search(text)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), text
        start = rng.randint(0, len(text))
        a, b = one.search(text, start), scan.search(text, start)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), (text, start)
