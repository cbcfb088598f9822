"""`ara-sidecar worker`: the command line (light: the worker's modules load when it runs)."""

from __future__ import annotations

import argparse
import os

from ara_sidecar.cluster import EXTRA_HINT
from ara_sidecar.config import settings
from ara_sidecar.errors import UserError


def cmd_worker(args: argparse.Namespace) -> int:
    device = args.device or "auto"
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if not index.isdigit():
            raise UserError(f"bad --device {device!r}: expected cuda:N")
        os.environ["CUDA_VISIBLE_DEVICES"] = index  # before PyTorch is imported: that card is cuda
        cfg = settings().with_overrides(device="cuda")
    elif device in ("auto", "cpu", "cuda", "mps"):
        cfg = settings().with_overrides(device=device)
    else:
        raise UserError(f"bad --device {device!r}: auto, cpu, cuda, cuda:N or mps")
    try:
        from ara_sidecar.cluster.worker import run_worker
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("dramatiq", "redis"):
            raise
        raise UserError(f"the cluster worker needs {exc.name}: {EXTRA_HINT}") from None

    return run_worker(cfg, device, args.name)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `worker` sub-command to the `ara-sidecar` parser."""
    p = sub.add_parser("worker", help="render for a cluster of API servers (needs cluster.url)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (one worker per card) or mps (default: auto)")
    p.add_argument("--name", help="this worker's name in GET /health/detailed (default: the host name)")
    p.set_defaults(func=cmd_worker)
