"""S3FD, the single-shot scale-invariant face detector (Zhang et al., 2017), as the face
detector Wav2Lip ships runs it; written from the published architecture.

Parameter names and shapes follow that detector's `s3fd.pth` (the same file as face_alignment's
`s3fd-619a316812.pth`, a bare state dict `conv1_1.weight` … `conv7_2_mbox_loc.bias`), so it
loads unchanged.

The network: VGG16's 13 convolutions (ReLU; a 2×2 max pool after each block) and its fully
connected layers as convolutions (`fc6` 3×3 with padding 3 but, as in the PyTorch port the
file was converted for, no dilation; `fc7` 1×1), then two stride-2 stages (`conv6`, `conv7`).
Six feature maps, strides 4 … 128, each feed a 3×3 class head and a 3×3 box head; the first
three are L2-normalised per pixel with learnt per-channel scales (initially 10, 8, 5).
conv3_3's class head has three background outputs reduced to their maximum ("max-out
background label"), against false positives among its many small anchors.

Detection, as Wav2Lip's pipeline runs it (`face_detection/api.py` get_detections_for_batch and
`sfd/detect.py` batch_detect): the RGB pixels minus (104, 117, 123) channel by channel — Wav2Lip
flips OpenCV's BGR frame to RGB before subtracting what is the BGR mean, and the published
checkpoints are used that way; one square anchor per cell, side 4 × the stride, centred on the
cell; box offsets decoded (in float32) with variances 0.1 (centre) and 0.2 (log size); candidates
above 0.05 face probability, non-maximum suppression at IoU 0.3, faces above 0.5; the box
clipped at 0 and its corners truncated to whole pixels (`int()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable, NoFaceError
from ara_sidecar.lipsync.animator.face import Box
from ara_sidecar.lipsync.wav2lip.face import stand_in_box
from ara_sidecar.weights import is_state_dict, read_checkpoint, shape_mismatches

FILE_NAMES = ("s3fd.pth", "s3fd-619a316812.pth")  # Wav2Lip's name, face_alignment's name
# subtracted from the R, G and B channels in that order (the BGR mean, as Wav2Lip applies it to RGB)
MEAN = (104.0, 117.0, 123.0)
STRIDES = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)  # of the centre offsets and of the log sizes
CANDIDATE_SCORE = 0.05
NMS_IOU = 0.3
FACE_SCORE = 0.5
DETECT_SIDE = 640  # detection runs on a copy scaled down to at most this many pixels a side

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convolutions)
# The detection sources, strides 4 … 128: (name, channels, L2Norm scale or None)
SOURCES = (
    ("conv3_3_norm", 256, 10.0),
    ("conv4_3_norm", 512, 8.0),
    ("conv5_3_norm", 512, 5.0),
    ("fc7", 1024, None),
    ("conv6_2", 512, None),
    ("conv7_2", 256, None),
)
BACKGROUND_OUTPUTS = 3  # of conv3_3's class head, max-out before the face output


class L2Norm(nn.Module):
    """Each pixel's feature vector scaled to unit length, then by a learnt per-channel weight."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.norm(dim=1, keepdim=True) + 1e-10) * self.weight.view(1, -1, 1, 1)


