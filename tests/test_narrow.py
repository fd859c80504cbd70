"""Convolutions with few output channels as transposed convolutions: the same values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ganforge_cyclegan.networks import ResnetParams, build_resnet
from torch import nn

from ganforge.engine.runtime import Runtime
from ganforge.ops.narrow import NarrowOutputConv2d, eligible, use_transposed_form


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize(
    ("kernel", "padding", "out_channels"),
    [((7, 7), (0, 0), 3), ((3, 5), (1, 2), 1), ((5, 5), (4, 0), 4)],
    ids=["7x7-unpadded", "3x5-same", "5x5-full-padding"],
)
def test_values_and_gradients_match_the_direct_convolution(kernel, padding, out_channels):
    torch.manual_seed(0)
    layer = nn.Conv2d(32, out_channels, kernel, padding=padding)
    reference = nn.Conv2d(32, out_channels, kernel, padding=padding).double()
    reference.load_state_dict(layer.state_dict())
    assert use_transposed_form(layer) == [""] and type(layer) is NarrowOutputConv2d
    x = torch.randn(2, 32, 13, 11, dtype=torch.float64)
    exact_x = x.clone().requires_grad_()
    expected = reference(exact_x)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    fast_x = x.float().requires_grad_()
    result = layer(fast_x)
    result.backward(grad.float())

    assert result.shape == expected.shape
    assert relative_error(result.detach(), expected.detach()) < 1e-5
    assert relative_error(fast_x.grad, exact_x.grad) < 1e-5
    assert relative_error(layer.weight.grad, reference.weight.grad) < 1e-5
    assert relative_error(layer.bias.grad, reference.bias.grad) < 1e-5


def test_only_many_to_few_channel_stride_1_layers_switch():
    assert eligible(nn.Conv2d(64, 3, 7))
    assert not eligible(nn.Conv2d(3, 64, 7))  # the opposite shape is slower this way
    assert not eligible(nn.Conv2d(64, 8, 7))
    assert not eligible(nn.Conv2d(64, 3, 7, stride=2))
    assert not eligible(nn.Conv2d(64, 3, 7, padding=3, padding_mode="reflect"))
    assert not eligible(nn.Conv2d(64, 3, 1))


def test_the_state_dict_is_unchanged_and_other_dtypes_stay_direct():
    torch.manual_seed(0)
    layer = nn.Conv2d(32, 3, 3, padding=1)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    use_transposed_form(layer)
    assert layer.state_dict().keys() == before.keys()
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in before.items())
    x = torch.randn(1, 32, 6, 6, dtype=torch.float64)
    layer.double()
    assert torch.equal(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))  # float64: the direct path


def test_the_winograd_algorithm_switches_a_generators_last_layer():
    torch.manual_seed(0)
    net = build_resnet(ResnetParams(ngf=32, n_blocks=2))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
    Runtime(torch.device("cpu"), conv_algorithm="winograd").prepare_model(net, {"G": net})
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    assert type(last) is NarrowOutputConv2d and last.out_channels == 3
    with torch.no_grad():
        assert relative_error(net(x), expected.double()) < 1e-4
