"""Instance normalisation (without affine parameters, CycleGAN's) by compiled CPU loops, with the ReLU or
leaky ReLU that follows it.

torch computes an instance norm on a CPU as a batch norm over an (1, N*C, H, W) view. On the project's
2-core machine that ran at 1.5-4 GB/s: 12.3 ms for a 64 x 256 x 256 map, 1.46 ms for 256 x 64 x 64,
about a tenth of a 256 px translation. ``norm_cpu.cpp`` normalises one plane per task in a few passes
that stay in L2: 2.1 ms and 0.24 ms. Its result is a fresh tensor, not a view, so an in-place ReLU
after it no longer makes autograd copy slices back in the backward pass.

A ``nn.ReLU`` or ``nn.LeakyReLU`` right after such a norm in an ``nn.Sequential`` (and used nowhere else)
is folded into it (:class:`FoldedActivation` passes its input on): the norm writes the activated result
and its backward pass takes the activation's gradient in the same loops, which saves the activation's
pass over the map each way (threshold_backward alone took 18 ms of a 2 s, 128 px / 6-block CycleGAN step).
While either layer of such a pair has a hook, the two compute unfolded (norm, then activation), so the
hook sees what torch's own layers would give it.

The loops are built with the Winograd transforms (same switch, ``GANFORGE_WINOGRAD_KERNELS``); without
them, under torch.compile (which fuses the norm with what follows it), off the CPU, outside fp32 or
under autocast, the layer is torch's own. Results equal torch's up to fp32 rounding (~1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ganforge.backends import rebuild_as
from ganforge_cpu_kernels import KernelLayer, cpu_fp32, link, observed, single_use_pairs, switch_class
from ganforge_cpu_kernels.winograd import compiled_for, compiled_kernels


class _InstanceNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float, slope: float) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        y, mean, rstd = torch.ops.ganforge_norm.instance_norm(x, eps, slope)
        ctx.save_for_backward(x, mean, rstd)
        ctx.slope = slope
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x, mean, rstd = ctx.saved_tensors
        return torch.ops.ganforge_norm.instance_norm_backward(dy.contiguous(), x, mean, rstd, ctx.slope), None, None


class CompiledInstanceNorm2d(KernelLayer, nn.InstanceNorm2d):
    """An ``nn.InstanceNorm2d`` without affine parameters or running statistics, computed by the compiled
    loops on the CPU in fp32. Made by :func:`use_compiled_instance_norm`: same (empty) state dict.
    ``slope`` is the folded activation's: 1 none, 0 ReLU, else a leaky ReLU's negative slope."""

    slope = 1.0
    _kernel_attributes = ("slope", "_fold_partner")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        slope = 1.0 if self.slope != 1.0 and observed(self) else self.slope  # hooked: the activation acts
        if torch.compiler.is_compiling() or not cpu_fp32(input, input) or not compiled_for(input):
            y = super().forward(input)
            if slope == 1.0:
                return y
            return F.relu(y) if slope == 0.0 else F.leaky_relu(y, slope)
        return _InstanceNorm.apply(input, self.eps, slope)


class FoldedActivation(KernelLayer, nn.Module):
    """Mixed into a ``nn.ReLU`` or ``nn.LeakyReLU`` whose work the :class:`CompiledInstanceNorm2d` before
    it does: passes its input on (same repr, no state), or activates it itself while either of the two
    has a hook."""

    _kernel_attributes = ("_fold_partner",)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(input) if observed(self) else input


class FoldedReLU(FoldedActivation, nn.ReLU):
    pass


class FoldedLeakyReLU(FoldedActivation, nn.LeakyReLU):
    pass


def eligible(layer: nn.Module) -> bool:
    """An ``nn.InstanceNorm2d`` itself, without affine parameters or running statistics."""
    return type(layer) is nn.InstanceNorm2d and not layer.affine and not layer.track_running_stats


def use_compiled_instance_norm(module: nn.Module) -> list[str]:
    """Switch the eligible instance norms below ``module`` and fold the activations right after them (each
    replaced in its parent); return the norms' names."""
    names = switch_class(module, eligible, CompiledInstanceNorm2d)
    if names:
        _fold_activations(module)
        compiled_kernels()  # build (or find) them now, not inside the first step
    return names


def _fold_activations(module: nn.Module) -> None:
    """Hand each ``nn.ReLU`` / ``nn.LeakyReLU`` that follows a :class:`CompiledInstanceNorm2d` in an
    ``nn.Sequential``, both used nowhere else, over to that norm."""
    for seq, i in single_use_pairs(module):
        norm, act = seq[i], seq[i + 1]
        if not isinstance(norm, CompiledInstanceNorm2d):
            continue
        if type(act) is nn.ReLU:
            norm.slope, seq[i + 1] = 0.0, rebuild_as(FoldedReLU, act)
        elif type(act) is nn.LeakyReLU and 0.0 <= act.negative_slope <= 1.0:  # the loops' range
            norm.slope, seq[i + 1] = float(act.negative_slope), rebuild_as(FoldedLeakyReLU, act)
        else:
            continue
        link(norm, seq[i + 1])
