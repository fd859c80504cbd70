"""Instance norms by compiled loops (norm.py), with the activations folded into them: torch's values and
gradients, torch's own layers elsewhere."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from ganforge_cpu_kernels.norm import (
    CompiledInstanceNorm2d,
    FoldedActivation,
    FoldedLeakyReLU,
    FoldedReLU,
    eligible,
    use_compiled_instance_norm,
)
from kernel_checks import relative_error, swapped
from torch import nn


@pytest.fixture
def compiled():
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
        pytest.skip("GANFORGE_WINOGRAD_KERNELS=torch asks for the torch-operator path")
    from ganforge_cpu_kernels.winograd import compiled_kernels

    if compiled_kernels() is None:
        pytest.skip("the compiled CPU kernels could not be built here")


@pytest.mark.parametrize(
    ("shape", "mean", "scale"),
    [((2, 5, 7, 9), 0.0, 1.0), ((3, 16, 33, 31), 100.0, 3.0), ((1, 2, 64, 64), -5.0, 1e-3), ((1, 3, 1, 5), 1.0, 2.0)],
    ids=["small", "large-mean", "small-spread", "one-row"],
)
def test_values_and_input_gradient_match_float64(compiled, shape, mean, scale):
    torch.manual_seed(0)
    layer = nn.InstanceNorm2d(shape[1])
    layer = swapped(use_compiled_instance_norm, layer)
    assert type(layer) is CompiledInstanceNorm2d
    x = (torch.randn(shape, dtype=torch.float64) * scale + mean).float().double()  # exact in fp32 too
    exact_x = x.clone().requires_grad_()
    expected = F.instance_norm(exact_x)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    fast_x = x.float().requires_grad_()
    result = layer(fast_x)
    result.backward(grad.float())
    assert "_InstanceNorm" in type(result.grad_fn).__name__  # the compiled loops ran
    # fp32 loses |mean| / spread of the inputs' precision in x - mean; torch's own fp32 norm as well
    torch_x = x.float().requires_grad_()
    torch_result = F.instance_norm(torch_x)
    torch_result.backward(grad.float())
    value_tolerance = max(1e-5, 2 * relative_error(torch_result.detach(), expected.detach()))
    grad_tolerance = max(1e-4, 2 * relative_error(torch_x.grad, exact_x.grad))
    assert relative_error(result.detach(), expected.detach()) < value_tolerance
    assert relative_error(fast_x.grad, exact_x.grad) < grad_tolerance
    with torch.inference_mode():
        assert torch.equal(layer(x.float()), result.detach())


def test_the_result_is_a_fresh_tensor_so_an_in_place_relu_needs_no_slice_copy(compiled):
    layer = nn.InstanceNorm2d(4)
    layer = swapped(use_compiled_instance_norm, layer)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    y = torch.relu_(layer(x))
    assert y.grad_fn.name() == "ReluBackward0"  # on torch's norm (a view) it is CopySlices
    y.sum().backward()
    assert x.grad is not None


def test_only_plain_instance_norms_switch_and_other_dtypes_stay_torchs(compiled):
    assert eligible(nn.InstanceNorm2d(8))
    assert not eligible(nn.InstanceNorm2d(8, affine=True))
    assert not eligible(nn.InstanceNorm2d(8, track_running_stats=True))
    assert not eligible(nn.BatchNorm2d(8))
    layer = nn.InstanceNorm2d(3)
    layer = swapped(use_compiled_instance_norm, layer)
    assert list(layer.state_dict()) == []
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    assert torch.equal(layer(x), F.instance_norm(x))  # float64: torch's own
    x32 = torch.randn(1, 3, 5, 5, requires_grad=True)
    assert "_InstanceNorm" in type(layer(x32).grad_fn).__name__
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "_InstanceNorm" not in type(layer(x32).grad_fn).__name__  # under autocast: torch's own


def folded_pair(activation: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """A norm and its activation, switched (the activation folded), and a float64 copy of the original."""
    pair = nn.Sequential(nn.Conv2d(3, 8, 3), nn.InstanceNorm2d(8), activation)
    reference = copy.deepcopy(pair).double()
    assert use_compiled_instance_norm(pair) == ["1"]
    return pair, reference


@pytest.mark.parametrize(
    ("activation", "slope", "folded_class"),
    [(nn.ReLU(True), 0.0, FoldedReLU), (nn.ReLU(), 0.0, FoldedReLU), (nn.LeakyReLU(0.2, True), 0.2, FoldedLeakyReLU)],
    ids=["relu-in-place", "relu", "leaky-relu"],
)
def test_a_folded_activation_gives_the_values_and_gradients_of_norm_then_activation(
    compiled, activation, slope, folded_class
):
    torch.manual_seed(0)
    pair, reference = folded_pair(activation)
    assert pair[1].slope == slope and type(pair[2]) is folded_class
    x = torch.randn(2, 3, 19, 17, requires_grad=True)
    y = pair(x)
    assert "_InstanceNorm" in type(y.grad_fn).__name__  # one op for both: the activation added none
    assert (y < 0).any() == (slope > 0)  # the activation ran: nothing negative is left by a ReLU
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    x64 = x.detach().double().requires_grad_()
    expected = reference(x64)
    (expected * weights.double()).sum().backward()
    assert relative_error(y.detach(), expected.detach()) < 1e-5
    assert relative_error(x.grad, x64.grad) < 1e-4
    assert relative_error(pair[0].weight.grad, reference[0].weight.grad) < 1e-4
    with torch.inference_mode():
        assert torch.equal(pair(x.detach()), y.detach())
    # off the compiled path (float64 here) the norm applies the activation itself
    assert relative_error(copy.deepcopy(pair).double()(x64.detach()), expected.detach()) < 1e-12
    assert list(pair.state_dict()) == list(reference.state_dict())


def test_only_an_activation_used_once_right_after_a_norm_used_once_is_folded(compiled):
    shared_relu, shared_norm = nn.ReLU(), nn.InstanceNorm2d(4)
    net = nn.Sequential(
        nn.InstanceNorm2d(4), shared_relu, nn.InstanceNorm2d(4), shared_relu,  # one ReLU object used twice
        shared_norm, nn.ReLU(), nn.Conv2d(4, 4, 1), shared_norm,  # one norm used twice
        nn.InstanceNorm2d(4), nn.Conv2d(4, 4, 1), nn.ReLU(),  # something between them
        nn.InstanceNorm2d(4), nn.Tanh(),  # not a (leaky) ReLU
        nn.InstanceNorm2d(4), nn.LeakyReLU(-0.5),  # a slope outside the loops' 0-1
    )
    reference = copy.deepcopy(net)
    use_compiled_instance_norm(net)
    assert not any(isinstance(m, FoldedActivation) for m in net.modules())
    assert all(getattr(m, "slope", 1.0) == 1.0 for m in net.modules())
    x = torch.randn(1, 4, 8, 8)
    assert relative_error(net(x), reference(x).double()) < 1e-5


def test_a_generators_and_a_patchgans_activations_fold_into_their_norms(compiled):
    from ganforge.builtins.networks import PatchGANParams, ResnetParams, build_patchgan, build_resnet

    torch.manual_seed(0)
    generator = build_resnet(ResnetParams(ngf=8, n_blocks=2))
    patchgan = build_patchgan(PatchGANParams(ndf=8))
    # every ReLU of the generator follows a norm; the PatchGAN's first leaky ReLU follows a convolution
    for net, x in ((generator, torch.rand(2, 3, 32, 32) * 2 - 1), (patchgan, torch.rand(2, 3, 64, 64) * 2 - 1)):
        reference = copy.deepcopy(net)
        use_compiled_instance_norm(net)
        activations = [m for m in net.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
        folded = [m for m in activations if isinstance(m, FoldedActivation)]
        assert len(activations) == (7 if net is generator else 4)
        assert folded == (activations if net is generator else activations[1:])
        assert list(net.state_dict()) == list(reference.state_dict())
        assert relative_error(net(x), reference(x).double()) < 1e-5


@pytest.mark.parametrize("hooked", [1, 2], ids=["hook-on-the-norm", "hook-on-the-activation"])
def test_a_hook_on_either_layer_unfolds_the_pair(compiled, hooked):
    """Hooks see what torch's layers give: the norm's output before the activation. A hook that replaces
    the norm's output (the tiled translation's whole-image statistics do) still gets activated."""
    torch.manual_seed(0)
    pair, reference = folded_pair(nn.LeakyReLU(0.2))
    x = torch.randn(2, 3, 10, 10)
    seen = []
    handle = pair[hooked].register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    result = pair(x)
    x64 = x.double()
    normed = reference[1](reference[0](x64))
    inputs, output = seen[0]
    if hooked == 1:
        assert relative_error(output, normed) < 1e-5  # not yet activated
    else:
        assert relative_error(inputs, normed) < 1e-5 and relative_error(output, reference(x64)) < 1e-5
    assert relative_error(result.detach(), reference(x64).detach()) < 1e-5
    handle.remove()
    assert torch.equal(pair(x), pair[2](pair[1](pair[0](x))))  # folded again: the activation passes it on
    handle = pair[1].register_forward_hook(lambda module, args, output: torch.full_like(output, -1.0))
    assert torch.equal(pair(x), torch.full_like(result, -0.2))
    handle.remove()
