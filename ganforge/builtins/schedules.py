"""Learning-rate schedules: constant, then linear decay to zero."""

from __future__ import annotations

from pydantic import Field
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ganforge.errors import RecipeError
from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import NoParams, Params


class LinearDecayParams(Params):
    """Parameters of the linear-decay schedule."""

    constant_epochs: int = Field(100, ge=0, le=1_000_000, description="Epochs at the initial learning rate (paper: 100).")
    decay_epochs: int = Field(
        100, ge=1, le=1_000_000, description="Epochs over which the rate decays linearly to zero (paper: 100)."
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


def build_constant(
    params: NoParams, optimizer: Optimizer, epochs: int
) -> LRScheduler:
    """Keep the optimizer's learning rate for the whole run."""
    return LambdaLR(optimizer, _one)


def _one(epoch: int) -> float:
    return 1.0


@hookimpl
def register_schedulers(register: Register) -> None:
    register("constant", build_constant)
    register("linear_decay", build_linear_decay, params=LinearDecayParams)
