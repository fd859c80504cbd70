"""The pix2pix objective and step order, against hand computations (Isola et al. 2017, eq. 1-4)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError
from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())
TINY = {
    "type": "pix2pix",
    "generator": {"type": "resnet", "ngf": 4, "n_blocks": 1},
    "discriminator": {"type": "patchgan", "ndf": 4, "n_layers": 2},
}


def tiny_model(**overrides):
    return REGISTRIES.resolve("model", {**TINY, **overrides}, "model").build(0)


def adam(model):
    return {g: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)) for g, p in model.optimizer_groups().items()}


class Recording(Optimizers):
    """The engine's Optimizers, noting the order of the updates and what D looked like at each."""

    def __init__(self, model, optimizers):
        super().__init__(optimizers)
        self.model = model
        self.calls: list[tuple[str, bool]] = []

    def step(self, name, loss):
        super().step(name, loss)
        d_frozen = not any(p.requires_grad for p in self.model.D.parameters())
        self.calls.append((name, d_frozen))


def batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "A": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
        "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
    }


def test_defaults_are_the_papers():
    p = REGISTRIES.resolve("model", {"type": "pix2pix"}, "model").params
    assert (p.gan_loss.type, p.l1_loss.type, p.lambda_l1) == ("vanilla", "l1", 100.0)
    assert (p.discriminator.type, p.conditional, p.real_label, p.fake_label) == ("patchgan", True, 1.0, 0.0)
    assert (p.generator.type, p.generator.params.num_downs) == ("unet", 8)  # U-Net 256


def test_conditional_d_sees_input_and_image_on_channels(one_thread):
    model = tiny_model()
    assert model.D.model[0].in_channels == 6  # 3 (input A) + 3 (image B)
    seen = []
    model.D.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = batch()
    fake = model.G(x["A"])
    model.discriminator_losses(x["A"], x["B"], fake)
    assert [t.shape[1] for t in seen] == [6, 6]
    assert torch.equal(seen[0][:, :3], x["A"]) and torch.equal(seen[0][:, 3:], fake.detach())
    assert torch.equal(seen[1][:, :3], x["A"]) and torch.equal(seen[1][:, 3:], x["B"])


def test_channels_follow_the_generator_and_the_unconditional_ablation():
    gray_to_rgb = tiny_model(generator={"type": "resnet", "ngf": 4, "n_blocks": 1, "in_channels": 1})
    assert gray_to_rgb.D.model[0].in_channels == 4
    unconditional = tiny_model(conditional=False)
    assert unconditional.D.model[0].in_channels == 3
    x = batch()
    assert torch.equal(unconditional.pair(x["A"], x["B"]), x["B"])


def test_losses_are_gan_plus_100_l1_and_half_of_d(one_thread):
    torch.manual_seed(0)
    model = tiny_model()
    x = batch()
    before = copy.deepcopy(model)
    losses = model.train_step(x, Recording(model, adam(model)))
    assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake", "D"}

    # D's terms, on the nets as the step found them: BCE(D(A, B), 1), BCE(D(A, G(A)), 0), their mean.
    with torch.no_grad():
        fake = before.G(x["A"])
        real_logits = before.D(torch.cat([x["A"], x["B"]], 1))
        fake_logits = before.D(torch.cat([x["A"], fake], 1))
    d_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    d_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    assert losses["D_real"].item() == pytest.approx(d_real.item(), rel=1e-5)
    assert losses["D_fake"].item() == pytest.approx(d_fake.item(), rel=1e-5)
    assert losses["D"].item() == pytest.approx(0.5 * (d_real.item() + d_fake.item()), rel=1e-5)

    # L1 weighted by lambda = 100: mean |G(A) - B| of the generator as it was before its update.
    assert losses["G_L1"].item() == pytest.approx(100 * (fake - x["B"]).abs().mean().item(), rel=1e-5)


def test_g_is_judged_by_the_d_updated_in_the_same_step(one_thread):
    torch.manual_seed(1)
    model = tiny_model()
    x = batch(seed=1)
    before = copy.deepcopy(model)
    opts = Recording(model, adam(model))
    losses = model.train_step(x, opts)
    assert opts.calls == [("D", False), ("G", True)]  # D first; D frozen while G steps
    assert all(p.requires_grad for p in model.D.parameters())  # and trainable again afterwards
    changed = [
        not torch.equal(a, b) for a, b in zip(before.D.parameters(), model.D.parameters(), strict=True)
    ]
    assert all(changed)

    with torch.no_grad():
        fake = before.G(x["A"])  # G has not moved when its loss is computed
        new_logits = model.D(torch.cat([x["A"], fake], 1))
        old_logits = before.D(torch.cat([x["A"], fake], 1))
    against_new = F.binary_cross_entropy_with_logits(new_logits, torch.ones_like(new_logits)).item()
    against_old = F.binary_cross_entropy_with_logits(old_logits, torch.ones_like(old_logits)).item()
    assert against_new != pytest.approx(against_old, rel=1e-6)
    assert losses["G_GAN"].item() == pytest.approx(against_new, rel=1e-5)


