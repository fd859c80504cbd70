"""Callbacks that let a person see a run: evaluations, charts, the report page, TensorBoard, a summary.

- :class:`MetricEvaluation`: every ``eval.every_epochs`` epochs (and after the last), scores the
  model on the test split, appends the scores to ``eval.jsonl`` and keeps ``checkpoints/best.pt``
  at the best value of ``eval.best_metric``.
- :class:`LossCurves`: ``loss_curves.png`` from ``metrics.jsonl`` after every epoch.
- :class:`Report`: ``metrics.png`` and ``report.html`` after every epoch and when the run ends.
- :class:`TensorBoardLog`: losses, learning rates, metrics and sample grids under ``tensorboard/``
  (``output.tensorboard = true``; needs the ``tensorboard`` package).
- :func:`print_summary`: the one-screen summary ``ganforge run`` prints at the end.

They use only the trainer's public attributes (``recipe``, ``model``, ``run_dir``, ``epoch``,
``step``, ``epochs``, ``save_checkpoint``) and write only through ``trainer.run_dir``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ganforge.engine.callbacks import Callback, averaged_weights
from ganforge.engine.checkpoint import rng_state, set_rng_state
from ganforge.engine.render import loss_curves_png, metric_curves_png, read_jsonl, render_report
from ganforge.errors import GanforgeError
from ganforge.evaluation import evaluate, evaluation_split, identity_translators, is_paired, translators_of
from ganforge.metrics import resolve_metrics

if TYPE_CHECKING:
    from ganforge.engine.trainer import Trainer
    from ganforge.evaluation import EvalResult
    from ganforge.recipe import EvalSection
    from ganforge.registry import Registries

EVAL_LOG = "eval.jsonl"
LOSS_CURVES = "loss_curves.png"
METRIC_CURVES = "metrics.png"
REPORT = "report.html"
BEST = "checkpoints/best.pt"
TENSORBOARD = "tensorboard"


def format_scores(result: EvalResult) -> str:
    return "  |  ".join(
        f"{direction} " + "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        for direction, values in result.scores.items()
    )


class MetricEvaluation(Callback):
    """Scores the model on the test split every ``every_epochs`` epochs; keeps ``checkpoints/best.pt``."""

    def __init__(self, section: EvalSection, registries: Registries, console: Console | None = None) -> None:
        self.section = section
        self.console = console
        self.metrics = resolve_metrics(registries, section.metrics, "eval.metrics", section.inception_weights)
        # those that need true pairs are scored for the identity baseline too
        self.paired_metrics: dict[str, Any] = {}
        for name, spec in self.metrics.items():  # finds Inception weights (and the like) before training
            if getattr(spec.build(), "paired", False):
                self.paired_metrics[name] = spec
        self.best_metric = section.best_metric
        self.best: dict[str, Any] | None = None  # metric, value, epoch, step, checkpoint
        self.last: EvalResult | None = None
        self.last_epoch: int | None = None
        self.higher_is_better = False
        if self.best_metric is not None:
            base = self.best_metric.rsplit(".", 1)[-1]
            self.higher_is_better = bool(getattr(self.metrics[base].build(), "higher_is_better", False))
        self.dataset: Any = None
        self.baseline: dict[str, dict[str, float]] | None = None  # identity's paired scores, once per run
        self._early: tuple[int, EvalResult] | None = None  # (epoch, result) evaluated for a schedule

    def on_train_start(self, trainer: Trainer) -> None:
        self.dataset = evaluation_split(trainer.recipe.data, "test", self.section.preprocess)
        trainer.run_dir.truncate_jsonl(EVAL_LOG, trainer.step)  # a resumed run redoes later evaluations
        for record in read_jsonl(trainer.run_dir.path / EVAL_LOG):
            value = self._value(record.get("scores") or {})
            if value is not None and record.get("best"):
                self.best = {
                    "metric": self.best_metric,
                    "value": value,
                    "epoch": record.get("epoch"),
                    "step": record.get("step"),
                    "checkpoint": str(trainer.run_dir.path / BEST),
                }

    def due(self, trainer: Trainer) -> bool:
        every = self.section.every_epochs
        return every is not None and (trainer.epoch % every == 0 or trainer.epoch == trainer.epochs)

    def _value(self, scores: dict[str, dict[str, Any]]) -> float | None:
        if self.best_metric is None:
            return None
        if "." in self.best_metric:
            direction, name = self.best_metric.split(".", 1)
            value = scores.get(direction, {}).get(name)
        else:
            values = [v.get(self.best_metric) for v in scores.values()]
            values = [v for v in values if isinstance(v, (int, float))]
            value = sum(values) / len(values) if values else None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher_is_better else value < self.best["value"]

    def epoch_values(self, trainer: Trainer) -> dict[str, float]:
        """This epoch's scores for a schedule that watches one (``eval.NAME``: the mean over directions,
        ``eval.A2B.NAME``: one direction), when an evaluation is due; the evaluation is then kept for
        :meth:`on_epoch_end`, which logs it, instead of being run twice."""
        if not self.due(trainer):
            return {}
        self._early = (trainer.epoch, self._evaluate(trainer))
        return {f"eval.{name}": value for name, value in self._early[1].flat().items()}

    def _evaluate(self, trainer: Trainer) -> EvalResult:
        model = trainer.model
        device = next(iter(model.parameters())).device
        was_training = model.training
        saved_rng = rng_state()  # evaluating must not change what training draws next
        model.eval()
        try:
            with averaged_weights(trainer):
                result = evaluate(
                    translators_of(model),
                    self.dataset,
                    self.metrics,
                    device=device,
                    batch_size=self.section.batch_size,
                    max_images=self.section.max_images,
                )
        finally:
            model.train(was_training)
            set_rng_state(saved_rng)
        if getattr(trainer, "ema", None) is not None:
            result.info["weights"] = "ema"  # scored with the averaged generators
        if self.section.preprocess != "dataset":
            result.info["preprocess"] = self.section.preprocess
        result.baseline = self._identity_baseline(translators_of(model))
        return result

    def _identity_baseline(self, translators: Any) -> dict[str, dict[str, float]] | None:
        """The paired metrics of "output = input" on the same test images (what a translation has to
        beat; no network runs, so it is cheap), computed at the first evaluation of a run."""
        if self.baseline is None and self.paired_metrics and is_paired(self.dataset):
            self.baseline = evaluate(
                identity_translators(translators),
                self.dataset,
                self.paired_metrics,
                batch_size=self.section.batch_size,
                max_images=self.section.max_images,
            ).scores
        return self.baseline

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if not self.due(trainer):
            return
        early, self._early = self._early, None
        result = early[1] if early is not None and early[0] == trainer.epoch else self._evaluate(trainer)
        self.last, self.last_epoch = result, trainer.epoch
        value = self._value({k: dict(v) for k, v in result.scores.items()})
        improved = value is not None and self._better(value)
        if improved:
            self._keep_best(trainer, value)
        trainer.run_dir.append_json(
            EVAL_LOG,
            {
                "kind": "eval",
                "epoch": trainer.epoch,
                "step": trainer.step,
                **result.to_dict(),
                "best": improved,
            },
        )
        if self.console is not None:
            mark = f"  (best {self.best_metric})" if improved else ""
            self.console.print(
                f"{time.strftime('%H:%M:%S')} eval epoch {trainer.epoch}: {format_scores(result)}{mark}"
            )

    def _keep_best(self, trainer: Trainer, value: float) -> None:
        epoch_file = f"{trainer.run_dir.CHECKPOINTS}/epoch_{trainer.epoch:04d}.pt"
        if (trainer.run_dir.path / epoch_file).is_file():
            trainer.run_dir.link(epoch_file, BEST)  # a hard link survives the pruning of epoch files
        else:
            trainer.save_checkpoint(BEST)
        self.best = {
            "metric": self.best_metric,
            "value": value,
            "epoch": trainer.epoch,
            "step": trainer.step,
            "checkpoint": str(trainer.run_dir.path / BEST),
        }


class LossCurves(Callback):
    """``loss_curves.png``: every logged loss over the steps, one panel each."""

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self.write(trainer)

    def write(self, trainer: Trainer) -> None:
        if not trainer.run_dir.is_main:
            return
        data = loss_curves_png(read_jsonl(trainer.run_dir.path / trainer.run_dir.METRICS))
        if data is not None:
            trainer.run_dir.atomic_write(LOSS_CURVES, data)


class Report(Callback):
    """``metrics.png`` and ``report.html`` (charts, newest samples, metrics, recipe) after each epoch."""

    def __init__(self, evaluation: MetricEvaluation | None = None) -> None:
        self.evaluation = evaluation
        self.last_losses: dict[str, float] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        self.write(trainer, "running")

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self.last_losses = losses
        self.write(trainer, "running")

    def on_train_end(self, trainer: Trainer) -> None:
        state = "finished" if trainer.epoch >= trainer.epochs else f"stopped in epoch {trainer.epoch + 1}"
        try:  # never hide the error that ended the run behind one of the report's
            self.write(trainer, state)
        except Exception as exc:  # pragma: no cover - reported, not raised
            sys.stderr.write(f"warning: report.html not updated: {exc}\n")

    def write(self, trainer: Trainer, state: str) -> None:
        out = trainer.run_dir
        if not out.is_main or not out.path.is_dir():
            return
        curves = metric_curves_png(read_jsonl(out.path / EVAL_LOG))
        if curves is not None:
            out.atomic_write(METRIC_CURVES, curves)
        status = {
            "name": trainer.recipe.name,
            "description": trainer.recipe.description,
            "epoch": trainer.epoch,
            "epochs": trainer.epochs,
            "step": trainer.step,
            "state": state,
            "final_losses": self.last_losses,
            "best": self.evaluation.best if self.evaluation is not None else None,
        }
        out.write_text(REPORT, render_report(out.path, status))


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLog(Callback):
    """Event files under ``tensorboard/``: losses, learning rates, test metrics and sample grids."""

    def __init__(self, evaluation: MetricEvaluation | None = None) -> None:
        if not tensorboard_available():
            raise GanforgeError(
                "output.tensorboard = true needs the tensorboard package: pip install tensorboard "
                "(or set output.tensorboard = false)"
            )
        self.evaluation = evaluation
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.run_dir.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter  # optional: only with output.tensorboard = true

        # purge_step: a resumed run replaces what was logged after its checkpoint
        self.writer = SummaryWriter(str(trainer.run_dir.path / TENSORBOARD), purge_step=trainer.step or None)

    def on_step_end(self, trainer: Trainer, losses: dict[str, float] | None) -> None:
        if self.writer is None or losses is None:
            return
        for name, value in losses.items():
            self.writer.add_scalar(f"loss/{name}", value, trainer.step)

    def on_epoch_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in losses.items():
            self.writer.add_scalar(f"epoch_loss/{name}", value, trainer.step)
        for name, lr in trainer.learning_rates().items():
            self.writer.add_scalar(f"lr/{name}", lr, trainer.step)
        ev = self.evaluation
        if ev is not None and ev.last is not None and ev.last_epoch == trainer.epoch:
            for key, value in ev.last.flat().items():
                if math.isfinite(value):
                    self.writer.add_scalar(f"eval/{key}", value, trainer.step)
        grid = trainer.run_dir.path / trainer.run_dir.SAMPLES / f"epoch_{trainer.epoch:04d}.png"
        if grid.is_file():
            with Image.open(grid) as image:
                self.writer.add_image(
                    "samples", np.asarray(image.convert("RGB")), trainer.step, dataformats="HWC"
                )
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def print_summary(
    console: Console,
    run_path: Path,
    losses: dict[str, float],
    evaluation: MetricEvaluation | None,
    report: bool,
) -> None:
    """One screen at the end of ``ganforge run``: where things are, the best checkpoint, final numbers."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run directory", str(run_path))
    table.add_row("checkpoint", str(run_path / "checkpoints" / "latest.pt"))
    if evaluation is not None and evaluation.best is not None:
        best = evaluation.best
        table.add_row(
            "best checkpoint",
            f"{best['checkpoint']}  ({best['metric']} {best['value']:.4g}, epoch {best['epoch']})",
        )
    table.add_row("samples", str(run_path / "samples"))
    if report:
        table.add_row("report", str(run_path / REPORT))
    if losses:
        table.add_row("final losses", "  ".join(f"{k} {v:.3f}" for k, v in losses.items()))
    if evaluation is not None and evaluation.last is not None:
        scores = Table(box=None, padding=(0, 1), show_edge=False)
        scores.add_column("metric")
        directions = list(evaluation.last.scores)
        for direction in directions:
            scores.add_column(direction, justify="right")
        names: list[str] = []
        for values in evaluation.last.scores.values():
            names.extend(n for n in values if n not in names)
        for name in names:
            scores.add_row(
                name, *[f"{evaluation.last.scores[d].get(name, math.nan):.4g}" for d in directions]
            )
        table.add_row(f"metrics (epoch {evaluation.last_epoch})", scores)
    console.print(Panel(table, title="summary", expand=False))
