"""What happens around the training loop: progress, the metrics log, sample grids, checkpoints.

A callback sees the trainer at four moments, through the attributes :class:`Trainer` lists here (the
engine's :class:`~ganforge.engine.trainer.Trainer` has them; this module does not import it, so the
trainer can import the callbacks without a circle). ``on_step_end``
receives the mean losses of the last ``train.log_every`` steps at log steps and ``None`` between
them, so no callback forces a device synchronisation on every step.
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ganforge.engine.images import encode_png, sample_grid
from ganforge.evaluation import translators_of
from ganforge.registry import CALLBACK_METHODS


class Trainer(Protocol):
    """What a callback may read of the trainer, and the one thing it may ask of it."""

    recipe: Any  # the resolved ganforge.recipe.Recipe
    model: torch.nn.Module
    run_dir: Any  # ganforge.engine.rundir.RunDir: every file goes through it
    epoch: int  # epochs completed
    epochs: int
    step: int  # steps completed
    steps_per_epoch: int
    global_batch: int  # images per domain in one step, over all processes
    sample_batch: dict[str, torch.Tensor]
    sample_paired: bool  # the sample images are true test pairs (each has its right answer)

    @property
    def total_steps(self) -> int: ...

    @property
    def position(self) -> int: ...

    def learning_rates(self) -> dict[str, float]: ...

    def save_checkpoint(self, relative: str) -> Path | None: ...

    def averaged_weights(self) -> AbstractContextManager[None]: ...


class Callback:
    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, losses: dict[str, float] | None) -> None: ...

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def epoch_values(self, trainer: Trainer) -> dict[str, float]:
        """Values a learning-rate schedule may watch (``monitor``), asked for when an epoch ends, before
        the schedules step and before :meth:`on_epoch_end`; the evaluation callback gives its scores."""
        return {}


def as_callback(obj: Any) -> Callback:
    """A plugin's callback object that defines only some of the four methods, as a full :class:`Callback`."""
    if isinstance(obj, Callback):
        return obj
    adapter = Callback()
    for name in CALLBACK_METHODS:
        method = getattr(obj, name, None)
        if callable(method):
            setattr(adapter, name, method)
    return adapter


def averaged_weights(trainer: Trainer) -> AbstractContextManager[None]:
    """The generators' averaged (EMA) weights in place while inside, when the run keeps them
    (``[train.ema]``); otherwise nothing changes."""
    method = getattr(trainer, "averaged_weights", None)
    return method() if callable(method) else nullcontext()


def format_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.3f}" for name, value in losses.items())


class ProgressBar(Callback):
    """A rich progress bar: epoch, step, losses, it/s and time left; one line per epoch as well."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = 0
        self.started = 0.0
        self.start_step = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,  # logs and CI get the per-epoch lines only
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=trainer.total_steps,
            completed=trainer.step,
            epoch=self._epoch(trainer),
            losses="",
            speed="",
        )
        self.started = time.perf_counter()
        self.start_step = trainer.step

    def _epoch(self, trainer: Trainer) -> str:
        return f"{min(trainer.epoch + 1, trainer.epochs)}/{trainer.epochs}"

    def _speed(self, trainer: Trainer) -> str:
        elapsed = time.perf_counter() - self.started
        done = trainer.step - self.start_step
        if not (elapsed > 0 and done):
            return ""
        images = getattr(trainer, "global_batch", 1) * done / elapsed  # over all processes
        return f"{done / elapsed:.2f} it/s {images:.1f} img/s"

    def on_step_end(self, trainer: Trainer, losses: dict[str, float] | None) -> None:
        assert self.progress is not None
        fields = {"speed": self._speed(trainer)} if losses is not None else {}
        if losses is not None:
            fields["losses"] = format_losses(losses)
        self.progress.update(self.task, completed=trainer.step, **fields)

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        assert self.progress is not None
        self.progress.update(self.task, epoch=self._epoch(trainer))
        stamp = time.strftime("%H:%M:%S")
        self.progress.console.print(
            f"{stamp} epoch {trainer.epoch}/{trainer.epochs}  {format_losses(losses)}  {self._speed(trainer)}"
        )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()


class MetricsLog(Callback):
    """``metrics.jsonl``: one JSON object per log step (``kind: step``) and per epoch."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self.started = time.perf_counter()

    def _record(self, trainer: Trainer, kind: str, losses: dict[str, float]) -> None:
        trainer.run_dir.append_json(
            trainer.run_dir.METRICS,
            {
                "kind": kind,
                "epoch": trainer.epoch,
                "step": trainer.step,
                "time": round(time.perf_counter() - self.started, 3),
                "lr": trainer.learning_rates(),
                "losses": losses,
            },
        )

    def on_step_end(self, trainer: Trainer, losses: dict[str, float] | None) -> None:
        if losses is not None:
            self._record(trainer, "step", losses)

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self._record(trainer, "epoch", losses)


