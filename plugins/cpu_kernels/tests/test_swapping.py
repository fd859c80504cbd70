"""The kernels' layers replace torch's in their parents: same parameters, keys and optimizers; scripting,
tracing and exporting see torch's own layers."""

from __future__ import annotations

import io

import onnx
import pytest
import torch
from ganforge_cpu_kernels import KernelLayer, use_cpu_algorithms
from torch import nn

from ganforge.builtins.networks import PatchGANParams, ResnetParams, build_patchgan, build_resnet


def nets() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    # residual blocks at 128 channels (Winograd), 3-channel ends (narrow), norms, strided, transposed layers
    return {"G": build_resnet(ResnetParams(ngf=32, n_blocks=1)), "D": build_patchgan(PatchGANParams(ndf=64))}


def test_every_kind_of_layer_switches_and_parameters_keys_and_optimizers_stay():
    for name, net in nets().items():
        before = dict(net.named_parameters())
        keys = list(net.state_dict())
        optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
        switched = use_cpu_algorithms(net)
        counts = {field: len(names) for field, names in switched._asdict().items()}
        if name == "G":
            assert counts == {"winograd": 2, "narrow": 2, "upsampling": 2, "norm": 7, "strided": 2}
        else:
            assert counts == {"winograd": 1, "narrow": 1, "upsampling": 0, "norm": 3, "strided": 2}
        kernels = [m for m in net.modules() if isinstance(m, KernelLayer)]
        assert kernels and not any(m.__class__.__module__.startswith("torch.") for m in kernels)
        assert dict(net.named_parameters()).keys() == before.keys()
        assert all(p is before[k] for k, p in net.named_parameters())  # the very same Parameter objects
        assert list(net.state_dict()) == keys
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert held == {id(p) for p in net.parameters()}


@pytest.mark.filterwarnings("ignore")  # the tracer's and exporter's notes on the generator itself
def test_scripting_tracing_and_onnx_export_hold_torchs_own_operators():
    net = nets()["G"].eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    use_cpu_algorithms(net)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
    assert {node.kind().split("::")[0] for node in traced.inlined_graph.nodes()} <= {"aten", "prim"}
    with torch.no_grad():
        assert torch.allclose(traced(x), expected, atol=1e-5)
    scripted = torch.jit.script(net)  # prepares a copy made of the torch layers (same parameters)
    assert not any(isinstance(m, KernelLayer) for m in scripted.modules())
    with torch.no_grad():
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    buffer = io.BytesIO()
    torch.onnx.export(use_kernels(nets()["G"].eval()), (x,), buffer, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    assert {node.domain for node in graph.node} == {""}  # the standard operators only
    assert {"Conv", "ConvTranspose", "InstanceNormalization"} <= {node.op_type for node in graph.node}


def use_kernels(net: nn.Module) -> nn.Module:
    use_cpu_algorithms(net)
    return net
