"""Built-in optimizers: Adam, AdamW (decoupled weight decay) and SGD with momentum."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class AdamParams(Params):
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam's (beta1, beta2).")
    eps: float = Field(1e-8, gt=0, description="Term added to the denominator.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty.")
    implementation: Literal["auto", "for_loop", "foreach", "fused"] = Field(
        "auto",
        description="auto: fused when every parameter is on the CPU (one pass over each tensor; 7% of a "
        "64 px image-translation GAN step there), elsewhere torch's choice; foreach/fused update all parameters in a "
        "few kernels, for_loop one parameter at a time.",
    )


def implementation_flags(choice: str, parameters: list) -> dict[str, bool | None]:
    """The ``foreach`` and ``fused`` arguments of torch's Adam/AdamW for ``implementation``.

    ``auto`` takes the fused kernel where every parameter is a dense floating-point CPU tensor: torch's
    own default there is the loop over parameters, which read and write each tensor several times
    (measured on 2 cores, a ResNet-6 image-translation GAN at 64 px: a step 406 -> 379 ms; losses equal to 1e-5 over
    three steps, tests/test_speed_options.py). Elsewhere (CUDA, MPS, mixed devices) torch chooses.
    ``parameters`` is a list of tensors or of param-group dicts (their ``params`` are looked at)."""
    tensors = [t for item in parameters for t in (item["params"] if isinstance(item, dict) else [item])]
    if (
        choice == "auto"
        and tensors
        and all(
            isinstance(p, torch.Tensor)
            and p.device.type == "cpu"
            and p.is_floating_point()
            and p.layout == torch.strided
            for p in tensors
        )
    ):
        choice = "fused"
    return {
        "foreach": {"auto": None, "for_loop": False, "foreach": True, "fused": None}[choice],
        "fused": True if choice == "fused" else None,
    }


def build_adam(params: AdamParams, parameters: list[torch.nn.Parameter]) -> torch.optim.Adam:
    """Adam (Kingma and Ba 2015)."""
    parameters = list(parameters)  # a generator would be used up by implementation_flags
    return torch.optim.Adam(
        parameters,
        lr=params.lr,
        betas=params.betas,
        eps=params.eps,
        weight_decay=params.weight_decay,
        **implementation_flags(params.implementation, parameters),
    )


class AdamWParams(AdamParams):
    weight_decay: float = Field(
        0.01, ge=0, description="Decoupled weight decay (lr * weight_decay per step)."
    )


def build_adamw(params: AdamWParams, parameters: list[torch.nn.Parameter]) -> torch.optim.AdamW:
    """AdamW: Adam with decoupled weight decay (Loshchilov and Hutter 2019)."""
    parameters = list(parameters)  # a generator would be used up by implementation_flags
    return torch.optim.AdamW(
        parameters,
        lr=params.lr,
        betas=params.betas,
        eps=params.eps,
        weight_decay=params.weight_decay,
        **implementation_flags(params.implementation, parameters),
    )


class SGDParams(Params):
    lr: float = Field(1e-2, gt=0, description="Learning rate.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum factor (0: plain SGD).")
    dampening: float = Field(0.0, ge=0, le=1, description="Dampening of the momentum.")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0 and dampening 0).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty.")

    @model_validator(mode="after")
    def _check_nesterov(self) -> SGDParams:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov = true needs momentum > 0 and dampening = 0")
        return self


def build_sgd(params: SGDParams, parameters: list[torch.nn.Parameter]) -> torch.optim.SGD:
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return torch.optim.SGD(
        parameters,
        lr=params.lr,
        momentum=params.momentum,
        dampening=params.dampening,
        nesterov=params.nesterov,
        weight_decay=params.weight_decay,
    )


@hookimpl
def register_optimizers(register: Register) -> None:
    register("adam", build_adam, params=AdamParams)
    register("adamw", build_adamw, params=AdamWParams)
    register("sgd", build_sgd, params=SGDParams)
