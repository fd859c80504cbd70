"""Backends: how built networks execute on a device.

Module surgery for backends: :func:`replace_modules` swaps layers in their parents, the way torch's own
fusion and quantization passes do (``setattr(parent, name, new)``), and :func:`rebuild_as` makes the new
layer: an instance of another class (a subclass with a faster ``forward``, or the torch class back)
holding the very same Parameter objects, buffers, submodules, hooks and attributes. Optimizers that
hold the parameters, state-dict keys and checkpoints therefore do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def rebuild_as(cls: type[M], module: nn.Module) -> M:
    """A new ``cls`` instance with ``module``'s state: the same parameters, buffers and submodules (in
    containers of its own, so ``module`` is left as it was), the same hook tables (handles taken on
    ``module`` still remove its hooks) and the same other attributes.

    ``cls`` must be a subclass of ``type(module)`` or one of its bases: a class that reads the
    attributes ``module``'s constructor set (``nn.Conv2d``'s ``stride``, ``padding``, ...).
    """
    if not (issubclass(cls, type(module)) or issubclass(type(module), cls)):
        raise TypeError(f"rebuild_as: {cls.__name__} is neither a subclass nor a base of {type(module).__name__}")
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
