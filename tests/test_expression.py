"""Expression by mode: head motion, blinks, nods and brow raises follow the mode's `face` and
the speech, measured on rendered frames (bench/visemes.py's measures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench_module

from ara_persona import FaceParams, PersonaError, load_persona
from ara_sidecar.audio import Audio
from ara_sidecar.lipsync.animator.expression import expression

FPS = 25


def test_calm_cathedral_lively_playful_on_the_frames():
    """Head-motion energy and blink rate: cathedral < cockpit < playful, as documented."""
    figures = load_bench_module("visemes").mode_motion(repeat=2)
    cathedral, cockpit, playful = (figures[m] for m in ("cathedral", "cockpit", "playful"))
    assert cathedral[0] < cockpit[0] < playful[0]
    assert cathedral[1] < cockpit[1] < playful[1]


def test_questions_raise_the_brows_and_statements_end_in_a_nod(settings):
    rate = 22050
    phonemes = (("^", 0.0, 0.1), ("ˈ", 0.1, 0.15), ("a", 0.15, 0.6), (".", 0.6, 0.8), ("$", 0.8, 0.9))
    phonemes += (("^", 1.4, 1.5), ("h", 1.5, 1.6), ("u", 1.6, 2.2), ("?", 2.2, 2.4), ("$", 2.4, 2.5))
    tone = (0.3 * np.sin(np.arange(3 * rate) * 2 * np.pi * 200 / rate)).astype(np.float32)
    audio = Audio(tone, rate, phonemes)
    n = 3 * FPS
    moves = expression(audio, FPS, n, FaceParams(), settings.animator, 200.0, np.random.default_rng(0))
    times = np.arange(n) / FPS
    assert moves.nod[(times > 0.4) & (times < 1.0)].max() > 1.5  # a nod after the statement
    assert moves.brow[(times > 1.7) & (times < 2.2)].min() > 3  # brows up over the question's end
    assert moves.brow[(times > 0.9) & (times < 1.3)].max() == 0
    still = expression(
        audio, FPS, n, FaceParams(brow=0, head_motion=0), settings.animator, 200.0, np.random.default_rng(0)
    )
    assert not still.brow.any() and not still.nod.any() and not still.sway.any()


def test_smile_by_mode_on_the_decoded_frames():
    """The mouth corners sit higher relative to the centre in the warmer modes, as documented
    (lab neutral, cockpit a little, comfort more, playful most), measured on decoded MP4 frames."""
    figures = load_bench_module("visemes").mode_smile(("lab", "cockpit", "comfort", "playful"))
    listening = [figures[m][1] for m in ("lab", "cockpit", "comfort", "playful")]
    speaking = [figures[m][0] for m in ("lab", "cockpit", "comfort", "playful")]
    assert abs(listening[0]) < 0.5  # smile 0: the portrait's own mouth
    assert listening == sorted(listening) and listening[-1] - listening[0] > 3
    assert speaking == sorted(speaking) and speaking[-1] - speaking[0] > 2


def test_smile_is_validated(tmp_path):
    ara = Path(__file__).resolve().parent.parent / "personas" / "ara"
    shutil.copytree(ara, tmp_path / "ara")
    modes = tmp_path / "ara" / "modes.yaml"
    text = modes.read_text(encoding="utf-8")
    assert load_persona(tmp_path / "ara").mode("playful").face.smile == 1.0
    modes.write_text(text.replace("brow: 1.6, smile: 1.0}", "brow: 1.6, smile: 4}"), encoding="utf-8")
    with pytest.raises(PersonaError, match=r"modes\.playful\.face\.smile.*from -0\.5 to 1\.5, got 4"):
        load_persona(tmp_path / "ara")
