"""An exponential moving average (EMA) of the generators' weights, kept beside the trained ones.

With ``[train.ema]`` on, after every ``every``-th training step past ``start_step`` each generator
parameter ``w`` moves its average ``a`` to ``a = decay * a + (1 - decay) * w``; until ``start_step`` the
average is a copy of the weights. Which nets are generators is what the model declares: the nets of
its :meth:`~ganforge.TrainingModel.exported_nets`. Only parameters are averaged; buffers (batch-norm
statistics) are the live net's. Sample grids, evaluation, ``translate`` and ``export`` use the averaged
weights when a run has them; the trained ("raw") weights stay in the model and its optimizers.

A checkpoint keeps the averages under ``"ema"`` (:meth:`ModelAverage.state_dict`), keyed like the
model's own ``state_dict`` (``<net>.<parameter>``), so :func:`checkpoint_weights` lays them over the raw
weights for whoever loads a net.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.errors import CheckpointError

#: Which weights of a checkpoint to load: ``auto`` (the averaged ones when the checkpoint has them),
#: ``ema`` (the averaged ones, or an error) or ``raw`` (the trained ones).
WEIGHT_CHOICES = ("auto", "ema", "raw")


class ModelAverage:
    """The EMA of the parameters of ``model``'s nets ``nets`` (default: its exported nets)."""

    def __init__(
        self,
        model: nn.Module,
        decay: float,
        start_step: int = 0,
        every: int = 1,
        nets: list[str] | None = None,
    ) -> None:
        if nets is None:
            exported = getattr(model, "exported_nets", None)
            nets = list(exported()) if callable(exported) else []
        self.nets = nets
        self.decay = decay
        self.start_step = start_step
        self.every = every
        # the model's own parameters by their state-dict keys (a compiled or backend-prepared net keeps them)
        state = model.state_dict(keep_vars=True)
        self.params: dict[str, nn.Parameter] = {
            key: value
            for key, value in state.items()
            if isinstance(value, nn.Parameter) and key.split(".", 1)[0] in nets
        }
        self.average: dict[str, torch.Tensor] = {}
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Make the averages copies of the current weights."""
        self.average = {key: p.detach().clone() for key, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Called after training step ``step`` (steps completed, counting from 1): copy the weights while
        ``step <= start_step``, then average every ``every`` steps."""
        if step <= self.start_step:
            for key, p in self.params.items():
                self.average[key].copy_(p)
        elif (step - self.start_step) % self.every == 0:
            # two multi-tensor kernels per step instead of two small ops per parameter
            averages = list(self.average.values())
            torch._foreach_mul_(averages, self.decay)
            torch._foreach_add_(averages, [p.detach() for p in self.params.values()], alpha=1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """While inside, the nets hold the averaged weights; afterwards, exactly their own again."""
        with torch.no_grad():
            kept = {key: p.detach().clone() for key, p in self.params.items()}
            for key, p in self.params.items():
                p.copy_(self.average[key])
        try:
            yield
        finally:
            with torch.no_grad():
                for key, p in self.params.items():
                    p.copy_(kept[key])

    def state_dict(self) -> dict[str, Any]:
        return {"nets": list(self.nets), "weights": dict(self.average)}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any], source: Path | str) -> None:
        weights = state.get("weights")
        if not isinstance(weights, Mapping) or set(weights) != set(self.average):
            raise CheckpointError(
                f"{source}: its averaged (EMA) weights do not fit this model's nets ({', '.join(self.nets)})"
            )
        for key, value in weights.items():
            if tuple(value.shape) != tuple(self.average[key].shape):
                raise CheckpointError(
                    f"{source}: averaged weight {key} has shape {tuple(value.shape)}, "
                    f"the model's {tuple(self.average[key].shape)}"
                )
            self.average[key].copy_(value)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.average.values())


def has_average(data: Mapping[str, Any]) -> bool:
    """Does a checkpoint hold averaged (EMA) weights?"""
    ema = data.get("ema")
    return isinstance(ema, Mapping) and isinstance(ema.get("weights"), Mapping) and bool(ema["weights"])


def checkpoint_weights(
    data: Mapping[str, Any], weights: str, source: Path | str
) -> tuple[dict[str, Any], str]:
    """A checkpoint's model state to load, and which weights it is (``"ema"`` or ``"raw"``).

    ``weights`` is one of :data:`WEIGHT_CHOICES`; with the averaged weights, the generators' parameters
    are the averages and everything else (buffers, other nets, pools) is the checkpoint's own."""
    if weights not in WEIGHT_CHOICES:
        raise CheckpointError(f"--weights '{weights}': use {', '.join(WEIGHT_CHOICES)}")
    raw = data.get("model")
    raw = dict(raw) if isinstance(raw, Mapping) else {}
    if weights == "raw" or (weights == "auto" and not has_average(data)):
        return raw, "raw"
    if not has_average(data):
        raise CheckpointError(
            f"{source}: holds no averaged (EMA) weights (its run had no [train.ema]); use --weights raw"
        )
    return {**raw, **data["ema"]["weights"]}, "ema"
