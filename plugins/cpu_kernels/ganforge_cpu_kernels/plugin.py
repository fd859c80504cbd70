"""The ``cpu_kernels`` backend: registered through the entry point ``cpu_kernels`` in group ``ganforge``."""

from __future__ import annotations

import os
import shutil
import sys

import torch
from pydantic import Field
from torch import nn

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params
from ganforge_cpu_kernels import use_cpu_algorithms, winograd

#: ``auto`` prefers this backend to torch's own layers (``direct``, priority 0) wherever it runs.
PRIORITY = 100


class CpuKernelsParams(Params):
    winograd: bool = Field(
        True,
        description="3x3 stride-1 convolutions by Winograd F(4x4, 3x3) (a quarter of the multiplications) "
        "and 4x4 ones by F(3x3, 4x4) where a call has 50+ tiles; equal up to fp32 rounding (relative error "
        "~1e-5). A ReflectionPad2d(1) right before such a 3x3 layer is made by its input transform.",
    )
    winograd_min_channels: int = Field(
        128,
        ge=1,
        description="Layers with fewer channels on either side stay direct (there Winograd does not pay).",
    )
    narrow: bool = Field(
        True,
        description="Stride-1 convolutions between at most 4 channels and 32+ (an image generator's first "
        "and last layers) by compiled loops that block over pixels.",
    )
    norm: bool = Field(
        True,
        description="Instance norms without affine parameters, and a ReLU or leaky ReLU right after one, by "
        "compiled loops.",
    )
    strided: bool = Field(
        True,
        description="Filter gradients of 3x3 and 4x4 stride-2 convolutions (32+ channels) by matrix products "
        "over the input's phases.",
    )
    upsampling: bool = Field(
        True,
        description="Transposed convolutions: from channels_last input when no gradient is recorded, and "
        "(3x3, stride 2) with filter gradients by phase products while they train.",
    )


def compiler() -> str | None:
    """The C++ compiler torch's extension builder would call (``$CXX``, else ``c++``; ``cl`` on Windows),
    if it is on the PATH."""
    name = os.environ.get("CXX") or ("cl" if sys.platform == "win32" else "c++")
    return shutil.which(name)


class CpuKernels:
    """The kernels of this package on the CPU in fp32 (its C++ part is compiled for the machine on first
    use, ~30 s, then cached by torch in ``~/.cache/torch_extensions``)."""

    name = "cpu_kernels"
    priority = PRIORITY

    def __init__(self, params: CpuKernelsParams) -> None:
        self.params = params

    def available(self, device: torch.device, precision: str) -> bool | str:
        if device.type != "cpu":
            return f"CPU only, this is {device.type}"
        if precision != "fp32":
            return f"fp32 only, this run is {precision}"
        if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
            return True  # asked for the torch-operator transforms: no compiler needed
        if winograd._kernel_state == "failed":
            return "its C++ kernels failed to build here (see the warning above)"
        if winograd._kernel_state != "built" and compiler() is None:
            return "no C++ compiler (install g++ or set CXX)"
        return True

    def prepare(self, net: nn.Module, device: torch.device, *, training: bool) -> str:
        p = self.params
        switched = use_cpu_algorithms(
            net,
            winograd=p.winograd,
            winograd_min_channels=p.winograd_min_channels,
            narrow=p.narrow,
            upsampling=p.upsampling,
            norm=p.norm,
            strided=p.strided and training,  # only filter gradients change: nothing to do for inference
        )
        counts = [
            (len(switched.winograd), "Winograd"),
            (len(switched.narrow), "narrow"),
            (len(switched.strided), "strided"),
            (len(switched.upsampling), "transposed"),
            (len(switched.norm), "instance-norm"),
        ]
        done = [f"{n} {what}" for n, what in counts if n]
        return f"replaced {', '.join(done)} layers" if done else "no layer of these networks is eligible"


def build_cpu_kernels(params: CpuKernelsParams) -> CpuKernels:
    """Faster CPU layers in fp32: Winograd convolutions, narrow-channel loops, compiled instance norms."""
    return CpuKernels(params)


@hookimpl
def register_backends(register: Register) -> None:
    register("cpu_kernels", build_cpu_kernels, params=CpuKernelsParams)
