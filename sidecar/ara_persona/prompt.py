"""Prompt assembly: the persona text to inject into an LLM's context.

`build_prompt` returns one block — the manifesto, the active mode's guidance (with the
persona's `safety` text, in every mode) and a few examples of that mode from the dataset — that
fits a character budget and is wrapped in marker lines:

    <!-- ara-persona:begin ara/cockpit -->
    …
    <!-- ara-persona:end -->

`inject` puts a block into a context: an existing block is replaced in place (any extra
copies are removed), otherwise the block is prepended. Injecting every turn therefore
never stacks copies, and injecting the same block twice changes nothing.
"""

from __future__ import annotations

import re

from ara_persona.model import Example, Persona

MARKER_TAG = "<!-- ara-persona:"
BEGIN = MARKER_TAG + "begin {persona}/{mode} -->"
END = MARKER_TAG + "end -->"
_BLOCK = re.compile(re.escape(MARKER_TAG) + r"begin [^\n]*?-->.*?" + re.escape(END) + r"[ \t]*\n*", re.S)


def _example_text(example: Example, speaker: str) -> str:
    return f"User: {example.user}\n{speaker}: {example.reply}"


def build_prompt(
    persona: Persona, mode: str | None = None, *, max_chars: int | None = None, examples: int | None = None
) -> str:
    """The marked block for `mode` (None = the persona's default) within `max_chars` characters.

    The mode guidance (and the persona's safety text) is always included; then as many whole
    manifesto paragraphs as fit, in order; then, if the whole manifesto fit, up to `examples`
    dataset examples of the mode that fit. `max_chars` and `examples` default to the persona's
    `prompt:` settings. ValueError if even the guidance does not fit.
    """
    active = persona.mode(mode)
    budget = persona.prompt.max_chars if max_chars is None else max_chars
    wanted = persona.prompt.examples if examples is None else examples
    begin = BEGIN.format(persona=persona.name, mode=active.name)

    def render(sections: list[str]) -> str:
        return "\n".join([begin, "\n\n".join(sections), END])

    head = f"Current mode: {active.name} (personality intensity {active.intensity_pct} %)."
    if active.description:
        head += f" {active.description}"
    guidance = f"{head}\n{active.guidance}"
    if persona.safety:  # in every mode: the crisis check cannot catch every hint
        guidance += f"\n{persona.safety}"
    if len(render([guidance])) > budget:
        raise ValueError(
            f"prompt budget of {budget} characters is too small for the {active.name!r} guidance "
            f"(needs at least {len(render([guidance]))})"
        )
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", persona.manifesto) if p.strip()]
    manifesto: list[str] = []
    for paragraph in paragraphs:
        if len(render([*manifesto, paragraph, guidance])) > budget:
            break
        manifesto.append(paragraph)
    shown: list[str] = []
    intro = f"Examples of how {persona.display_name} speaks in this mode:"
    for example in persona.examples_for(active.name) if len(manifesto) == len(paragraphs) else ():
        if len(shown) >= wanted:
            break
        candidate = [*shown, _example_text(example, persona.display_name)]
        if len(render([*manifesto, guidance, intro, *candidate])) <= budget:
            shown = candidate
    return render([*manifesto, guidance, *([intro, *shown] if shown else [])])


def strip_prompt(context: str) -> str:
    """`context` without any persona block (and the blank lines that followed it)."""
    return _BLOCK.sub("", context)


def inject(context: str, block: str) -> str:
    """`context` holding exactly one persona block, `block`: replaced in place, or prepended."""
    match = _BLOCK.search(context)
    if match is None:
        return f"{block}\n\n{context}" if context.strip() else block
    rest = strip_prompt(context[match.end() :])
    return context[: match.start()] + block + (f"\n\n{rest}" if rest else "")
