"""The pix2pix training step (Isola et al. 2017, sections 3.1 and 3.3).

One generator ``G`` maps an input image x (domain A) to an output G(x) that should look like its true
counterpart y (domain B). The discriminator ``D`` is conditional: it judges the pair (x, y) or
(x, G(x)), the two images concatenated on the channel axis, so it is built with input channels =
the generator's input plus output channels. The objective is

    G* = arg min_G max_D  L_cGAN(G, D) + lambda * L_L1(G),   lambda = 100.

One step follows the reference implementation's order: G's forward pass, then D's update on the real
pair and on the detached fake pair (loss halved), then G's update against the just-updated D, which is
frozen for it, plus lambda times the L1 distance to the target. There is no image pool.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ganforge import ComponentSpec, Direction, Optimizers, Params, RecipeError, TrainingModel, component_field

#: The names under which the model declares its generator and its direction (``--net``, ``--direction``).
NET = "G"
DIRECTION = "AtoB"


class Pix2PixParams(Params):
    generator: ComponentSpec = component_field(
        "generator", "unet", "Generator G: input image -> output image (paper: U-Net 256, 'unet')."
    )
    discriminator: ComponentSpec = component_field(
        "discriminator",
        "patchgan",
        "Discriminator D (paper: 70x70 PatchGAN); its in_channels is set by the model "
        "(generator in + out channels when conditional).",
    )
    gan_loss: ComponentSpec = component_field(
        "loss", "vanilla", "Adversarial loss (paper: vanilla, BCE on logits)."
    )
    gradient_penalty: ComponentSpec = component_field(
        "loss",
        "none",
        "Penalty added to D's loss, on the real and fake pairs D judges (none, or gradient_penalty: "
        "wgan_gp, r1, r2).",
    )
    l1_loss: ComponentSpec = component_field(
        "loss", "l1", "Reconstruction loss between G(x) and y (paper: L1)."
    )
    augment: ComponentSpec = component_field(
        "augment",
        "none",
        "Augmentation of every pair D sees, in both updates; input and image of a pair get the same "
        "transform (paper: none; see docs/training-options.md: it did not pay on the quickstart).",
    )
    lambda_l1: float = Field(
        100.0, ge=0, description="Weight of the L1 term (paper: lambda = 100; 0 disables)."
    )
    conditional: bool = Field(
        True,
        description="D sees the input beside the image (paper: true); false gives the unconditional "
        "ablation of the paper's table 1 (D sees the image alone).",
    )
    real_label: float = Field(1.0, description="Target of the adversarial loss for real pairs.")
    fake_label: float = Field(0.0, description="Target of the adversarial loss for generated pairs.")


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for param in net.parameters():
        param.requires_grad_(flag)


def channels_of(spec: ComponentSpec, field: str) -> int:
    """A generator's ``in_channels`` or ``out_channels`` parameter (3 when it declares none)."""
    return int(getattr(spec.params, field, 3))


class Pix2Pix(TrainingModel):
    def __init__(self, params: Pix2PixParams) -> None:
        super().__init__()
        self.p = params
        self.G = params.generator.build()
        in_channels, out_channels = (
            channels_of(params.generator, "in_channels"),
            channels_of(params.generator, "out_channels"),
        )
        d_channels = in_channels + out_channels if params.conditional else out_channels
        if "in_channels" not in type(params.discriminator.params).model_fields:
            raise RecipeError(
                f"model.discriminator: '{params.discriminator.type}' has no in_channels parameter; "
                "pix2pix sets it to the channels of the pair D judges"
            )
        self.D = params.discriminator.with_params(in_channels=d_channels).build()
        self.gan_loss = params.gan_loss.build()
        self.l1_loss = params.l1_loss.build()
        self.gradient_penalty = params.gradient_penalty.build()  # no parameters: nothing in state_dict
        self.augment = params.augment.build()  # no parameters either

    def directions(self) -> list[Direction]:
        """AtoB through G (``--direction AtoB``, ``--net G``): the dataset's A images to B."""
        return [Direction(DIRECTION, "A", "B", NET, self.p.generator)]

    def double_backward_nets(self) -> list[str]:
        """A gradient penalty differentiates D's input gradient, so D keeps torch's own layers."""
        return ["D"] if self.gradient_penalty.enabled else []

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def pair(self, real_A: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """What D sees: the input and an image concatenated on channels (the image alone if unconditional),
        augmented when augment is on, with one random transform for both halves so they stay aligned."""
        if not self.p.conditional:
            return self.augment(image) if self.augment.enabled else image
        pair = torch.cat([real_A, image], dim=1)
        return self.augment(pair, parts=(real_A.shape[1], image.shape[1])) if self.augment.enabled else pair

    def discriminator_losses(
        self, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """D's real and fake terms and their mean ``D`` (the halving of section 3.3), plus ``gp`` (the
        penalty on the real and fake pairs) when a gradient penalty is set; ``D`` is then half of the three."""
        real_pair, fake_pair = self.pair(real_A, real_B), self.pair(real_A, fake_B.detach())
        loss_fake = self.gan_loss(self.D(fake_pair), self.p.fake_label, discriminator=True)
        loss_real = self.gan_loss(self.D(real_pair), self.p.real_label, discriminator=True)
        losses = {"D_real": loss_real, "D_fake": loss_fake, "D": 0.5 * (loss_real + loss_fake)}
        if self.gradient_penalty.enabled:
            losses["gp"] = self.gradient_penalty(self.D, real_pair, fake_pair)
            # Inside the halving, so weight stays the penalty-to-critic ratio (WGAN-GP's lambda).
            losses["D"] = 0.5 * (loss_real + loss_fake + losses["gp"])
        return losses

    def generator_losses(
        self, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """G's adversarial term (fooling D on the fake pair) and lambda times L1 to the target."""
        loss_gan = self.gan_loss(self.D(self.pair(real_A, fake_B)), self.p.real_label)
        loss_l1 = self.l1_loss(fake_B, real_B) * self.p.lambda_l1
        return {"G_GAN": loss_gan, "G_L1": loss_l1}

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: Optimizers) -> dict[str, torch.Tensor]:
        real_A, real_B = batch["A"], batch["B"]
        fake_B = self.G(real_A)

        # D first, on the real pair and the detached fake pair.
        set_requires_grad(self.D, True)
        losses = self.discriminator_losses(real_A, real_B, fake_B)
        optimizers.step("D", losses["D"])

        # Then G, against the updated D, which is frozen (no gradients are computed for it).
        set_requires_grad(self.D, False)
        g_losses = self.generator_losses(real_A, real_B, fake_B)
        optimizers.step("G", g_losses["G_GAN"] + g_losses["G_L1"])
        set_requires_grad(self.D, True)
        return {name: value.detach() for name, value in {**g_losses, **losses}.items()}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[tuple[str, torch.Tensor]]]:
        real_A, real_B = batch["A"], batch["B"]
        return [[("input", real_A), ("output", self.G(real_A)), ("target", real_B)]]


def build_pix2pix(params: Pix2PixParams, seed: int) -> Pix2Pix:
    """pix2pix training step: conditional GAN + L1 (lambda 100), D updated first, no pool."""
    del seed  # nothing random of its own: networks draw from the engine's seeded generator
    return Pix2Pix(params)
