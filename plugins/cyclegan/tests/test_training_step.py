"""The CycleGAN training step against an independent computation of the paper's objective."""

from __future__ import annotations

import copy

import pytest
import torch

from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())
TINY = {
    "type": "cyclegan",
    "generator": {"type": "resnet", "ngf": 4, "n_blocks": 1},
    "discriminator": {"type": "patchgan", "ndf": 4, "n_layers": 2},
}


def tiny_model(**overrides):
    spec = REGISTRIES.resolve("model", {**TINY, **overrides}, "model")
    return spec.build(0)


class RecordingOptimizers(Optimizers):
    """The engine's Optimizers, noting which nets receive gradients at each step."""

    def __init__(self, model, optimizers):
        super().__init__(optimizers)
        self.model = model
        self.calls: list[tuple[str, bool, bool]] = []

    def step(self, name, loss):
        super().step(name, loss)
        d_grads = any(p.grad is not None for p in [*self.model.D_A.parameters(), *self.model.D_B.parameters()])
        d_frozen = not any(p.requires_grad for p in self.model.D_A.parameters())
        self.calls.append((name, d_grads, d_frozen))


def test_losses_match_the_paper_objective():
    torch.manual_seed(0)
    model = tiny_model(pool={"type": "history", "size": 0})
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    before = copy.deepcopy(model)  # nets as they are when the step starts
    groups = model.optimizer_groups()
    opts = RecordingOptimizers(model, {g: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)) for g, p in groups.items()})
    losses = model.train_step({"A": a, "B": b}, opts)

    G_A, G_B, D_A, D_B = before.G_A, before.G_B, before.D_A, before.D_B
    mse = lambda x, t: ((x - t) ** 2).mean()  # noqa: E731  LSGAN, written out independently
    l1 = lambda x, y: (x - y).abs().mean()  # noqa: E731
    with torch.no_grad():
        fake_B, fake_A = G_A(a), G_B(b)
        expected = {
            "G_A": mse(D_A(fake_B), 1.0),  # generator wants D to say "real" (1)
            "G_B": mse(D_B(fake_A), 1.0),
            "cycle_A": 10 * l1(G_B(fake_B), a),  # lambda = 10
            "cycle_B": 10 * l1(G_A(fake_A), b),
            "idt_A": 0.5 * 10 * l1(G_A(b), b),  # identity weight 0.5 x lambda
            "idt_B": 0.5 * 10 * l1(G_B(a), a),
            # D is updated after G, but on the fakes made before the G update; real -> 1, fake -> 0,
            # and the sum is halved.
            "D_A": 0.5 * (mse(D_A(b), 1.0) + mse(D_A(fake_B), 0.0)),
            "D_B": 0.5 * (mse(D_B(a), 1.0) + mse(D_B(fake_A), 0.0)),
        }
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name

    # Paper order: G first with both discriminators frozen (no gradient reaches them), then D.
    assert opts.calls == [("G", False, True), ("D", True, False)]
    for net in ("G_A", "G_B", "D_A", "D_B"):
        changed = any(
            not torch.equal(p, q) for p, q in zip(getattr(model, net).parameters(), getattr(before, net).parameters())
        )
        assert changed, f"{net} was not updated"


def test_identity_term_can_be_switched_off():
    model = tiny_model(lambda_identity=0.0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    groups = model.optimizer_groups()
    losses = model.train_step({"A": x, "B": x}, Optimizers({g: torch.optim.Adam(p) for g, p in groups.items()}))
    assert "idt_A" not in losses and "idt_B" not in losses


def test_discriminators_see_pooled_fakes():
    torch.manual_seed(0)
    model = tiny_model(pool={"type": "history", "size": 3})
    groups = model.optimizer_groups()
    opts = Optimizers({g: torch.optim.Adam(p) for g, p in groups.items()})
    for _ in range(5):
        model.train_step({"A": torch.rand(1, 3, 32, 32), "B": torch.rand(1, 3, 32, 32)}, opts)
    assert len(model.pool_A.images) == 3 and len(model.pool_B.images) == 3
    state = model.state_dict()  # pools travel with the model's state (for resume)
    assert any(key.startswith("pool_A.") for key in state)
