"""The built-in optimizers: each builds the torch class with the recipe's hyperparameters."""

from __future__ import annotations

import pytest
import torch

from ganforge.errors import RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def build(spec: dict) -> torch.optim.Optimizer:
    return REGISTRIES.resolve("optimizer", spec, "train.optimizer").build([torch.nn.Parameter(torch.ones(2))])


def test_adamw_defaults_and_given_values() -> None:
    optimizer = build({"type": "adamw"})
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        1e-3,
        (0.9, 0.999),
        1e-8,
        0.01,
    )
    group = build({"type": "adamw", "lr": 2e-4, "betas": [0.5, 0.99], "weight_decay": 0.1}).param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-4, (0.5, 0.99), 0.1)


def test_adamw_decay_is_decoupled() -> None:
    """With a zero gradient Adam's update is zero, so one AdamW step only shrinks w by lr * wd."""
    weight = torch.nn.Parameter(torch.tensor([2.0]))
    spec = REGISTRIES.resolve("optimizer", {"type": "adamw", "lr": 0.1, "weight_decay": 0.5}, "o")
    optimizer = spec.build([weight])
    weight.grad = torch.zeros(1)
    optimizer.step()
    assert weight.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-6)


def test_sgd_hyperparameters_land() -> None:
    optimizer = build({"type": "sgd"})
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["dampening"], group["nesterov"], group["weight_decay"]) == (
        1e-2,
        0.0,
        0.0,
        False,
        0.0,
    )
    spec = {"type": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    group = build(spec).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.5,
        0.9,
        True,
        1e-4,
    )


def test_sgd_momentum_by_hand() -> None:
    """Two steps on f(w) = w with lr 0.1, momentum 0.9: buffers 1 then 1.9, w = 1 - 0.1 - 0.19."""
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = REGISTRIES.resolve("optimizer", {"type": "sgd", "lr": 0.1, "momentum": 0.9}, "o").build(
        [weight]
    )
    for _ in range(2):
        optimizer.zero_grad()
        weight.sum().backward()
        optimizer.step()
    assert weight.item() == pytest.approx(1 - 0.1 - 0.19, rel=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "sgd", "nesterov": True}, "nesterov = true needs momentum > 0"),
        ({"type": "sgd", "momentum": 1.0}, "train.optimizer.momentum"),
        ({"type": "adamw", "weight_decay": -1.0}, "train.optimizer.weight_decay"),
    ],
)
def test_bad_values_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        build(spec)
