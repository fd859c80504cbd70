"""ganforge: a plugin-based GAN framework.

The names a plugin needs are importable from here: ``hookimpl`` to mark hook implementations,
``Params`` as the base of every component's parameter model, ``component_field`` for parameters
that name another component, and ``TrainingModel`` / ``Optimizers`` for model plugins.
"""

__version__ = "0.1.0"

from ganforge.model import Direction, Optimizers, TrainingModel  # noqa: E402
from ganforge.errors import DatasetError, GanforgeError, PluginError, RecipeError  # noqa: E402
from ganforge.hookspecs import hookimpl  # noqa: E402
from ganforge.registry import ComponentSpec, NoParams, Params, component_field  # noqa: E402

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
    "TrainingModel",
    "component_field",
    "hookimpl",
]
