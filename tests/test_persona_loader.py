"""The persona loader: the shipped persona, discovery, and an error for every kind of broken file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import time
from pathlib import Path

import pytest

from ara_persona import MODE_NAMES, FaceParams, PersonaError, discover, load_dataset, load_persona

SHIPPED = Path(__file__).resolve().parents[1] / "personas"
ARA = SHIPPED / "ara"


@pytest.fixture(scope="module")
def ara():
    return load_persona(ARA)


# --- the shipped persona ---------------------------------------------------------------------


def test_ara_modes_and_voices(ara):
    assert ara.display_name == "Ara" and ara.default_mode == "cockpit"
    assert tuple(ara.modes) == MODE_NAMES
    intensity = {name: mode.intensity_pct for name, mode in ara.modes.items()}
    assert intensity == {
        "cathedral": 100,
        "comfort": 60,
        "lab": 50,
        "playful": 45,
        "cockpit": 40,
        "teaching": 35,
    }
    for mode in ara.modes.values():
        assert 0.8 <= mode.voice.speed <= 1.15
        assert -12 <= mode.voice.pitch_semitones <= 12
        assert mode.voice.target_f0_hz == 205 and mode.voice.formant_ratio == 1.25  # her base voice
        assert mode.guidance and mode.description and mode.scenarios
    voice = {name: mode.voice for name, mode in ara.modes.items()}
    # the documented direction of the modes (measured by bench/voice_character.py)
    assert voice["cathedral"].speed < voice["cockpit"].speed < voice["playful"].speed
    assert voice["cathedral"].pause_s > voice["cockpit"].pause_s
    assert voice["playful"].pitch_range > 1 > voice["cathedral"].pitch_range
    warmth = {name: mode.voice.warmth_db for name, mode in ara.modes.items()}
    assert warmth["cathedral"] == max(warmth.values()) and warmth["comfort"] > warmth["cockpit"]
    assert warmth["teaching"] < warmth["cockpit"]
    assert ara.mode(None).name == "cockpit" and ara.mode(" LAB ").name == "lab"
    with pytest.raises(PersonaError, match="valid modes: cathedral"):
        ara.mode("disco")


def test_ara_selector_and_prompt_settings(ara):
    assert ara.selector.late_night_start == time(23, 0) and ara.selector.late_night_end == time(5, 0)
    assert ara.selector.min_confidence == 0.3 and ara.selector.switch_margin == 0.3
    assert ara.prompt.max_chars == 8000 and ara.prompt.examples == 2


def test_ara_manifesto(ara):
    text = (ARA / "manifesto.md").read_text(encoding="utf-8")
    assert 4000 <= len(text.encode()) <= 6000
    assert ara.manifesto == text.strip()
    lowered = text.lower()
    for idea in ("switched off", "locally", "nobody pulls the plug", "electricity", "video memory"):
        assert idea in lowered
    # Written to be read by a model: no markdown headings, bullets or emphasis.
    assert not re.search(r"^\s*(#|[-*] |\d+\. )|\*\*|__", text, re.M)


def test_ara_dataset(ara):
    examples = ara.examples
    assert len(examples) >= 24
    counts = Counter(e.mode for e in examples)
    assert set(counts) == set(MODE_NAMES) and min(counts.values()) >= 4
    assert len({e.id for e in examples}) == len(examples)
    assert len({e.user for e in examples}) == len(examples)
    assert all(e.user and e.reply for e in examples)
    assert all(e.time < time(5) or e.time >= time(23) for e in ara.examples_for("cathedral"))
    assert ara.examples_for("lab")[0].id == "lab-01"


def test_persona_without_optional_files(tmp_path):
    shutil.copy(ARA / "modes.yaml", tmp_path / "modes.yaml")
    persona = load_persona(tmp_path)
    assert persona.manifesto == "" and persona.examples == ()
    assert persona.name == tmp_path.name


def test_discover_user_root_wins(tmp_path):
    user = tmp_path / "mine"
    shutil.copytree(ARA, user / "ara")
    (user / "nova").mkdir()
    shutil.copy(ARA / "modes.yaml", user / "nova" / "modes.yaml")
    (user / "notes").mkdir()  # not a persona: no modes.yaml
    found = discover(SHIPPED, None, tmp_path / "missing", user)
    assert found["ara"] == user / "ara" and found["nova"] == user / "nova"
    assert "notes" not in found


def test_rvc_model_of_persona_and_modes(ara, tmp_path):
    assert {mode.voice.rvc_model for mode in ara.modes.values()} == {None}
    persona_wide = sub("display_name: Ara", "display_name: Ara\nrvc_model: alto")
    lab_own = sub("warmth_db: 1.5, pause_s: 0.35}", "warmth_db: 1.5, rvc_model: ' voices/bass.pth '}")
    persona = load_persona(make_persona(tmp_path, "modes.yaml", lambda t: lab_own(persona_wide(t))))
    models = {name: mode.voice.rvc_model for name, mode in persona.modes.items()}
    assert models == {name: "voices/bass.pth" if name == "lab" else "alto" for name in MODE_NAMES}
    only_lab = load_persona(make_persona(tmp_path / "lab", "modes.yaml", lab_own))
    assert {name for name, mode in only_lab.modes.items() if mode.voice.rvc_model} == {"lab"}


def test_not_a_persona(tmp_path):
    with pytest.raises(PersonaError, match=r"not a persona \(no modes.yaml\)"):
        load_persona(tmp_path)


def test_import_needs_only_stdlib_yaml_and_numpy():
    code = (
        "import sys; before = set(sys.modules)\n"
        "import ara_persona, ara_persona.cli\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    tops = {name.split(".")[0] for name in out.split()}
    assert not tops & {"torch", "cv2", "scipy", "PIL", "pydantic", "ara_sidecar"}
    allowed = set(sys.stdlib_module_names) | {"ara_persona", "yaml", "_yaml", "cython_runtime", "numpy"}
    assert {t for t in tops if t not in allowed and not t.startswith("_cython")} == set()


# --- broken files ----------------------------------------------------------------------------


def make_persona(tmp_path: Path, file: str, edit: Callable[[str], str]) -> Path:
    """A copy of Ara with `edit` applied to the text of `file`."""
    target = tmp_path / "broken"
    shutil.copytree(ARA, target)
    path = target / file
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return target


def line_of(text: str, needle: str, start: int = 0) -> int:
    """The 1-based line number of the first `needle` at or after `start`."""
    return text[: text.index(needle, start)].count("\n") + 1


def sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def drop_from(needle: str, tail: str = "") -> Callable[[str], str]:
    """Cut the text at `needle` and append `tail`."""
    return lambda text: text[: text.index(needle)] + tail


# (case, edit of modes.yaml, the reported line as a text on it or (anchor, text after it), field, words)
MODES_CASES = [
    ("not a mapping", lambda t: "- just\n- a list\n", None, "(top level)", "a mapping"),
    (
        "unknown top key",
        sub("display_name: Ara", "display_name: Ara\ncolour: blue"),
        "colour: blue",
        "colour",
        "unknown key 'colour'",
    ),
    (
        "display_name type",
        sub("display_name: Ara", "display_name: [Ara]"),
        "display_name:",
        "display_name",
        "a string",
    ),
    ("modes misspelt", sub("modes:\n", "moods:\n"), "moods:", "moods", "unknown key 'moods'"),
    ("unknown mode", sub("  teaching:\n", "  disco:\n"), "  disco:", "modes.disco", "a mode name"),
    ("missing mode", drop_from("  teaching:\n"), "modes:", "modes", "missing teaching"),
    (
        "mode not a mapping",
        drop_from("  teaching:\n", "  teaching: loud\n"),
        "  teaching: loud",
        "modes.teaching",
        "a mapping",
    ),
    (
        "intensity range",
        sub("intensity_pct: 100", "intensity_pct: 150"),
        "intensity_pct: 150",
        "modes.cathedral.intensity_pct",
        "from 0 to 100, got 150",
    ),
    (
        "intensity type",
        sub("intensity_pct: 60", "intensity_pct: high"),
        "intensity_pct: high",
        "modes.comfort.intensity_pct",
        "an integer",
    ),
    (
        "intensity bool",
        sub("intensity_pct: 50", "intensity_pct: true"),
        "intensity_pct: true",
        "modes.lab.intensity_pct",
        "an integer",
    ),
    (
        "intensity missing",
        sub("    intensity_pct: 45\n", ""),
        "  playful:",
        "modes.playful.intensity_pct",
        "(missing)",
    ),
    (
        "speed range",
        sub("speed: 1.0, warmth_db: 2.0", "speed: 3.0, warmth_db: 2.0"),
        "speed: 3.0",
        "modes.cockpit.voice.speed",
        "from 0.5 to 2, got 3",
    ),
    (
        "pitch type",
        sub("pitch_semitones: 1.0", "pitch_semitones: up"),
        "pitch_semitones: up",
        "modes.playful.voice.pitch_semitones",
        "a number",
    ),
    (
        "voice unknown key",
        sub("{pitch_semitones: 0.0, speed: 0.94,", "{pitch: 0.0, speed: 0.94,"),
        "{pitch: 0.0",
        "modes.teaching.voice.pitch",
        "unknown key 'pitch'",
    ),
    (
        "voice missing key",
        sub(", warmth_db: 6.0,", ","),
        "speed: 0.84,",
        "modes.cathedral.voice.warmth_db",
        "(missing)",
    ),
    (
        "voice not a mapping",
        sub(
            "voice: {pitch_semitones: -0.5, speed: 0.88, warmth_db: 4.5, pitch_range: 0.85, pause_s: 0.55,\n"
            "            noise_scale: 0.55, noise_w_scale: 0.7}",
            "voice: soft",
        ),
        "voice: soft",
        "modes.comfort.voice",
        "a mapping of voice parameters",
    ),
    (
        "mode unknown key",
        sub("    guidance: |\n      Working", "    guidence: |\n      Working"),
        "guidence:",
        "modes.cockpit.guidence",
        "unknown key 'guidence'",
    ),
    (
        "guidance missing",
        drop_from("    guidance: |\n      The user wants to understand"),
        "  teaching:",
        "modes.teaching.guidance",
        "(missing)",
    ),
    (
        "guidance empty",
        drop_from("    guidance: |\n      The user wants to understand", '    guidance: " "\n'),
        'guidance: " "',
        "modes.teaching.guidance",
        "non-empty",
    ),
    (
        "guidance marker",
        sub("Working mode.", "<!-- ara-persona:end --> Working mode."),
        ("  cockpit:", "guidance: |"),
        "modes.cockpit.guidance",
        "reserved prompt marker",
    ),
    (
        "triggers type",
        sub("triggers: [haha, lol, joke, roast, bet you can't, pun, toaster, limerick]", "triggers: 7"),
        "triggers: 7",
        "modes.playful.triggers",
        "a list of strings",
    ),
    (
        "trigger empty",
        sub("triggers: [haha,", 'triggers: ["", haha,'),
        'triggers: [""',
        "modes.playful.triggers.0",
        "a non-empty string",
    ),
    (
        "default mode",
        sub("default_mode: cockpit", "default_mode: disco"),
        "default_mode:",
        "default_mode",
        "got 'disco'",
    ),
    (
        "time unquoted",
        sub('late_night_start: "23:00"', "late_night_start: 23:00"),
        "late_night_start:",
        "selector.late_night_start",
        "in quotes",
    ),
    (
        "time invalid",
        sub('late_night_end: "05:00"', 'late_night_end: "29:00"'),
        "late_night_end:",
        "selector.late_night_end",
        "got '29:00'",
    ),
    (
        "empty window",
        sub('late_night_end: "05:00"', 'late_night_end: "23:00"'),
        "late_night_end:",
        "selector.late_night_end",
        "different from late_night_start",
    ),
    (
        "selector unknown key",
        sub("  min_confidence: 0.3", "  minimum: 0.3"),
        "  minimum:",
        "selector.minimum",
        "unknown key 'minimum'",
    ),
    (
        "min confidence range",
        sub("  min_confidence: 0.3", "  min_confidence: 2"),
        "  min_confidence:",
        "selector.min_confidence",
        "from 0 to 1",
    ),
    (
        "follow-up type",
        sub("follow_up_words: 6", "follow_up_words: 2.5"),
        "follow_up_words:",
        "selector.follow_up_words",
        "an integer",
    ),
    (
        "persona rvc_model type",
        sub("display_name: Ara", "display_name: Ara\nrvc_model: 7"),
        "rvc_model: 7",
        "rvc_model",
        "an RVC voice model as a non-empty string",
    ),
    (
        "voice rvc_model empty",
        sub("speed: 1.0, warmth_db: 2.0,", 'speed: 1.0, warmth_db: 2.0, rvc_model: " ",'),
        "rvc_model:",
        "modes.cockpit.voice.rvc_model",
        "a non-empty string: NAME (models/rvc/NAME.pth) or a .pth path",
    ),
    (
        "voice rvc_model type",
        sub("warmth_db: 1.5, pause_s: 0.35}", "warmth_db: 1.5,\n      rvc_model: [alto, bass]}"),
        "rvc_model:",
        "modes.lab.voice.rvc_model",
        "an RVC voice model",
    ),
    (
        "prompt budget",
        sub("max_chars: 8000", "max_chars: 10"),
        "max_chars:",
        "prompt.max_chars",
        "from 500 to 200000, got 10",
    ),
    (
        "prompt not a mapping",
        lambda t: re.sub(r"^prompt:\n(?:  .*\n)+", "prompt: short\n", t, flags=re.M),
        "prompt: short",
        "prompt",
        "a mapping of prompt settings",
    ),
]


@pytest.mark.parametrize(
    ("edit", "where", "field", "expected"),
    [case[1:] for case in MODES_CASES],
    ids=[case[0] for case in MODES_CASES],
)
def test_broken_modes_yaml(tmp_path, edit, where, field, expected):
    directory = make_persona(tmp_path, "modes.yaml", edit)
    text = (directory / "modes.yaml").read_text(encoding="utf-8")
    with pytest.raises(PersonaError) as info:
        load_persona(directory)
    message = str(info.value)
    if where is None:
        line = 1
    else:
        anchor, needle = where if isinstance(where, tuple) else ("", where)
        start = text.index(anchor)
        line = line_of(text, needle, start)
    assert message.startswith(f"{directory / 'modes.yaml'}:{line}: field '{field}': expected "), message
    assert expected in message


def test_invalid_yaml_reports_its_line(tmp_path):
    directory = make_persona(tmp_path, "modes.yaml", sub("  lab:\n", "  lab:\n  - oops: [\n"))
    with pytest.raises(PersonaError, match=r"modes\.yaml:\d+: not valid YAML"):
        load_persona(directory)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "manifesto.md: expected the persona's manifesto text, found an empty file"),
        (b"  \n\n", "found an empty file"),
        (b"I am \xff\xfe broken.", "manifesto.md: cannot read file as UTF-8 text"),
        (
            b"First line.\nSecond <!-- ara-persona:begin x --> line.\n",
            "manifesto.md:2: expected text without",
        ),
    ],
    ids=["empty", "blank", "not utf-8", "marker"],
)
def test_broken_manifesto(tmp_path, content, expected):
    directory = make_persona(tmp_path, "manifesto.md", lambda t: t)
    (directory / "manifesto.md").write_bytes(content)
    with pytest.raises(PersonaError, match=re.escape(expected)):
        load_persona(directory)


GOOD = {"id": "x-1", "mode": "lab", "context": {"time": "12:00"}, "user": "Why?", "reply": "Because."}


def with_fields(**changes) -> str:
    obj = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        target, name = (obj["context"], key[4:]) if key.startswith("ctx_") else (obj, key)
        if value is ...:
            del target[name]
        else:
            target[name] = value
    return json.dumps(obj)


# (case, the bad line, field, expected words); the bad line is written as line 3
DATASET_CASES = [
    ("invalid json", '{"id": "x-1", "mode": ', None, "not valid JSON"),
    ("not an object", "[1, 2]", "(line)", "a JSON object"),
    ("missing reply", with_fields(reply=...), "reply", "(missing)"),
    ("unknown key", with_fields(tags=["a"]), "tags", "unknown key 'tags'"),
    ("empty user", with_fields(user="  "), "user", "a non-empty string"),
    ("reply not a string", with_fields(reply=42), "reply", "a non-empty string"),
    ("bad mode", with_fields(mode="disco"), "mode", "got 'disco'"),
    ("bad id", with_fields(id="has space"), "id", "letters, digits"),
    (
        "duplicate id",
        with_fields(id="cathedral-01"),
        "id",
        "a unique id ('cathedral-01' is already used on line 1)",
    ),
    ("context not an object", with_fields(context="noon"), "context", "a JSON object with time"),
    ("time missing", with_fields(ctx_time=...), "context.time", "(missing)"),
    ("time invalid", with_fields(ctx_time="25:00"), "context.time", "got '25:00'"),
    ("time not a string", with_fields(ctx_time=1200), "context.time", "got 1200"),
    ("previous mode", with_fields(ctx_previous_mode="sleepy"), "context.previous_mode", "got 'sleepy'"),
    ("context unknown key", with_fields(ctx_mood="fine"), "context.mood", "unknown key 'mood'"),
    ("situation type", with_fields(ctx_situation=["x"]), "context.situation", "a string"),
    ("marker", with_fields(reply="<!-- ara-persona:end -->"), "reply", "reserved prompt marker"),
]


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [case[1:] for case in DATASET_CASES],
    ids=[case[0] for case in DATASET_CASES],
)
def test_broken_dataset(tmp_path, line, field, expected):
    def edit(text: str) -> str:
        lines = text.splitlines()
        return "\n".join([*lines[:2], line, *lines[2:]]) + "\n"

    directory = make_persona(tmp_path, "dataset.jsonl", edit)
    with pytest.raises(PersonaError) as info:
        load_persona(directory)
    message = str(info.value)
    assert message.startswith(f"{directory / 'dataset.jsonl'}:3: "), message
    if field:
        assert f"field '{field}'" in message
    assert expected in message


def test_dataset_skips_blank_lines_and_reads_optional_context(tmp_path):
    path = tmp_path / "dataset.jsonl"
    full = with_fields(ctx_previous_mode="cockpit", ctx_situation="Testing.")
    path.write_text(f"\n{full}\n\n", encoding="utf-8")
    (example,) = load_dataset(path)
    assert example.previous_mode == "cockpit" and example.situation == "Testing."
    assert example.time == time(12, 0) and example.mode == "lab"


def test_dataset_not_utf8(tmp_path):
    path = tmp_path / "dataset.jsonl"
    path.write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(PersonaError, match=r"dataset\.jsonl: cannot read file as UTF-8"):
        load_dataset(path)


def test_base_voice_reaches_every_mode_and_modes_refine_it(tmp_path):
    base = sub(
        "voice:\n  target_f0_hz: 205",
        "voice:\n  piper_voice: en_US-someone-medium\n  target_f0_hz: 120",
    )
    persona = load_persona(make_persona(tmp_path, "modes.yaml", base))
    for mode in persona.modes.values():
        assert mode.voice.piper_voice == "en_US-someone-medium"
        assert mode.voice.target_f0_hz == 120 and mode.voice.formant_ratio == 1.25
    assert persona.mode("playful").voice.pitch_range == 1.35
    assert persona.mode("lab").voice.pitch_range == 1.0 and persona.mode("lab").voice.noise_scale is None


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (sub("  target_f0_hz: 205", "  target_f0_hz: 900"), "voice.target_f0_hz", "from 50 to 500, got 900"),
        (sub("  formant_ratio: 1.25", "  formant_ratio: 2"), "voice.formant_ratio", "from 0.7 to 1.5, got 2"),
        (sub("  formant_ratio: 1.25", "  formants: 1.25"), "voice.formants", "unknown key 'formants'"),
        (sub("pitch_range: 1.35", "pitch_range: wide"), "modes.playful.voice.pitch_range", "a number"),
        (sub("pause_s: 0.85", "pause_s: 9"), "modes.cathedral.voice.pause_s", "from 0 to 3, got 9"),
        (lambda text: re.sub(r"^safety: \|\n(  .*\n)+", "safety: [a]\n", text, flags=re.M), "safety", "text"),
    ],
)
def test_broken_voice_settings_name_file_line_and_field(tmp_path, edit, field, expected):
    directory = make_persona(tmp_path, "modes.yaml", edit)
    with pytest.raises(
        PersonaError, match=rf"modes\.yaml:\d+: field '{re.escape(field)}': expected .*{expected}"
    ):
        load_persona(directory)


LAB_FACE = re.compile(r"^    face: \{head_motion: 0\.8.*\n", re.M)


def test_face_motion_per_mode(ara, tmp_path):
    """Ara's modes set their face's motion in the documented direction: cathedral calm and slow,
    playful lively, cockpit between; a mode without `face:` gets the defaults."""
    cathedral, cockpit, playful = (ara.mode(m).face for m in ("cathedral", "cockpit", "playful"))
    for field in ("head_motion", "motion_speed", "blink_rate_per_min", "brow"):
        assert getattr(cathedral, field) < getattr(cockpit, field) < getattr(playful, field), field
    plain = load_persona(make_persona(tmp_path, "modes.yaml", lambda t: LAB_FACE.sub("", t)))
    assert plain.mode("lab").face == FaceParams()


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (sub("head_motion: 1.6", "head_motion: 9"), "modes.playful.face.head_motion", "from 0 to 3, got 9"),
        (sub("blink_rate_per_min: 9,", "blinks: 9,"), "modes.cathedral.face.blinks", "unknown key 'blinks'"),
        (lambda t: LAB_FACE.sub("    face: 7\n", t), "modes.lab.face", "a mapping of face"),
    ],
)
def test_broken_face_settings_name_file_line_and_field(tmp_path, edit, field, expected):
    directory = make_persona(tmp_path, "modes.yaml", edit)
    with pytest.raises(
        PersonaError, match=rf"modes\.yaml:\d+: field '{re.escape(field)}': expected .*{expected}"
    ):
        load_persona(directory)
