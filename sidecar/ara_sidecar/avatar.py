"""Loading and checking avatar images (the still portrait a lip-sync backend animates)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ara_sidecar.errors import UserError


@dataclass(frozen=True)
class Avatar:
    """An RGB uint8 portrait (height and width even, as H.264 4:2:0 needs)."""

    image: np.ndarray
    digest: str  # SHA-256 of the source bytes: identifies the avatar in caches
    source: str  # file name or label, for messages


def decode_avatar(data: bytes, source: str, *, max_pixels: int, max_side: int) -> Avatar:
    """Decode image bytes with size checks before the pixels are decompressed."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise UserError(
                    f"avatar {source} is {width}×{height} pixels, over the limit of {max_pixels} "
                    "(limits.max_avatar_pixels)"
                )
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size when large
            rgb = _reduced_rgb(img, max_side)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UserError(f"avatar {source} is not a readable image ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise UserError(f"avatar {source} could not be decoded: {exc}") from None
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image = np.asarray(rgb, dtype=np.uint8)
    h, w = image.shape[:2]
    if h < 64 or w < 64:
        raise UserError(f"avatar {source} is only {w}×{h} pixels; at least 64×64 is needed")
    image = np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
    return Avatar(image=image, digest=hashlib.sha256(data).hexdigest(), source=source)


# Modes Image.reduce takes; others (palette, 1-bit, 16-bit grey) are converted to RGB first.
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"})


def _reduced_rgb(img, max_side: int):
    """The image in RGB, scaled down by a whole factor to at least `max_side` on its long side
    before it is converted: a large image costs one decoded copy (at most 4 bytes a pixel),
    not a second full-size RGB one as well (or three, with a 16-bit image's conversion)."""
    img.load()
    factor = max(img.size) // max_side
    if factor >= 2 and img.mode not in _REDUCIBLE:
        img = img.convert("RGB")
    if factor >= 2:
        img = img.reduce(factor)  # box average of factor × factor pixels: no aliasing
    return img if img.mode == "RGB" else img.convert("RGB")


def load_avatar(path: Path, *, max_pixels: int, max_side: int) -> Avatar:
    path = Path(path)
    if not path.exists():
        raise UserError(f"avatar not found: {path}")
    if not path.is_file():
        raise UserError(f"avatar is not a file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read avatar {path}: {exc.strerror}") from None
    return decode_avatar(data, str(path), max_pixels=max_pixels, max_side=max_side)
