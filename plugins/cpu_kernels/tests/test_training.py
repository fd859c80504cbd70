"""The CPU kernels train the same model as torch's own layers (moved from tests/test_speed_options.py)."""

from __future__ import annotations

import torch

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
    model, losses = train(ngf=32, conv_algorithm="winograd")
    switched = [name for name, m in model.named_modules() if type(m).__name__ == "WinogradConv2d"]
    assert len(switched) == 2 * 2 * 2  # two generators, two blocks, two convolutions each
    assert max_loss_diff(losses, plain, steps=1) < 1e-4
    assert max_loss_diff(losses, plain) < 1e-2
    assert list(model.state_dict()) == list(plain_model.state_dict())


def test_winograd_on_a_model_without_wide_layers_is_one_warning_line(tmp_path, cli):
    result = cli(
        "run", "recipes/quickstart.toml",
        "--set", 'train.conv_algorithm="winograd"', "--set", "train.epochs=1",
        "--set", "train.max_iters_per_epoch=1", "--set", "data.size=32", "--set", "output.report=false",
        "--set", f'output.root="{tmp_path.as_posix()}"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        (
            "warning: train.conv_algorithm = 'winograd': no convolution of this model is a 3x3 or 4x4, stride-1 "
            "one with 128 or more channels; those stay direct (2 layer(s) with few channels on one side take "
            "compiled loops)"  # the two PatchGANs' 1-channel output layers
        )
    ]
