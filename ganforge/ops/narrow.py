"""Convolutions with a few output channels, computed as the transposed convolution of their filters.

An image generator ends in a convolution from many channels to three (CycleGAN: 64 -> 3, 7x7). On a
CPU, oneDNN's direct kernels for so few output channels run at 20-25 GFLOP/s, a sixth of the matmul
peak (measured on the project's 2-core AVX2 machine). The same arithmetic written as a transposed
convolution, whose filters are the original ones flipped in space with input and output channels
swapped, takes oneDNN's other (backward-data) kernels: equal to fp32 rounding (relative difference
~2e-6), 1.3x faster forward and 1.4-1.7x forward + backward for that layer. For the opposite shape
(3 -> 64) the trick is 2-4x slower, hence the channel limits of :func:`eligible`. A PatchGAN's
512 -> 1 output layer qualifies as well; there the two forms take about the same time.

For a stride-1, undilated convolution with a k x k filter w and zero padding p <= k - 1:

    conv2d(x, w, padding=p) == conv_transpose2d(x, w.flip(2, 3).transpose(0, 1), padding=k - 1 - p)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.ops import cpu_fp32, plain_conv, switch_class

MAX_OUT_CHANNELS = 4
MIN_IN_CHANNELS = 32


class NarrowOutputConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` computed as a transposed convolution on the CPU in fp32 (direct elsewhere).

    Made by :func:`use_transposed_form` from an existing layer: same parameters and state dict.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not cpu_fp32(input, weight):
            return super()._conv_forward(input, weight, bias)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding  # type: ignore[misc]
        return F.conv_transpose2d(input, weight.flip(2, 3).transpose(0, 1), bias, padding=(kh - 1 - ph, kw - 1 - pw))


def eligible(layer: nn.Module) -> bool:
    """A plain stride-1 convolution from at least 32 channels to at most 4, zero- or un-padded."""
    return (
        plain_conv(layer)
        and all(0 <= p <= k - 1 for p, k in zip(layer.padding, layer.kernel_size))
        and min(layer.kernel_size) >= 3
        and layer.out_channels <= MAX_OUT_CHANNELS
        and layer.in_channels >= MIN_IN_CHANNELS
    )


def use_transposed_form(module: nn.Module) -> list[str]:
    """Compute the eligible convolutions of ``module`` as transposed convolutions; return their names."""
    return switch_class(module, eligible, NarrowOutputConv2d)