def test_g_total_is_gan_plus_weighted_l1_by_its_gradient(one_thread):
    """The loss G steps on is exactly G_GAN + lambda * L1: compare G's gradients with a hand-built sum."""
    torch.manual_seed(2)
    model = tiny_model(lambda_l1=7.0)
    x = batch(seed=2)
    twin = copy.deepcopy(model)
    grads = {}

    class Capture(Optimizers):
        def step(self, name, loss):
            if name == "G":
                self[name].zero_grad(set_to_none=True)
                loss.backward()
                grads["model"] = [p.grad.clone() for p in model.G.parameters()]
                self[name].step()
            else:
                super().step(name, loss)

    model.train_step(x, Capture(adam(model)))
    # the twin takes the same D step, then the hand-built G loss
    twin_opts = adam(twin)
    fake = twin.G(x["A"])
    d = twin.discriminator_losses(x["A"], x["B"], fake)["D"]
    twin_opts["D"].zero_grad()
    d.backward()
    twin_opts["D"].step()
    twin.G.zero_grad()
    logits = twin.D(torch.cat([x["A"], fake], 1))
    total = (
        F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        + 7.0 * (fake - x["B"]).abs().mean()
    )
    total.backward()
    for ours, theirs in zip(grads["model"], [p.grad for p in twin.G.parameters()], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


def test_directions_groups_and_samples():
    model = tiny_model()
    (direction,) = model.directions()
    assert (direction.name, direction.source, direction.target, direction.net) == ("AtoB", "A", "B", "G")
    assert model.exported_nets() == ["G"]
    groups = model.optimizer_groups()
    assert set(groups) == {"G", "D"}
    assert len(groups["G"]) == len(list(model.G.parameters()))
    x = batch(n=1)
    (row,) = model.sample_rows(x)
    assert [label for label, _ in row] == ["input", "output", "target"]
    assert torch.equal(row[0][1], x["A"]) and torch.equal(row[2][1], x["B"])
    assert not any(hasattr(model, name) for name in ("pool", "pool_A", "pool_B"))  # no history pool


def test_a_discriminator_without_in_channels_is_refused_in_one_line():
    from pydantic import Field

    from ganforge import Params

    class P(Params):
        width: int = Field(4, ge=1, description="w")

    registries = collect_registries(make_plugin_manager())
    registries["discriminator"].add("fixed3", lambda p: torch.nn.Conv2d(3, 1, 1), params=P, plugin="test")
    spec = registries.resolve("model", {**TINY, "discriminator": {"type": "fixed3"}}, "model")
    with pytest.raises(GanforgeError, match=r"model.discriminator: 'fixed3' has no in_channels parameter"):
        spec.build(0)


def test_no_penalty_by_default():
    model = tiny_model()
    assert model.p.gradient_penalty.type == "none" and model.double_backward_nets() == []
    assert "gp" not in model.discriminator_losses(*batch().values(), batch()["B"])


def test_a_gradient_penalty_is_added_to_d_on_the_pairs_d_judges(one_thread):
    """r1 (weight 2) on the real pair: D's loss is half of the GAN terms plus the penalty (inside the
    halving, so weight is the penalty-to-critic ratio), which equals
    mean over images of |grad of sum D(x, y) w.r.t. the pair|^2 (weight/2 * |g|^2), and D is declared
    for double backward so a backend leaves it to torch's layers."""
    torch.manual_seed(0)
    model = tiny_model(gradient_penalty={"type": "gradient_penalty", "kind": "r1", "weight": 2.0})
    assert model.double_backward_nets() == ["D"]
    data = batch()
    fake = model.G(data["A"])
    losses = model.discriminator_losses(data["A"], data["B"], fake)
    pair = torch.cat([data["A"], data["B"]], dim=1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.D(pair).sum(), pair)
    expected = grad.flatten(1).pow(2).sum(1).mean()
    torch.testing.assert_close(losses["gp"], expected, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(
        losses["D"], 0.5 * (losses["D_real"] + losses["D_fake"] + expected), rtol=1e-4, atol=1e-8
    )
    step = model.train_step(data, Optimizers(adam(model)))
    assert torch.isfinite(step["gp"]) and step["gp"] > 0
