"""The backend on the other built-in networks: a U-Net (batch and instance norm, 4x4 stride-2 layers
and their transposed form) and a PatchGAN with spectral norm, whose parametrized convolutions it must
leave alone. Outputs and gradients match the ``direct`` backend's."""

from __future__ import annotations

import copy

import pytest
import torch
from ganforge_cpu_kernels import KernelLayer
from torch import nn
from torch.nn.utils import parametrize

from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())
CPU = torch.device("cpu")


def backend(name: str):
    return REGISTRIES.resolve("backend", {"type": name}, "backend").build()


def build(kind: str, spec: dict) -> nn.Module:
    torch.manual_seed(0)
    return REGISTRIES.resolve(kind, spec, kind).build()


def compare(net: nn.Module, x: torch.Tensor, *, training: bool) -> tuple[str, nn.Module]:
    """Prepare a copy of ``net`` with each backend, run both forward (and backward when training) on
    ``x``; assert outputs and parameter gradients agree. Return cpu_kernels' note and its network."""
    net.train(training)
    direct, fast = copy.deepcopy(net), copy.deepcopy(net)
    assert isinstance(backend("direct").prepare(direct, CPU, training=training), str)
    note = backend("cpu_kernels").prepare(fast, CPU, training=training)
    assert list(fast.state_dict()) == list(direct.state_dict())
    with torch.set_grad_enabled(training):
        expected, got = direct(x), fast(x)
    assert (got - expected).abs().max().item() < 1e-4
    if training:
        expected.square().mean().backward()
        got.square().mean().backward()
        for (name, a), b in zip(direct.named_parameters(), fast.parameters(), strict=True):
            scale = a.grad.abs().max().item() + 1e-12
            assert (b.grad - a.grad).abs().max().item() <= 1e-3 * scale + 1e-6, name
    return note, fast


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("training", [True, False])
def test_unet_matches_the_direct_backend(norm: str, training: bool) -> None:
    net = build("generator", {"type": "unet", "ngf": 32, "num_downs": 5, "norm": norm, "dropout": 0.0})
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    note, fast = compare(net, x, training=training)
    assert "transposed" in note  # the 4x4 stride-2 transposed convolutions take channels_last input
    if training:
        assert "strided" in note  # and the stride-2 ones (32 channels and up) their phase gradients
    switched = [name for name, m in fast.named_modules() if isinstance(m, KernelLayer)]
    assert switched and all(".model." in name for name in switched)
    assert ("instance-norm" in note) == (norm == "instance")
    batch_norms = [m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(type(m) is nn.BatchNorm2d for m in batch_norms) and len(batch_norms) == 7 * (norm == "batch")


@pytest.mark.parametrize("training", [True, False])
def test_spectral_norm_layers_are_left_alone(training: bool) -> None:
    # ndf 64: without spectral norm its 256 -> 512 stride-1 layer goes to Winograd, its 3-channel input
    # layer to the narrow loops and its stride-2 layers to the phase gradients (test_swapping.py)
    net = build("discriminator", {"type": "patchgan", "ndf": 64, "spectral_norm": True})
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    note, fast = compare(net, x, training=training)
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert not any(isinstance(c, KernelLayer) for c in convs)
    assert note == "replaced 3 instance-norm layers"  # the norms still switch
    # the parametrization still acts: each weight's largest singular value is about 1
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.1)


def test_pixel_discriminator_matches_the_direct_backend() -> None:
    net = build("discriminator", {"type": "pixel", "ndf": 64, "norm": "batch"})
    compare(net, torch.rand(2, 3, 16, 16) * 2 - 1, training=True)
