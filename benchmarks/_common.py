"""What the benchmark scripts share: waiting for the device, timing a call, naming the machine.

Every script runs as ``python benchmarks/NAME.py`` from the repository root; Python then puts
this folder on ``sys.path``, so the scripts import this module as ``_common``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def sync(device: str) -> None:
    """Wait for the work queued on ``device``: CUDA kernels run after the call that queued them."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], T], device: str = "cpu") -> tuple[float, T]:
    """Seconds ``fn()`` took, the device's queued work included, and what it returned."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def machine(device: str = "cpu") -> str:
    """The CPU's model, its cores, torch's threads and version, and the GPU on ``cuda``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = (
        f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    if device.startswith("cuda"):
        text += f", {torch.cuda.get_device_name()}"
    return text
