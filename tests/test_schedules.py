"""The built-in learning-rate schedules: CycleGAN's linear decay, step, cosine, warmup and plateau, by hand."""

import io
import itertools
import math

import pytest
import torch
from pydantic import ValidationError

from ganforge.builtins.schedules import LinearDecayParams, build_linear_decay
from ganforge.errors import RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager


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
    assert all(a > b for a, b in itertools.pairwise(rates[99:]))
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


# ------------------------------------------------------------- step, cosine, warmup, plateau

REGISTRIES = collect_registries(make_plugin_manager())


def schedule(spec: dict, epochs: int, lr: float = 1.0):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return optimizer, REGISTRIES.resolve("scheduler", spec, "train.scheduler").build(optimizer, epochs)


def rates_of(spec: dict, epochs: int, lr: float = 1.0) -> list[float]:
    """Learning rate at the start of epochs 0 .. epochs - 1, then the one after the last epoch."""
    optimizer, scheduler = schedule(spec, epochs, lr)
    return [*run_epochs(optimizer, scheduler, epochs), optimizer.param_groups[0]["lr"]]


def test_step_schedule() -> None:
    rates = rates_of({"type": "step", "step_size": 10, "gamma": 0.1}, 30, lr=2e-4)
    assert rates[0] == rates[9] == pytest.approx(2e-4, rel=1e-12)
    assert rates[10] == rates[19] == pytest.approx(2e-5, rel=1e-12)
    assert rates[25] == pytest.approx(2e-6, rel=1e-12)


def test_cosine_schedule() -> None:
    # m + (1 - m)(1 + cos(pi e / T)) / 2 with m = 0.1, T = 10: 1 at 0, 0.55 at 5, 0.1 at 10
    rates = rates_of({"type": "cosine", "eta_min_factor": 0.1}, 10)
    assert rates[0] == pytest.approx(1.0, abs=1e-12)
    assert rates[5] == pytest.approx(0.55, abs=1e-12)
    assert rates[10] == pytest.approx(0.1, abs=1e-12)  # after the last epoch
    assert rates[1] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 10)) / 2, abs=1e-12)
    # a given length: half way at epoch 2 of 4, then held at the minimum
    rates = rates_of({"type": "cosine", "epochs": 4}, 10)
    assert rates[2] == pytest.approx(0.5, abs=1e-12)
    assert rates[4] == rates[9] == pytest.approx(0.0, abs=1e-12)


def test_warmup_then_linear_decay() -> None:
    spec = {
        "type": "warmup",
        "warmup_epochs": 3,
        "start_factor": 0.25,
        "then": {"type": "linear_decay", "constant_epochs": 2, "decay_epochs": 3},
    }
    # warmup 0.25, 0.5, 0.75; then linear_decay over the 5 remaining epochs: 1, 1, 3/4, 2/4, 1/4; then 0
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert rates_of(spec, 8, lr=2.0) == pytest.approx([2 * f for f in expected], abs=1e-12)


def test_warmup_passes_the_run_length_on() -> None:
    """The nested schedule gets the epochs left after the warmup, so linear_decay's check sees them."""
    spec = {
        "type": "warmup",
        "warmup_epochs": 3,
        "then": {"type": "linear_decay", "constant_epochs": 2, "decay_epochs": 3},
    }
    with pytest.raises(RecipeError, match="train.scheduler.then: the run has 6 epochs"):
        schedule(spec, 9)


def plateau_rates(losses: list[float], **params) -> list[float]:
    optimizer, scheduler = schedule({"type": "plateau", "monitor": "G", **params}, len(losses))
    assert scheduler.monitor == "G"
    rates = []
    for value in losses:
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(value)
    return [*rates, optimizer.param_groups[0]["lr"]]


def test_plateau_schedule() -> None:
    losses = [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    # improving until epoch 2; epochs 3, 4, 5 are 3 bad ones (> patience 2): cut after epoch 5; again after 8
    assert plateau_rates(losses, factor=0.5, patience=2, threshold=0.0) == [
        1,
        1,
        1,
        1,
        1,
        1,
        0.5,
        0.5,
        0.5,
        0.25,
    ]
    # the floor: 0.3 of the initial rate
    assert plateau_rates(losses, factor=0.5, patience=2, threshold=0.0, min_lr_factor=0.3)[-1] == 0.3
    # cooldown 1: the epoch after a cut is not counted, so the second cut comes one epoch later
    rates = plateau_rates([*losses, 3.0], factor=0.5, patience=2, threshold=0.0, cooldown=1)
    assert rates == [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    # mode max: a rising value is an improvement
    assert plateau_rates([1.0, 2.0, 3.0, 4.0], mode="max", patience=0)[-1] == 1.0
    # threshold: 3 -> 2.9999 is not a 1e-2 relative improvement
    assert plateau_rates([3.0, 2.9999, 2.9998], patience=1, threshold=1e-2, factor=0.5)[-1] == 0.5


def test_plateau_needs_a_monitor() -> None:
    with pytest.raises(RecipeError, match="train.scheduler.monitor: missing"):
        schedule({"type": "plateau"}, 5)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "step", "step_size": 3, "gamma": 0.5},
        {"type": "cosine", "eta_min_factor": 0.2},
        {"type": "warmup", "warmup_epochs": 2, "then": {"type": "cosine"}},
        {"type": "warmup", "warmup_epochs": 2, "then": {"type": "plateau", "monitor": "G", "patience": 1}},
        {"type": "plateau", "monitor": "G", "patience": 1, "factor": 0.5},
    ],
    ids=["step", "cosine", "warmup-cosine", "warmup-plateau", "plateau"],
)
def test_new_schedules_resume_from_their_state(spec: dict) -> None:
    """Saved half way (as the trainer saves: optimizer then schedule), loaded into fresh ones, the
    rest of the run has the same learning rates."""
    values = [4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]

    def advance(optimizer, scheduler, epochs: range) -> list[float]:
        rates = []
        for e in epochs:
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step(values[e]) if getattr(scheduler, "monitor", None) else scheduler.step()
        return rates

    optimizer, scheduler = schedule(spec, 10)
    advance(optimizer, scheduler, range(5))
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_optimizer, resumed = schedule(spec, 10)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    expected = advance(optimizer, scheduler, range(5, 10))
    assert advance(resumed_optimizer, resumed, range(5, 10)) == expected
    assert len(set(expected)) > 1 or spec["type"] == "plateau"  # the rate moves in the checked half


@pytest.mark.parametrize(
    "spec", [{"type": "cosine"}, {"type": "warmup", "warmup_epochs": 2, "then": {"type": "cosine"}}]
)
def test_cosine_resumed_with_more_epochs_anneals_over_the_new_length(spec: dict) -> None:
    """Stopped at epoch 5 of 10 and resumed as a 20-epoch run: the rate at epoch 5 and after is the
    20-epoch schedule's, reaching 0 at epoch 20, not 0 from epoch 10 on (the saved length)."""
    optimizer, scheduler = schedule(spec, 10)
    run_epochs(optimizer, scheduler, 5)
    saved = scheduler.state_dict()
    longer = rates_of(spec, 20)
    optimizer, resumed = schedule(spec, 20)
    resumed.load_state_dict(saved)
    rates = [optimizer.param_groups[0]["lr"], *run_epochs(optimizer, resumed, 15)[1:]]
    rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx(longer[5:], abs=1e-12)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and min(rates[:-1]) > 0.0
