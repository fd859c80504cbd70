"""The built-in losses and gradient penalties against formulas evaluated by hand or element by element."""

import math

import pytest
import torch
from torch import nn

from ganforge.builtins.losses import (
    GradientPenaltyParams,
    build_gradient_penalty,
    build_hinge,
    build_l1,
    build_lsgan,
    build_no_penalty,
    build_vanilla,
    build_wgan,
)
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


@pytest.mark.parametrize("factory", [build_lsgan, build_vanilla, build_hinge, build_wgan, build_l1])
def test_losses_are_scalar_and_differentiable(factory) -> None:
    prediction = torch.randn(2, 1, 4, 4, requires_grad=True)
    value = factory(NoParams())(prediction, 1.0)
    assert value.shape == () and value.dtype == torch.float32
    value.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


# ------------------------------------------------------------------ hand-computed D and G forms

PRED = torch.tensor([-2.0, -0.5, 0.25, 3.0], dtype=torch.float64)


def test_hinge_by_hand() -> None:
    loss = build_hinge(NoParams())
    # real: relu(1 - p) = 3, 1.5, 0.75, 0 -> 5.25 / 4; fake: relu(1 + p) = 0, 0.5, 1.25, 4 -> 5.75 / 4
    assert loss(PRED, 1.0, discriminator=True).item() == pytest.approx(1.3125, abs=1e-12)
    assert loss(PRED, 0.0, discriminator=True).item() == pytest.approx(1.4375, abs=1e-12)
    # generator: -mean(p) = -0.75 / 4, whatever the target
    assert loss(PRED, 1.0).item() == pytest.approx(-0.1875, abs=1e-12)
    assert loss(PRED, 0.0, discriminator=False).item() == pytest.approx(-0.1875, abs=1e-12)


def test_wgan_by_hand() -> None:
    loss = build_wgan(NoParams())
    assert loss(PRED, 1.0, discriminator=True).item() == pytest.approx(-0.1875, abs=1e-12)
    assert loss(PRED, 0.0, discriminator=True).item() == pytest.approx(0.1875, abs=1e-12)
    assert loss(PRED, 1.0).item() == pytest.approx(-0.1875, abs=1e-12)


def test_vanilla_and_lsgan_by_hand_ignore_the_discriminator_flag() -> None:
    logits = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)  # sigmoid: 1/2 and 3/4
    vanilla = build_vanilla(NoParams())
    for flag in (False, True):
        # -log(1/2) and -log(3/4); then -log(1/2) and -log(1/4)
        assert vanilla(logits, 1.0, discriminator=flag).item() == pytest.approx(
            math.log(8 / 3) / 2, abs=1e-12
        )
        assert vanilla(logits, 0.0, discriminator=flag).item() == pytest.approx(1.5 * math.log(2), abs=1e-12)
    lsgan = build_lsgan(NoParams())
    pred = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    for flag in (False, True):
        assert lsgan(pred, 1.0, discriminator=flag).item() == pytest.approx((0.25 + 4 + 1) / 3, abs=1e-12)
        assert lsgan(pred, 0.0, discriminator=flag).item() == pytest.approx((0.25 + 1 + 4) / 3, abs=1e-12)


# --------------------------------------------------------------------------- gradient penalties


class Linear(nn.Module):
    """D(x)_i = sum(w * x_i): its input gradient is w for every image."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x).flatten(1).sum(1)


class Quadratic(nn.Module):
    """D(x)_i = a * sum(x_i^2): its input gradient is 2 a x_i."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x.pow(2).flatten(1).sum(1)


def penalty(**params):
    return build_gradient_penalty(GradientPenaltyParams(**params))


def test_wgan_gp_on_a_linear_critic() -> None:
    D = Linear(torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64).view(1, 1, 3))  # |w| = 3
    real, fake = torch.randn(4, 1, 1, 3, dtype=torch.float64), torch.randn(4, 1, 1, 3, dtype=torch.float64)
    assert penalty().enabled
    assert penalty()(D, real, fake).item() == pytest.approx(10 * (3 - 1) ** 2, rel=1e-9)
    assert penalty(weight=2.0, target=0.5)(D, real, fake).item() == pytest.approx(2 * 2.5**2, rel=1e-9)
    assert penalty(kind="r1", weight=1.0)(D, real, fake).item() == pytest.approx(0.5 * 9, rel=1e-9)


def test_wgan_gp_on_a_convolution_with_known_weights() -> None:
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(2.0)  # sum of outputs = 2 sum(x): gradient 2 at 16 pixels, norm 8
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    value = penalty()(conv, real, fake)
    assert value.item() == pytest.approx(10 * (8 - 1) ** 2, rel=1e-5)
    value.backward()  # d/dw of 10 (16 w^2)^(1/2) - 1)^2 = 10 * 2 * (4w - 1) * 4 at w = 2
    assert conv.weight.grad.item() == pytest.approx(10 * 2 * 7 * 4, rel=1e-5)


def test_wgan_gp_takes_the_gradient_at_interpolates() -> None:
    D = Quadratic()
    real, fake = torch.ones(3, 1, 2, 2, dtype=torch.float64), torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    torch.manual_seed(5)
    alpha = torch.rand(3, 1, 1, 1, dtype=torch.float64).flatten().tolist()
    torch.manual_seed(5)
    value = penalty(weight=1.0)(D, real, fake).item()
    # x_i = alpha_i everywhere: gradient 2 alpha_i at 4 pixels, norm 4 alpha_i
    assert value == pytest.approx(mean([(4 * a - 1) ** 2 for a in alpha]), rel=1e-9)


def test_r1_and_r2_on_a_quadratic_discriminator() -> None:
    D = Quadratic()
    real = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=torch.float64)  # sum x^2: 5 and 9
    fake = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)  # 2 and 0
    r1 = penalty(kind="r1", weight=1.0)(D, real, fake)
    # |2x|^2 = 4 sum x^2: 20 and 36, mean 28, half of it 14 (= 14 a^2)
    assert r1.item() == pytest.approx(14.0, rel=1e-12)
    r1.backward()  # create_graph: the penalty reaches D's parameter, d(14 a^2)/da = 28
    assert D.a.grad.item() == pytest.approx(28.0, rel=1e-12)
    # r2 on the fakes: 4 * (2, 0) -> mean 4, half 2, weight 10
    assert penalty(kind="r2")(D, real, fake).item() == pytest.approx(20.0, rel=1e-12)


def test_no_penalty() -> None:
    none = build_no_penalty(NoParams())
    assert not none.enabled
    value = none(Quadratic(), torch.ones(2, 3), torch.ones(2, 3))
    assert value.shape == () and value.item() == 0.0


def test_penalty_params_validation() -> None:
    from pydantic import ValidationError

    assert GradientPenaltyParams().model_dump() == {"kind": "wgan_gp", "weight": 10.0, "target": 1.0}
    for bad in ({"kind": "r3"}, {"weight": -1.0}, {"gamma": 1.0}):
        with pytest.raises(ValidationError):
            GradientPenaltyParams(**bad)
