"""S3FD face detector for the Wav2Lip backend: checkpoint layout, anchor decoding, NMS, the
detector's post-processing, and its selection through `wav2lip.detector`.

The weights are random (no official s3fd.pth here) but the keys, shapes and file format are
the real ones; the post-processing is checked on hand-made network outputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_wav2lip import _random_model  # noqa: E402

from ara_sidecar.avatar import load_avatar  # noqa: E402
from ara_sidecar.errors import BackendUnavailable, NoFaceError, UserError  # noqa: E402
from ara_sidecar.lipsync.animator.face import Box  # noqa: E402
from ara_sidecar.lipsync.wav2lip import Wav2Lip  # noqa: E402
from ara_sidecar.lipsync.wav2lip.face import stand_in_box  # noqa: E402
from ara_sidecar.lipsync.wav2lip.s3fd import (  # noqa: E402
    STRIDES,
    S3fdDetector,
    S3fdNet,
    anchors,
    decode,
    find_weights,
    load_net,
    nms,
)

OFFICIAL_SHAPES = {
    "conv1_1.weight": (64, 3, 3, 3),
    "conv3_3.weight": (256, 256, 3, 3),
    "conv5_3.weight": (512, 512, 3, 3),
    "fc6.weight": (1024, 512, 3, 3),
    "fc7.weight": (1024, 1024, 1, 1),
    "conv6_1.weight": (256, 1024, 1, 1),
    "conv6_2.weight": (512, 256, 3, 3),
    "conv7_1.weight": (128, 512, 1, 1),
    "conv7_2.weight": (256, 128, 3, 3),
    "conv3_3_norm.weight": (256,),
    "conv4_3_norm.weight": (512,),
    "conv5_3_norm.weight": (512,),
    "conv3_3_norm_mbox_conf.weight": (4, 256, 3, 3),
    "conv3_3_norm_mbox_loc.weight": (4, 256, 3, 3),
    "conv4_3_norm_mbox_conf.weight": (2, 512, 3, 3),
    "fc7_mbox_conf.weight": (2, 1024, 3, 3),
    "fc7_mbox_loc.weight": (4, 1024, 3, 3),
    "conv7_2_mbox_loc.bias": (4,),
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder with random-weight s3fd.pth, saved as the official file: a bare state dict."""
    root = tmp_path_factory.mktemp("models")
    (root / "wav2lip").mkdir()
    torch.manual_seed(0)
    torch.save(S3fdNet().state_dict(), root / "wav2lip" / "s3fd.pth")
    return root


@pytest.fixture(scope="module")
def s3fd_settings(settings, models_dir):
    return settings.with_overrides(models_dir=str(models_dir), **{"wav2lip.detector": "s3fd"})


@pytest.fixture(scope="module")
def detector(s3fd_settings) -> S3fdDetector:
    return S3fdDetector.from_settings(s3fd_settings, "cpu")


