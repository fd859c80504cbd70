"""Helpers the kernel tests share (a module of its own: each test folder's conftest.py is a different
module, and this plugin's tests import nothing from the core's tests/)."""

from __future__ import annotations

import torch
from torch import nn


def swapped(use, layer: nn.Module) -> nn.Module:
    """``layer`` as ``use`` leaves it inside a model: replaced in its parent (here a one-layer Sequential)
    by a layer of the kernels with the same parameters."""
    holder = nn.Sequential(layer)
    assert use(holder) == ["0"]
    assert all(a is b for a, b in zip(holder[0].parameters(), layer.parameters(), strict=True))
    return holder[0]


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).abs().max() / reference.abs().max()).item()
