"""Running the generator over mel windows for one face, on the configured device.

`fast`: the face's skip features are folded into `StillFaceDecoder` bias maps once per
face, so a frame costs only the audio encoder and the decoder, and only for the face rows
from `first_row` on (those the paste-back uses; the rows above come back as zeros): on the
CPU through ONNX Runtime with `onnx` (`onnx_engine`, the fastest exact path measured
there; the export kept in `cache`), else PyTorch channels-last fp32; fp16 on CUDA.
`reference`: the whole model per frame in fp32, face batch and all, as the reference
inference does.

On CUDA the batch size comes from the free memory; out of memory, it is halved and the
batch retried, and below one frame the engine moves to the CPU with a warning.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict

import numpy as np
import torch

from ara_sidecar.cache import CacheStore
from ara_sidecar.lipsync.wav2lip import onnx_engine
from ara_sidecar.lipsync.wav2lip.model import StillFaceDecoder, Wav2LipGenerator, bias_maps

log = logging.getLogger(__name__)

CPU_BATCH = 64
CUDA_FRAME_BYTES = 24 << 20  # generous activation memory per frame in a batch (fp16 decoder)
FACES_KEPT = 8


class Engine:
    def __init__(
        self,
        model: Wav2LipGenerator,
        device: str,
        kind: str,
        batch_size: int = 0,
        *,
        onnx: bool = False,
        cache: CacheStore | None = None,
        checkpoint_digest: str = "",
        first_row: int = 0,
    ):
        """`onnx` runs the CPU engine through ONNX Runtime, its export kept in `cache` under the
        checkpoint's digest."""
        self.model = model  # fp32 on the CPU: the master copy
        self.kind = kind
        self.requested_batch = batch_size
        self.onnx = onnx
        self.cache = cache
        self.checkpoint_digest = checkpoint_digest
        self.first_row = first_row
        self._faces: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        self._build(device)

    @property
    def precision(self) -> str:
        return "fp16" if self.dtype == torch.float16 else "fp32"

    def _build(self, device: str) -> None:
        self.device = device
        self.dtype = torch.float16 if device == "cuda" and self.kind == "fast" else torch.float32
        fast = self.kind == "fast"
        net = StillFaceDecoder(self.model, self.first_row) if fast else copy.deepcopy(self.model)
        cpu_fast = device == "cpu" and fast
        self.session = None
        if cpu_fast and self.onnx:
            self.session = onnx_engine.session(net, self.cache, self.checkpoint_digest)
        channels_last = cpu_fast and self.session is None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = net.eval().to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        self.net = net if self.session is None else None  # a session holds its own copy of the weights
        self.batch = self.requested_batch or self._auto_batch()
        self._faces.clear()

    def _auto_batch(self) -> int:
        if self.device != "cuda":
            return CPU_BATCH
        free, _ = torch.cuda.mem_get_info()
        return int(max(8, min(1024, free // 2 // CUDA_FRAME_BYTES)))

    def _face_inputs(self, key: str, face: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Per-face tensors on the device (memoized): bias maps, or the face batch input."""
        if key in self._faces:
            self._faces.move_to_end(key)
            return self._faces[key]
        tensor = torch.from_numpy(face)
        inputs = tuple(bias_maps(self.model, tensor)) if self.kind == "fast" else (tensor,)
        inputs = tuple(
            t.to(self.device, self.dtype).contiguous(memory_format=self.memory_format) for t in inputs
        )
        self._faces[key] = inputs
        if len(self._faces) > FACES_KEPT:
            self._faces.popitem(last=False)
        return inputs

    def run(self, key: str, face: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """(n, 96, 96, 3) float32 BGR faces in [0, 1] for mel windows (n, 80, 16) and the face
        input (1, 6, 96, 96) identified by `key`."""
        out = np.zeros((len(mels), 96, 96, 3), np.float32)
        i = 0
        while i < len(mels):
            try:
                inputs = self._face_inputs(key, face)
                n = len(mels[i : i + self.batch])
                faces = self._forward(inputs, mels[i : i + n])
                out[i : i + n, 96 - faces.shape[1] :] = faces
                i += n
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if self.batch > 1:
                    self.batch //= 2
                    log.warning("Wav2Lip: CUDA out of memory; retrying with batch size %d", self.batch)
                else:
                    log.warning("Wav2Lip: CUDA out of memory even for one frame; using the CPU")
                    self._build("cpu")
        return out

    @torch.inference_mode()
    def _forward(self, inputs: tuple[torch.Tensor, ...], mels: np.ndarray) -> np.ndarray:
        if self.session is not None:
            arrays = (mels[:, None].astype(np.float32, copy=False), *(t.numpy() for t in inputs))
            feeds = dict(zip(onnx_engine.INPUT_NAMES, arrays, strict=True))
            return self.session.run(None, feeds)[0].transpose(0, 2, 3, 1)
        mel = torch.from_numpy(mels[:, None]).to(self.device, self.dtype)
        mel = mel.contiguous(memory_format=self.memory_format)
        if self.kind == "fast":
            faces = self.net(mel, *inputs)
        else:
            faces = self.net(mel, inputs[0].expand(len(mel), -1, -1, -1).contiguous())
        return faces.float().permute(0, 2, 3, 1).cpu().numpy()
