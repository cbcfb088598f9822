"""Cutting replies into speakable chunks (text.split_chunks) and normalising what is spoken."""

from __future__ import annotations

import pytest

from ara_sidecar.text import Chunk, ChunkLimits, normalize_text, split_chunks, split_sentences

LIMITS = ChunkLimits(first_max_chars=60, max_chars=240, min_chars=12)


def texts(text: str, limits: ChunkLimits = LIMITS) -> list[str]:
    return [c.text for c in split_chunks(normalize_text(text), limits)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith met Mr. Jones at St. Mary's. They talked.",
            ["Dr. Smith met Mr. Jones at St. Mary's.", "They talked."],
        ),
        (
            "Use e.g. a fork, i.e. the tool. Then eat it now.",
            ["Use for example a fork, that is the tool.", "Then eat it now."],
        ),
        ("J. R. R. Tolkien wrote it long ago. Read it.", ["J. R. R. Tolkien wrote it long ago.", "Read it."]),
        (
            "Pi is 3.14159 roughly. It costs $4.50 today, see?",
            ["Pi is 3.14159 roughly.", "It costs 4.50 dollars today, see?"],
        ),
        ("Version 2.0. is out now. Update it soon.", ["Version 2.0. is out now.", "Update it soon."]),
        (
            "Wait... what did you say? I see… Go on please.",
            ["Wait... what did you say?", "I see… Go on please."],
        ),
        ("So... That is it then. Fine by me.", ["So... That is it then.", "Fine by me."]),
        (
            '"Stop right there." she said calmly. "Why?" I asked her.',
            ['"Stop right there." she said calmly.', '"Why?" I asked her.'],
        ),
        (
            "He said “hello there.” Then he left the room.",
            ["He said “hello there.”", "Then he left the room."],
        ),
    ],
)
def test_sentence_boundaries(text, expected):
    assert texts(text) == expected


def test_code_blocks_are_not_spoken():
    reply = "Run this first:\n```python\nprint('x. y. z.')\nfor i in range(3): pass\n```\nThen it prints it."
    assert texts(reply) == ["Run this first: Then it prints it."]
    assert "print" not in normalize_text("Inline `code` stays as words, ```a fenced one does not```")


def test_list_items_are_sentences_of_their_own():
    reply = "Steps to follow:\n- open the lid\n- pour the water slowly\n2. wait for the tea to steep"
    assert texts(reply) == [
        "Steps to follow: open the lid.",
        "pour the water slowly.",
        "wait for the tea to steep.",
    ]


def test_headings_and_paragraphs_end_sentences():
    reply = "## Summary\nAll good here\n\nNext we talk about the plan"
    assert normalize_text(reply) == "Summary.\nAll good here.\nNext we talk about the plan."


def test_emoji_are_dropped():
    assert normalize_text("Great job 🎉🚀! You did it 👍🏽 ❤️ 👨‍👩‍👧") == "Great job ! You did it."
    assert texts("🎉🎉 Party time, everyone is here now! 😀") == ["Party time, everyone is here now!"]


def test_short_sentences_merge_into_the_next():
    assert texts("Okay. Sure. That sounds like a plan to me.") == [
        "Okay. Sure. That sounds like a plan to me."
    ]
    assert texts("A long enough opening sentence. Yes.") == ["A long enough opening sentence.", "Yes."]


def test_first_chunk_is_cut_at_a_clause():
    reply = (
        "Well, that is a really interesting question about the stars, and I have thought about it a lot. "
        "Here is my answer."
    )
    chunks = split_chunks(normalize_text(reply), LIMITS)
    assert chunks[0] == Chunk("Well, that is a really interesting question about the stars,", "clause")
    assert chunks[1] == Chunk("and I have thought about it a lot.", "sentence")
    assert all(len(c.text) <= LIMITS.max_chars for c in chunks)


def test_first_chunk_without_a_clause_is_cut_between_words():
    sentence = "This first sentence has no commas at all and runs on a little past the limit."
    chunks = split_chunks(sentence + " Second one here.", LIMITS)
    assert chunks[0] == Chunk("This first sentence has no commas at all and runs on a", "word")
    assert chunks[1:] == [Chunk("little past the limit.", "sentence"), Chunk("Second one here.", "sentence")]
    # no piece shorter than min_chars: the cut moves back
    tail = split_chunks("word " * 11 + "end.", ChunkLimits(first_max_chars=50, max_chars=240, min_chars=12))
    assert [c.text for c in tail] == ["word " * 8 + "word", "word word end."] and tail[0].end == "word"


