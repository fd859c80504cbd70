"""What both trackers share: what a run produced at a moment, how it ended, and the rule that a
tracker failing in the middle of a run costs one warning, never the run."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ganforge.errors import GanforgeError

#: The file the evaluation callback appends its scores to (``eval.every_epochs``); see docs/evaluation.md.
EVAL_LOG = "eval.jsonl"


def missing_package(tracker: str, package: str) -> GanforgeError:
    """The one line a recipe that names a tracker whose package is not installed gets."""
    return GanforgeError(
        f"callback '{tracker}' needs the {package} package: pip install \"ganforge-trackers[{tracker}]\" "
        f'(from a source checkout: pip install -e "plugins/trackers[{tracker}]")'
    )


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as ``Type: message`` on one line (a library's message may span many)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def step_values(trainer: Any, losses: dict[str, float]) -> dict[str, float]:
    """A log step's mean losses (``loss/NAME``) and learning rates (``lr/GROUP``)."""
    values = {f"loss/{name}": value for name, value in losses.items()}
    values.update({f"lr/{name}": lr for name, lr in trainer.learning_rates().items()})
    return values


def epoch_values(trainer: Any, losses: dict[str, float]) -> dict[str, float]:
    """An epoch's mean losses (``epoch_loss/NAME``), its number (``epoch``) and, when the evaluation
    callback scored the model in this epoch, its scores (``eval/A2B.NAME``, ``eval/NAME``: the mean)."""
    values = {f"epoch_loss/{name}": value for name, value in losses.items()}
    values["epoch"] = float(trainer.epoch)
    values.update({f"eval/{key}": value for key, value in eval_scores(trainer).items()})
    return values


def eval_scores(trainer: Any) -> dict[str, float]:
    """This epoch's evaluation scores from ``eval.jsonl`` (written by the evaluation callback, which
    runs before any recipe callback), flat: ``A2B.psnr`` per direction and ``psnr`` for the mean."""
    record = None
    for line in _lines(trainer.run_dir.path / EVAL_LOG):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(item, dict) and item.get("kind") == "eval" and item.get("epoch") == trainer.epoch:
            record = item
    if record is None:
        return {}
    out: dict[str, float] = {}
    for direction, scores in (record.get("scores") or {}).items():
        for name, value in (scores or {}).items():
            out[f"{direction}.{name}"] = value
    out.update(record.get("mean") or {})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _lines(path: Path) -> Iterator[str]:
    if path.is_file():
        yield from path.read_text(encoding="utf-8").splitlines()


def sample_grid(trainer: Any) -> Path | None:
    """The sample grid written at the end of this epoch, if one was (``output.sample_every``)."""
    path = trainer.run_dir.path / trainer.run_dir.SAMPLES / f"epoch_{trainer.epoch:04d}.png"
    return path if path.is_file() else None


def outcome(trainer: Any) -> tuple[str, int]:
    """How the run ended, asked from ``on_train_end`` (which the trainer calls in a ``finally``, so an
    exception on its way out is visible): ``finished``, ``stopped`` (a signal or Ctrl-C: a checkpoint
    was saved) or ``failed``, with the exit code ``ganforge run`` will return."""
    exc = sys.exc_info()[1]
    if exc is None:
        return ("finished", 0) if trainer.epoch >= trainer.epochs else ("stopped", 1)
    if isinstance(exc, KeyboardInterrupt) or getattr(trainer, "stop_requested", None) is not None:
        return "stopped", int(getattr(exc, "exit_code", 130))
    return "failed", int(getattr(exc, "exit_code", 1))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested recipe as ``{"model.generator.ngf": "16", ...}``: strings stay as they are, other
    values are written as JSON (``true``, ``null``, ``[0.5, 0.999]``); lists are not opened."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


class Guard:
    """Runs a tracker's calls; the first failure after the start is one warning, and the tracker is
    off for the rest of the run (training goes on: the run directory still has everything)."""

    def __init__(self, tracker: str) -> None:
        self.tracker = tracker
        self.broken = False

    def __call__(self, what: str, call: Callable[[], Any], always: bool = False) -> None:
        """``always``: try even after a failure (closing the run), warning only if it is the first."""
        if self.broken and not always:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - whatever a tracker raises, training goes on
            if self.broken:
                return
            self.broken = True
            sys.stderr.write(
                f"warning: {self.tracker}: {what} failed ({one_line(exc)}); "
                "logging to it stops, training goes on\n"
            )
