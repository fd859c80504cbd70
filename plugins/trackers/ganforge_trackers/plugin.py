"""The hooks through which the trackers reach ganforge (entry point ``trackers`` in group ``ganforge``)."""

from __future__ import annotations

from ganforge import hookimpl
from ganforge.hookspecs import Register
from ganforge_trackers.mlflow_logger import MlflowParams, build_mlflow
from ganforge_trackers.wandb_logger import WandbParams, build_wandb


@hookimpl
def register_callbacks(register: Register) -> None:
    register("wandb", build_wandb, params=WandbParams)
    register("mlflow", build_mlflow, params=MlflowParams)
