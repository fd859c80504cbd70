"""CycleGAN with a gradient penalty on its discriminators: logged as gp_A/gp_B, trained on the CPU kernels
backend with the discriminators left to torch's layers (the kernels have no double backward)."""

from __future__ import annotations

import pytest
import torch

from ganforge.engine.runtime import Runtime
from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def tiny(penalty: dict | None = None):
    spec = {
        "type": "cyclegan",
        "generator": {"type": "resnet", "ngf": 8, "n_blocks": 1},
        "discriminator": {"type": "patchgan", "ndf": 8, "n_layers": 2},
        "pool": {"type": "history", "size": 0},
    }
    if penalty is not None:
        spec["gradient_penalty"] = penalty
    return REGISTRIES.resolve("model", spec, "model").build(0)


def step(model, backend_name: str = "cpu_kernels"):
    backend = REGISTRIES.resolve("backend", {"type": backend_name}, "train.backend").build()
    if not backend.available(torch.device("cpu"), "fp32"):
        pytest.skip(f"backend {backend_name} is not available here")
    runtime = Runtime(torch.device("cpu"), backend=backend)
    model = runtime.prepare_model(model, model.networks())
    groups = model.optimizer_groups()
    optimizers = Optimizers({g: torch.optim.Adam(p, lr=1e-4) for g, p in groups.items()})
    generator = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for k in "AB"}
    before = [p.detach().clone() for p in model.D_A.parameters()]
    losses = model.train_step(batch, optimizers)
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.D_A.parameters(), strict=True))
    return runtime, losses, moved


def test_wgan_gp_step_on_the_cpu_kernels_backend(one_thread) -> None:
    torch.manual_seed(0)
    model = tiny({"type": "gradient_penalty", "kind": "wgan_gp"})
    assert model.double_backward_nets() == ["D_A", "D_B"]
    runtime, losses, moved = step(model)
    assert "D_A, D_B unchanged for double backward" in runtime.describe_backend()
    assert {type(m) for m in model.D_A.modules()} <= {type(m) for m in tiny().D_A.modules()}  # torch's own
    assert {"gp_A", "gp_B"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["gp_A"] > 0 and moved


def test_without_the_hook_the_kernels_would_break_the_penalty(one_thread) -> None:
    """What the hook prevents: with the discriminators' layers swapped, the double backward fails."""
    torch.manual_seed(0)
    model = tiny({"type": "gradient_penalty", "kind": "r1", "weight": 1.0})
    model.double_backward_nets = list
    with pytest.raises(RuntimeError, match="differentiate twice"):
        step(model)


def test_no_penalty_by_default_logs_nothing_new(one_thread) -> None:
    torch.manual_seed(0)
    model = tiny()
    assert model.double_backward_nets() == [] and not model.gradient_penalty.enabled
    _, losses, _ = step(model, "direct")
    assert not {"gp_A", "gp_B"} & set(losses)
    assert "gradient_penalty" not in "".join(model.state_dict())  # old checkpoints still load


@pytest.mark.parametrize("gan_loss", ["hinge", "wgan"])
def test_discriminator_losses_take_the_discriminator_form(gan_loss: str, one_thread) -> None:
    """The D loss is half the sum of the D forms: for wgan, 0.5 (mean D(fake) - mean D(real))."""
    torch.manual_seed(0)
    spec = {
        "type": "cyclegan",
        "generator": {"type": "resnet", "ngf": 4, "n_blocks": 1},
        "discriminator": {"type": "patchgan", "ndf": 4, "n_layers": 2},
        "gan_loss": {"type": gan_loss},
    }
    model = REGISTRIES.resolve("model", spec, "model").build(0)
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        value = model.discriminator_loss(model.D_A, real, fake)
        pred_real, pred_fake = model.D_A(real), model.D_A(fake)
    if gan_loss == "wgan":
        expected = 0.5 * (pred_fake.mean() - pred_real.mean())
    else:
        expected = 0.5 * (torch.relu(1 - pred_real).mean() + torch.relu(1 + pred_fake).mean())
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