class S3fdNet(nn.Module):
    def __init__(self):
        super().__init__()
        cin = 3
        for block, (cout, count) in enumerate(VGG_BLOCKS, 1):
            for i in range(1, count + 1):
                setattr(self, f"conv{block}_{i}", nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.conv6_1 = nn.Conv2d(1024, 256, 1)
        self.conv6_2 = nn.Conv2d(256, 512, 3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(512, 128, 1)
        self.conv7_2 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        for name, channels, scale in SOURCES:
            if scale is not None:
                setattr(self, name, L2Norm(channels, scale))
            classes = BACKGROUND_OUTPUTS + 1 if name == "conv3_3_norm" else 2
            setattr(self, f"{name}_mbox_conf", nn.Conv2d(channels, classes, 3, padding=1))
            setattr(self, f"{name}_mbox_loc", nn.Conv2d(channels, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per source, strides 4 … 128: (background and face logits (B, 2, H, W), offsets (B, 4, H, W))."""
        features = []
        for block, (_, count) in enumerate(VGG_BLOCKS, 1):
            for i in range(1, count + 1):
                x = F.relu(getattr(self, f"conv{block}_{i}")(x))
            if block >= 3:
                features.append(x)
            x = F.max_pool2d(x, 2)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        features.append(x)
        x = F.relu(self.conv6_2(F.relu(self.conv6_1(x))))
        features.append(x)
        features.append(F.relu(self.conv7_2(F.relu(self.conv7_1(x)))))
        outputs = []
        for (name, _, scale), feature in zip(SOURCES, features, strict=True):
            if scale is not None:
                feature = getattr(self, name)(feature)
            logits = getattr(self, f"{name}_mbox_conf")(feature)
            if logits.shape[1] > 2:
                background = logits[:, :BACKGROUND_OUTPUTS].amax(dim=1, keepdim=True)
                logits = torch.cat([background, logits[:, BACKGROUND_OUTPUTS:]], dim=1)
            outputs.append((logits, getattr(self, f"{name}_mbox_loc")(feature)))
        return outputs


def anchors(stride: int, rows: int, cols: int) -> np.ndarray:
    """(rows·cols, 4) float32 anchors (cx, cy, w, h), row-major: squares of side 4·stride centred on
    the cells."""
    cy, cx = (np.indices((rows, cols), dtype=np.float32).reshape(2, -1) + np.float32(0.5)) * np.float32(
        stride
    )
    side = np.full_like(cx, 4 * stride)
    return np.stack([cx, cy, side, side], axis=1)


def decode(offsets: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """(N, 4) boxes (x1, y1, x2, y2) from offsets (dx, dy, dw, dh) relative to `priors` (cx, cy, w, h),
    in the offsets' precision (float32 from the network, as the reference decodes them in torch)."""
    centre = priors[:, :2] + offsets[:, :2] * np.float32(VARIANCES[0]) * priors[:, 2:]
    size = priors[:, 2:] * np.exp(offsets[:, 2:] * np.float32(VARIANCES[1]))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept, best first: each kept box drops the lower-scoring ones that
    overlap it by more than `iou` (intersection over union). Sizes count both edge pixels (+1),
    as in the reference, so that the same faces survive."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(boxes[:, 2:] - boxes[:, :2] + 1, axis=1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        lo = np.maximum(boxes[best, :2], boxes[rest, :2])
        hi = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo + 1, 0, None), axis=1)
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return np.array(keep, dtype=np.int64)


def find_faces(levels: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The faces from one image's face probabilities (H, W) and box offsets (4, H, W) per source,
    strides 4 … 128: boxes (N, 4) as x1, y1, x2, y2 in network input pixels, and scores, best first."""
    boxes, scores = [], []
    for stride, (probability, offsets) in zip(STRIDES, levels, strict=True):
        hit = probability.reshape(-1) > CANDIDATE_SCORE
        priors = anchors(stride, *probability.shape)[hit]
        boxes.append(decode(offsets.reshape(4, -1).T[hit], priors))
        scores.append(probability.reshape(-1)[hit])
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(all_boxes, all_scores, NMS_IOU)
    keep = keep[all_scores[keep] > FACE_SCORE]
    return all_boxes[keep], all_scores[keep]


def find_weights(settings: Settings) -> Path | None:
    folder = settings.path(settings.models_dir) / "wav2lip"
    return next((folder / name for name in FILE_NAMES if (folder / name).is_file()), None)


def missing_message(settings: Settings) -> str:
    folder = settings.path(settings.models_dir) / "wav2lip"
    return (
        f"no S3FD face detector weights (wav2lip.detector: s3fd): put Wav2Lip's {FILE_NAMES[0]} "
        f"(or face_alignment's {FILE_NAMES[1]}) at {folder}/ (see models/README.md), "
        "or set wav2lip.detector: haar"
    )


def load_net(path: Path) -> S3fdNet:
    """An `S3fdNet` in eval mode with the weights of `path` (on the CPU)."""
    state = read_checkpoint(path)
    if not is_state_dict(state):
        raise BackendUnavailable(f"{path} holds no S3FD state dict (expected a bare dict of tensors)")
    net = S3fdNet()
    problems = shape_mismatches(
        {k: v.shape for k, v in state.items()}, {k: v.shape for k, v in net.state_dict().items()}
    )
    if problems:
        raise BackendUnavailable(
            f"{path} is not an S3FD face detector checkpoint ({problems}); expected Wav2Lip's {FILE_NAMES[0]}"
        )
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


class S3fdDetector:
    """The FaceDetector over S3FD. An image whose longer side exceeds DETECT_SIDE is scaled down
    to it for detection (the cost grows with the pixel count, and a portrait's face stays far
    above the smallest anchors, 16 px); the boxes are mapped back to the image's pixels."""

    def __init__(self, path: Path, device: str):
        self.net = load_net(path).to(device)
        self.device = device

    @classmethod
    def from_settings(cls, settings: Settings, device: str) -> S3fdDetector:
        path = find_weights(settings)
        if path is None:
            raise BackendUnavailable(missing_message(settings))
        return cls(path, device)

    def faces(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Every face in RGB `image`, best first: its box in image pixels (clipped to the image,
        corners truncated as Wav2Lip does) and its score."""
        h, w = image.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        centred = small.astype(np.float32) - np.float32(MEAN)  # RGB order, as Wav2Lip feeds it
        batch = torch.from_numpy(centred.transpose(2, 0, 1).copy())[None].to(self.device)
        with torch.inference_mode():
            levels = [
                (F.softmax(logits, dim=1)[0, 1].cpu().numpy(), offsets[0].cpu().numpy())
                for logits, offsets in self.net(batch)
            ]
        boxes, scores = find_faces(levels)
        if small.shape[:2] != (h, w):
            sx, sy = w / small.shape[1], h / small.shape[0]
            boxes = boxes * (sx, sy, sx, sy)
        boxes = np.clip(boxes, 0, (w, h, w, h)).astype(int)  # truncated, as Wav2Lip's int()
        return [
            (Box(x1, y1, x2 - x1, y2 - y1), float(score))
            for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist(), strict=True)
            if x2 > x1 and y2 > y1
        ]

    def detect(self, image: np.ndarray, source: str, *, no_face_ok: bool) -> Box:
        """The highest-scoring face."""
        faces = self.faces(image)
        if faces:
            return faces[0][0]
        if no_face_ok:
            return stand_in_box(image)
        raise NoFaceError(
            f"no face found in avatar {source} (S3FD detector); use a front-facing portrait, or pass "
            "--no-face-ok to animate a mouth in the middle of the image anyway"
        )
