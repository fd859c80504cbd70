"""Convolutions with few channels on one side: an image generator's first and last layers.

A generator starts with a convolution from 3 channels to many (CycleGAN: 3 -> 64, 7x7) and ends with
one from many to 3. oneDNN's CPU kernels block over channels, which three do not fill: on the
project's 2-core AVX2 machine they ran these layers at 25-45 GFLOP/s, a third or less of its fp32
matmul peak (the 3 -> 64 forward at 110-140 GFLOP/s in some calls and 35-40 in others of the same
shape). The compiled loops of ``narrow_cpu.cpp`` block over pixels instead and compute the forward
pass and the input gradient of both shapes (each one's input gradient is a convolution of the other
shape: the flipped filters with their channels swapped). Measured per call at 1-3 images of 128 px and
one of 256 px: the 64 -> 3 forward 2.5-3.9x faster than oneDNN's transposed form (below), the 3 -> 64
forward at 103-131 GFLOP/s (oneDNN 35-140), the input gradients 0.8-2.0x oneDNN's (1.3-2.0x at 3
images or 256 px). The filter gradients stay with oneDNN, which runs them at 75-85 GFLOP/s.

Where the compiled kernels are missing (no C++ compiler, or ``GANFORGE_WINOGRAD_KERNELS=torch``: they
are built with Winograd's), a layer with few outputs is computed as the transposed convolution of its
flipped filters, which takes oneDNN's faster backward-data kernels (1.3x forward, 1.4-1.7x forward +
backward); one with few inputs stays direct. For a stride-1, undilated convolution with a k x k filter
w and zero padding p <= k - 1:

    conv2d(x, w, padding=p) == conv_transpose2d(x, w.flip(2, 3).transpose(0, 1), padding=k - 1 - p)

Results equal the direct convolution up to fp32 rounding (relative error ~2e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ganforge_cpu_kernels import KernelLayer, cpu_fp32, plain_conv, switch_class
from ganforge_cpu_kernels.winograd import compiled_for, compiled_kernels

FEW_CHANNELS = 4  # at most this many channels on the narrow side
MIN_WIDE_CHANNELS = 32  # and at least this many on the other


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]) -> torch.Tensor:
    return torch.ops.ganforge_narrow.conv(x.contiguous(), weight.contiguous(), bias, *padding)


def _flipped(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, R, S) -> (C, K, R, S), flipped in space: the filters of the input gradient."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


class _NarrowConv(torch.autograd.Function):
    """Forward and input gradient by the compiled loops, filter gradient by oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return _conv(x, weight, None if bias is None else bias.detach().contiguous(), padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        (ph, pw), (k, _, r, s) = ctx.padding, weight.shape
        full = [r - 1 - ph, s - 1 - pw]  # the padding of the transposed form
        dy = dy.contiguous()
        flipped = _flipped(weight)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _conv(dy, flipped, None, tuple(full))
        if ctx.needs_input_grad[1]:
            backward = torch.ops.aten.convolution_backward
            if k <= FEW_CHANNELS:  # oneDNN takes this shape's filter gradient 2.3x faster in the transposed form
                grad = backward(dy, x, flipped, None, [1, 1], full, [1, 1], True, [0, 0], 1, [False, True, False])[1]
                dw = grad.transpose(0, 1).flip(2, 3)
            else:
                dw = backward(dy, x, weight, None, [1, 1], [ph, pw], [1, 1], False, [0, 0], 1, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None


class NarrowConv2d(KernelLayer, nn.Conv2d):
    """An ``nn.Conv2d`` with few channels on one side, computed by the compiled loops on the CPU in fp32
    (without them: the transposed form if it has few outputs, else direct; direct off the CPU).

    Made by :func:`use_narrow_kernels` from an existing layer, in its place: same parameters and state dict.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not cpu_fp32(input, weight):
            return super()._conv_forward(input, weight, bias)
        if compiled_for(input):  # built together with the Winograd transforms
            return _NarrowConv.apply(input, weight, bias, self.padding)
        if self.out_channels <= FEW_CHANNELS:
            (kh, kw), (ph, pw) = self.kernel_size, self.padding  # type: ignore[misc]
            return F.conv_transpose2d(input, weight.flip(2, 3).transpose(0, 1), bias, padding=(kh - 1 - ph, kw - 1 - pw))
        return super()._conv_forward(input, weight, bias)


def eligible(layer: nn.Module) -> bool:
    """A plain stride-1 convolution (3x3 or larger, zero- or un-padded) between at most 4 channels on
    one side and at least 32 on the other."""
    if not plain_conv(layer):
        return False
    narrow, wide = sorted((layer.in_channels, layer.out_channels))
    return (
        all(0 <= p <= k - 1 for p, k in zip(layer.padding, layer.kernel_size))
        and min(layer.kernel_size) >= 3
        and narrow <= FEW_CHANNELS
        and wide >= MIN_WIDE_CHANNELS
    )


def use_narrow_kernels(module: nn.Module) -> list[str]:
    """Compute the eligible convolutions of ``module`` by :class:`NarrowConv2d`; return their names."""
    names = switch_class(module, eligible, NarrowConv2d)
    if names:
        compiled_kernels()  # build (or find) them now, not inside the first step or a compile
    return names
