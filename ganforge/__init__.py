"""ganforge: a plugin-based GAN framework.

The names a plugin needs are importable from here: ``hookimpl`` to mark hook implementations,
``Params`` as the base of every component's parameter model, ``component_field`` for parameters
that name another component, and ``TrainingModel`` / ``Optimizers`` / ``Direction`` for model plugins.

The Python API (:mod:`ganforge.api`) is here too: ``ganforge.train``, ``ganforge.load``,
``ganforge.translate``, ``ganforge.evaluate``, ``ganforge.export``.
"""

from __future__ import annotations

from typing import Any

from ganforge._version import __version__
from ganforge.errors import DatasetError, GanforgeError, PluginError, RecipeError
from ganforge.hookspecs import hookimpl
from ganforge.model import Direction, Optimizers, TrainingModel
from ganforge.registry import ComponentSpec, NoParams, Params, component_field

#: The API's functions, read from ganforge.api on first use.
_API = ("Run", "train", "load", "translate", "evaluate", "export")


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: a plugin's ``from ganforge import hookimpl`` stays
    # light (no engine, data loaders or rich), and the engine's modules never reach the API layer.
    if name in _API:
        from ganforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")


__all__ = [
    "ComponentSpec",
    "DatasetError",
    "Direction",
    "GanforgeError",
    "NoParams",
    "Optimizers",
    "Params",
    "PluginError",
    "RecipeError",
    "Run",
    "TrainingModel",
    "__version__",
    "component_field",
    "evaluate",
    "export",
    "hookimpl",
    "load",
    "train",
    "translate",
]
