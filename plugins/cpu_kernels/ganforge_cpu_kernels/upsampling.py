"""Transposed convolutions (a generator's up-sampling layers) computed from a channels_last input when
no gradient is recorded (translation), and with their filter gradient by strided.py's phase products
while they train.

From an NCHW input, oneDNN computes a transposed convolution into its own channels-last layout and
torch then copies the result back to NCHW; that copy of a freshly allocated output is slow on the
project's 2-core CPU (24 ms of a 256 px / 9-block translation's 610 ms for the last up-sampling layer,
128 -> 64 channels at 128x128). From a channels_last input the same kernels write channels_last
directly, and one explicit copy to NCHW costs less: that layer took 33-40 ms instead of 67-81 ms
(two runs). That copy is the compiled loop of ``layout_cpu.cpp`` where it is built (with the Winograd
transforms): 3.5-4.5 ms instead of torch's 16-22 ms for the 64 x 256 x 256 result; translation A/B in
turns 1.85x -> 2.03x and 2.03x -> 2.14x plain. With autograd recording, the same trick makes forward
+ backward slower (0.5-0.9x, the backward pass converts layouts again), so training keeps the plain
call, and so does torch.compile (inductor picks layouts itself; with the trick traced, winograd +
compile translated at 1.61x plain in a run where eager winograd gave 1.88x).

The arithmetic is oneDNN's either way, in another loop order: results differ by fp32 rounding only.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge_cpu_kernels import KernelLayer, cpu_fp32, switch_class
from ganforge_cpu_kernels.strided import transposed_forward
from ganforge_cpu_kernels.winograd import compiled_for


class UpsamplingConvTranspose2d(KernelLayer, nn.ConvTranspose2d):
    """An ``nn.ConvTranspose2d`` that, on the CPU in fp32 with no gradient recorded, computes from a
    channels_last copy of its input and returns an NCHW result; while its filters train, a 3x3 stride-2
    one takes its filter gradient from strided.py. Made by :func:`use_channels_last_input`: same
    parameters and state dict."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if torch.is_grad_enabled() and output_size is None:
            y = transposed_forward(self, input)  # training: the filter gradient by phase products
            if y is not None:
                return y
        # with autograd (training) it is slower; under torch.compile inductor chooses layouts itself
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or not cpu_fp32(input, self.weight):
            return super().forward(input, output_size)
        channels_last = input.contiguous(memory_format=torch.channels_last)
        return _to_nchw(super().forward(channels_last, output_size))


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    """``x.contiguous()`` for a channels_last result, by the compiled copy where it is built (with the
    Winograd transforms): 3.5-4.5 instead of 16-22 ms for 64 x 256 x 256 (layout_cpu.cpp)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() and compiled_for(x):
        return torch.ops.ganforge_layout.to_nchw(x)
    return x.contiguous()


def eligible(layer: nn.Module) -> bool:
    """An ``nn.ConvTranspose2d`` itself (not a subclass), 2-D."""
    return type(layer) is nn.ConvTranspose2d


def use_channels_last_input(module: nn.Module) -> list[str]:
    """Switch the transposed convolutions of ``module``; return their names."""
    return switch_class(module, eligible, UpsamplingConvTranspose2d)
