"""Transposed convolutions from a channels_last input when no gradient is recorded (translation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ganforge_cpu_kernels import use_cpu_algorithms
from ganforge_cpu_kernels.upsampling import UpsamplingConvTranspose2d, use_channels_last_input
from kernel_checks import swapped
from torch import nn


def layer_and_copy(**kwargs) -> tuple[nn.ConvTranspose2d, nn.ConvTranspose2d]:
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1, **kwargs)
    switched = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1, **kwargs)
    switched.load_state_dict(plain.state_dict())
    switched = swapped(use_channels_last_input, switched)
    return plain, switched


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_without_autograd_the_result_is_the_same_and_nchw(context):
    plain, switched = layer_and_copy()
    x = torch.randn(2, 32, 9, 11)
    with context():
        expected, result = plain(x), switched(x)
        sized = switched(x, output_size=[18, 22])
    assert isinstance(switched, UpsamplingConvTranspose2d)
    assert result.shape == expected.shape == (2, 16, 18, 22)
    assert result.is_contiguous()  # NCHW, as the layers after it expect
    assert torch.allclose(result, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(sized, expected, atol=1e-5, rtol=1e-5)


def test_training_takes_the_plain_call_with_its_gradients():
    plain, switched = layer_and_copy()
    x = torch.randn(1, 32, 8, 8, requires_grad=True)
    result = switched(x)
    assert torch.equal(result, plain(x))  # the very same call: identical numbers
    result.sum().backward()
    assert switched.weight.grad is not None and x.grad is not None
    assert list(switched.state_dict()) == ["weight", "bias"]


def test_use_cpu_algorithms_switches_a_generators_upsampling_layers():
    from ganforge.builtins.networks import ResnetParams, build_resnet

    torch.manual_seed(0)
    net = build_resnet(ResnetParams(ngf=8, n_blocks=1)).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    switched = use_cpu_algorithms(net)
    assert len(switched.upsampling) == 2
    assert all(isinstance(net.get_submodule(name), UpsamplingConvTranspose2d) for name in switched.upsampling)
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        layer = net.get_submodule(switched.upsampling[0])
        features = torch.randn(1, layer.in_channels, 8, 8)
        plain = F.conv_transpose2d(features, layer.weight, layer.bias, 2, 1, 1)
        assert torch.equal(layer(features), plain)  # under autocast the plain call, in its precision


@pytest.mark.parametrize("shape", [(1, 64, 37, 41), (3, 20, 16, 16), (2, 1, 5, 7), (1, 3, 1, 1)])
def test_the_compiled_layout_copy_gives_torchs_nchw_tensor(shape):
    import os

    from ganforge_cpu_kernels.upsampling import _to_nchw
    from ganforge_cpu_kernels.winograd import compiled_kernels

    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch" or compiled_kernels() is None:
        pytest.skip("the compiled CPU kernels are not built here")
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    result = torch.ops.ganforge_layout.to_nchw(x)
    assert result.is_contiguous() and torch.equal(result, x)
    assert _to_nchw(x).is_contiguous() and torch.equal(_to_nchw(x), x)
    nchw = torch.randn(shape)
    assert _to_nchw(nchw) is nchw  # already NCHW: no copy
