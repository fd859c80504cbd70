"""What the engine asks of a model component: its nets, its optimizer groups, one training step, and
the translations it offers once trained (:class:`Direction`).

The core never names a model's nets: evaluation, ``translate``, ``export``, sample grids and the report
read a model's :meth:`TrainingModel.directions` and :meth:`TrainingModel.exported_nets` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def size_multiple(net: object) -> int:
    """The multiple a net needs its input's height and width to be: its ``size_multiple`` attribute
    (a U-Net with n stride-2 levels has ``2**n``), or 1 when it declares none."""
    value = getattr(net, "size_multiple", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad height and width up to a multiple (right and bottom) by reflection (edge copy if too small)."""
    h, w = batch.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return batch
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(batch, (0, pw, 0, ph), mode=mode)


def run_padded(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``net(batch)`` for a batch of any size: padded to the net's :func:`size_multiple` by reflection
    when it needs one, and the output cropped back to the input's height and width."""
    h, w = batch.shape[-2:]
    multiple = size_multiple(net)
    if h % multiple == 0 and w % multiple == 0:
        return net(batch)
    return net(pad_to_multiple(batch, multiple))[..., :h, :w]


@dataclass(frozen=True)
class Direction:
    """One translation a trained model offers: images of domain ``source``, put through the model's
    submodule ``net``, come out looking like domain ``target``.

    ``name`` is the model's own spelling, what ``--direction`` takes (e.g. ``paint``); ``source``
    and ``target`` are the dataset's domain keys (``"A"``, ``"B"``). ``generator`` is the net's component
    spec (``type`` plus params), so an export can be rebuilt without the recipe; ``None`` if the net is
    not a registered component.
    """

    name: str
    source: str
    target: str
    net: str
    generator: Any = None  # a resolved ganforge.ComponentSpec, or None

    @property
    def key(self) -> str:
        """The name scores are kept under (``A2B.fid``): source, ``2``, target."""
        return f"{self.source}2{self.target}"

    def matches(self, text: str) -> bool:
        """``text`` names this direction: its name, its key or ``<source>-to-<target>``, in any case,
        with or without ``-``/``_`` (for domains X and Y: ``XtoY``, ``x2y``, ``x-to-y``)."""

        def plain(word: str) -> str:
            return "".join(ch for ch in word.lower() if ch not in "-_ ")

        spellings = (self.name, self.key, f"{self.source}to{self.target}")
        return plain(text) in {plain(s) for s in spellings}


class Optimizers:
    """The run's optimizers by group name; :meth:`step` is how a training step applies a loss.

    Keeping backward and step here lets the engine add gradient scaling, accumulation or
    distributed reductions without touching any model.
    """

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler | None = None,
        reduce_gradients: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> None:
        self._optimizers = optimizers
        self.scaler = scaler
        # Under several processes: averages the group's gradients over the ranks between backward and
        # step (what DistributedDataParallel does), so a model may call a net several times per step,
        # freeze it during another group's update or differentiate it twice (gradient penalties).
        self.reduce_gradients = reduce_gradients

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self._optimizers[name]

    def items(self) -> Iterable[tuple[str, torch.optim.Optimizer]]:
        return self._optimizers.items()

    def step(self, name: str, loss: torch.Tensor) -> None:
        """Zero the group's gradients, backpropagate ``loss`` and take one optimizer step."""
        optimizer = self._optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self._reduce(optimizer)
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self._reduce(optimizer)  # the scale is the same on every rank; an Inf reaches them all
            self.scaler.step(optimizer)  # skipped when the scaled gradients hold Inf/NaN

    def _reduce(self, optimizer: torch.optim.Optimizer) -> None:
        if self.reduce_gradients is not None:
            self.reduce_gradients([p for group in optimizer.param_groups for p in group["params"]])

    def end_step(self) -> None:
        """Called by the engine once per training step, after the model's updates."""
        if self.scaler is not None:
            self.scaler.update()


class TrainingModel(nn.Module):
    """Base class of model components (registered through ``register_models``).

    A model holds its networks (and anything else with state, such as image pools) as submodules,
    so that ``state_dict()`` is everything a resume needs from it.
    """

    def networks(self) -> dict[str, nn.Module]:
        """The networks (compiled when the recipe asks); by default every child with parameters."""
        return {name: m for name, m in self.named_children() if any(True for _ in m.parameters())}

    def directions(self) -> list[Direction]:
        """The translations this model offers, the default first. A model that translates nothing
        (an unconditional GAN, say) returns an empty list; evaluation and translation then refuse it."""
        return []

    def exported_nets(self) -> list[str]:
        """The nets a user may translate with or export by name (``--net``); by default those of the
        directions, in their order."""
        return list(dict.fromkeys(d.net for d in self.directions()))

    def double_backward_nets(self) -> list[str]:
        """The networks (names in :meth:`networks`) whose gradients this model differentiates again, as
        a gradient penalty does through its discriminator. The engine leaves them as they are: no backend
        swaps their layers (a custom kernel may have no double backward) and ``train.compile`` skips them.
        By default none."""
        return []

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer name; the engine builds one optimizer (and schedule) per group."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: Optimizers) -> dict[str, torch.Tensor]:
        """One training step on ``batch`` (already on the model's device).

        Returns the step's losses as detached scalar tensors by name; the engine decides when to
        read them (reading a value forces the device to synchronise).
        """
        raise NotImplementedError

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[tuple[str, torch.Tensor]]]:
        """Images to show for ``batch``: rows of ``(label, (N, C, H, W) images in [-1, 1])``."""
        raise NotImplementedError
