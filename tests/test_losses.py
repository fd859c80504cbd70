"""CycleGAN losses against formulas evaluated element by element in plain Python."""

import math

import pytest
import torch

from ganforge.builtins.losses import build_l1, build_lsgan, build_vanilla
from ganforge.registry import NoParams


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture
def prediction() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 1, 3, 3, dtype=torch.float64)


def test_lsgan_against_labels(prediction: torch.Tensor) -> None:
    loss = build_lsgan(NoParams())
    values = prediction.flatten().tolist()
    assert loss(prediction, 1.0).item() == pytest.approx(mean([(v - 1.0) ** 2 for v in values]))
    assert loss(prediction, 0.0).item() == pytest.approx(mean([v**2 for v in values]))


def test_lsgan_against_tensor(prediction: torch.Tensor) -> None:
    target = torch.rand_like(prediction)
    pairs = zip(prediction.flatten().tolist(), target.flatten().tolist())
    expected = mean([(p - t) ** 2 for p, t in pairs])
    assert build_lsgan(NoParams())(prediction, target).item() == pytest.approx(expected)


def test_vanilla_against_labels(prediction: torch.Tensor) -> None:
    loss = build_vanilla(NoParams())
    values = prediction.flatten().tolist()

    def sigmoid(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    assert loss(prediction, 1.0).item() == pytest.approx(mean([-math.log(sigmoid(v)) for v in values]))
    assert loss(prediction, 0.0).item() == pytest.approx(mean([-math.log(1 - sigmoid(v)) for v in values]))


def test_l1(prediction: torch.Tensor) -> None:
    loss = build_l1(NoParams())
    values = prediction.flatten().tolist()
    assert loss(prediction, 0.0).item() == pytest.approx(mean([abs(v) for v in values]))
    assert loss(prediction, 1.0).item() == pytest.approx(mean([abs(v - 1.0) for v in values]))
    target = torch.randn_like(prediction)
    pairs = zip(values, target.flatten().tolist())
    assert loss(prediction, target).item() == pytest.approx(mean([abs(p - t) for p, t in pairs]))


@pytest.mark.parametrize("factory", [build_lsgan, build_vanilla, build_l1])
def test_losses_are_scalar_and_differentiable(factory) -> None:
    prediction = torch.randn(2, 1, 4, 4, requires_grad=True)
    value = factory(NoParams())(prediction, 1.0)
    assert value.shape == () and value.dtype == torch.float32
    value.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
