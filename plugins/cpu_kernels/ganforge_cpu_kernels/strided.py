"""Filter gradients of stride-2 convolutions by matrix products over the input's four phases.

An image-to-image generator's down-sampling layers (3x3, stride 2, padding 1), its up-sampling layers
(their transposed form) and a PatchGAN's strided 4x4 layers take about a fifth of a CycleGAN training
step on the project's 2-core AVX2 CPU, mostly in their backward passes; oneDNN computes their filter
gradients at 50-70 GFLOP/s against 100-130 for their forward passes.

Split a zero-padded image by the parity of its rows and columns into four phases. A stride-2 tap
(kh, kw) then reads phase (kh % 2, kw % 2) shifted by (kh // 2, kw // 2), a stride-1 window. Laid out as
(channels, images * rows * columns) with one spare row and column per image (``phases`` and
``widened`` in ``layout_cpu.cpp``), each shifted window is a plain strided matrix, and the filter
gradient of one tap is one matrix product over every pixel of every image:

    dW[:, :, kh, kw] = dY (K x L) @ phase(kh % 2, kw % 2)[:, shift : shift + L]^T (L x C)

where dY is the output gradient widened by a zero row and column (so the spare positions add nothing).
The products' inner size is the whole batch's pixel count, their best shape. For a transposed
convolution the roles swap: its input is "dY" and the phases are its output gradient's.

The input gradients stay oneDNN's (its transposed kernel for a strided convolution, its forward kernel
for a transposed one), as do the forward passes. Measured per call on the project's CPU (filter
gradient alone, 1-3 images of a 128 px CycleGAN step): 1.2-1.8x oneDNN's. Results equal oneDNN's up to
fp32 rounding (the sums run in another order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ganforge_cpu_kernels import KernelLayer, cpu_fp32, switch_class
from ganforge_cpu_kernels.winograd import compiled_for

MIN_CHANNELS = 32  # narrower sides (a PatchGAN's 3-channel input) make thin products that do not pay


def phase_filter_gradient(big: torch.Tensor, small: torch.Tensor, k: int) -> torch.Tensor:
    """The filter gradient of a k x k, stride-2, padding-1 convolution from ``big`` (N, C, H, W), H and W
    even, to ``small``'s gradient (N, K, H / 2, W / 2): (K, C, k, k). With ``big`` a transposed
    convolution's output gradient and ``small`` its input, the same sums give that layer's (Cin, Cout, k, k)
    filter gradient."""
    layout = torch.ops.ganforge_layout
    p = layout.phases(big.contiguous())  # (4, C, L + wp + 1)
    s = layout.widened(small.contiguous())  # (K, L)
    wp = big.shape[3] // 2 + 1
    length = s.shape[1]
    out = s.new_empty(k * k, s.shape[0], p.shape[1])
    for kh in range(k):
        for kw in range(k):
            shift = (kh // 2) * wp + kw // 2
            torch.mm(s, p[(kh % 2) * 2 + kw % 2, :, shift : shift + length].t(), out=out[kh * k + kw])
    return out.permute(1, 2, 0).reshape(s.shape[0], p.shape[1], k, k)


class _Strided(torch.autograd.Function):
    """A k x k, stride-2, padding-1 convolution, or (``transposed``) a 3x3 one's transposed form with
    output padding 1 (output exactly 2H x 2W): forward and input gradient by oneDNN (for the transposed
    form the input gradient is a strided convolution of the output gradient), filter gradient by
    :func:`phase_filter_gradient`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.transposed = transposed
        return F.conv_transpose2d(x, weight, bias, 2, 1, 1) if transposed else F.conv2d(x, weight, bias, 2, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            if ctx.transposed:
                dx = F.conv2d(dy, weight, None, 2, 1)
            else:
                mask = (True, False, False)
                dx = torch.ops.aten.convolution_backward(dy, x, weight, None, (2, 2), (1, 1), (1, 1), False, (0, 0), 1, mask)[0]
        if ctx.needs_input_grad[1]:
            dw = phase_filter_gradient(dy, x, 3) if ctx.transposed else phase_filter_gradient(x, dy, weight.shape[2])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None


def _takes(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a switched layer's call takes the phase path: its filters are being trained (autograd on,
    weight requiring grad), on the CPU in fp32 with the compiled layout ops, outside torch.compile."""
    return (
        torch.is_grad_enabled()
        and weight.requires_grad
        and not torch.compiler.is_compiling()
        and cpu_fp32(input, weight)
        and compiled_for(input)
    )


class StridedConv2d(KernelLayer, nn.Conv2d):
    """An ``nn.Conv2d`` (3x3 or 4x4, stride 2, padding 1) whose filter gradient is computed by
    :func:`phase_filter_gradient` on the CPU in fp32 for inputs of even height and width; torch's own
    layer otherwise. Made by :func:`use_phase_gradients`: same parameters and state dict."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _takes(input, weight) and input.shape[2] % 2 == 0 and input.shape[3] % 2 == 0:
            return _Strided.apply(input, weight, bias, False)
        return super()._conv_forward(input, weight, bias)


def strided_transposed(layer: nn.ConvTranspose2d) -> bool:
    """Whether a transposed convolution is one :class:`_Strided` computes: 3x3, stride 2,
    padding 1, output padding 1 (output exactly twice the input), undilated, ungrouped, wide enough."""
    return (
        layer.kernel_size == (3, 3)
        and layer.stride == (2, 2)
        and layer.padding == (1, 1)
        and layer.output_padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and min(layer.in_channels, layer.out_channels) >= MIN_CHANNELS
    )


def transposed_forward(layer: nn.ConvTranspose2d, input: torch.Tensor) -> torch.Tensor | None:
    """``layer(input)`` by :class:`_Strided` when the phase path takes it, else ``None``."""
    if strided_transposed(layer) and _takes(input, layer.weight):
        return _Strided.apply(input, layer.weight, layer.bias, True)
    return None


def eligible(layer: nn.Module) -> bool:
    """An ``nn.Conv2d`` itself, 3x3 or 4x4, stride 2, padding 1 (zeros), undilated, ungrouped, wide enough."""
    return (
        type(layer) is nn.Conv2d
        and layer.kernel_size in ((3, 3), (4, 4))
        and layer.stride == (2, 2)
        and layer.padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and min(layer.in_channels, layer.out_channels) >= MIN_CHANNELS
    )


def use_phase_gradients(module: nn.Module) -> list[str]:
    """Switch the eligible strided convolutions of ``module``; return their names. (The transposed ones
    are switched by ``upsampling.py``, whose layer calls :func:`transposed_forward`.)"""
    return switch_class(module, eligible, StridedConv2d)
