"""Learning-rate schedules, all stepped once per epoch: constant; linear decay to zero; step decay; cosine
annealing; reduce-on-plateau (fed a logged loss each epoch); linear warmup followed by another schedule.

Each factory takes its params, the optimizer and the run's number of epochs. A schedule whose
``monitor`` attribute is a string is stepped with that value (``scheduler.step(value)``): the epoch's
mean of a logged loss, or an evaluation score ``eval.NAME``; the others are stepped with no argument.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from ganforge.errors import RecipeError
from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import ComponentSpec, NoParams, Params, component_field


class LinearDecayParams(Params):
    """Parameters of the linear-decay schedule."""

    constant_epochs: int = Field(
        100, ge=0, le=1_000_000, description="Epochs at the initial learning rate (paper: 100)."
    )
    decay_epochs: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Epochs over which the rate decays linearly to zero (paper: 100).",
    )


class LinearDecay:
    """Learning-rate factor for 0-based epoch ``e``: ``1 - max(0, e + 1 - constant) / (decay + 1)``.

    A class rather than a lambda so that ``LambdaLR.state_dict`` can save it.
    """

    def __init__(self, constant_epochs: int, decay_epochs: int) -> None:
        self.constant_epochs = constant_epochs
        self.decay_epochs = decay_epochs

    def __call__(self, epoch: int) -> float:
        decayed = max(0, epoch + 1 - self.constant_epochs)
        return max(0.0, 1.0 - decayed / (self.decay_epochs + 1))


def build_linear_decay(params: LinearDecayParams, optimizer: Optimizer, epochs: int) -> LambdaLR:
    """Constant learning rate, then linear decay to zero (Zhu et al. 2017: 100 + 100 epochs).

    Raises :class:`RecipeError` when the run has more epochs than the schedule, since the extra
    ones would train at a learning rate of zero.
    """
    length = params.constant_epochs + params.decay_epochs
    if epochs > length:
        raise RecipeError(
            f"train.scheduler: the run has {epochs} epochs but constant_epochs + decay_epochs is {length}; "
            f"the last {epochs - length} would train at a learning rate of 0"
        )
    return LambdaLR(optimizer, LinearDecay(params.constant_epochs, params.decay_epochs))


def build_constant(params: NoParams, optimizer: Optimizer, epochs: int) -> LRScheduler:
    """Keep the optimizer's learning rate for the whole run."""
    return LambdaLR(optimizer, _one)


def _one(epoch: int) -> float:
    return 1.0


class StepParams(Params):
    """Parameters of the step schedule."""

    step_size: int = Field(30, ge=1, le=1_000_000, description="Epochs between two decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="Factor applied at each decay.")


class StepFactor:
    """Learning-rate factor for 0-based epoch ``e``: ``gamma ** (e // step_size)``."""

    def __init__(self, step_size: int, gamma: float) -> None:
        self.step_size = step_size
        self.gamma = gamma

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


def build_step(params: StepParams, optimizer: Optimizer, epochs: int) -> LambdaLR:
    """Step decay: multiply the learning rate by gamma every step_size epochs."""
    return LambdaLR(optimizer, StepFactor(params.step_size, params.gamma))


class CosineParams(Params):
    """Parameters of the cosine schedule."""

    eta_min_factor: float = Field(
        0.0, ge=0, le=1, description="Final learning rate as a fraction of the initial one."
    )
    epochs: int | None = Field(
        None, ge=1, le=1_000_000, description="Epochs of the half cosine (default: the run's epochs)."
    )


class CosineFactor:
    """Factor for 0-based epoch ``e``: ``m + (1 - m) (1 + cos(pi min(e, T) / T)) / 2``, m = eta_min_factor."""

    def __init__(self, eta_min_factor: float, epochs: int) -> None:
        self.eta_min_factor = eta_min_factor
        self.epochs = epochs

    def __call__(self, epoch: int) -> float:
        m = self.eta_min_factor
        return m + (1 - m) * (1 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs)) / 2


class CosineLR(LambdaLR):
    """``LambdaLR`` over a :class:`CosineFactor` whose length is the one it was built with, not the
    checkpoint's: a run resumed with more epochs anneals over the new length (from where it stood)
    instead of spending the extra epochs at the minimum."""

    def load_state_dict(self, state_dict: dict) -> None:
        lengths = [factor.epochs for factor in self.lr_lambdas]
        super().load_state_dict(state_dict)
        for factor, length in zip(self.lr_lambdas, lengths, strict=True):
            factor.epochs = length
        self._last_lr = [
            group["initial_lr"] * factor(self.last_epoch)
            for group, factor in zip(self.optimizer.param_groups, self.lr_lambdas, strict=True)
        ]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr


def build_cosine(params: CosineParams, optimizer: Optimizer, epochs: int) -> LambdaLR:
    """Cosine annealing (Loshchilov and Hutter 2017, without restarts) to eta_min_factor over the run."""
    return CosineLR(optimizer, CosineFactor(params.eta_min_factor, params.epochs or epochs))


