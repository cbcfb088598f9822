"""Finding and loading the official Wav2Lip generator checkpoints.

`wav2lip.pth` / `wav2lip_gan.pth` are `torch.save`d dicts whose `state_dict` holds the
generator's parameters with a `module.` prefix (saved from `nn.DataParallel`), beside the
optimizer state; a bare state dict, with or without the prefix, loads as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.weights import is_state_dict, read_checkpoint, shape_mismatches

if TYPE_CHECKING:
    import torch

    from ara_sidecar.lipsync.wav2lip.model import Wav2LipGenerator

FILE_NAMES = ("wav2lip_gan.pth", "wav2lip.pth")  # the GAN-trained one looks better: preferred


def default_paths(settings: Settings) -> list[Path]:
    folder = settings.path(settings.models_dir) / "wav2lip"
    return [folder / name for name in FILE_NAMES]


def find_checkpoint(settings: Settings) -> Path | None:
    """The configured checkpoint (wav2lip.checkpoint / ARA_WAV2LIP_CHECKPOINT / --wav2lip-checkpoint),
    else the first official file found under models/wav2lip/; None when there is none."""
    if settings.wav2lip.checkpoint is not None:
        path = settings.path(settings.wav2lip.checkpoint)
        return path if path.is_file() else None
    return next((p for p in default_paths(settings) if p.is_file()), None)


def missing_message(settings: Settings) -> str:
    """What to put where, for readiness and errors."""
    if settings.wav2lip.checkpoint is not None:
        return (
            f"Wav2Lip checkpoint not found: {settings.path(settings.wav2lip.checkpoint)} "
            "(wav2lip.checkpoint, ARA_WAV2LIP_CHECKPOINT or --wav2lip-checkpoint)"
        )
    first, second = default_paths(settings)
    return (
        f"no Wav2Lip checkpoint: put the official {first.name} (or {second.name}) at {first.parent}/ "
        "(see models/README.md), or give its path with --wav2lip-checkpoint"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The generator's parameters from `path`, without the `module.` prefix."""

    data = read_checkpoint(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not is_state_dict(data):
        raise BackendUnavailable(
            f"{path} holds no Wav2Lip state dict (expected a dict with a 'state_dict' entry of tensors)"
        )
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_generator(path: Path) -> Wav2LipGenerator:
    """A `Wav2LipGenerator` in eval mode with the weights of `path` (on the CPU)."""
    from ara_sidecar.lipsync.wav2lip.model import Wav2LipGenerator

    model = Wav2LipGenerator()
    state = load_state_dict(path)
    problems = shape_mismatches(
        {k: v.shape for k, v in state.items()}, {k: v.shape for k, v in model.state_dict().items()}
    )
    if problems:
        raise BackendUnavailable(
            f"{path} is not a Wav2Lip generator checkpoint ({problems}); "
            f"expected the official {' or '.join(FILE_NAMES)}"
        )
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)
