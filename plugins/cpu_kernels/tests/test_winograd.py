"""Winograd F(4x4, 3x3) and F(3x3, 4x4) convolutions: the same values and gradients as the direct
convolution."""

from __future__ import annotations

import copy
import math
import os
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from ganforge_cpu_kernels import winograd
from ganforge_cpu_kernels.plugin import CpuKernels, CpuKernelsParams
from ganforge_cpu_kernels.winograd import FoldedReflectionPad2d, WinogradConv2d, use_winograd, winograd_conv
from kernel_checks import relative_error, swapped
from torch import nn

from ganforge.builtins.networks import ResnetParams, build_resnet
from ganforge.engine.runtime import Runtime
from ganforge.errors import GanforgeWarning


@pytest.mark.parametrize("r", [3, 4])
@pytest.mark.parametrize(
    ("n", "c", "k", "h", "w"),
    [(1, 16, 24, 8, 8), (3, 8, 5, 12, 16), (2, 5, 7, 9, 13), (1, 3, 2, 1, 2), (3, 4, 3, 64, 60)],
    ids=["one-image", "batch", "ragged-tiles", "smaller-than-a-tile", "chunks-of-images"],
)
def test_values_and_gradients_match_the_direct_convolution(n, c, k, h, w, r):
    generator = torch.Generator().manual_seed(n * 100 + h)
    x = torch.randn(n, c, h + r - 1, w + r - 1, generator=generator, dtype=torch.float64)
    weight = torch.randn(k, c, r, r, generator=generator, dtype=torch.float64) * 0.1
    bias = torch.randn(k, generator=generator, dtype=torch.float64)
    grad = torch.randn(n, k, h, w, generator=generator, dtype=torch.float64)

    exact = [t.clone().requires_grad_() for t in (x, weight, bias)]
    expected = F.conv2d(*exact)
    expected.backward(grad)
    fast = [t.float().requires_grad_() for t in (x, weight, bias)]
    result = winograd_conv(*fast)
    result.backward(grad.float())

    assert result.shape == expected.shape
    assert relative_error(result.detach(), expected.detach()) < 5e-5
    for fast_input, exact_input in zip(fast, exact):
        assert relative_error(fast_input.grad, exact_input.grad) < 5e-5


def test_bias_is_optional_and_only_needed_gradients_are_computed():
    x = torch.randn(1, 4, 10, 10)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    result = winograd_conv(x, weight)
    assert torch.allclose(result, F.conv2d(x, weight), atol=1e-4)
    result.sum().backward()
    assert x.grad is None and weight.grad is not None


def test_compiled_training_through_winograd_layers_is_one_graph_and_equals_eager():
    """train.compile with backend cpu_kernels: the Function (once_differentiable backward,
    buffers bypassed while tracing) compiles without graph breaks, forward and backward."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1))
    reference = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1))
    reference.load_state_dict(net.state_dict())
    assert len(use_winograd(net)) == 2
    x = torch.randn(2, 128, 12, 12)
    counters.clear()
    torch._dynamo.reset()
    result = torch.compile(net)(x)
    result.square().mean().backward()
    expected = reference(x)
    expected.square().mean().backward()
    assert not counters["graph_break"]
    assert relative_error(result.detach(), expected.detach().double()) < 5e-5
    for a, b in zip(net.parameters(), reference.parameters()):
        assert relative_error(a.grad, b.grad.double()) < 5e-5


def test_compiling_a_4x4_layer_traces_once_per_shape(monkeypatch):
    """F(3x3, 4x4) takes its transforms from a module cache; filling that cache while tracing made the
    graph's guards fail at the next call, one recompile per entry (a training warm-up took 250 s
    instead of 45 s)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 4, padding=1))
    assert len(use_winograd(net)) == 2
    assert ("G", 4, torch.device("cpu"), torch.float32) in winograd._cache  # filled before any tracing
    monkeypatch.setattr(winograd, "_cache", {})  # as if it had not been: tracing must not fill it
    x = torch.randn(2, 128, 16, 16)  # 2 x 25 tiles at the 4x4 layer: by Winograd
    counters.clear()
    torch._dynamo.reset()
    compiled = torch.compile(net)
    for _ in range(3):
        compiled(x).square().mean().backward()
    assert counters["stats"]["unique_graphs"] == 1
    assert not winograd._cache


