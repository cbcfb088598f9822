"""The `fast` engine's per-frame network on the CPU through ONNX Runtime.

Same fp32 function as the PyTorch path, faster on 2 cores (1.2× for the whole face, about
1.04× for the lower rows the paste-back uses; bench/wav2lip.py): ONNX Runtime fuses
each convolution with its bias-map, residual and ReLU additions and runs them in blocked
layouts, where PyTorch makes a pass over memory for each addition. `StillFaceDecoder` takes
the bias maps as inputs, so one graph per checkpoint serves every face: it is exported once
to `<cache dir>/wav2lip-onnx/<key>.onnx`, the key covering the checkpoint's digest, the first
row computed and the torch and onnx versions (the exporter's output may change with them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ara_sidecar.lipsync.wav2lip.model import StillFaceDecoder

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger(__name__)

# (channels, side) of the bias maps (`bias_maps`), the decoder heads' outputs, shallow last
MAP_SHAPES = ((512, 3), (512, 6), (384, 12), (256, 24), (128, 48), (64, 96), (32, 96))
INPUT_NAMES = ["mel"] + [f"bias_map_{i}" for i in range(len(MAP_SHAPES))]


def session(net: StillFaceDecoder, cache_dir: Path, checkpoint_digest: str) -> InferenceSession | None:
    """An ONNX Runtime session for `net` (fp32, any batch), exported on first use; None, with a
    warning, when onnx or onnxruntime is missing or the export fails (the caller uses torch)."""
    try:
        import onnx
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        log.warning("Wav2Lip: %s; using PyTorch on the CPU (pip install onnx onnxruntime)", e)
        return None
    versions = f"{torch.__version__}:{onnx.__version__}"
    key = hashlib.sha256(f"{checkpoint_digest}:{net.first_row}:{versions}".encode()).hexdigest()
    path = cache_dir / "wav2lip-onnx" / f"{key[:32]}.onnx"
    try:
        if not path.exists():
            _export(net, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # The sidecar's other stages share the cores: waiting threads sleep (no loss measured alone).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # any exporter or runtime failure leaves the torch path
        log.warning("Wav2Lip: ONNX Runtime path unavailable (%s); using PyTorch on the CPU", e)
        return None


def _export(net: StillFaceDecoder, path: Path) -> None:
    """Write the graph atomically: a concurrent sidecar never loads a partial file."""
    log.info("Wav2Lip: exporting the per-frame network to %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mel = torch.zeros(2, 1, 80, 16)
    maps = [torch.zeros(1, c, side, side) for c, side in MAP_SHAPES]
    fd, tmp = tempfile.mkstemp(suffix=".onnx.part", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
            torch.onnx.export(
                net.eval(),
                (mel, *maps),
                tmp,
                input_names=INPUT_NAMES,
                output_names=["face"],
                dynamic_axes={"mel": {0: "batch"}, "face": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # needs no onnxscript; torch is bounded below 2.14, where it still works
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
