"""Mouth shapes beyond the opening, rendered from the portrait: lips pushed forward on rounded
vowels, the lower lip under the upper teeth on f and v (also on a portrait whose mouth is closed
and shows no teeth), and the smile."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_bench_module

from ara_sidecar.avatar import Avatar
from ara_sidecar.lipsync.animator import Animator
from ara_sidecar.lipsync.animator.scene import Looks
from ara_sidecar.lipsync.animator.visemes import VISEMES


@pytest.fixture(scope="module")
def bench():
    return load_bench_module("visemes")


def posed(scene, settings, name: str, pout: float | None = None, smile_px: float = 0.0) -> np.ndarray:
    """The whole frame with the mouth in viseme `name`'s pose."""
    v = VISEMES[name]
    drop = v.open * settings.animator.mouth_open_max * scene.layout.frame.h
    patch = Looks(scene).renderer.render(
        drop, v.width, v.close, v.tuck, v.pout if pout is None else pout, smile_px
    )
    frame = scene.image.copy()
    frame[scene.mouth.region.slices] = patch
    return frame


@pytest.fixture(scope="module")
def closed(settings, avatar) -> Avatar:
    """The shipped portrait with its lips pressed together: a closed mouth, no teeth showing."""
    scene = Animator(settings, "cpu").prepare(avatar)
    return Avatar(image=posed(scene, settings, "PP"), digest="closed", source="closed.png")


def test_the_closed_portrait_shows_no_teeth(settings, closed):
    layout = Animator(settings, "cpu").prepare(closed).layout
    assert not layout.teeth_visible and layout.lip_gap < 0.02 * layout.frame.h


@pytest.mark.parametrize("portrait", ["avatar", "closed"])
def test_rounded_lips_push_forward(request, settings, bench, portrait):
    image = request.getfixturevalue(portrait)
    scene = Animator(settings, "cpu").prepare(image)
    flat, pouted = (
        bench.lip_height(posed(scene, settings, "ou", p), image.image, scene.layout) for p in (0, 1)
    )
    spread = bench.lip_height(posed(scene, settings, "ih"), image.image, scene.layout)
    assert pouted > 1.2 * flat and pouted > 1.2 * spread


def teeth_pixels(frame: np.ndarray, layout) -> int:
    """Teeth-white pixels (bright, less saturated than skin or lips) in the middle of the mouth."""
    fh, hw = layout.frame.h, layout.mouth_half_width
    box = frame[
        round(layout.mouth_y - 0.08 * fh) : round(layout.mouth_y + 0.08 * fh),
        round(layout.mouth_x - 0.5 * hw) : round(layout.mouth_x + 0.5 * hw),
    ].astype(np.float32)
    value = box.max(axis=2)
    saturation = (value - box.min(axis=2)) / np.maximum(value, 1)
    return int(((value > 150) & (saturation < 0.105)).sum())


def test_f_and_v_show_the_upper_teeth_on_the_lower_lip(settings, avatar, closed):
    # A closed mouth: the upper lip lifts off the teeth, whose edge rests on the lower lip.
    scene = Animator(settings, "cpu").prepare(closed)
    rest, bite = (teeth_pixels(f, scene.layout) for f in (closed.image, posed(scene, settings, "FF")))
    assert rest < 20 and bite > 3 * rest + 40
    # Teeth showing already: the lower lip rises over the lower part of them.
    scene = Animator(settings, "cpu").prepare(avatar)
    rest, bite = (teeth_pixels(f, scene.layout) for f in (avatar.image, posed(scene, settings, "FF")))
    assert bite < 0.8 * rest


def test_smile_lifts_the_corners(settings, bench, avatar, closed):
    for image in (avatar, closed):
        scene = Animator(settings, "cpu").prepare(image)
        lift = 0.03 * scene.layout.frame.h
        warm = bench.smile_measure(posed(scene, settings, "sil", smile_px=lift), image.image, scene.layout)
        assert warm > 0.6 * lift
        assert abs(bench.smile_measure(posed(scene, settings, "sil"), image.image, scene.layout)) < 0.5