def test_a_second_derivative_is_refused_not_silently_wrong():
    """A gradient penalty (R1, WGAN-GP) differentiates the input gradient again; Winograd's backward
    pass is not itself differentiable, so that must fail loudly."""
    x = torch.randn(1, 4, 10, 10, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(winograd_conv(x, weight).square().sum(), x, create_graph=True)
    assert torch.allclose(grad, torch.autograd.grad(F.conv2d(x, weight).square().sum(), x)[0], atol=1e-3)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.square().sum().backward()


@pytest.mark.parametrize("r", [3, 4])
def test_the_function_works_in_the_input_dtype(r):
    """The transforms are exact in float64: the algorithm, not the arithmetic, is what is tested."""
    x = torch.randn(2, 6, 14, 10, dtype=torch.float64)
    weight = torch.randn(5, 6, r, r, dtype=torch.float64)
    assert relative_error(winograd_conv(x, weight), F.conv2d(x, weight)) < 1e-12


def test_the_transform_matrices_are_toom_cook_at_the_chosen_points_and_share_b_transposed():
    """F(4x4, 3x3) and F(3x3, 4x4) at the points 0, 1, -1, 2, -2, infinity: A^T is the Vandermonde
    matrix of the points (plus the point at infinity), G's rows are the points' powers over the
    products of their differences, and both take one B^T."""
    points = [0, 1, -1, 2, -2]
    for m, r, at, g in [(4, 3, winograd._AT, winograd._G), (3, 4, winograd._AT3, winograd._G4)]:
        assert [row[:5] for row in at] == [[p**i for p in points] for i in range(m)]
        assert [row[5] for row in at] == [0] * (m - 1) + [1]
        for p, row in zip(points, g):
            scale = math.prod(p - q for q in points if q != p)
            assert row == pytest.approx([p**i / scale for i in range(r)])
        assert g[5] == [0] * (r - 1) + [1]
    assert winograd._MATRICES[3]["BT"] is winograd._MATRICES[4]["BT"]


def test_other_filter_sizes_are_refused():
    with pytest.raises(ValueError, match="3x3 or 4x4 filters"):
        winograd_conv(torch.zeros(1, 2, 8, 8), torch.zeros(2, 2, 5, 5))


def generator(ngf: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return build_resnet(ResnetParams(ngf=ngf, n_blocks=2))


def test_only_wide_3x3_stride_1_layers_switch_and_parameters_stay():
    net = generator()  # residual blocks at 4 x 32 = 128 channels; the rest is 7x7, strided or transposed
    before = {name: p for name, p in net.named_parameters()}
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    switched = use_winograd(net)
    assert switched == [f"model.{i}.conv_block.{j}" for i in (10, 11) for j in (1, 5)]
    assert all(isinstance(net.get_submodule(name), WinogradConv2d) for name in switched)
    assert dict(net.named_parameters()) == before  # the very same Parameter objects
    assert list(net.state_dict()) == list(before)
    folded = [f"model.{i}.conv_block.{j}" for i in (10, 11) for j in (0, 4)]  # the pads before them
    assert all(isinstance(net.get_submodule(name), FoldedReflectionPad2d) for name in folded)
    with torch.no_grad():
        result = net(x)
    assert (result - expected).abs().max() < 1e-4
    assert use_winograd(generator(ngf=8)) == []  # 32 channels: the transforms would cost more than they save


def folded_block() -> tuple[nn.Sequential, nn.Sequential]:
    """A residual block's convolutions, switched (pads folded), and a float64 copy of the original."""
    torch.manual_seed(0)
    block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(128, 128, 3), nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(128, 128, 3)
    )
    reference = copy.deepcopy(block).double()
    assert len(use_winograd(block)) == 2
    return block, reference


# (1, 128, 10, 10): not whole 4x4 tiles, so the padded copy is made first, as without folding
@pytest.mark.parametrize("shape", [(2, 128, 16, 16), (1, 128, 8, 12), (1, 128, 10, 10)])
def test_folded_reflection_pads_give_the_values_and_gradients_of_the_padded_block(shape):
    block, reference = folded_block()
    assert [type(m) for m in block][::3] == [FoldedReflectionPad2d, FoldedReflectionPad2d]
    assert block[1].reflect_pad and block[4].reflect_pad
    x = torch.randn(*shape, requires_grad=True)
    y = block(x)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    x64 = x.detach().double().requires_grad_()
    (reference(x64) * weights.double()).sum().backward()
    assert relative_error(y.detach(), reference(x64).detach()) < 5e-5
    assert relative_error(x.grad, x64.grad) < 5e-5
    for layer in (1, 4):
        assert relative_error(block[layer].weight.grad, reference[layer].weight.grad) < 5e-5
    with torch.inference_mode():
        assert relative_error(block(x.detach()), reference(x64.detach())) < 5e-5
    # off the fast path (float64 here) the layer pads by itself
    assert relative_error(copy.deepcopy(block).double()(x64.detach()), reference(x64).detach()) < 1e-12


def test_a_hook_on_the_pad_or_the_convolution_unfolds_them():
    block, reference = folded_block()
    x = torch.randn(1, 128, 8, 8)
    seen = []
    handle = block[0].register_forward_hook(lambda module, args, output: seen.append(output.shape))
    assert relative_error(block(x).detach(), reference(x.double()).detach()) < 5e-5
    assert seen == [(1, 128, 10, 10)]  # the pad's output is padded, as torch's pad gives it
    handle.remove()
    handle = block[1].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    assert relative_error(block(x).detach(), reference(x.double()).detach()) < 5e-5
    assert seen[1] == (1, 128, 10, 10)
    handle.remove()
    assert block[0](x) is x  # folded again


def test_folded_pads_compile_into_one_graph():
    block, reference = folded_block()
    from torch._dynamo.utils import counters

    counters.clear()
    torch._dynamo.reset()
    x = torch.randn(1, 128, 8, 8)
    result = torch.compile(block)(x)
    assert not counters["graph_break"]
    assert relative_error(result.detach(), reference(x.double()).detach()) < 5e-5


def test_only_a_pad_used_once_before_a_winograd_layer_is_folded():
    shared = nn.ReflectionPad2d(1)
    net = nn.Sequential(
        shared, nn.Conv2d(128, 128, 3), shared, nn.Conv2d(128, 128, 3),  # one pad object used twice
        nn.ReflectionPad2d(1), nn.Conv2d(128, 64, 3),  # the next layer is too narrow for Winograd
        nn.ReflectionPad2d(2), nn.Conv2d(64, 128, 3),  # two pixels of padding
    )
    shared_conv = nn.Conv2d(128, 128, 3)  # used after a pad and again on an unpadded input
    net.extend([nn.ReflectionPad2d(1), shared_conv, nn.ReLU(), shared_conv])
    reference = copy.deepcopy(net)
    use_winograd(net)
    assert not any(isinstance(m, FoldedReflectionPad2d) for m in net.modules())
    assert not any(getattr(m, "reflect_pad", False) for m in net.modules())
    x = torch.randn(1, 128, 16, 16)
    assert relative_error(net(x).detach(), reference.double()(x.double()).detach()) < 5e-5


def test_a_patchgans_wide_4x4_layer_switches_and_small_calls_stay_direct():
    from ganforge.builtins.networks import PatchGANParams, build_patchgan

    torch.manual_seed(0)
    net = build_patchgan(PatchGANParams(ndf=64))  # 3 -> 64 -> 128 -> 256 (stride 2) -> 512 -> 1 (stride 1)
    x = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_()
    expected = net(x)
    assert use_winograd(net) == ["model.8"]  # the 256 -> 512 4x4 stride-1 layer; the rest are strided or narrow
    layer = net.get_submodule("model.8")
    assert isinstance(layer, WinogradConv2d) and layer.padding == (1, 1)
    result = net(x)  # 2 images x 5 x 5 tiles of 3x3 at 16x16: by Winograd
    assert relative_error(result.detach(), expected.detach().double()) < 5e-5
    (grad_x,) = torch.autograd.grad(result.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    assert relative_error(grad_x, expected_grad.double()) < 5e-5
    # one 16x16 input is 25 tiles, fewer than MIN_TILES_4X4: the layer calls the direct convolution
    small = torch.randn(1, 256, 16, 16)
    assert 25 < winograd.MIN_TILES_4X4 <= 50
    assert torch.equal(layer(small), F.conv2d(small, layer.weight, layer.bias, padding=1))
    assert not torch.equal(layer(small.repeat(2, 1, 1, 1))[:1], F.conv2d(small, layer.weight, layer.bias, padding=1))


def test_an_unbatched_input_takes_the_direct_convolution():
    """nn.Conv2d accepts (C, H, W); the switched layer must too (Winograd's tiles are batched)."""
    for kernel in (3, 4):
        layer = nn.Conv2d(128, 128, kernel, padding=1)
        layer = swapped(use_winograd, layer)
        x = torch.randn(128, 12, 12)
        assert torch.equal(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))


def test_padded_layers_pad_with_zeros_as_the_direct_layer_does():
    layer = nn.Conv2d(128, 128, 3, padding=1)
    x = torch.randn(1, 128, 12, 12)
    expected = layer(x)
    layer = swapped(use_winograd, layer)
    assert relative_error(layer(x).detach(), expected.detach().double()) < 5e-5


def test_reduced_precision_and_other_dtypes_use_the_direct_convolution():
    layer = nn.Conv2d(128, 128, 3)
    layer = swapped(use_winograd, layer)
    x = torch.randn(1, 128, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x), F.conv2d(x, layer.weight, layer.bias))
    double = layer.double()
    assert torch.equal(double(x.double()), F.conv2d(x.double(), double.weight, double.bias))


