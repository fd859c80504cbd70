"""Backends: how built networks execute on a device.

A backend is a component of kind ``backend`` (hook ``register_backends``); a recipe names one in
``[train.backend]``, ``ganforge translate`` and ``export`` with ``--backend``. Built-in: ``direct``
(torch's own layers, everywhere) and ``auto`` (the default), a *selector* that takes the
highest-priority registered backend available for the run's device and precision. A backend object
(:class:`Backend`) says whether it can run somewhere and prepares built networks by replacing some of
their layers; the engine picks one (:func:`ganforge.engine.runtime.choose_backend`) and applies it.

Module surgery for backends: :func:`replace_modules` swaps layers in their parents, the way torch's own
fusion and quantization passes do (``setattr(parent, name, new)``), and :func:`rebuild_as` makes the new
layer: an instance of another class (a subclass with a faster ``forward``, or the torch class back)
holding the very same Parameter objects, buffers, submodules, hooks and attributes. Optimizers that
hold the parameters, state-dict keys and checkpoints therefore do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


@runtime_checkable
class Backend(Protocol):
    """What a backend factory returns."""

    #: The name the run prints ("backend cpu_kernels (...)"); usually the registered name.
    name: str
    #: ``auto`` takes the available backend with the highest priority; ``direct`` has 0.
    priority: int

    def available(self, device: torch.device, precision: str) -> bool | str:
        """``True`` where this backend can run (``device``; ``precision`` "fp32", "bf16" or "fp16"),
        else a few words saying why not (shown to the user)."""
        ...

    def prepare(self, net: nn.Module, device: torch.device, *, training: bool) -> str:
        """Replace layers below ``net`` (already on ``device``) in their parents by ones that compute
        the same function faster, holding the same parameters; return a one-line summary ("" if
        nothing changed). ``training`` is false for translation and export."""
        ...


@runtime_checkable
class Selector(Protocol):
    """What ``auto`` (or another selector) returns: it picks one of the other registered backends."""

    def choose(
        self, backends: Sequence[Backend], device: torch.device, precision: str
    ) -> tuple[Backend, str]:
        """One of ``backends`` for ``device`` and ``precision``, and a short note on the choice."""
        ...


def rebuild_as(cls: type[M], module: nn.Module) -> M:
    """A new ``cls`` instance with ``module``'s state: the same parameters, buffers and submodules (in
    containers of its own, so ``module`` is left as it was), the same hook tables (handles taken on
    ``module`` still remove its hooks) and the same other attributes.

    ``cls`` must be a subclass of ``type(module)`` or one of its bases: a class that reads the
    attributes ``module``'s constructor set (``nn.Conv2d``'s ``stride``, ``padding``, ...).
    """
    if not (issubclass(cls, type(module)) or issubclass(type(module), cls)):
        raise TypeError(
            f"rebuild_as: {cls.__name__} is neither a subclass nor a base of {type(module).__name__}"
        )
    state = dict(module.__dict__)
    for key in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
        if key in state:
            state[key] = type(state[key])(state[key])
    new = cls.__new__(cls)
    new.__setstate__(state)
    return new


def replace_modules(root: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> list[str]:
    """Replace every module below ``root`` for which ``replace(module)`` returns a module; return the
    replaced modules' names (``root``'s own ``named_modules`` names, in its order).

    A module registered in several places (one layer object used twice) is replaced by one new module
    everywhere. ``root`` itself is never replaced: it has no parent here (as in torch's passes, the
    caller holds it).
    """
    names: list[str] = []
    new: dict[int, nn.Module] = {}
    for name, module in root.named_modules():
        if not name:
            continue
        replacement = replace(module)
        if replacement is not None and replacement is not module:
            names.append(name)
            new[id(module)] = replacement
    if not new:
        return names
    parents = {id(m): m for m in (root, *root.modules(), *new.values())}
    for parent in parents.values():
        for key, child in list(parent._modules.items()):
            if child is not None and id(child) in new:
                setattr(parent, key, new[id(child)])
    return names
