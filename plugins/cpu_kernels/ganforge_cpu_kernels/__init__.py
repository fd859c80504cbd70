"""Faster CPU kernels for ganforge's networks, with the same parameters: the backend ``cpu_kernels``.

:func:`use_cpu_algorithms` is what the backend (``plugin.py``; ``[train.backend] type = "cpu_kernels"``,
or ``auto`` on a CPU with a C++ compiler, and ``ganforge translate --backend``) applies: Winograd F(4x4,
3x3) for wide 3x3 layers and F(3x3, 4x4) for wide 4x4 ones (winograd.py), compiled loops for
convolutions with few channels on one side (narrow.py), channels_last input for transposed convolutions
when no gradient is recorded (upsampling.py), filter gradients of stride-2 convolutions and their
transposed form by products over the input's phases (strided.py), and compiled instance norms
(norm.py). Each replaces torch's layer in its parent by a subclass holding the same parameters. All
fall back to torch's own operators off the CPU, outside fp32, under autocast and while exporting.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn

from ganforge.backends import rebuild_as, replace_modules


def plain_conv(layer: nn.Module) -> bool:
    """An ``nn.Conv2d`` itself (not a subclass), stride 1, undilated, ungrouped, zero- or un-padded:
    what both algorithms can compute with the layer's own parameters."""
    return (
        type(layer) is nn.Conv2d
        and layer.stride == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and isinstance(layer.padding, tuple)
    )


def exporting() -> bool:
    """Whether the model is being traced (``torch.jit.trace``) or exported (``torch.export``, ONNX): then
    every layer of this package computes as the torch layer it replaced, so that the exported file holds
    torch's own operators, not this package's compiled ones. (``torch.jit.script`` gets the torch layers
    themselves: :meth:`KernelLayer.__prepare_scriptable__`.)"""
    if torch.compiler.is_compiling():  # dynamo and torch.export: the one check they trace without a break
        return torch.compiler.is_exporting()
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def cpu_fp32(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a switched layer takes its CPU algorithm for this call: a 4-D (batched) fp32 input and
    fp32 weights on the CPU, outside autocast, not while exporting. Elsewhere it calls torch's own
    convolution (CUDA and MPS pick their own algorithms; in reduced precision Winograd's error grows)."""
    return (
        input.dim() == 4
        and input.device.type == "cpu"
        and input.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not exporting()
    )


class KernelLayer:
    """Mixed into every layer this package puts in place of a torch layer (a subclass of it that computes
    differently). ``torch.jit.script`` scripts the torch layer instead (same parameters), since the
    compiled kernels are Python-side ops; ``_kernel_attributes`` are the attributes this package added,
    left out of that torch layer."""

    _kernel_attributes: tuple[str, ...] = ()

    def __prepare_scriptable__(self) -> nn.Module:
        base = next(c for c in type(self).__mro__ if c.__module__.startswith("torch.nn"))
        plain = rebuild_as(base, self)  # type: ignore[arg-type]
        for name in self._kernel_attributes:
            plain.__dict__.pop(name, None)
        return plain


def switch_class(module: nn.Module, eligible: Callable[[nn.Module], bool], cls: type[nn.Module]) -> list[str]:
    """Put a ``cls`` in place of every eligible layer below ``module``, in its parent (same parameters,
    buffers, hooks and attributes: :func:`ganforge.backends.rebuild_as`); return their names."""
    return replace_modules(module, lambda layer: rebuild_as(cls, layer) if eligible(layer) else None)


def link(first: nn.Module, second: nn.Module) -> None:
    """Record a fold: ``second`` does ``first``'s work, or the other way round (each holds the other as a
    plain attribute, not a submodule, so module names and state-dict keys do not change)."""
    first.__dict__["_fold_partner"] = second
    second.__dict__["_fold_partner"] = first


def observed(layer: nn.Module) -> bool:
    """Whether ``layer`` or the layer it is folded with has a hook (forward or backward, before or after):
    then the pair computes unfolded, as torch's own layers do, so that every hook sees what it would see
    without this package (the tiled translation's instance-norm statistics replace a norm's output)."""
    partner = layer.__dict__.get("_fold_partner")
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in (layer, partner)
        if m is not None
    )


def single_use_pairs(module: nn.Module) -> Iterator[tuple[nn.Sequential, int]]:
    """Each two neighbouring layers ``seq[i]``, ``seq[i + 1]`` of an ``nn.Sequential`` in ``module`` that
    both appear once in it: where one may hand its work to the other (a fold) without changing what
    either does elsewhere, and where either may be replaced by ``seq[i] = ...``."""
    uses: dict[int, int] = {}
    for _, layer in module.named_modules(remove_duplicate=False):
        uses[id(layer)] = uses.get(id(layer), 0) + 1
    for seq in module.modules():
        if isinstance(seq, nn.Sequential):
            for i, (first, second) in enumerate(itertools.pairwise(seq)):
                if uses[id(first)] == 1 and uses[id(second)] == 1:
                    yield seq, i


class Switched(NamedTuple):
    winograd: list[str]  # names of the layers now computed by Winograd
    narrow: list[str]  # names of the layers with few channels on one side now computed by narrow.py
    upsampling: list[str]  # names of the transposed convolutions that take channels_last input without autograd
    norm: list[str]  # names of the instance norms now computed by norm.py
    strided: list[str]  # names of the stride-2 convolutions whose filter gradients strided.py computes


def use_cpu_algorithms(
    module: nn.Module,
    *,
    winograd: bool = True,
    winograd_min_channels: int = 128,
    narrow: bool = True,
    upsampling: bool = True,
    norm: bool = True,
    strided: bool = True,
) -> Switched:
    """Switch every eligible convolution and instance norm below ``module`` (those of the kinds asked
    for): each is replaced in its parent by a layer of this package holding the same parameters
    (state-dict keys and optimizers unchanged)."""
    from ganforge_cpu_kernels.narrow import use_narrow_kernels
    from ganforge_cpu_kernels.norm import use_compiled_instance_norm
    from ganforge_cpu_kernels.strided import use_phase_gradients
    from ganforge_cpu_kernels.upsampling import use_channels_last_input
    from ganforge_cpu_kernels.winograd import use_winograd

    return Switched(
        use_winograd(module, winograd_min_channels) if winograd else [],
        use_narrow_kernels(module) if narrow else [],
        use_channels_last_input(module) if upsampling else [],
        use_compiled_instance_norm(module) if norm else [],
        use_phase_gradients(module) if strided else [],
    )
