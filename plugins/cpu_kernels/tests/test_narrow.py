"""Convolutions with few channels on one side (narrow.py): the same values and gradients as the direct
convolution, by the compiled loops and by the fallbacks used without them."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from ganforge_cpu_kernels.narrow import NarrowConv2d, eligible, use_narrow_kernels
from ganforge_cpu_kernels.plugin import CpuKernels, CpuKernelsParams
from kernel_checks import relative_error, swapped
from torch import nn

from ganforge.builtins.networks import ResnetParams, build_resnet
from ganforge.engine.runtime import Runtime


def compiled_kernels_or_skip() -> None:
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
        pytest.skip("GANFORGE_WINOGRAD_KERNELS=torch asks for the torch-operator path")
    from ganforge_cpu_kernels.winograd import compiled_kernels

    if compiled_kernels() is None:
        pytest.skip("the compiled CPU kernels could not be built here")


SHAPES = [
    # (in, out, kernel, padding, input height, input width): few outputs, then few inputs; output
    # widths below 8, between 8 and 16 and above 16 with a remainder, for the loops' edge cases
    (32, 3, (7, 7), (0, 0), 13, 11),
    (40, 3, (7, 7), (3, 3), 12, 37),
    (32, 1, (3, 5), (1, 2), 13, 21),
    (33, 4, (5, 5), (4, 0), 9, 30),
    (36, 2, (6, 6), (2, 5), 10, 19),  # a filter width without its own compiled loop
    (3, 32, (7, 7), (0, 0), 13, 11),
    (3, 40, (7, 7), (3, 3), 12, 37),
    (2, 33, (3, 5), (1, 2), 20, 21),
    (4, 39, (5, 5), (0, 4), 9, 30),
]


@pytest.mark.parametrize("kernels", ["compiled", "torch"])
@pytest.mark.parametrize(("cin", "cout", "kernel", "padding", "h", "w"), SHAPES)
def test_values_and_gradients_match_the_direct_convolution(monkeypatch, kernels, cin, cout, kernel, padding, h, w):
    if kernels == "compiled":
        compiled_kernels_or_skip()
    monkeypatch.setenv("GANFORGE_WINOGRAD_KERNELS", kernels)
    torch.manual_seed(0)
    layer = nn.Conv2d(cin, cout, kernel, padding=padding)
    reference = nn.Conv2d(cin, cout, kernel, padding=padding).double()
    reference.load_state_dict(layer.state_dict())
    layer = swapped(use_narrow_kernels, layer)
    assert type(layer) is NarrowConv2d
    x = torch.randn(2, cin, h, w, dtype=torch.float64)
    exact_x = x.clone().requires_grad_()
    expected = reference(exact_x)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    fast_x = x.float().requires_grad_()
    result = layer(fast_x)
    result.backward(grad.float())

    # which path ran: the compiled loops' own Function, or torch's operators
    assert ("_NarrowConv" in type(result.grad_fn).__name__) == (kernels == "compiled")
    assert result.shape == expected.shape
    assert relative_error(result.detach(), expected.detach()) < 1e-5
    assert relative_error(fast_x.grad, exact_x.grad) < 1e-5
    assert relative_error(layer.weight.grad, reference.weight.grad) < 1e-5
    assert relative_error(layer.bias.grad, reference.bias.grad) < 1e-5


def test_without_grad_and_without_bias_the_loops_give_the_same_result():
    compiled_kernels_or_skip()
    torch.manual_seed(0)
    for layer in (nn.Conv2d(3, 64, 7, bias=False), nn.Conv2d(64, 3, 7, padding=3, bias=False)):
        x = torch.randn(1, layer.in_channels, 40, 40)
        expected = F.conv2d(x.double(), layer.weight.double(), padding=layer.padding)
        layer = swapped(use_narrow_kernels, layer)
        with torch.inference_mode():
            assert relative_error(layer(x), expected) < 1e-5


def test_only_stride_1_layers_with_few_channels_on_one_side_switch():
    assert eligible(nn.Conv2d(64, 3, 7))
    assert eligible(nn.Conv2d(3, 64, 7))
    assert eligible(nn.Conv2d(512, 1, 4, padding=1))  # a PatchGAN's output layer
    assert not eligible(nn.Conv2d(64, 8, 7))
    assert not eligible(nn.Conv2d(3, 16, 7))  # too few on the wide side
    assert not eligible(nn.Conv2d(64, 3, 7, stride=2))
    assert not eligible(nn.Conv2d(3, 64, 4, stride=2, padding=1))  # a PatchGAN's input layer
    assert not eligible(nn.Conv2d(64, 3, 7, padding=3, padding_mode="reflect"))
    assert not eligible(nn.Conv2d(64, 3, 1))
    assert not eligible(nn.Conv2d(64, 3, 3, padding=3))  # padding beyond the filter


def test_the_state_dict_is_unchanged_and_other_dtypes_stay_direct():
    torch.manual_seed(0)
    layer = nn.Conv2d(32, 3, 3, padding=1)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer = swapped(use_narrow_kernels, layer)
    assert layer.state_dict().keys() == before.keys()
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in before.items())
    x = torch.randn(1, 32, 6, 6, dtype=torch.float64)
    layer.double()
    assert torch.equal(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))  # float64: the direct path


def test_the_backend_switches_a_generators_first_and_last_layers():
    torch.manual_seed(0)
    net = build_resnet(ResnetParams(ngf=32, n_blocks=2))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
    Runtime(torch.device("cpu"), backend=CpuKernels(CpuKernelsParams())).prepare_model(net, {"G": net})
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert type(convs[0]) is NarrowConv2d and convs[0].in_channels == 3
    assert type(convs[-1]) is NarrowConv2d and convs[-1].out_channels == 3
    with torch.no_grad():
        assert relative_error(net(x), expected.double()) < 1e-4


def test_torch_compile_traces_the_loops_in_one_graph_with_the_same_gradients():
    compiled_kernels_or_skip()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 7, padding=3), nn.ReLU(), nn.Conv2d(32, 3, 5))
    use_narrow_kernels(net)
    x = torch.randn(2, 3, 24, 20)
    eager = net(x)
    eager.square().sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    torch._dynamo.reset()
    graphs = []

    def count(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(net, backend=count, fullgraph=True)
    result = compiled(x)
    result.square().sum().backward()
    assert len(graphs) == 1
    assert torch.allclose(result, eager, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(p.grad, g, rtol=1e-5, atol=1e-6) for p, g in zip(net.parameters(), expected))
