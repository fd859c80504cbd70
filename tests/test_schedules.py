"""CycleGAN's learning-rate schedule: 100 epochs at 2e-4, then linear decay to zero over 100."""

import io

import pytest
import torch
from pydantic import ValidationError

from ganforge.builtins.schedules import LinearDecayParams, build_linear_decay
from ganforge.errors import RecipeError


def make(epochs: int = 200, **params: int) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4, betas=(0.5, 0.999))
    return optimizer, build_linear_decay(LinearDecayParams(**params), optimizer, epochs)


def run_epochs(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[float]:
    """Learning rate read at the start of each epoch; the scheduler steps at each epoch's end."""
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_paper_schedule() -> None:
    optimizer, scheduler = make()
    rates = run_epochs(optimizer, scheduler, 200)
    assert rates[0] == pytest.approx(2e-4, rel=1e-12)
    assert rates[99] == pytest.approx(2e-4, rel=1e-12)
    assert rates[100] == pytest.approx(2e-4 * 100 / 101, rel=1e-12)
    assert rates[150] == pytest.approx(2e-4 * 50 / 101, rel=1e-12)
    assert rates[199] == pytest.approx(2e-4 * 1 / 101, rel=1e-12)
    assert all(a > b for a, b in zip(rates[99:], rates[100:]))
    assert optimizer.param_groups[0]["lr"] == 0.0  # right after the last epoch


def test_state_dict_round_trip() -> None:
    optimizer, scheduler = make()
    run_epochs(optimizer, scheduler, 120)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["scheduler"]["lr_lambdas"] == [{"constant_epochs": 100, "decay_epochs": 100}]
    assert state["scheduler"]["last_epoch"] == 120

    resumed_optimizer, resumed = make()
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    assert run_epochs(resumed_optimizer, resumed, 80) == run_epochs(optimizer, scheduler, 80)


def test_shorter_runs_are_allowed_longer_ones_refused() -> None:
    make(epochs=2)
    make(epochs=20, constant_epochs=10, decay_epochs=10)
    with pytest.raises(RecipeError, match="201 epochs"):
        make(epochs=201)


def test_params_validation() -> None:
    assert LinearDecayParams().model_dump() == {"constant_epochs": 100, "decay_epochs": 100}
    LinearDecayParams(constant_epochs=0)
    for bad in ({"decay_epochs": 0}, {"constant_epochs": -1}, {"n_epochs": 100}):
        with pytest.raises(ValidationError):
            LinearDecayParams(**bad)
