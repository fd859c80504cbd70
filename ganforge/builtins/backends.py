"""Built-in backends: ``direct`` (torch's own layers) and ``auto`` (the fastest available one)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ganforge.backends import Backend
from ganforge.errors import GanforgeError
from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import NoParams


class Direct:
    """Torch's own layers, unchanged: runs everywhere."""

    name = "direct"
    priority = 0

    def available(self, device: torch.device, precision: str) -> bool | str:
        return True

    def prepare(self, net: nn.Module, device: torch.device, *, training: bool) -> str:
        return ""


class Auto:
    """Picks the highest-priority backend that is available for the device and precision (ties: by
    name); ``direct`` is always available."""

    def choose(
        self, backends: Sequence[Backend], device: torch.device, precision: str
    ) -> tuple[Backend, str]:
        passed = []
        for backend in sorted(backends, key=lambda b: (-b.priority, b.name)):
            verdict = backend.available(device, precision)
            if verdict is True:
                return backend, "; ".join(["auto", *passed])
            passed.append(f"{backend.name}: {verdict or 'not available'}")
        raise GanforgeError(f"backend auto: none of the registered backends runs on {device} in {precision}")


def build_direct(params: NoParams) -> Direct:
    """Torch's own layers, unchanged (every device and precision)."""
    return Direct()


def build_auto(params: NoParams) -> Auto:
    """The highest-priority registered backend available on the run's device and precision; else direct."""
    return Auto()


@hookimpl
def register_backends(register: Register) -> None:
    register("direct", build_direct)
    register("auto", build_auto)
