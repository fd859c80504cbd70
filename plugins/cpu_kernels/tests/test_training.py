"""The CPU kernels train the same model as torch's own layers."""

from __future__ import annotations

import torch
from ganforge_cpu_kernels.plugin import CpuKernels, CpuKernelsParams

from ganforge.engine.runtime import Runtime
from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def train(steps: int = 3, batch_calls: bool = False, adam: str = "for_loop", ngf: int = 8, **runtime_options):
    torch.manual_seed(0)
    spec = {
        "type": "cyclegan",
        "batch_calls": batch_calls,
        "generator": {"type": "resnet", "ngf": ngf, "n_blocks": 2},
        "discriminator": {"type": "patchgan", "ndf": 8},
        "pool": {"type": "history", "size": 2},
    }
    model = REGISTRIES.resolve("model", spec, "model").build(0)
    runtime = Runtime(torch.device("cpu"), **runtime_options)
    model = runtime.prepare_model(model, model.networks())
    adam_spec = {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": adam}
    optimizer = REGISTRIES.resolve("optimizer", adam_spec, "o")
    optimizers = Optimizers({g: optimizer.build(list(p)) for g, p in model.optimizer_groups().items()})
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        batch = {k: torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for k in "AB"}
        with runtime.autocast():
            losses.append(model.train_step(runtime.prepare_batch(batch), optimizers))
        optimizers.end_step()
    return model, losses


def max_loss_diff(a, b, steps=None):
    return max(abs(float(x[k]) - float(y[k])) for x, y in list(zip(a, b))[:steps] for k in x)


def test_winograd_convolutions_train_like_direct_ones():
    """Residual blocks of 128 channels (ngf 32) switch to Winograd; relative error ~1e-5 per layer."""
    plain_model, plain = train(ngf=32)
    model, losses = train(ngf=32, backend=CpuKernels(CpuKernelsParams()))
    switched = [name for name, m in model.named_modules() if type(m).__name__ == "WinogradConv2d"]
    assert len(switched) == 2 * 2 * 2  # two generators, two blocks, two convolutions each
    assert max_loss_diff(losses, plain, steps=1) < 1e-4
    assert max_loss_diff(losses, plain) < 1e-2
    assert list(model.state_dict()) == list(plain_model.state_dict())
