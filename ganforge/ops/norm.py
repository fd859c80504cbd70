"""Instance normalisation (without affine parameters, CycleGAN's) by compiled CPU loops.

torch computes an instance norm on a CPU as a batch norm over an (1, N*C, H, W) view. On the project's
2-core machine that ran at 1.5-4 GB/s: 12.3 ms for a 64 x 256 x 256 map, 1.46 ms for 256 x 64 x 64,
about a tenth of a 256 px translation. ``norm_cpu.cpp`` normalises one plane per task in a few passes
that stay in L2: 2.1 ms and 0.24 ms. Its result is a fresh tensor, not a view, so an in-place ReLU
after it no longer makes autograd copy slices back in the backward pass.

The loops are built with the Winograd transforms (same switch, ``GANFORGE_WINOGRAD_KERNELS``); without
them, under torch.compile (which fuses the norm with what follows it), off the CPU, outside fp32 or
under autocast, the layer is torch's own. Results equal torch's up to fp32 rounding (~1e-6).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ganforge.ops import cpu_fp32, switch_class
from ganforge.ops.winograd import compiled_for, compiled_kernels


class _InstanceNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        y, mean, rstd = torch.ops.ganforge_norm.instance_norm(x, eps)
        ctx.save_for_backward(x, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x, mean, rstd = ctx.saved_tensors
        return torch.ops.ganforge_norm.instance_norm_backward(dy.contiguous(), x, mean, rstd), None


class CompiledInstanceNorm2d(nn.InstanceNorm2d):
    """An ``nn.InstanceNorm2d`` without affine parameters or running statistics, computed by the compiled
    loops on the CPU in fp32. Made by :func:`use_compiled_instance_norm`: same (empty) state dict."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or not cpu_fp32(input, input) or not compiled_for(input):
            return super().forward(input)
        return _InstanceNorm.apply(input, self.eps)


def eligible(layer: nn.Module) -> bool:
    """An ``nn.InstanceNorm2d`` itself, without affine parameters or running statistics."""
    return type(layer) is nn.InstanceNorm2d and not layer.affine and not layer.track_running_stats


def use_compiled_instance_norm(module: nn.Module) -> list[str]:
    """Switch the eligible instance norms of ``module``; return their names."""
    names = switch_class(module, eligible, CompiledInstanceNorm2d)
    if names:
        compiled_kernels()  # build (or find) them now, not inside the first step
    return names