def truth_rows(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> list[list[tuple[str, torch.Tensor]]]:
    """For each direction the model declares, a block: input | translation | ground truth (the input's
    true counterpart in the target domain, which a paired test set has)."""
    rows = []
    for t in translators_of(model):
        if t.source in batch and t.target in batch:
            source = batch[t.source]
            rows.append(
                [
                    (f"{t.source} (input)", source),
                    (t.name, t.net(source)),
                    (f"{t.target} (truth)", batch[t.target]),
                ]
            )
    return rows


class SampleGrids(Callback):
    """``samples/epoch_NNNN.png``: the model's sample rows on fixed test images (with the averaged
    generators when the run keeps an EMA). Where those are true test pairs, also
    ``samples/truth_epoch_NNNN.png``: input | translation | ground truth for each declared direction."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if trainer.epoch % self.every and trainer.epoch != trainer.epochs:
            return
        paired = bool(getattr(trainer, "sample_paired", False))
        trainer.model.eval()
        with torch.no_grad(), averaged_weights(trainer):
            rows = trainer.model.sample_rows(trainer.sample_batch)
            truth = truth_rows(trainer.model, trainer.sample_batch) if paired else []
        trainer.model.train()
        folder = trainer.run_dir.SAMPLES
        trainer.run_dir.atomic_write(f"{folder}/epoch_{trainer.epoch:04d}.png", encode_png(sample_grid(rows)))
        if truth:
            trainer.run_dir.atomic_write(
                f"{folder}/truth_epoch_{trainer.epoch:04d}.png", encode_png(sample_grid(truth))
            )


class Checkpoints(Callback):
    """``checkpoints/epoch_NNNN.pt`` every ``every`` epochs (the last ``keep`` kept) and ``latest.pt``.

    With ``every_steps``, ``latest.pt`` is also rewritten every that many steps, so a killed run
    loses at most that many steps. ``latest.pt`` always holds the newest state.
    """

    PATTERN = re.compile(r"^epoch_(\d+)\.pt$")

    def __init__(self, every: int, keep: int, every_steps: int | None = None) -> None:
        self.every = every
        self.keep = keep
        self.every_steps = every_steps

    def _step_due(self, trainer: Trainer) -> bool:
        return self.every_steps is not None and trainer.step % self.every_steps == 0

    def on_step_end(self, trainer: Trainer, losses: dict[str, float] | None) -> None:
        if self._step_due(trainer) and trainer.position < trainer.steps_per_epoch:
            trainer.save_checkpoint(f"{trainer.run_dir.CHECKPOINTS}/latest.pt")

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        folder = trainer.run_dir.CHECKPOINTS
        if trainer.epoch % self.every == 0 or trainer.epoch == trainer.epochs:
            name = f"{folder}/epoch_{trainer.epoch:04d}.pt"
            trainer.save_checkpoint(name)
            trainer.run_dir.link(name, f"{folder}/latest.pt")
            trainer.run_dir.prune(folder, self.PATTERN, self.keep)
        elif self._step_due(trainer):
            trainer.save_checkpoint(f"{folder}/latest.pt")
