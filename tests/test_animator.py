"""The embedded animator on the shipped portrait, the astronaut photo and real Piper speech."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from conftest import with_silence

from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar, load_avatar
from ara_sidecar.errors import NoFaceError
from ara_sidecar.lipsync import REGISTRY, frame_count
from ara_sidecar.lipsync.animator import Animator
from ara_sidecar.lipsync.animator.face import Box
from ara_sidecar.lipsync.animator.features import mouth_controls

FPS = 25


def animator(settings, **animator_keys) -> Animator:
    overrides = {f"animator.{key}": value for key, value in animator_keys.items()}
    return Animator(settings.with_overrides(**overrides), "cpu")


@pytest.fixture(scope="module")
def scene(settings, avatar):
    return Animator(settings, "cpu").prepare(avatar)


def box_change(frames: list[np.ndarray], image: np.ndarray, box: Box) -> np.ndarray:
    """Mean absolute difference from `image` inside `box`, per frame (0–255 units)."""
    window = slice(box.y, box.y + box.h), slice(box.x, box.x + box.w)
    still = image[window].astype(np.int16)
    return np.array([np.abs(f[window].astype(np.int16) - still).mean() for f in frames])


def frame_rms(audio: Audio, n: int) -> np.ndarray:
    half = audio.sample_rate // (2 * FPS)
    centres = (np.arange(n) * audio.sample_rate) // FPS
    return np.array(
        [
            np.sqrt(
                np.mean(np.square(audio.samples[max(0, c - half) : c + half]))
                if c < len(audio.samples)
                else 0
            )
            for c in centres
        ]
    )


def test_registered_and_ready(settings):
    assert REGISTRY.load("animator") is Animator
    assert Animator.readiness(settings).ready
    assert Animator(settings, "cpu").fingerprint()["mouth_open_max"] == settings.animator.mouth_open_max


def test_frame_count_shape_and_dtype(settings, avatar, scene, speech):
    for fps in (FPS, 30):
        frames = list(Animator(settings, "cpu").animate(scene, speech, fps))
        assert len(frames) == frame_count(speech.duration_s, fps)
        assert all(f.shape == avatar.image.shape and f.dtype == np.uint8 for f in frames)
    assert len({id(f) for f in frames}) == len(frames)  # a fresh array per frame


def test_finds_face_eyes_and_mouth(settings, avatar, astronaut_png):
    astronaut = load_avatar(astronaut_png, max_pixels=settings.limits.max_avatar_pixels, max_side=1024)
    for portrait in (avatar, astronaut):
        layout = Animator(settings, "cpu").prepare(portrait).layout
        face, mouth = layout.face, layout.mouth_box
        assert face is not None
        assert face.x <= mouth.x and mouth.x + mouth.w <= face.x + face.w
        assert face.y + face.h / 2 <= mouth.y and mouth.y + mouth.h <= face.y + face.h * 1.1
        assert len(layout.eyes) == 2
        left, right = layout.eyes
        assert left.cx < face.cx < right.cx
        assert face.y < left.cy < face.cy and face.y < right.cy < face.cy
    # The shipped portrait smiles with its upper teeth showing; their lower edge is at y ≈ 296.
    layout = Animator(settings, "cpu").prepare(avatar).layout
    assert abs(layout.mouth_y - 296) <= 5
    assert layout.teeth_visible and layout.smile > 0


def test_mouth_follows_loudness_and_closes_in_silence(settings, avatar, speech):
    audio = with_silence(speech, 1.5, 1.0)
    still = animator(settings, sway_degrees=0, blink_interval_s=0)
    scene = still.prepare(avatar)
    frames = list(still.animate(scene, audio, FPS))
    change = box_change(frames, avatar.image, scene.layout.mouth_box)
    rms = frame_rms(audio, len(frames))
    assert change.max() > 10  # the mouth visibly opens
    assert np.corrcoef(change, rms)[0, 1] > 0.5
    gap = slice(round(1.6 * FPS), round(2.4 * FPS))
    assert change[gap].max() <= 1.0
    assert all(np.array_equal(f, avatar.image) for f in frames[gap])  # rest pose = the portrait


def test_pixels_far_from_the_face_never_change(settings, avatar, scene, speech):
    frames = list(animator(settings, blink_interval_s=1.0).animate(scene, speech, FPS))
    border = np.ones(avatar.image.shape[:2], bool)
    border[:-64, 48:-48] = False  # left and right bands, bottom band, all four corners
    assert all(np.array_equal(f[border], avatar.image[border]) for f in frames)
    # … while the sway does move the hair, far from mouth and eyes.
    face = scene.layout.face
    hair = Box(face.x, face.y - face.h // 3, face.w, face.h // 6)
    assert box_change(frames, avatar.image, hair).max() > 0.5


def test_idle_motion_off_and_silent_is_the_portrait(settings, avatar, scene):
    silent = Audio(np.zeros(22050 * 2, np.float32), 22050)
    frames = list(animator(settings, sway_degrees=0, blink_interval_s=0).animate(scene, silent, FPS))
    assert all(np.array_equal(f, avatar.image) for f in frames)


def test_blinks_now_and_then(settings, avatar, scene, speech):
    eyes = scene.layout.eyes
    blinking = list(animator(settings, sway_degrees=0, blink_interval_s=1.0).animate(scene, speech, FPS))
    changed = np.max([box_change(blinking, avatar.image, eye) for eye in eyes], axis=0) > 2
    assert 0 < changed.sum() < len(blinking) / 3
    still = list(animator(settings, sway_degrees=0, blink_interval_s=0).animate(scene, speech, FPS))
    assert all(box_change(still, avatar.image, eye).max() == 0 for eye in eyes)


def test_mouth_shapes_vary_with_the_vowels(settings, speech):
    n = frame_count(speech.duration_s, FPS)
    openness, shapes = mouth_controls(speech, FPS, n, settings.animator)
    assert openness.min() >= 0 and openness.max() <= 1 and openness.max() > 0.9
    assert len(set(shapes[openness > 0].tolist())) >= 2


def test_no_face(settings, speech):
    ramp = np.linspace(0, 255, 320, dtype=np.float32)
    image = np.repeat(np.add.outer(ramp[:240] / 2, ramp / 2).astype(np.uint8)[..., None], 3, axis=2)
    gradient = Avatar(image=image, digest="gradient", source="gradient.png")
    with pytest.raises(NoFaceError, match=r"gradient\.png.*--no-face-ok"):
        Animator(settings, "cpu").prepare(gradient)
    still = animator(settings, blink_interval_s=1.0)
    scene = still.prepare(gradient, no_face_ok=True)
    frames = list(still.animate(scene, speech, FPS))
    assert len(frames) == frame_count(speech.duration_s, FPS)
    mouth = scene.layout.mouth_box
    assert abs(mouth.x + mouth.w / 2 - 160) <= 2 and abs(mouth.y + mouth.h / 2 - 120) <= 10
    assert box_change(frames, image, mouth).max() > 10
    corners = np.ones(image.shape[:2], bool)
    corners[40:-40, 40:-40] = False
    assert all(np.array_equal(f[corners], image[corners]) for f in frames)


def test_prepared_pickles_and_output_is_deterministic(settings, avatar, scene, speech):
    clip = Audio(speech.samples[: 2 * speech.sample_rate], speech.sample_rate)
    lively = animator(settings, blink_interval_s=0.5)
    first = list(lively.animate(scene, clip, FPS))
    again = list(lively.animate(pickle.loads(pickle.dumps(scene)), clip, FPS))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    fresh = list(lively.animate(lively.prepare(avatar), clip, FPS))
    assert all(np.array_equal(a, b) for a, b in zip(first, fresh, strict=True))


def test_speed_report(settings, avatar, speech):
    """Prints prepare() and per-frame times; asserts nothing about them."""
    engine = Animator(settings, "cpu")
    start = time.perf_counter()
    scene = engine.prepare(avatar)
    prepared_s = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(1 for _ in engine.animate(scene, speech, FPS))
    per_frame_ms = (time.perf_counter() - start) / count * 1000
    print(
        f"animator: prepare {prepared_s * 1000:.0f} ms, animate {per_frame_ms:.2f} ms/frame ({count} frames)"
    )
    assert count == frame_count(speech.duration_s, FPS)


def test_looks_kept_across_utterances(settings, avatar, speech):
    """A second utterance on the same portrait reuses what the first rendered (mouths, lids,
    turned heads) and gives the same frames."""
    engine = animator(settings, blink_interval_s=0.5)
    scene = engine.prepare(avatar)
    first = list(engine.animate(scene, speech, FPS))
    looks = engine._looks
    kept = (len(looks.mouths), len(looks.eyes), len(looks.turned))
    assert all(kept)
    again = list(engine.animate(scene, speech, FPS))
    assert engine._looks is looks and (len(looks.mouths), len(looks.eyes), len(looks.turned)) == kept
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    region, patch = next(iter(looks.mouths.values()))  # cropped to what changes
    assert patch.shape[:2] == (region.y1 - region.y0, region.x1 - region.x0)
    whole = scene.mouth.region
    assert patch.size < (whole.x1 - whole.x0) * (whole.y1 - whole.y0) * 3
