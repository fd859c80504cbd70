"""Backends: module replacement that keeps parameters, state-dict keys, hooks and optimizers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.backends import rebuild_as, replace_modules


class DoubledConv2d(nn.Conv2d):
    """A stand-in for a backend's layer: a subclass that computes differently."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(input)


def doubled(module: nn.Module) -> nn.Module | None:
    return rebuild_as(DoubledConv2d, module) if type(module) is nn.Conv2d else None


def test_replaced_layers_keep_their_parameters_keys_and_optimizer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)))
    before = dict(net.named_parameters())
    keys = list(net.state_dict())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    first = net[0](x)
    assert replace_modules(net, doubled) == ["0", "2.0"]
    assert type(net[0]) is DoubledConv2d and type(net[2][0]) is DoubledConv2d
    assert all(a is b for a, b in zip(net.parameters(), before.values(), strict=True))  # the same objects
    assert list(net.state_dict()) == keys
    assert torch.equal(net[0](x), 2 * first)
    old = net[0].weight.detach().clone()
    net(x).sum().backward()
    optimizer.step()  # the optimizer, made before the swap, holds the parameters the new layers use
    assert not torch.equal(net[0].weight, old)


def test_a_layer_used_twice_is_replaced_everywhere_and_hooks_stay():
    shared = nn.Conv2d(2, 2, 1)
    calls = []
    handle = shared.register_forward_hook(lambda module, args, output: calls.append(type(module).__name__))
    holder = nn.ModuleDict({"net": nn.Sequential(shared, nn.ReLU(), shared), "alias": shared})  # three places
    assert replace_modules(holder, doubled) == ["net.0"]  # named once, as named_modules() names it
    net = holder["net"]
    assert net[0] is net[2] is holder["alias"] and type(net[0]) is DoubledConv2d
    net(torch.randn(1, 2, 3, 3))
    assert calls == ["DoubledConv2d", "DoubledConv2d"]
    handle.remove()  # a handle taken before the swap still removes the hook
    net(torch.randn(1, 2, 3, 3))
    assert len(calls) == 2
    assert type(shared) is nn.Conv2d  # the old object is left as it was


def test_the_root_is_not_replaced_and_unrelated_classes_are_refused():
    conv = nn.Conv2d(1, 1, 1)
    assert replace_modules(conv, doubled) == []
    assert type(conv) is nn.Conv2d
    back = rebuild_as(nn.Conv2d, rebuild_as(DoubledConv2d, conv))  # a base class: the torch layer again
    assert type(back) is nn.Conv2d and back.weight is conv.weight
    with pytest.raises(TypeError, match="neither a subclass nor a base of Conv2d"):
        rebuild_as(nn.ReLU, conv)


def test_buffers_follow_the_new_module_after_a_move():
    norm = nn.BatchNorm2d(3)
    net = nn.Sequential(norm)

    class Other(nn.BatchNorm2d):
        pass

    replace_modules(net, lambda m: rebuild_as(Other, m) if type(m) is nn.BatchNorm2d else None)
    net.to(torch.float64)
    assert net[0].running_mean.dtype == torch.float64
    keys = ["0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked"]
    assert list(net.state_dict()) == keys
