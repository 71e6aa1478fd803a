"""What a run ran on and what its search cost, for the record, without importing torch unless the
run already has (a table search must start in well under the seconds torch's import takes).

Search cost follows Lindauer & Hutter (2020, best practice 7): device-hours on a named device.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import math
import os
import platform
import socket
import sys
from typing import TYPE_CHECKING, Any

from nasrepro.errors import UsageError

if TYPE_CHECKING:
    import torch


def search_cost(wall_seconds: float, device: str | torch.device, n_devices: int = 1) -> dict[str, Any]:
    """Search cost as papers report it: device-hours = wall-clock hours x devices used (e.g. GPU-hours)."""
    if not (wall_seconds >= 0 and math.isfinite(wall_seconds)):
        raise UsageError(f"wall_seconds must be a finite number >= 0, got {wall_seconds}")
    if n_devices < 1:
        raise UsageError(f"n_devices must be >= 1, got {n_devices}")
    return {
        "wall_seconds": float(wall_seconds),
        "device": describe_device(device),
        "device_hours": wall_seconds / 3600 * n_devices,
        "n_devices": n_devices,
    }


def describe_device(device: str | torch.device) -> str:
    """A device named by its hardware: "cpu:<CPU model>" or "cuda:<GPU name>" (latency means little
    without it)."""
    if str(device) == "cpu" or str(device).startswith("cpu:"):
        return f"cpu:{cpu_model()}"  # answered without importing torch (table searches never load it)
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UsageError(f"unknown device {device!r} ({error}); use cpu, cuda or cuda:<index>") from None
    if dev.type == "cpu":
        return f"cpu:{cpu_model()}"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but torch.cuda.is_available() is False; use cpu")
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"{dev.type}:{platform.processor() or platform.machine()}"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the run ran on, for the record. No personal data: the hostname is replaced by a short
    one-way hash (`host_id`), enough to tell runs of one machine from another's.

    torch's own fields (threads, CUDA, cuDNN, GPUs) are read only when the process has loaded torch;
    a table search, which never does, records `torch_loaded: false`, the installed torch version
    and null for the rest, rather than paying torch's import (seconds) to describe hardware it
    never used.
    """
    host_id = hashlib.sha256(f"nasrepro:{socket.gethostname()}".encode()).hexdigest()[:12]
    return {
        "host_id": host_id,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_gib": _ram_gib(),
        **_torch_info(),
    }


def _torch_info() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            version = None
        keys = ("torch_threads", "cuda", "cudnn", "gpus")
        return {"torch_loaded": False, "torch": version, **dict.fromkeys(keys)}
    cuda = torch.cuda.is_available()
    return {
        "torch_loaded": True,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def _ram_gib() -> float | None:
    """Physical memory in GiB (POSIX `sysconf`); None where the platform does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (AttributeError, ValueError, OSError):
        return None


# --- helpers ------------------------------------------------------------------------------------------
