"""Device selection proves a GPU with a kernel before trusting it."""

import types

import pytest

from ara_sidecar.device import choose_device
from ara_sidecar.errors import UserError


def test_cpu_requested():
    assert choose_device("cpu").device == "cpu"


def test_auto_with_real_torch_on_this_machine():
    torch = pytest.importorskip("torch")
    choice = choose_device("auto", torch)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choice.device in (expected, "cpu")
    assert torch.__version__ in choice.detail or choice.device == "cuda"


class _BrokenCuda:
    """A torch whose CUDA claims to be available but fails at the first kernel, as PyTorch
    does for a card newer than its build supports."""

    __version__ = "2.13.0+cu126"
    version = types.SimpleNamespace(cuda="12.6")
    float32 = "float32"
    backends = types.SimpleNamespace(mps=None)
    cuda = types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda i: "NVIDIA RTX 9090")

    @staticmethod
    def arange(*a, **k):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")


def test_auto_falls_back_when_kernel_fails():
    choice = choose_device("auto", _BrokenCuda)
    assert choice.device == "cpu"
    assert "NVIDIA RTX 9090" in choice.warning and "2.13.0+cu126" in choice.warning


def test_explicit_cuda_failure_is_a_user_error():
    with pytest.raises(UserError, match="RTX 9090"):
        choose_device("cuda", _BrokenCuda)


def test_unknown_device():
    with pytest.raises(UserError, match="auto, cpu, cuda or mps"):
        choose_device("tpu")
