"""Losses: adversarial losses (least squares, vanilla, hinge, Wasserstein), L1 for reconstruction
terms, and gradient penalties on a discriminator.

Adversarial losses are called as ``loss(prediction, target, discriminator=False)``: ``prediction`` is
the discriminator's output, ``target`` a tensor of its shape or a float label broadcast to it (1.0
real, 0.0 fake), and ``discriminator`` says whose loss is computed. A training step passes
``discriminator=True`` in the discriminator's update (once for real images with target 1.0, once for
fakes with target 0.0) and leaves it ``False`` in the generator's (fakes with target 1.0):

- ``lsgan``: ``mean((pred - target)^2)`` for both; ``vanilla``: binary cross-entropy on logits for
  both (they ignore ``discriminator``).
- ``hinge``: discriminator ``mean(t * relu(1 - pred) + (1 - t) * relu(1 + pred))`` (for t = 1:
  ``mean(relu(1 - pred))``, for t = 0: ``mean(relu(1 + pred))``); generator ``-mean(pred)``.
- ``wgan``: discriminator ``mean((1 - 2t) * pred)`` (t = 1: ``-mean(pred)``, t = 0: ``+mean(pred)``);
  generator ``-mean(pred)``.

The generator forms of hinge and wgan ignore ``target``. ``l1`` is ``loss(prediction, target)``.

A gradient penalty is called as ``penalty(D, real, fake)`` and returns the weighted penalty (zero for
``none``); its ``enabled`` attribute says whether it adds anything (and so needs a double backward).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import NoParams, Params


def _as_target(prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
    """``target`` as a tensor of the prediction's shape, dtype and device."""
    target = torch.as_tensor(target, dtype=prediction.dtype, device=prediction.device)
    return target.expand_as(prediction)


class LSGANLoss(nn.Module):
    """Least-squares GAN loss: ``mean((prediction - target) ** 2)``."""

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | float, discriminator: bool = False
    ) -> torch.Tensor:
        return F.mse_loss(prediction, _as_target(prediction, target))


class VanillaGANLoss(nn.Module):
    """Original GAN loss: binary cross-entropy between logits and the target probability."""

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | float, discriminator: bool = False
    ) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction, _as_target(prediction, target))


class HingeGANLoss(nn.Module):
    """Hinge loss: discriminator ``mean(t relu(1 - pred) + (1 - t) relu(1 + pred))``, generator ``-mean(pred)``."""

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | float, discriminator: bool = False
    ) -> torch.Tensor:
        if not discriminator:
            return -prediction.mean()
        t = _as_target(prediction, target)
        return (t * F.relu(1 - prediction) + (1 - t) * F.relu(1 + prediction)).mean()


class WassersteinGANLoss(nn.Module):
    """Wasserstein critic loss: discriminator ``mean((1 - 2t) pred)``, generator ``-mean(pred)``."""

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | float, discriminator: bool = False
    ) -> torch.Tensor:
        if not discriminator:
            return -prediction.mean()
        return ((1 - 2 * _as_target(prediction, target)) * prediction).mean()


class L1Loss(nn.Module):
    """Mean absolute error: ``mean(|prediction - target|)``."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        return F.l1_loss(prediction, _as_target(prediction, target))


class GradientPenaltyParams(Params):
    """Parameters of the gradient penalty."""

    kind: Literal["wgan_gp", "r1", "r2"] = Field(
        "wgan_gp",
        description="wgan_gp: (|grad| - target)^2 on random interpolates of real and fake; "
        "r1: 0.5 |grad|^2 on reals; r2: 0.5 |grad|^2 on fakes.",
    )
    weight: float = Field(10.0, ge=0, le=1e6, description="Factor of the penalty (WGAN-GP paper: 10).")
    target: float = Field(
        1.0, ge=0, le=1e6, description="Gradient norm wgan_gp pulls towards (r1, r2 ignore it)."
    )


class GradientPenalty(nn.Module):
    """A penalty on the gradient of the discriminator's output with respect to its input.

    For each image ``x_i`` the gradient is that of ``sum(D(x)_i)`` (the sum of the image's outputs,
    e.g. a PatchGAN's patches) with respect to ``x_i``, flattened; ``|.|`` is its 2-norm.

    - ``wgan_gp``: ``weight * mean_i((|grad_i| - target)^2)`` at ``x_i = a_i real_i + (1 - a_i) fake_i``,
      ``a_i ~ U(0, 1)`` per image;
    - ``r1``: ``weight * 0.5 * mean_i(|grad_i|^2)`` at the real images;
    - ``r2``: the same at the fakes.

    The gradient is taken with ``create_graph=True``, so backpropagating the penalty reaches the
    discriminator's weights (a double backward through it).
    """

    enabled = True

    def __init__(self, kind: str, weight: float, target: float) -> None:
        super().__init__()
        self.kind = kind
        self.weight = weight
        self.target = target

    def forward(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "wgan_gp":
            fake = fake.detach()
            shape = (len(real),) + (1,) * (real.dim() - 1)
            alpha = torch.rand(shape, dtype=real.dtype, device=real.device)
            x = alpha * real.detach() + (1 - alpha) * fake
        else:
            x = (real if self.kind == "r1" else fake).detach()
        x = x.requires_grad_(True)
        out = D(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        norms_sq = grad.flatten(1).pow(2).sum(1)
        if self.kind == "wgan_gp":
            penalty = (norms_sq.add(1e-12).sqrt() - self.target).pow(2).mean()
        else:
            penalty = 0.5 * norms_sq.mean()
        return self.weight * penalty


class NoPenalty(nn.Module):
    """No gradient penalty: returns zero (``enabled`` is False, so a model can skip the call)."""

    enabled = False

    def forward(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real.new_zeros(())


def build_lsgan(params: NoParams) -> LSGANLoss:
    """Least-squares GAN loss (Mao et al. 2017)."""
    return LSGANLoss()


def build_vanilla(params: NoParams) -> VanillaGANLoss:
    """Vanilla GAN loss (Goodfellow et al. 2014): binary cross-entropy on logits."""
    return VanillaGANLoss()


def build_hinge(params: NoParams) -> HingeGANLoss:
    """Hinge GAN loss (Lim and Ye 2017; Miyato et al. 2018): relu(1 -/+ D) for D, -D(fake) for G."""
    return HingeGANLoss()


def build_wgan(params: NoParams) -> WassersteinGANLoss:
    """Wasserstein GAN loss (Arjovsky et al. 2017): D(fake) - D(real) for D, -D(fake) for G."""
    return WassersteinGANLoss()


def build_l1(params: NoParams) -> L1Loss:
    """L1 loss: mean absolute error (cycle-consistency, identity and reconstruction terms)."""
    return L1Loss()


def build_gradient_penalty(params: GradientPenaltyParams) -> GradientPenalty:
    """Gradient penalty on a discriminator: WGAN-GP (Gulrajani et al. 2017), R1 or R2 (Mescheder et al. 2018)."""
    return GradientPenalty(params.kind, params.weight, params.target)


def build_no_penalty(params: NoParams) -> NoPenalty:
    """No gradient penalty (the default of a model's gradient_penalty)."""
    return NoPenalty()


@hookimpl
def register_losses(register: Register) -> None:
    register("lsgan", build_lsgan)
    register("vanilla", build_vanilla)
    register("hinge", build_hinge)
    register("wgan", build_wgan)
    register("l1", build_l1)
    register("gradient_penalty", build_gradient_penalty, params=GradientPenaltyParams)
    register("none", build_no_penalty)
