"""The `fast` engine's per-frame network on the CPU through ONNX Runtime.

Same fp32 function as the PyTorch path, faster on 2 cores (1.2× for the whole face, about
1.04× for the lower rows the paste-back uses; bench/wav2lip.py): ONNX Runtime fuses
each convolution with its bias-map, residual and ReLU additions and runs them in blocked
layouts, where PyTorch makes a pass over memory for each addition. `StillFaceDecoder` takes
the bias maps as inputs, so one graph per checkpoint serves every face: it is exported once
into the render cache (kind "wav2lip-onnx", so it counts towards `cache.max_mb` and goes with
`cache clear`), keyed by the checkpoint's digest, the first row computed and the torch and onnx
versions (the exporter's output may change with them); without a cache, into a temporary file
at each load.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ara_sidecar.cache import CacheUnwritable, cache_key
from ara_sidecar.lipsync.wav2lip.model import StillFaceDecoder

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

    from ara_sidecar.cache import CacheStore

log = logging.getLogger(__name__)

# (channels, side) of the bias maps (`bias_maps`), the decoder heads' outputs, shallow last
MAP_SHAPES = ((512, 3), (512, 6), (384, 12), (256, 24), (128, 48), (64, 96), (32, 96))
INPUT_NAMES = ["mel"] + [f"bias_map_{i}" for i in range(len(MAP_SHAPES))]


def session(
    net: StillFaceDecoder, cache: CacheStore | None, checkpoint_digest: str
) -> InferenceSession | None:
    """An ONNX Runtime session for `net` (fp32, any batch), exported on first use; None, with a
    warning, when onnx or onnxruntime is missing or the export fails (the caller uses torch)."""
    try:
        import onnx
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        log.warning("Wav2Lip: %s; using PyTorch on the CPU (pip install onnx onnxruntime)", e)
        return None

    def load(path: Path) -> InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # The sidecar's other stages share the cores: waiting threads sleep (no loss measured alone).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def export(path: Path) -> None:
        log.info("Wav2Lip: exporting the per-frame network for ONNX Runtime")
        _export(net, path)

    key = cache_key(
        {
            "kind": "wav2lip-onnx",
            "checkpoint": checkpoint_digest,
            "first_row": net.first_row,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
        }
    )
    try:
        if cache is not None:
            try:
                with cache.reading(key, export, suffix=".onnx", kind="wav2lip-onnx") as entry:
                    return load(entry.path)
            except CacheUnwritable as e:  # its disk full, its folder read-only: as without a cache
                log.warning("Wav2Lip: %s; exporting into a temporary file instead", e)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "wav2lip.onnx"
            export(path)
            return load(path)
    except Exception as e:  # any exporter or runtime failure leaves the torch path
        log.warning("Wav2Lip: ONNX Runtime path unavailable (%s); using PyTorch on the CPU", e)
        return None


def _export(net: StillFaceDecoder, path: Path) -> None:
    mel = torch.zeros(2, 1, 80, 16)
    maps = [torch.zeros(1, c, side, side) for c, side in MAP_SHAPES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
        torch.onnx.export(
            net.eval(),
            (mel, *maps),
            str(path),
            input_names=INPUT_NAMES,
            output_names=["face"],
            dynamic_axes={"mel": {0: "batch"}, "face": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # needs no onnxscript; torch is bounded below 2.14, where it still works
        )
