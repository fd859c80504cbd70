"""Built-in optimizers."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

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
        description="auto lets torch choose; foreach/fused update all parameters in a few kernels.",
    )


def build_adam(params: AdamParams, parameters: list[torch.nn.Parameter]) -> torch.optim.Adam:
    """Adam (Kingma and Ba 2015)."""
    choice = params.implementation
    return torch.optim.Adam(
        parameters,
        lr=params.lr,
        betas=params.betas,
        eps=params.eps,
        weight_decay=params.weight_decay,
        foreach={"auto": None, "for_loop": False, "foreach": True, "fused": None}[choice],
        fused=True if choice == "fused" else None,
    )


@hookimpl
def register_optimizers(register: Register) -> None:
    register("adam", build_adam, params=AdamParams)
