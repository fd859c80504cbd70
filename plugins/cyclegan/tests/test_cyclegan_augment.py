"""CycleGAN with DiffAugment: every image a discriminator sees is augmented, in both updates; penalties
are taken on the augmented images; with the default ``none`` the discriminators see the images as they are."""

from __future__ import annotations

import torch

from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def tiny(**extra):
    spec = {
        "type": "cyclegan",
        "generator": {"type": "resnet", "ngf": 4, "n_blocks": 1},
        "discriminator": {"type": "patchgan", "ndf": 4, "n_layers": 2},
        "pool": {"type": "history", "size": 0},
        **extra,
    }
    return REGISTRIES.resolve("model", spec, "model").build(0)


def batch(n: int = 2, size: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in "AB"}


def optimizers(model) -> Optimizers:
    return Optimizers({g: torch.optim.Adam(p, lr=2e-4) for g, p in model.optimizer_groups().items()})


def watch(net: torch.nn.Module, outputs: bool = False) -> list[torch.Tensor]:
    """Every input ``net`` is called with from now on (or every output it returns)."""
    seen: list[torch.Tensor] = []
    net.register_forward_hook(
        lambda module, args, out: seen.append((out if outputs else args[0]).detach().clone())
    )
    return seen


def test_default_is_none_and_the_discriminators_see_the_images_as_they_are(one_thread) -> None:
    model = tiny()
    assert model.p.augment.type == "none" and not model.augment.enabled
    assert "augment" not in "".join(model.state_dict())  # checkpoints are unchanged
    fakes, seen = watch(model.G_A, outputs=True), watch(model.D_A)
    x = batch()
    model.train_step(x, optimizers(model))
    n = len(x["B"])
    assert torch.equal(seen[0], fakes[0][:n])  # G step: G_A's fakes as generated
    assert torch.equal(seen[1][:n], x["B"]) and torch.equal(seen[1][n:], fakes[0][:n])  # D step


def test_with_diffaugment_the_discriminators_see_augmented_reals_and_fakes(one_thread) -> None:
    torch.manual_seed(0)
    model = tiny(augment={"type": "diffaugment"})
    assert model.augment.enabled
    fakes, seen_A, seen_B = watch(model.G_A, outputs=True), watch(model.D_A), watch(model.D_B)
    opt = optimizers(model)
    for step in range(3):
        x = batch(seed=step)
        before = (len(fakes), len(seen_A))
        losses = model.train_step(x, opt)
        assert all(torch.isfinite(v) for v in losses.values())
        g_step, d_step = seen_A[before[1]], seen_A[before[1] + 1]
        generated = fakes[before[0]][: len(x["A"])]
        n = len(x["B"])
        assert g_step.shape == generated.shape and not torch.equal(
            g_step, generated
        )  # G step: augmented fakes
        assert not torch.equal(d_step[:n], x["B"])  # D step: augmented reals
        assert not torch.equal(d_step[n:], generated)  # and augmented (pooled) fakes
        # the augmentation moves content and blanks a rectangle: zeros the raw images do not have
        assert (d_step[:n] == 0).sum() > 0 and (x["B"] == 0).sum() == 0
    assert len(seen_B) == 2 * 3  # D_B as well: once per update


def test_augmented_d_inputs_are_differentiable_for_the_generators(one_thread) -> None:
    """The G step's augmentation is differentiable: G's weights get a gradient through D(T(G(x)))."""
    torch.manual_seed(0)
    model = tiny(augment={"type": "diffaugment"}, lambda_cycle=0.0, lambda_identity=0.0)
    x = batch()
    fake = model.G_A(x["A"])
    loss = model.gan_loss(model.D_A(model.seen(fake)), 1.0)
    loss.backward()
    grads = [p.grad for p in model.G_A.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_a_penalty_is_taken_on_the_augmented_images(one_thread) -> None:
    torch.manual_seed(0)
    model = tiny(augment={"type": "diffaugment"}, gradient_penalty={"type": "gradient_penalty", "kind": "r1"})
    seen = watch(model.D_A)
    x = batch()
    losses = model.train_step(x, optimizers(model))
    n = len(x["B"])
    # calls of D_A: G step, D step on [real | fake], then the R1 penalty on the reals D_A judged
    assert len(seen) == 3 and {"gp_A", "gp_B"} <= set(losses)
    assert torch.equal(seen[2], seen[1][:n]) and not torch.equal(seen[2], x["B"])


def test_the_same_seed_gives_the_same_steps(one_thread) -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(7)
        model = tiny(augment={"type": "diffaugment", "policy": ["translation", "cutout"]})
        opt = optimizers(model)
        losses = [model.train_step(batch(seed=s), opt) for s in range(2)]
        results.append((losses, [p.detach().clone() for p in model.D_A.parameters()]))
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert all(torch.equal(a[k], b[k]) for a, b in zip(losses_a, losses_b, strict=True) for k in a)
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