def test_runtime_switches_every_network_and_says_when_nothing_is_eligible():
    nets = {"G": generator(), "small": generator(ngf=8)}
    model = nn.ModuleDict(nets)
    runtime = Runtime(torch.device("cpu"), backend=CpuKernels(CpuKernelsParams()))
    runtime.prepare_model(model, nets)
    assert sum(isinstance(m, WinogradConv2d) for m in nets["G"].modules()) == 4
    assert runtime.describe_backend().startswith("backend cpu_kernels (replaced 4 Winograd, ")
    small = {"small": generator(ngf=8)}
    runtime = Runtime(torch.device("cpu"), backend=CpuKernels(CpuKernelsParams(narrow=False, norm=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing eligible is not a warning: the run's first line says so
        runtime.prepare_model(nn.ModuleDict(small), small)
    assert runtime.describe_backend() == "backend cpu_kernels (replaced 2 transposed layers)"
    nothing = CpuKernelsParams(narrow=False, norm=False, strided=False, upsampling=False)
    runtime = Runtime(torch.device("cpu"), backend=CpuKernels(nothing))
    runtime.prepare_model(nn.ModuleDict(small), small)
    assert runtime.describe_backend() == "backend cpu_kernels (no layer of these networks is eligible)"


def test_transformed_filters_are_kept_until_the_weights_change():
    layer = nn.Conv2d(128, 128, 3, padding=1)
    layer = swapped(use_winograd, layer)
    x = torch.randn(1, 128, 8, 8)
    with torch.inference_mode():
        first = layer(x)
        assert layer._transformed is not None
        key, kept = layer._transformed
        assert torch.equal(layer(x), first) and layer._transformed == (key, kept)
    assert not kept.is_inference()  # made for translation, usable by training too
    with torch.no_grad():
        layer.weight.mul_(2)  # e.g. load_state_dict copies in place
    with torch.inference_mode():
        doubled = layer(x)
    assert layer._transformed[0] != key
    assert torch.equal(layer._transformed[1], winograd.transform_weight(layer.weight.detach()))
    assert torch.allclose(doubled - layer.bias.view(1, -1, 1, 1), 2 * (first - layer.bias.view(1, -1, 1, 1)), atol=1e-4)


@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_training_with_kept_filters_gives_the_gradients_of_conv2d(implementation):
    """Two calls per step share the kept filters, forward and backward, and each optimizer step renews
    them: values and both gradients stay those of F.conv2d (float64) over three steps."""
    torch.manual_seed(0)
    layer = nn.Conv2d(128, 128, 3, padding=1)
    layer = swapped(use_winograd, layer)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01, foreach=implementation == "foreach",
                                 fused=implementation == "fused" or None)
    for _ in range(3):
        x = torch.randn(2, 128, 8, 8, requires_grad=True)
        optimizer.zero_grad()
        (layer(x).square().mean() + layer(x.flip(0) * 0.5).mean()).backward()
        x64 = x.detach().double().requires_grad_()
        w64 = layer.weight.detach().double().requires_grad_()
        b64 = layer.bias.detach().double()
        (F.conv2d(x64, w64, b64, padding=1).square().mean() + F.conv2d(x64.flip(0) * 0.5, w64, b64, padding=1).mean()).backward()
        assert relative_error(x.grad, x64.grad) < 5e-5
        assert relative_error(layer.weight.grad, w64.grad) < 5e-5
        optimizer.step()


def test_a_graph_whose_kept_filters_were_renewed_refuses_its_backward():
    """Fused Adam on the CPU changes weights without bumping their version, so autograd alone would
    not notice; the kept filters' own version does."""
    layer = nn.Conv2d(128, 128, 3, padding=1)
    layer = swapped(use_winograd, layer)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01, fused=True)
    x = torch.randn(1, 128, 8, 8)
    old = layer(x).square().mean()
    old.backward(retain_graph=True)
    optimizer.step()
    layer(x)  # renews the kept filters in place
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        old.backward()


@pytest.mark.parametrize("implementation", ["for_loop", "foreach", "fused"])
def test_kept_filters_follow_optimizer_steps_and_loads(implementation):
    """Translation keeps the transformed filters; any change of the weights renews them (fused Adam
    on the CPU changes weights without bumping their version counter)."""
    torch.manual_seed(0)
    layer = nn.Conv2d(128, 128, 3, padding=1)
    layer = swapped(use_winograd, layer)
    optimizer = torch.optim.Adam(
        layer.parameters(), lr=0.01, foreach=implementation == "foreach", fused=implementation == "fused" or None
    )
    x = torch.randn(2, 128, 8, 8)

    def check() -> None:
        expected = F.conv2d(x, layer.weight, layer.bias, padding=1).detach().double()
        with torch.inference_mode():
            assert relative_error(layer(x), expected) < 5e-5
        assert relative_error(layer(x).detach(), expected) < 5e-5

    for _ in range(2):
        check()
        optimizer.zero_grad()
        layer(x).square().mean().backward()
        optimizer.step()
    check()
    layer.load_state_dict({k: v * 0.5 for k, v in layer.state_dict().items()})
    check()


# ---------------------------------------------------------------------------------------------------
# The compiled CPU transforms (winograd_cpu.cpp) against the torch-operator path
# ---------------------------------------------------------------------------------------------------


def compiled():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the torch-operator path is the one in use")
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
        pytest.skip("GANFORGE_WINOGRAD_KERNELS=torch asks for the torch-operator path")
    ops = winograd.compiled_kernels()
    assert ops is not None, "a C++ compiler is here, so the transforms must build"
    return ops


@pytest.mark.parametrize(("n", "c", "th", "tw"), [(1, 8, 3, 5), (2, 16, 1, 2), (2, 4, 8, 8)])
def test_the_reflecting_input_transform_equals_padding_first(n, c, th, tw):
    """input_tiles_reflect(x) is input_tiles of x reflection-padded by one pixel, and its backward is
    input_tiles_backward followed by the padding's own backward."""
    ops = compiled()
    x = torch.randn(n, c, 4 * th, 4 * tw)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    assert torch.equal(ops.input_tiles_reflect(x), ops.input_tiles(padded))
    out = torch.empty(36, c, n * th * tw)
    ops.input_tiles_reflect_into(x, out)
    assert torch.equal(out, ops.input_tiles(padded))
    dv = torch.randn(36, c, n * th * tw)
    expected = torch.ops.aten.reflection_pad2d_backward(
        ops.input_tiles_backward(dv, n, 4 * th + 2, 4 * tw + 2), x, [1, 1, 1, 1]
    )
    assert torch.allclose(ops.input_tiles_reflect_backward(dv, n, 4 * th, 4 * tw), expected, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize(("n", "c", "th", "tw"), [(1, 8, 3, 5), (3, 5, 1, 1), (2, 16, 8, 8)])
def test_each_compiled_transform_equals_the_torch_operators(n, c, th, tw, monkeypatch):
    ops = compiled()
    generator = torch.Generator().manual_seed(n + c + th)
    hp, wp = 4 * th + 2, 4 * tw + 2
    x = torch.randn(n, c, hp, wp, generator=generator)
    dv = torch.randn(36, c, n * th * tw, generator=generator)
    m = torch.randn(36, c, n * th * tw, generator=generator)
    bias = torch.randn(c, generator=generator)
    dy = torch.randn(n, c, 4 * th, 4 * tw, generator=generator)
    weight = torch.randn(c + 1, c, 3, 3, generator=generator)
    du = torch.randn(36, c + 1, c, generator=generator)
    fused = {
        "input": ops.input_tiles(x),
        "input grad": ops.input_tiles_backward(dv, n, hp, wp),
        "output": ops.output_tiles(m, bias, n, th, tw),
        "output, no bias": ops.output_tiles(m, torch.empty(0), n, th, tw),
        "output grad": ops.output_tiles_backward(dy),
        "filters": ops.weight_transform(weight),
        "filter grad": ops.weight_transform_backward(du, 3),
    }
    monkeypatch.setenv("GANFORGE_WINOGRAD_KERNELS", "torch")
    G = winograd._transform("G", du)
    reference = {
        "input": winograd._input_tiles(x),
        "input grad": winograd._grad_input_tiles(dv, n, hp, wp),
        "output": winograd._output_tiles(m, n, th, tw) + bias.view(1, -1, 1, 1),
        "output, no bias": winograd._output_tiles(m, n, th, tw),
        "output grad": winograd._grad_output_tiles(dy),
        "filters": winograd.transform_weight(weight),
        "filter grad": torch.matmul(G.t(), du.reshape(36, -1)).t().reshape(c + 1, c, 3, 3),
    }
    for name, value in fused.items():
        assert value.shape == reference[name].shape, name
        assert relative_error(value, reference[name].double()) < 1e-6, name


@pytest.mark.parametrize(("k", "c"), [(5, 3), (64, 48)])
def test_the_compiled_4x4_filter_transforms_equal_the_torch_operators(k, c, monkeypatch):
    ops = compiled()
    generator = torch.Generator().manual_seed(k)
    weight = torch.randn(k, c, 4, 4, generator=generator)
    du = torch.randn(36, k, c, generator=generator)
    fused = {"filters": ops.weight_transform(weight), "filter grad": ops.weight_transform_backward(du, 4)}
    monkeypatch.setenv("GANFORGE_WINOGRAD_KERNELS", "torch")
    G = winograd._transform("G", du, 4)
    reference = {
        "filters": winograd.transform_weight(weight),
        "filter grad": torch.matmul(G.t(), du.reshape(36, -1)).t().reshape(k, c, 4, 4),
    }
    for name, value in fused.items():
        assert value.shape == reference[name].shape, name
        assert relative_error(value, reference[name].double()) < 1e-6, name
    with pytest.raises(RuntimeError, match="3x3 or 4x4"):
        ops.weight_transform_backward(du, 5)


@pytest.mark.parametrize("kernels", ["compiled", "torch"])
def test_both_transform_paths_train_a_layer_alike(kernels, monkeypatch):
    """Values and all three gradients against float64 direct convolution, through each path."""
    if kernels == "compiled":
        compiled()
    monkeypatch.setenv("GANFORGE_WINOGRAD_KERNELS", kernels)
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, 13, 18, generator=generator, dtype=torch.float64)
    weight = torch.randn(5, 6, 3, 3, generator=generator, dtype=torch.float64) * 0.2
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    grad = torch.randn(3, 5, 11, 16, generator=generator, dtype=torch.float64)
    exact = [t.clone().requires_grad_() for t in (x, weight, bias)]
    F.conv2d(*exact).backward(grad)
    fast = [t.float().requires_grad_() for t in (x, weight, bias)]
    result = winograd_conv(*fast)
    result.backward(grad.float())
    assert relative_error(result.detach(), F.conv2d(x, weight, bias)) < 5e-5
    for fast_input, exact_input in zip(fast, exact):
        assert relative_error(fast_input.grad, exact_input.grad) < 5e-5


@pytest.mark.parametrize("kernels", ["compiled", "torch"])
def test_layers_of_one_shape_share_a_transform_buffer_without_mixing_their_filters(kernels, monkeypatch):
    """Three same-shape layers in a row, so each one's forward and backward overwrite the buffer the
    others used: all values and gradients still match float64, and no layer kept a buffer of its own."""
    if kernels == "compiled":
        compiled()
    monkeypatch.setenv("GANFORGE_WINOGRAD_KERNELS", kernels)
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(2, 6, 12, 12, generator=generator, dtype=torch.float64)
    weights = [torch.randn(6, 6, 3, 3, generator=generator, dtype=torch.float64) * 0.3 for _ in range(3)]
    grad = torch.randn(2, 6, 12, 12, generator=generator, dtype=torch.float64)

    def run(conv, x, weights):
        for weight in weights:
            x = torch.relu(conv(F.pad(x, (1, 1, 1, 1)), weight))
        return x

    exact = [t.clone().requires_grad_() for t in (x, *weights)]
    expected = run(F.conv2d, exact[0], exact[1:])
    expected.backward(grad)
    fast = [t.float().requires_grad_() for t in (x, *weights)]
    result = run(winograd_conv, fast[0], fast[1:])
    result.backward(grad.float())
    assert relative_error(result.detach(), expected.detach()) < 5e-5
    for fast_input, exact_input in zip(fast, exact):
        assert relative_error(fast_input.grad, exact_input.grad) < 5e-5
    first = winograd._transform_weight_once(fast[1])
    assert winograd._transform_weight_once(fast[2]).data_ptr() == first.data_ptr()
    assert torch.equal(first, winograd.transform_weight(fast[2]))  # the buffer holds the latest filters
    # a smaller shape is a view of the same buffer, a larger one replaces it: one buffer per role
    assert winograd._transform_weight_once(fast[2][:4, :5]).data_ptr() == first.data_ptr()
    buffers = len(winograd._thread.buffers)
    for k, c in [(9, 7), (2, 3), (12, 12)]:
        weight = torch.randn(k, c, 3, 3)
        assert torch.equal(winograd._transform_weight_once(weight), winograd.transform_weight(weight))
    assert len(winograd._thread.buffers) == buffers
    filters = winograd._thread.buffers[("filters", torch.float32, torch.device("cpu"), False)]
    assert filters.numel() >= 36 * 144
    assert winograd.release_buffers() >= 36 * 144 * 4 and not winograd._thread.buffers
    assert torch.equal(winograd._transform_weight_once(weight), winograd.transform_weight(weight))


def test_a_source_that_does_not_build_falls_back_with_one_warning(tmp_path, monkeypatch):
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler to fail")
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++;\n")
    monkeypatch.setattr(winograd, "KERNEL_SOURCE", broken)
    monkeypatch.setattr(winograd, "KERNEL_NAME", f"ganforge_winograd_broken_{os.getpid()}")
    monkeypatch.setattr(winograd, "_kernel_state", "untried")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.delenv("GANFORGE_WINOGRAD_KERNELS", raising=False)  # the build must be attempted
    with pytest.warns(GanforgeWarning, match="could not be built.*torch operators instead"):
        assert winograd.compiled_kernels() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every convolution
        x, weight = torch.randn(1, 4, 10, 10), torch.randn(6, 4, 3, 3)
        assert relative_error(winograd_conv(x, weight), F.conv2d(x.double(), weight.double())) < 5e-5
