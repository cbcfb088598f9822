"""Choosing the compute device in one place: `auto | cpu | cuda | mps`.

`auto` does not trust `torch.cuda.is_available()` alone: a card newer than the installed
PyTorch supports reports CUDA as available and then fails at the first kernel. So a tiny
kernel is run first; if it fails, the sidecar falls back to the CPU with a warning that
names the card and the PyTorch version. Without PyTorch installed the device is the CPU
(the embedded pipeline needs no torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from ara_sidecar.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu", "cuda" or "mps"
    detail: str  # human-readable: card name, torch version, or why the CPU was chosen
    warning: str | None = None


def _probe_cuda(torch) -> str:
    """Run a tiny kernel on the first CUDA device; return its name or raise."""
    name = torch.cuda.get_device_name(0)
    x = torch.arange(16, device="cuda", dtype=torch.float32)
    if float((x * 2).sum().item()) != 240.0:
        raise RuntimeError("wrong result from a test kernel")
    return name


def _probe_mps(torch) -> None:
    x = torch.arange(16, device="mps", dtype=torch.float32)
    if float((x * 2).sum().item()) != 240.0:
        raise RuntimeError("wrong result from a test kernel")


def choose_device(requested: str, torch=None) -> DeviceChoice:
    """Resolve the configured device. `torch` may be passed in (None = import it if installed)."""
    if requested not in ("auto", "cpu", "cuda", "mps"):
        raise UserError(f"unknown device {requested!r}; choose auto, cpu, cuda or mps")
    if requested == "cpu":
        return DeviceChoice("cpu", "CPU (requested)")
    if torch is None:
        try:
            import torch
        except ModuleNotFoundError:
            if requested != "auto":
                raise UserError(f"device {requested!r} needs PyTorch, which is not installed") from None
            return DeviceChoice("cpu", "CPU (PyTorch not installed; the embedded pipeline does not need it)")
    version = torch.__version__
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        card = "unknown card"
        try:
            card = torch.cuda.get_device_name(0)
            card = _probe_cuda(torch)
            return DeviceChoice("cuda", f"{card}, PyTorch {version}, CUDA {torch.version.cuda}")
        except Exception as exc:  # driver/arch mismatch surfaces as many exception types
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            message = (
                f"CUDA reports {card} as available, but a test kernel failed with PyTorch {version} "
                f"(CUDA {torch.version.cuda}): {reason}. "
                "The card may be newer than this PyTorch build supports; install a PyTorch build for it."
            )
            if requested == "cuda":
                raise UserError(message) from None
            return DeviceChoice(
                "cpu", f"CPU (CUDA failed its test on {card})", warning=message + " Using the CPU."
            )
    if requested == "cuda":
        raise UserError(f"device 'cuda' was requested but PyTorch {version} sees no usable CUDA device")
    mps = getattr(torch.backends, "mps", None)
    if requested in ("auto", "mps") and mps is not None and mps.is_available():
        try:
            _probe_mps(torch)
            return DeviceChoice("mps", f"Apple GPU (MPS), PyTorch {version}")
        except Exception as exc:
            message = f"MPS reports a GPU but a test kernel failed with PyTorch {version}: {exc}"
            if requested == "mps":
                raise UserError(message) from None
            return DeviceChoice("cpu", "CPU (MPS failed its test)", warning=message + " Using the CPU.")
    if requested == "mps":
        raise UserError(f"device 'mps' was requested but PyTorch {version} sees no Apple GPU")
    return DeviceChoice("cpu", f"CPU (no GPU found by PyTorch {version})")


@lru_cache(maxsize=4)
def resolve_device(requested: str) -> DeviceChoice:
    """`choose_device`, once per process per setting; logs the fallback warning once."""
    choice = choose_device(requested)
    if choice.warning:
        log.warning(choice.warning)
    return choice