class PlateauParams(Params):
    """Parameters of the reduce-on-plateau schedule."""

    monitor: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$",
        description="What is watched each epoch: a logged loss's epoch mean (e.g. D_A) or an evaluation "
        "score (eval.psnr: mean of the directions, eval.A2B.psnr; needs eval.every_epochs = 1); required.",
    )
    mode: Literal["min", "max"] = Field("min", description="min: lower is better; max: higher is better.")
    factor: float = Field(0.1, gt=0, lt=1, description="Factor applied to the learning rate on a plateau.")
    patience: int = Field(
        10, ge=0, le=1_000_000, description="Epochs without improvement tolerated before a cut."
    )
    threshold: float = Field(
        1e-4,
        ge=0,
        lt=1,
        description="Relative change that counts as an improvement (best * (1 -/+ threshold)).",
    )
    cooldown: int = Field(
        0, ge=0, le=1_000_000, description="Epochs to wait after a cut before counting again."
    )
    min_lr_factor: float = Field(
        0.0, ge=0, le=1, description="Lowest learning rate as a fraction of the initial one."
    )


class Plateau(ReduceLROnPlateau):
    """torch's ReduceLROnPlateau that names the value it watches (``monitor``)."""

    def __init__(self, optimizer: Optimizer, params: PlateauParams) -> None:
        super().__init__(
            optimizer,
            mode=params.mode,
            factor=params.factor,
            patience=params.patience,
            threshold=params.threshold,
            threshold_mode="rel",
            cooldown=params.cooldown,
            min_lr=[group["lr"] * params.min_lr_factor for group in optimizer.param_groups],
        )
        self.monitor = params.monitor


def build_plateau(params: PlateauParams, optimizer: Optimizer, epochs: int) -> Plateau:
    """Reduce the learning rate by factor when a logged loss or eval score stops improving for patience epochs."""
    if params.monitor is None:
        raise RecipeError(
            "train.scheduler.monitor: missing; name a loss the model logs (e.g. D_A) or eval.METRIC"
        )
    return Plateau(optimizer, params)


class WarmupParams(Params):
    """Parameters of the warmup schedule."""

    warmup_epochs: int = Field(5, ge=1, le=1_000_000, description="Epochs of linear warmup.")
    start_factor: float = Field(
        0.1, ge=0, le=1, description="Learning rate at epoch 0 as a fraction of the initial one."
    )
    then: ComponentSpec = component_field(
        "scheduler", "constant", "Schedule after the warmup, over the remaining epochs."
    )


class Warmup:
    """Factor ``s + (1 - s) e / W`` for epochs ``e < W``, then the ``then`` schedule's factor at ``e - W``.

    The ``then`` schedule runs on a probe optimizer whose learning rate starts at 1, so its learning
    rate is a factor; it is stepped with the monitored value if it watches one.
    """

    def __init__(
        self, optimizer: Optimizer, warmup_epochs: int, start_factor: float, then: Any, probe: Optimizer
    ) -> None:
        self.optimizer = optimizer
        self.warmup_epochs = warmup_epochs
        self.start_factor = start_factor
        self.then = then
        self.probe = probe
        self.monitor = getattr(then, "monitor", None)
        self.monitor_field = "then." + getattr(then, "monitor_field", "monitor")
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def factor(self) -> float:
        if self.last_epoch < self.warmup_epochs:
            return self.start_factor + (1 - self.start_factor) * self.last_epoch / self.warmup_epochs
        return float(self.probe.param_groups[0]["lr"])

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor()

    def step(self, value: float | None = None) -> None:
        self.last_epoch += 1
        if self.last_epoch > self.warmup_epochs:
            if self.monitor is not None:
                self.then.step(value)
            else:
                self.then.step()
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "then": self.then.state_dict(),
            "then_factor": float(self.probe.param_groups[0]["lr"]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = list(state["base_lrs"])
        # The saved factor first: a schedule whose loading sets the rate itself (a cosine resumed over
        # a new length) then has the last word.
        self.probe.param_groups[0]["lr"] = float(state["then_factor"])
        self.then.load_state_dict(state["then"])
        self._apply()


def build_warmup(params: WarmupParams, optimizer: Optimizer, epochs: int) -> Warmup:
    """Linear warmup from start_factor over warmup_epochs, then another schedule (then)."""
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    try:
        then = params.then.build(probe, max(1, epochs - params.warmup_epochs))
    except RecipeError as exc:
        head = "train.scheduler"
        lines = [f"{head}.then{line[len(head) :]}" if line.startswith(head) else line for line in exc.lines]
        raise RecipeError(*lines) from None
    probe.step()  # no gradients, so no change; tells torch that the probe's schedule steps in order
    return Warmup(optimizer, params.warmup_epochs, params.start_factor, then, probe)


@hookimpl
def register_schedulers(register: Register) -> None:
    register("constant", build_constant)
    register("linear_decay", build_linear_decay, params=LinearDecayParams)
    register("step", build_step, params=StepParams)
    register("cosine", build_cosine, params=CosineParams)
    register("plateau", build_plateau, params=PlateauParams)
    register("warmup", build_warmup, params=WarmupParams)
