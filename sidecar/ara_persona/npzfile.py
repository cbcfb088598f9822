"""The selector model's array files: `.npz` archives written byte for byte the same for the same
arrays, and read back only when their digest is the one `model.json` names."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from ara_persona.model import PersonaError


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive of `arrays` (in their order), with fixed dates: the same bytes each time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, values in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            array = io.BytesIO()
            np.lib.format.write_array(array, np.ascontiguousarray(values), allow_pickle=False)
            archive.writestr(info, array.getvalue())
    return buffer.getvalue()


def read_npz(path: Path, sha256: str, names: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The arrays `names` of the archive at `path`, whose SHA-256 must be `sha256`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PersonaError(f"{path}: cannot read the selector's {what} ({exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PersonaError(
            f"{path}: does not belong to the model.json beside it; rebuild both: ara-sidecar personas train"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in names}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PersonaError(f"{path}: not the selector's {what} ({exc})") from None
