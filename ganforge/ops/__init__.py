"""Numerical kernels the core offers to any model: faster CPU convolutions with the same parameters.

:func:`use_cpu_algorithms` is what ``train.conv_algorithm = "winograd"`` and ``ganforge translate
--winograd`` switch on: Winograd F(4x4, 3x3) for wide 3x3 layers (winograd.py) and the transposed form
for convolutions to a few channels (narrow.py). Both fall back to torch's own convolutions off the
CPU, outside fp32 and under autocast.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn


class Switched(NamedTuple):
    winograd: list[str]  # names of the layers now computed by Winograd
    transposed: list[str]  # names of the few-output-channel layers now computed in the transposed form


def use_cpu_algorithms(module: nn.Module) -> Switched:
    """Switch every eligible convolution of ``module`` in place (classes only, not parameters)."""
    from ganforge.ops.narrow import use_transposed_form
    from ganforge.ops.winograd import use_winograd

    return Switched(use_winograd(module), use_transposed_form(module))