def test_long_sentence_without_punctuation_is_cut_between_words():
    words = " ".join(f"word{i}" for i in range(200))
    chunks = split_chunks(words, LIMITS)
    assert all(len(c.text) <= LIMITS.max_chars for c in chunks)
    assert " ".join(c.text for c in chunks) == words
    assert [c.end for c in chunks] == ["word"] * (len(chunks) - 1) + ["sentence"]
    unbroken = "x" * 600
    assert "".join(c.text for c in split_chunks(unbroken, LIMITS)) == unbroken


def test_chunks_keep_every_word_in_order():
    reply = normalize_text(
        "Hello there! I checked the logs, the disk and the network; all fine. Dr. Who called at 3.30 pm… "
        "- item one\n- item two\nThat is all, really, nothing else to report today."
    )
    chunks = split_chunks(reply, LIMITS)
    assert " ".join(c.text for c in chunks).split() == reply.split()


def test_chunks_of_a_beginning_are_the_first_chunks_of_the_whole():
    """What speculative pre-rendering relies on: all but the last chunk of a prefix are final."""
    whole = normalize_text(
        "Good evening, it is nice to hear from you again after such a long time. The weather was odd. "
        "Yes. I tried the recipe you sent, and it was lovely. Thanks again for that."
    )
    full = split_chunks(whole, LIMITS)
    for end in range(10, len(whole), 7):
        prefix = split_chunks(whole[:end], LIMITS)[:-1]
        assert full[: len(prefix)] == prefix


def test_split_sentences_collapses_inner_whitespace():
    assert split_sentences("One  two.\nThree   four.") == ["One two.", "Three four."]


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        (
            "It costs 50% & takes 3/4 hour, e.g. C++ at 10:30, #1 on AT&T = win.",
            "It costs 50 percent and takes 3 quarters hour, for example C plus plus at 10:30, "
            "number 1 on AT and T equals win.",
        ),
        (
            "Pay $1,000.50 or £3, 1/2 of it; 12/25 stays.",
            "Pay 1,000.50 dollars or 3 pounds, one half of it; 12/25 stays.",
        ),
        (
            "3 x 4 and 1+1, +5 at 5°C, 90° i.e., a@b.",
            "3 times 4 and 1 plus 1, plus 5 at 5 degrees Celsius, 90 degrees that is, a at b.",
        ),
        ("Hex 0x1F and 3x4 stay; 2/3 is 2 thirds.", "Hex 0x1F and 3x4 stay; 2 thirds is 2 thirds."),
        (  # a bare web address is said as its host name, its punctuation kept
            "See https://x.org/a?b=1&c=2, or www.example.com/path. Docs: HTTP://localhost:7870/docs!",
            "See x.org, or example.com. Docs: localhost:7870!",
        ),
    ],
)
def test_symbols_are_said_as_words(text, spoken):
    assert normalize_text(text) == spoken


def test_symbol_runs_stay_linear():
    import time

    for run in (
        "%" * 20000,
        "1%" * 10000,
        "+" * 20000,
        "a+" * 10000,
        "&=" * 10000,
        "1/" * 10000,
        "$1," * 7000,
        "http://a" + "." * 20000,
        "www." * 5000,
    ):
        started = time.perf_counter()
        normalize_text(run)
        assert time.perf_counter() - started < 0.5, run[:8]


def test_chunks_sized_by_the_cost_per_request():
    from ara_sidecar.text import limits_for_cost

    assert limits_for_cost(LIMITS, 0.0) is LIMITS and limits_for_cost(LIMITS, 0.2) is LIMITS
    sized = limits_for_cost(LIMITS, 2.0)
    assert sized == ChunkLimits(first_max_chars=400, max_chars=400, min_chars=200)
    assert limits_for_cost(LIMITS, 1.1) == sized == limits_for_cost(LIMITS, 1.9)  # rounded up: stable keys
    assert limits_for_cost(LIMITS, 0.6) == ChunkLimits(240, 240, 100)
    assert limits_for_cost(LIMITS, 60.0) == ChunkLimits(1000, 1000, 500)
    reply = (
        "Hello from the real AllTalk server. This is a check of the chunking. "
        "It should go out in one request. Then a fourth sentence follows here. "
        "A fifth one adds to the length. And a sixth closes the reply for now."
    )
    assert len(texts(reply)) == 6
    three = texts(reply[: reply.index(" Then")], sized)
    assert three == [reply[: reply.index(" Then")]]
    assert texts(reply, sized) == [reply]  # six sentences, 208 characters: one request
    twelve = texts(f"{reply} {reply}", sized)
    assert len(twelve) == 2 and len(twelve[0]) >= 200 and " ".join(twelve) == f"{reply} {reply}"