class FakeNet:
    """Network outputs made by hand: every cell background, except the given face logits
    (stride, row, col, logit); zero box offsets, so each face is its anchor."""

    def __init__(self, faces: list[tuple[int, int, int, float]]):
        self.faces = faces
        self.inputs: list[torch.Tensor] = []

    def __call__(self, batch: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.inputs.append(batch)
        h, w = batch.shape[2:]
        outputs = []
        for stride in STRIDES:
            rows, cols = max(1, h // stride), max(1, w // stride)
            logits = torch.zeros(1, 2, rows, cols)
            logits[0, 0] = 10.0
            for face_stride, row, col, logit in self.faces:
                if face_stride == stride:
                    logits[0, :, row, col] = torch.tensor([0.0, logit])
            outputs.append((logits, torch.zeros(1, 4, rows, cols)))
        return outputs


# -- checkpoint ---------------------------------------------------------------------------


def test_network_has_the_official_keys_and_shapes_and_loads_them(models_dir):
    reference = S3fdNet().state_dict()
    assert len(reference) == 65 and sum(v.numel() for v in reference.values()) == 22_459_110
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(reference[key].shape) == shape, key
    assert [float(reference[f"conv{n}_norm.weight"][0]) for n in ("3_3", "4_3", "5_3")] == [10.0, 8.0, 5.0]
    saved = torch.load(models_dir / "wav2lip" / "s3fd.pth", weights_only=True)
    loaded = load_net(models_dir / "wav2lip" / "s3fd.pth").state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())


def test_network_outputs_two_class_logits_per_source_at_strides_4_to_128():
    net = S3fdNet().eval()
    with torch.no_grad():
        outputs = net(torch.randn(1, 3, 128, 192))
    assert [tuple(c.shape) for c, _ in outputs][:3] == [(1, 2, 32, 48), (1, 2, 16, 24), (1, 2, 8, 12)]
    assert [tuple(r.shape[1:2]) for _, r in outputs] == [(4,)] * 6


def test_face_alignment_file_name_is_accepted(settings, tmp_path, models_dir):
    (tmp_path / "wav2lip").mkdir()
    path = tmp_path / "wav2lip" / "s3fd-619a316812.pth"
    path.write_bytes((models_dir / "wav2lip" / "s3fd.pth").read_bytes())
    assert find_weights(settings.with_overrides(models_dir=str(tmp_path))) == path


def test_malformed_and_missing_weights_say_what_is_wrong(tmp_path, settings):
    wrong = tmp_path / "wav2lip_gan.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 5, 5)}, wrong)
    with pytest.raises(BackendUnavailable, match=r"wav2lip_gan\.pth is not an S3FD .*wrong shape: conv1_1"):
        load_net(wrong)
    garbage = tmp_path / "s3fd.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailable, match=r"s3fd\.pth is not a readable PyTorch checkpoint"):
        load_net(garbage)
    torch.save([torch.zeros(1)], garbage)
    with pytest.raises(BackendUnavailable, match=r"s3fd\.pth holds no S3FD state dict"):
        load_net(garbage)
    empty = settings.with_overrides(models_dir=str(tmp_path / "models"), **{"wav2lip.detector": "s3fd"})
    with pytest.raises(BackendUnavailable, match=r"s3fd\.pth.*" + str(tmp_path / "models" / "wav2lip")):
        S3fdDetector.from_settings(empty, "cpu")
    with pytest.raises(UserError, match=r"wav2lip\.detector"):
        settings.with_overrides(**{"wav2lip.detector": "mtcnn"})


# -- post-processing ----------------------------------------------------------------------


def test_anchor_offsets_decode_to_the_expected_boxes():
    priors = anchors(4, 2, 3)
    assert priors.shape == (6, 4)
    assert priors[5].tolist() == [10.0, 6.0, 16.0, 16.0]  # row 1, column 2: centre of its 4-px cell
    assert decode(np.zeros((1, 4)), priors[5:]).tolist() == [[2.0, -2.0, 18.0, 14.0]]
    # centre moves by offset · 0.1 · side; size scales by exp(offset · 0.2)
    moved = decode(np.array([[1.0, -1.0, math.log(2) / 0.2, 0.0]]), priors[5:])
    np.testing.assert_allclose(moved, [[11.6 - 16.0, 4.4 - 8.0, 11.6 + 16.0, 4.4 + 8.0]])
    assert anchors(128, 1, 1).tolist() == [[64.0, 64.0, 512.0, 512.0]]


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array(
        [
            [1, 1, 11, 11],  # IoU 0.70 with the best (sizes count both edge pixels): dropped
            [0, 0, 10, 10],  # the best
            [20, 20, 30, 30],  # apart: kept
            [0, 5, 10, 15],  # IoU 0.38 with the best: dropped
            [0, 6, 10, 16],  # IoU 0.29 with the best: kept
        ],
        dtype=float,
    )
    scores = np.array([0.8, 0.9, 0.6, 0.85, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [1, 4, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_detector_picks_the_best_face_and_maps_it_back_from_the_downscaled_copy(detector, monkeypatch):
    image = np.empty((960, 1280, 3), np.uint8)
    image[:] = (200, 100, 50)
    fake = FakeNet(
        [
            (16, 10, 20, 5.0),  # best: anchor (296, 136)–(360, 200) on the 640×480 copy
            (16, 10, 21, 2.0),  # 16 px to the right, IoU 0.6: suppressed
            (32, 0, 0, 1.0),  # weaker, in the corner: (−48, −48)–(80, 80), clipped
            (64, 5, 5, -5.0),  # face probability 0.007: not a candidate
        ]
    )
    monkeypatch.setattr(detector, "net", fake)
    faces = detector.faces(image)
    assert tuple(fake.inputs[0].shape) == (1, 3, 480, 640)
    # Wav2Lip flips its BGR frame to RGB, then subtracts (104, 117, 123): R − 104, G − 117, B − 123
    assert fake.inputs[0][0, :, 7, 9].tolist() == [200 - 104, 100 - 117, 50 - 123]
    assert [box for box, _ in faces] == [Box(592, 272, 128, 128), Box(0, 0, 160, 160)]
    assert faces[0][1] == pytest.approx(math.exp(5) / (1 + math.exp(5)))
    assert detector.detect(image, "big.png", no_face_ok=False) == Box(592, 272, 128, 128)


def test_input_is_rgb_minus_the_mean_and_boxes_are_truncated_as_wav2lips(detector, monkeypatch):
    """Wav2Lip (face_detection/api.py get_detections_for_batch, sfd/detect.py batch_detect): images[..., ::-1]
    turns its BGR frame into RGB, `imgs - np.array([104, 117, 123])` is subtracted channel by channel,
    boxes decode as centre = prior + loc · 0.1 · side, size = side · exp(loc · 0.2), and the best box
    is np.clip(d, 0, None) then int() of each corner."""
    rgb = np.zeros((400, 500, 3), np.uint8)  # at most 640 a side: detected at full size, as in Wav2Lip
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 120, 250
    fake = FakeNet([(16, 5, 7, 4.0)])
    loc = torch.tensor([0.1, -0.3, 0.05, 0.2])

    def with_offsets(batch):
        outputs = FakeNet.__call__(fake, batch)
        _, offsets = outputs[2]  # stride 16
        offsets[0, :, 5, 7] = loc
        return outputs

    monkeypatch.setattr(detector, "net", with_offsets)
    (box, _), *_ = detector.faces(rgb)
    bgr_frame = rgb[..., ::-1]  # what Wav2Lip reads with OpenCV
    expected_input = bgr_frame[..., ::-1].astype(np.float64) - np.array([104, 117, 123])
    np.testing.assert_array_equal(fake.inputs[0][0].numpy().transpose(1, 2, 0), expected_input)
    cx, cy, side = 7 * 16 + 8, 5 * 16 + 8, 64
    x, y = cx + 0.1 * 0.1 * side, cy - 0.3 * 0.1 * side
    w, h = side * math.exp(0.05 * 0.2), side * math.exp(0.2 * 0.2)
    corners = [int(max(0.0, v)) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2)]
    assert corners == [88, 52, 152, 119]  # truncated: rounding would give 88, 53, 153, 119
    assert (box.x, box.y, box.x + box.w, box.y + box.h) == tuple(corners)


def test_no_face_raises_naming_the_source_or_gives_the_stand_in(detector, monkeypatch):
    image = np.zeros((300, 200, 3), np.uint8)
    monkeypatch.setattr(detector, "net", FakeNet([(8, 3, 3, 0.0)]))  # probability 0.5: not above it
    with pytest.raises(NoFaceError, match=r"empty\.png"):
        detector.detect(image, "empty.png", no_face_ok=False)
    assert detector.detect(image, "empty.png", no_face_ok=True) == stand_in_box(image)


def test_random_weights_run_end_to_end_on_the_astronaut(detector):
    import skimage.data

    image = skimage.data.astronaut()
    try:
        box = detector.detect(image, "astronaut.png", no_face_ok=False)
    except NoFaceError as exc:
        assert "astronaut.png" in str(exc)
        assert detector.detect(image, "astronaut.png", no_face_ok=True) == stand_in_box(image)
    else:
        assert 0 <= box.x < box.x + box.w <= 512 and 0 <= box.y < box.y + box.h <= 512


# -- backend ------------------------------------------------------------------------------


def test_wav2lip_backend_selects_s3fd_through_the_settings(
    s3fd_settings, astronaut_png, tmp_path, monkeypatch
):
    checkpoint = tmp_path / "wav2lip_gan.pth"
    torch.save(_random_model().state_dict(), checkpoint)
    w2l_settings = s3fd_settings.with_overrides(**{"wav2lip.checkpoint": str(checkpoint)})
    readiness = Wav2Lip.readiness(w2l_settings)
    assert readiness.ready and "S3FD s3fd.pth" in readiness.detail
    readiness = Wav2Lip.readiness(w2l_settings.with_overrides(models_dir=str(tmp_path)))
    assert (
        not readiness.ready
        and "s3fd.pth" in readiness.detail
        and str(tmp_path / "wav2lip") in readiness.detail
    )

    backend = Wav2Lip(w2l_settings, "cpu")
    assert backend.fingerprint()["detector"] == "s3fd"
    monkeypatch.setattr(S3fdDetector, "faces", lambda self, image: [(Box(190, 60, 120, 140), 0.9)])
    avatar = load_avatar(astronaut_png, max_pixels=w2l_settings.limits.max_avatar_pixels, max_side=1024)
    assert backend.prepare(avatar).box == Box(190, 60, 120, 140)
    assert isinstance(backend.detector, S3fdDetector)
