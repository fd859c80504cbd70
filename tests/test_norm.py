"""Instance norms by compiled loops (norm.py): torch's values and gradients, torch's own layer elsewhere."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.ops.norm import CompiledInstanceNorm2d, eligible, use_compiled_instance_norm


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).abs().max() / reference.abs().max()).item()


@pytest.fixture
def compiled():
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS") == "torch":
        pytest.skip("GANFORGE_WINOGRAD_KERNELS=torch asks for the torch-operator path")
    from ganforge.ops.winograd import compiled_kernels

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
    assert use_compiled_instance_norm(layer) == [""] and type(layer) is CompiledInstanceNorm2d
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
    use_compiled_instance_norm(layer)
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
    use_compiled_instance_norm(layer)
    assert list(layer.state_dict()) == []
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    assert torch.equal(layer(x), F.instance_norm(x))  # float64: torch's own
    x32 = torch.randn(1, 3, 5, 5, requires_grad=True)
    assert "_InstanceNorm" in type(layer(x32).grad_fn).__name__
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "_InstanceNorm" not in type(layer(x32).grad_fn).__name__  # under autocast: torch's own
