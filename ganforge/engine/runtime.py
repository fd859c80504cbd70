"""Where a run executes: device, precision and (later) the distributed process group.

Every place that depends on *where* code runs asks the :class:`Runtime`; files are written only
through :class:`~ganforge.engine.rundir.RunDir`, which does nothing on ranks other than 0.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ganforge.errors import GanforgeError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for the forward passes, as the recipe's ``train.precision`` asks."""
        if self.precision == "fp32":
            yield
            return
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            yield


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanforgeError(f"train.device: '{name}' asked for, but this torch sees no CUDA device; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GanforgeError(f"train.device: '{name}' asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanforgeError(f"train.device: 'mps' asked for, but MPS is not available; use 'cpu' or 'auto'")
    return device


def make_runtime(device: str, precision: str) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise GanforgeError(
            f"WORLD_SIZE={world_size}: distributed training is not supported yet; run one process"
        )
    return Runtime(select_device(device), precision)
