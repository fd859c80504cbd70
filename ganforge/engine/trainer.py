"""The training engine: builds a run from a validated recipe and loops over epochs and steps."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ganforge import __version__
from ganforge.engine.callbacks import Callback
from ganforge.engine.checkpoint import FORMAT, FORMAT_VERSION, rng_state, set_rng_state
from ganforge.engine.model import Optimizers, TrainingModel
from ganforge.engine.rundir import RunDir
from ganforge.engine.runtime import Runtime
from ganforge.errors import CheckpointError, DatasetError, PluginError, TrainingError
from ganforge.recipe import Recipe


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _fixed_batch(dataset: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` items of ``dataset`` stacked (the images every sample grid shows)."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]  # type: ignore[arg-type]
    keys = [k for k, v in items[0].items() if isinstance(v, torch.Tensor)]
    return {k: torch.stack([item[k] for item in items]) for k in keys}


class Trainer:
    """One run: model, optimizers, schedules, data, and the loop that ties them together."""

    def __init__(
        self,
        recipe: Recipe,
        runtime: Runtime,
        run_dir: RunDir,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.recipe = recipe
        self.runtime = runtime
        self.run_dir = run_dir
        self.callbacks = list(callbacks)
        train = recipe.train
        self.epochs = train.epochs
        self.epoch = 0  # epochs completed
        self.step = 0  # steps completed

        random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        if train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        dataset = recipe.data.build("train")
        if len(dataset) == 0:
            raise DatasetError(f"data: the {recipe.data.type} training set is empty")
        try:
            sample_set = recipe.data.build("test")
            if len(sample_set) == 0:
                raise DatasetError("empty test split")
        except DatasetError:
            sample_set = dataset  # no test split: show training images
        self.sample_batch = _to_device(_fixed_batch(sample_set, recipe.output.n_samples), runtime.device)

        self.loader_generator = torch.Generator().manual_seed(recipe.seed)
        self.loader = DataLoader(
            dataset,
            batch_size=train.batch_size,
            shuffle=True,
            drop_last=len(dataset) >= train.batch_size,
            num_workers=train.num_workers,
            persistent_workers=train.num_workers > 0,
            pin_memory=runtime.device.type == "cuda",
            generator=self.loader_generator,
        )
        self.steps_per_epoch = len(self.loader)
        if train.max_iters_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, train.max_iters_per_epoch)

        model = recipe.model.build(recipe.seed)
        if not isinstance(model, TrainingModel):
            raise PluginError(
                f"model '{recipe.model.type}' (plugin '{recipe.model.resolved.component.plugin}') "
                f"returned {type(model).__name__}, not a ganforge TrainingModel"
            )
        self.model = model.to(runtime.device)
        self.model.train()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        for name, params in self.model.optimizer_groups().items():
            optimizer = recipe.train.optimizer.build(list(params))
            self.optimizers[name] = optimizer
            self.schedulers[name] = recipe.train.scheduler.build(optimizer, self.epochs)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    # ---------------------------------------------------------------------------------- the loop

    def fit(self) -> dict[str, float]:
        """Train until ``train.epochs`` are done; return the last epoch's mean losses."""
        optimizers = Optimizers(self.optimizers)
        log_every = self.recipe.train.log_every
        epoch_losses: dict[str, float] = {}
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            while self.epoch < self.epochs:
                window: dict[str, torch.Tensor] = {}
                totals: dict[str, torch.Tensor] = {}
                window_steps = 0
                for index, batch in enumerate(self.loader):
                    if index >= self.steps_per_epoch:
                        break
                    batch = _to_device(batch, self.runtime.device)
                    with self.runtime.autocast():
                        losses = self.model.train_step(batch, optimizers)
                    for name, value in losses.items():
                        value = value.detach().float()
                        window[name] = window[name] + value if name in window else value
                        totals[name] = totals[name] + value if name in totals else value
                    window_steps += 1
                    self.step += 1
                    report = None
                    if self.step % log_every == 0 or index + 1 == self.steps_per_epoch:
                        report = self._read_losses(window, window_steps)
                        window, window_steps = {}, 0
                    for cb in self.callbacks:
                        cb.on_step_end(self, report)
                self.epoch += 1
                for scheduler in self.schedulers.values():
                    scheduler.step()
                epoch_losses = self._read_losses(totals, self.steps_per_epoch)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch_losses)
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return epoch_losses

    def _read_losses(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        """Mean losses as floats (one device synchronisation); a NaN or Inf stops the run."""
        if not sums:
            return {}
        values = (torch.stack(list(sums.values())) / max(count, 1)).tolist()
        losses = dict(zip(sums, values))
        for name, value in losses.items():
            if not math.isfinite(value):
                raise TrainingError(
                    f"loss {name} became {value} at step {self.step} (epoch {self.epoch + 1}); "
                    "stopped without saving: the last checkpoint holds the last good weights"
                )
        return losses

    # ---------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ganforge_version": __version__,
            "recipe": self.recipe.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "rng": rng_state(self.loader_generator),
        }

    def save_checkpoint(self, relative: str) -> Path | None:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        data = buffer.getvalue()
        return self.run_dir.atomic_write(relative, lambda f: f.write(data))

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from ``state`` (read by :func:`ganforge.engine.checkpoint.load_checkpoint`)."""
        if set(state["optimizers"]) != set(self.optimizers):
            raise CheckpointError(
                f"{source}: optimizer groups {sorted(state['optimizers'])} do not match this "
                f"model's {sorted(self.optimizers)}"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{source}: weights do not fit this recipe's model: {first}") from None
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        set_rng_state(state["rng"], self.loader_generator)
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])


def describe_run(trainer: Trainer) -> str:
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return (
        f"{trainer.recipe.model.type} model, {n_params / 1e6:.2f} M parameters, "
        f"{trainer.steps_per_epoch} steps/epoch x {trainer.epochs} epochs on {trainer.runtime.device}"
    )

