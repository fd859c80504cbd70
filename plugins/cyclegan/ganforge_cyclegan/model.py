"""The CycleGAN training step (Zhu et al. 2017, section 3 and 4).

Naming follows the authors' code, so its checkpoints map one to one: ``G_A`` translates A -> B,
``G_B`` translates B -> A; ``D_A`` judges domain-B images (real B against G_A's fakes) and ``D_B``
judges domain-A images. One step is the paper's order: both generators are updated with the
discriminators frozen, then both discriminators on fakes drawn from the history pools.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ganforge import ComponentSpec, Direction, Optimizers, Params, TrainingModel, component_field


class CycleGANParams(Params):
    generator: ComponentSpec = component_field(
        "generator", "resnet", "Both generators (G_A: A->B, G_B: B->A)."
    )
    discriminator: ComponentSpec = component_field("discriminator", "patchgan", "Both discriminators.")
    gan_loss: ComponentSpec = component_field("loss", "lsgan", "Adversarial loss (paper: least squares).")
    gradient_penalty: ComponentSpec = component_field(
        "loss",
        "none",
        "Penalty added to each discriminator's loss (none, or gradient_penalty: wgan_gp, r1, r2).",
    )
    cycle_loss: ComponentSpec = component_field(
        "loss", "l1", "Cycle-consistency and identity loss (paper: L1)."
    )
    pool: ComponentSpec = component_field(
        "buffer", "history", "History pool of fakes for each discriminator."
    )
    augment: ComponentSpec = component_field(
        "augment",
        "none",
        "Augmentation of everything the discriminators see, reals and fakes, in both updates "
        "(paper: none; see docs/training-options.md: it did not pay on the quickstart).",
    )
    lambda_cycle: float = Field(10.0, ge=0, description="Weight of the cycle losses (paper: lambda = 10).")
    lambda_identity: float = Field(
        0.5, ge=0, description="Identity loss weight as a fraction of lambda_cycle (paper: 0.5; 0 disables)."
    )
    batch_calls: bool = Field(
        True,
        description=(
            "Run each network once per phase on a concatenated batch (3 generator calls instead of 6, "
            "1 per discriminator in its update); instance norm keeps samples independent."
        ),
    )
    real_label: float = Field(1.0, description="Target of the adversarial loss for real images.")
    fake_label: float = Field(0.0, description="Target of the adversarial loss for generated images.")


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for param in net.parameters():
            param.requires_grad_(flag)


class CycleGAN(TrainingModel):
    def __init__(self, params: CycleGANParams, seed: int) -> None:
        super().__init__()
        self.p = params
        self.G_A = params.generator.build()
        self.G_B = params.generator.build()
        self.D_A = params.discriminator.build()
        self.D_B = params.discriminator.build()
        self.gan_loss = params.gan_loss.build()
        self.cycle_loss = params.cycle_loss.build()
        self.gradient_penalty = params.gradient_penalty.build()  # no parameters: nothing in state_dict
        self.augment = params.augment.build()  # no parameters either
        self.pool_A = params.pool.build(seed)  # generated A images (G_B's), for D_B
        self.pool_B = params.pool.build(seed + 1)  # generated B images (G_A's), for D_A

    def directions(self) -> list[Direction]:
        """AtoB through G_A and BtoA through G_B: the authors' names, which ``--direction`` takes."""
        return [
            Direction("AtoB", "A", "B", "G_A", self.p.generator),
            Direction("BtoA", "B", "A", "G_B", self.p.generator),
        ]

    def double_backward_nets(self) -> list[str]:
        """With a gradient penalty, both discriminators are differentiated twice."""
        return ["D_A", "D_B"] if self.gradient_penalty.enabled else []

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "G": [*self.G_A.parameters(), *self.G_B.parameters()],
            "D": [*self.D_A.parameters(), *self.D_B.parameters()],
        }

    def seen(self, images: torch.Tensor) -> torch.Tensor:
        """What a discriminator is shown of ``images``: the images, augmented when ``augment`` is on."""
        return self.augment(images) if self.augment.enabled else images

    def discriminator_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Half the sum of the real and fake terms, slowing D relative to G (paper, section 4).

        ``real`` and ``fake`` are what D sees (already augmented when augment is on)."""
        fake = fake.detach()
        if self.p.batch_calls:
            pred_real, pred_fake = D(torch.cat([real, fake])).split([len(real), len(fake)])
        else:
            pred_real, pred_fake = D(real), D(fake)
        real_term = self.gan_loss(pred_real, self.p.real_label, discriminator=True)
        fake_term = self.gan_loss(pred_fake, self.p.fake_label, discriminator=True)
        return 0.5 * (real_term + fake_term)

    def generate(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A), and with the
        identity term idt_A = G_A(B), idt_B = G_B(A)."""
        identity = self.p.lambda_identity > 0
        n = len(real_A)
        if not self.p.batch_calls:
            out = {"fake_B": self.G_A(real_A), "fake_A": self.G_B(real_B)}
            out["rec_A"], out["rec_B"] = self.G_B(out["fake_B"]), self.G_A(out["fake_A"])
            if identity:
                out["idt_A"], out["idt_B"] = self.G_A(real_B), self.G_B(real_A)
            return out
        # G_A on everything that does not depend on G_B, then G_B on everything else, then G_A once more.
        first = self.G_A(torch.cat([real_A, real_B]) if identity else real_A)
        fake_B = first[:n]
        second = self.G_B(torch.cat([real_B, fake_B, real_A] if identity else [real_B, fake_B]))
        out = {"fake_B": fake_B, "fake_A": second[:n], "rec_A": second[n : 2 * n]}
        out["rec_B"] = self.G_A(out["fake_A"])
        if identity:
            out["idt_A"], out["idt_B"] = first[n:], second[2 * n :]
        return out

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: Optimizers) -> dict[str, torch.Tensor]:
        p = self.p
        real_A, real_B = batch["A"], batch["B"]

        # Generators, with the discriminators frozen (no gradients are computed for them).
        set_requires_grad([self.D_A, self.D_B], False)
        out = self.generate(real_A, real_B)
        loss_G_A = self.gan_loss(self.D_A(self.seen(out["fake_B"])), p.real_label)
        loss_G_B = self.gan_loss(self.D_B(self.seen(out["fake_A"])), p.real_label)
        loss_cycle_A = self.cycle_loss(out["rec_A"], real_A) * p.lambda_cycle
        loss_cycle_B = self.cycle_loss(out["rec_B"], real_B) * p.lambda_cycle
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B
        losses = {"G_A": loss_G_A, "G_B": loss_G_B, "cycle_A": loss_cycle_A, "cycle_B": loss_cycle_B}
        if p.lambda_identity > 0:
            weight = p.lambda_cycle * p.lambda_identity
            losses["idt_A"] = self.cycle_loss(out["idt_A"], real_B) * weight
            losses["idt_B"] = self.cycle_loss(out["idt_B"], real_A) * weight
            loss_G = loss_G + losses["idt_A"] + losses["idt_B"]
        optimizers.step("G", loss_G)

        # Discriminators, on real images and on fakes from the history pools (plus a gradient penalty),
        # all augmented alike when augment is on (the pools keep the fakes as generated).
        set_requires_grad([self.D_A, self.D_B], True)
        seen_B = self.seen(real_B)
        fake_B = self.seen(self.pool_B.query(out["fake_B"]).detach())
        losses["D_A"] = self.discriminator_loss(self.D_A, seen_B, fake_B)
        seen_A = self.seen(real_A)
        fake_A = self.seen(self.pool_A.query(out["fake_A"]).detach())
        losses["D_B"] = self.discriminator_loss(self.D_B, seen_A, fake_A)
        loss_D = losses["D_A"] + losses["D_B"]
        if self.gradient_penalty.enabled:
            losses["gp_A"] = self.gradient_penalty(self.D_A, seen_B, fake_B)
            losses["gp_B"] = self.gradient_penalty(self.D_B, seen_A, fake_A)
            # Inside the paper's halving, so weight stays the penalty-to-critic ratio (WGAN-GP's lambda).
            loss_D = loss_D + 0.5 * (losses["gp_A"] + losses["gp_B"])
        optimizers.step("D", loss_D)
        return {name: value.detach() for name, value in losses.items()}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[tuple[str, torch.Tensor]]]:
        real_A, real_B = batch["A"], batch["B"]
        fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
        return [
            [("A", real_A), ("G(A)", fake_B), ("F(G(A))", self.G_B(fake_B))],
            [("B", real_B), ("F(B)", fake_A), ("G(F(B))", self.G_A(fake_A))],
        ]


def build_cyclegan(params: CycleGANParams, seed: int) -> CycleGAN:
    """CycleGAN training step: LSGAN + cycle (lambda 10) + identity (0.5 lambda), history pools."""
    return CycleGAN(params, seed)
