"""Filter gradients of stride-2 convolutions and their transposed form by products over the input's
phases (strided.py): the gradients of torch's own layers, computed in float64."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from ganforge_cpu_kernels import use_cpu_algorithms
from ganforge_cpu_kernels.strided import StridedConv2d, eligible, phase_filter_gradient, use_phase_gradients
from ganforge_cpu_kernels.upsampling import UpsamplingConvTranspose2d, use_channels_last_input
from kernel_checks import relative_error, swapped
from torch import nn


@pytest.fixture(autouse=True)
def compiled():
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
        pytest.skip("GANFORGE_WINOGRAD_KERNELS=torch asks for the torch-operator path")
    from ganforge_cpu_kernels.winograd import compiled_kernels

    if compiled_kernels() is None:
        pytest.skip("the compiled CPU kernels could not be built here")


def test_the_phases_and_the_widened_gradient_hold_the_padded_image_and_zeros():
    x = torch.randn(2, 3, 6, 8)
    p = torch.ops.ganforge_layout.phases(x)
    hp, wp = 4, 5
    assert p.shape == (4, 3, 2 * hp * wp + wp + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    for row in range(2):
        for col in range(2):
            expected = padded[:, :, row::2, col::2].transpose(0, 1).reshape(3, -1)
            assert torch.equal(p[row * 2 + col, :, : 2 * hp * wp], expected)
    assert not p[:, :, 2 * hp * wp :].any()  # the slack a shifted window reads
    y = torch.randn(2, 4, 3, 4)
    widened = torch.ops.ganforge_layout.widened(y)
    assert torch.equal(widened, F.pad(y, (0, 1, 0, 1)).transpose(0, 1).reshape(4, -1))


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("shape", [(1, 5, 7, 8, 6), (2, 3, 4, 10, 12), (3, 2, 9, 2, 2)], ids=["one", "two", "tiny"])
def test_a_strided_convolutions_filter_gradient_matches_float64(k, shape):
    torch.manual_seed(0)
    n, c, out, h, w = shape
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    weight = torch.randn(out, c, k, k, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, weight, None, 2, 1)
    grad = torch.randn_like(y)
    y.backward(grad)
    result = phase_filter_gradient(x.float(), grad.float(), k)
    assert result.shape == weight.shape
    assert relative_error(result, weight.grad) < 1e-5


@pytest.mark.parametrize("shape", [(2, 6, 4, 5, 7), (1, 3, 8, 1, 1)], ids=["odd-sides", "one-pixel"])
def test_a_transposed_convolutions_filter_gradient_matches_float64(shape):
    torch.manual_seed(0)
    n, c_in, c_out, h, w = shape
    x = torch.randn(n, c_in, h, w, dtype=torch.float64)
    weight = torch.randn(c_in, c_out, 3, 3, dtype=torch.float64, requires_grad=True)
    y = F.conv_transpose2d(x, weight, None, 2, 1, 1)
    assert y.shape[2:] == (2 * h, 2 * w)
    grad = torch.randn_like(y)
    y.backward(grad)
    assert relative_error(phase_filter_gradient(grad.float(), x.float(), 3), weight.grad) < 1e-5


def check_layer(layer: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    """Values and the gradients of input, weight and bias of ``layer`` (switched, so computed by the phase
    path) against ``reference`` (float64)."""
    x = x.requires_grad_()
    y = layer(x)
    assert type(y.grad_fn).__name__ == "_StridedBackward"
    grad = torch.randn_like(y)
    y.backward(grad)
    x64 = x.detach().double().requires_grad_()
    expected = reference(x64)
    expected.backward(grad.double())
    assert relative_error(y.detach(), expected.detach()) < 1e-5
    assert relative_error(x.grad, x64.grad) < 1e-5
    assert relative_error(layer.weight.grad, reference.weight.grad) < 1e-5
    assert relative_error(layer.bias.grad, reference.bias.grad) < 1e-5
    with torch.no_grad():
        assert relative_error(layer(x.detach()), expected.detach()) < 1e-5


@pytest.mark.parametrize("k", [3, 4])
def test_a_switched_strided_convolution_trains_like_torchs(k):
    torch.manual_seed(0)
    layer = nn.Conv2d(32, 48, k, stride=2, padding=1)
    reference = copy.deepcopy(layer).double()
    layer = swapped(use_phase_gradients, layer)
    assert type(layer) is StridedConv2d
    check_layer(layer, reference, torch.randn(2, 32, 12, 10))
    assert list(layer.state_dict()) == ["weight", "bias"]


def test_a_switched_transposed_convolution_trains_like_torchs():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(48, 32, 3, stride=2, padding=1, output_padding=1)
    reference = copy.deepcopy(layer).double()
    layer = swapped(use_channels_last_input, layer)
    assert type(layer) is UpsamplingConvTranspose2d
    check_layer(layer, reference, torch.randn(2, 48, 5, 6))


def test_other_calls_take_torchs_own_convolution():
    layer = nn.Conv2d(32, 32, 3, stride=2, padding=1)
    layer = swapped(use_phase_gradients, layer)
    odd = layer(torch.randn(1, 32, 9, 8, requires_grad=True))  # odd height: no whole phases
    assert type(odd.grad_fn).__name__ == "ConvolutionBackward0"
    layer.weight.requires_grad_(False)  # frozen filters (a discriminator in the generators' step)
    assert type(layer(torch.randn(1, 32, 8, 8, requires_grad=True)).grad_fn).__name__ == "ConvolutionBackward0"
    layer.weight.requires_grad_(True)
    assert type(layer.double()(torch.randn(1, 32, 8, 8, dtype=torch.float64)).grad_fn).__name__ == "ConvolutionBackward0"
    assert not eligible(nn.Conv2d(3, 64, 4, stride=2, padding=1))  # a 3-channel side: thin products
    assert not eligible(nn.Conv2d(32, 32, 3, stride=2, padding=2))
    assert not eligible(nn.Conv2d(32, 32, 3, stride=1, padding=1))
    assert not eligible(nn.Conv2d(32, 32, 5, stride=2, padding=1))


def test_a_generators_and_a_patchgans_strided_layers_switch_and_train_like_torchs():
    from ganforge.builtins.networks import PatchGANParams, ResnetParams, build_patchgan, build_resnet

    torch.manual_seed(0)
    for net, x, strided, transposed in (
        (build_resnet(ResnetParams(ngf=32, n_blocks=1)), torch.rand(2, 3, 32, 32) * 2 - 1, ["model.4", "model.7"], 2),
        (build_patchgan(PatchGANParams(ndf=32)), torch.rand(2, 3, 64, 64) * 2 - 1, ["model.2", "model.5"], 0),
    ):
        reference = copy.deepcopy(net).double()
        switched = use_cpu_algorithms(net)
        assert switched.strided == strided and len(switched.upsampling) == transposed
        y = net(x)
        grad = torch.randn_like(y)
        y.backward(grad)
        reference(x.double()).backward(grad.double())
        for (name, p), q in zip(net.named_parameters(), reference.parameters()):
            if name.endswith("weight"):  # (the biases before instance norms have a true gradient of zero)
                assert relative_error(p.grad, q.grad) < 2e-5, name
