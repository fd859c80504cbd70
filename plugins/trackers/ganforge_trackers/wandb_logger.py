"""``wandb``: a run's recipe, losses, learning rates, sample grids and evaluation scores in Weights & Biases."""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated, Any, Literal

from pydantic import Field

from ganforge import Params
from ganforge.errors import GanforgeError
from ganforge_trackers.common import (
    Guard,
    epoch_values,
    missing_package,
    one_line,
    outcome,
    sample_grid,
    step_values,
)


class WandbParams(Params):
    project: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="W&B project (default: WANDB_PROJECT, else the recipe's name).",
    )
    entity: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="W&B team or user (default: WANDB_ENTITY, else yours).",
    )
    name: str | None = Field(
        None, min_length=1, max_length=128, description="Run name (default: the run directory's name)."
    )
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None,
        description="online, offline (files only; upload later with `wandb sync`) or disabled "
        "(default: WANDB_MODE, else wandb's own default, online).",
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=64, description="Run tags (1 to 64 characters each)."
    )
    dir: str | None = Field(
        None,
        min_length=1,
        description="Folder wandb writes its run files under (default: WANDB_DIR, else the run directory).",
    )
    log_images: bool = Field(True, description="Log each sample grid (samples/epoch_NNNN.png) as an image.")


def build_wandb(params: WandbParams) -> WandbLogger:
    """Weights & Biases: recipe as config; losses, learning rates, eval scores, sample grids by step."""
    if importlib.util.find_spec("wandb") is None:
        raise missing_package("wandb", "wandb")
    return WandbLogger(params)


class WandbLogger:
    """One W&B run per ``ganforge run`` (a resumed run starts another, with the same run directory)."""

    def __init__(self, params: WandbParams) -> None:
        self.params = params
        self.run: Any = None
        self.guard = Guard("wandb")

    def on_train_start(self, trainer: Any) -> None:
        import wandb  # optional: pip install "ganforge-trackers[wandb]"

        p = self.params
        run_dir = trainer.run_dir.path
        folder = p.dir or os.environ.get("WANDB_DIR") or str(run_dir)
        os.makedirs(folder, exist_ok=True)
        config = trainer.recipe.to_dict()
        if trainer.step:
            config["resumed_from_step"] = trainer.step
        try:
            self.run = wandb.init(
                project=p.project or os.environ.get("WANDB_PROJECT") or trainer.recipe.name,
                entity=p.entity,
                name=p.name or run_dir.name,
                mode=p.mode,
                tags=p.tags or None,
                dir=folder,
                config=config,
                reinit="create_new",  # a run of the user's own, in the same process, is left alone
            )
        except Exception as exc:  # noqa: BLE001 - any failure to start is one line
            raise GanforgeError(
                f"callback 'wandb' could not start a run: {one_line(exc)}"
                + ' (without an account or network, set mode = "offline")'
            ) from None
        self.run.summary["run_dir"] = str(run_dir)

    def on_step_end(self, trainer: Any, losses: dict[str, float] | None) -> None:
        if self.run is None or losses is None:
            return
        values = step_values(trainer, losses)
        self.guard(f"logging step {trainer.step}", lambda: self.run.log(values, step=trainer.step))

    def on_epoch_end(self, trainer: Any, losses: dict[str, float]) -> None:
        if self.run is None:
            return

        def log() -> None:
            import wandb  # optional, as above

            values: dict[str, Any] = dict(epoch_values(trainer, losses))
            grid = sample_grid(trainer) if self.params.log_images else None
            if grid is not None:
                values["samples"] = wandb.Image(str(grid), caption=f"epoch {trainer.epoch}")
            self.run.log(values, step=trainer.step)

        self.guard(f"logging epoch {trainer.epoch}", log)

    def on_train_end(self, trainer: Any) -> None:
        if self.run is None:
            return
        state, code = outcome(trainer)
        run, self.run = self.run, None

        def finish() -> None:
            run.summary["outcome"] = state
            run.finish(exit_code=code)

        self.guard("finishing the run", finish, always=True)
