"""Losses: least-squares and vanilla adversarial losses, and L1 for reconstruction terms.

Each loss is called as ``loss(prediction, target)`` where ``target`` is a tensor of the prediction's
shape or a float label broadcast to it (1.0 real, 0.0 fake). None takes parameters, so each factory
takes :class:`ganforge.registry.NoParams`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import NoParams


def _as_target(prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
    """``target`` as a tensor of the prediction's shape, dtype and device."""
    target = torch.as_tensor(target, dtype=prediction.dtype, device=prediction.device)
    return target.expand_as(prediction)


class LSGANLoss(nn.Module):
    """Least-squares GAN loss: ``mean((prediction - target) ** 2)``."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        return F.mse_loss(prediction, _as_target(prediction, target))


class VanillaGANLoss(nn.Module):
    """Original GAN loss: binary cross-entropy between logits and the target probability."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction, _as_target(prediction, target))


class L1Loss(nn.Module):
    """Mean absolute error: ``mean(|prediction - target|)``."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        return F.l1_loss(prediction, _as_target(prediction, target))


def build_lsgan(params: NoParams) -> LSGANLoss:
    """Least-squares GAN loss (Mao et al. 2017)."""
    return LSGANLoss()


def build_vanilla(params: NoParams) -> VanillaGANLoss:
    """Vanilla GAN loss (Goodfellow et al. 2014): binary cross-entropy on logits."""
    return VanillaGANLoss()


def build_l1(params: NoParams) -> L1Loss:
    """L1 loss: mean absolute error (cycle-consistency, identity and reconstruction terms)."""
    return L1Loss()


@hookimpl
def register_losses(register: Register) -> None:
    register("lsgan", build_lsgan)
    register("vanilla", build_vanilla)
    register("l1", build_l1)
