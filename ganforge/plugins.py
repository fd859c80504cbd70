"""The plugin manager: built-in plugins, installed entry points and a recipe's own plugin modules.

There is no global plugin manager. :func:`make_plugin_manager` builds one from scratch each time, and
:func:`collect_registries` turns its hooks into :class:`~ganforge.registry.Registries`
(:func:`collect_dataset_sources` and :func:`collect_model_sources` gather the dataset and model
sources, which are records, not components).

Environment variables:

- ``GANFORGE_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (built-ins and recipe plugins only).
- ``GANFORGE_PLUGINS=a,b``: load only the entry points with these names.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from ganforge import hookspecs
from ganforge.data.sources import DatasetSources, ModelSources, make_model_source, make_source
from ganforge.errors import PluginError
from ganforge.registry import Params, Registries

ENTRY_POINT_GROUP = "ganforge"

#: Core plugins by name, registered exactly as an external plugin is.
DEFAULT_PLUGINS: dict[str, str] = {
    "builtin.networks": "ganforge.builtins.networks",
    "builtin.losses": "ganforge.builtins.losses",
    "builtin.augment": "ganforge.builtins.augment",
    "builtin.optim": "ganforge.builtins.optim",
    "builtin.schedules": "ganforge.builtins.schedules",
    "builtin.data": "ganforge.builtins.data",
    "builtin.metrics": "ganforge.builtins.metrics",
    "builtin.callbacks": "ganforge.builtins.callbacks",
    "builtin.backends": "ganforge.builtins.backends",
}


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin (...)", "entry point of <dist>", "recipe", "--plugin"
    error: str | None = None


@dataclass
class PluginSet:
    """A plugin manager plus what happened while loading it (for ``ganforge plugins``)."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error is not None]


def make_plugin_manager(
    recipe_plugins: Sequence[str] = (), base_dir: Path | None = None, source: str = "recipe"
) -> PluginSet:
    """Load the built-ins, the entry points in group ``ganforge``, then ``recipe_plugins``.

    An entry point that fails to import is recorded (see :attr:`PluginSet.failed`) and skipped, so
    the others keep working; a recipe plugin that fails to import raises :class:`PluginError`, since
    the recipe cannot run without it. Recipe plugins are module names or ``.py`` file paths (relative
    paths are taken from ``base_dir``, the recipe's folder, then the current directory).
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    result = PluginSet(pm)
    for name, module_name in DEFAULT_PLUGINS.items():
        pm.register(importlib.import_module(module_name), name=name)
        result.plugins.append(PluginInfo(name, f"builtin ({module_name})"))
    if os.environ.get("GANFORGE_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        only: set[str] | None = set()
    else:
        names = os.environ.get("GANFORGE_PLUGINS", "").strip()
        only = {n.strip() for n in names.split(",") if n.strip()} if names else None
    for ep in _entry_points(only):
        dist = ep.dist.name if ep.dist is not None else "?"
        info = PluginInfo(ep.name, f"entry point of {dist}")
        result.plugins.append(info)
        if pm.has_plugin(ep.name):
            info.error = f"another plugin is already registered as '{ep.name}'"
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the others down
            info.error = f"{type(exc).__name__}: {exc}"
    for ref in recipe_plugins:  # named as the user wrote them
        module = load_plugin_module(ref, base_dir)
        if pm.is_registered(module):
            continue
        if pm.has_plugin(ref):
            raise PluginError(f"plugin '{ref}': another plugin is already registered under that name")
        try:
            pm.register(module, name=ref)
        except Exception as exc:
            raise PluginError(f"plugin '{ref}': {exc}") from None
        result.plugins.append(PluginInfo(ref, source))
    return result


def _entry_points(only: set[str] | None) -> Iterable[metadata.EntryPoint]:
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen or (only is not None and ep.name not in only):
            continue
        seen.add(ep.name)
        yield ep


def load_plugin_module(ref: str, base_dir: Path | None = None) -> ModuleType:
    """Import a plugin given as a module name (``my_pkg.gan``) or a file path (``plugin.py``)."""
    try:
        if ref.endswith(".py") or "/" in ref or os.sep in ref:
            candidates = [Path(ref)] if Path(ref).is_absolute() else []
            if not candidates:
                candidates = [(base_dir or Path.cwd()) / ref, Path.cwd() / ref]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                tried = ", ".join(str(p) for p in dict.fromkeys(candidates))
                raise PluginError(f"plugin '{ref}': file not found (looked at {tried})")
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
            module_name = f"ganforge_plugin_{path.stem}_{digest}"  # unique per file
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
            return module
        return importlib.import_module(ref)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin '{ref}' failed to import: {type(exc).__name__}: {exc}") from None


def _call_hook(plugins: PluginSet, hook_name: str, bind: Callable[[str], Callable[..., None]]) -> None:
    """Call ``hook_name`` of every plugin, in load order, with ``register=bind(plugin_name)``.

    A plugin that raises is recorded as failed (by name, in ``plugins``) and the others go on; a
    plugin already recorded as failed is skipped. A :class:`PluginError` (a duplicate name, an
    invalid registration) is raised as it is.
    """
    info = {p.name: p for p in plugins.plugins}
    for impl in getattr(plugins.manager.hook, hook_name).get_hookimpls():  # load order
        plugin = impl.plugin_name
        if info.get(plugin) is not None and info[plugin].error is not None:
            continue
        try:
            impl.function(**({"register": bind(plugin)} if "register" in impl.argnames else {}))
        except PluginError:
            raise
        except Exception as exc:
            if plugin not in info:
                info[plugin] = PluginInfo(plugin, "registered")
                plugins.plugins.append(info[plugin])
            info[plugin].error = f"failed in {hook_name}: {type(exc).__name__}: {exc}"


def collect_registries(plugins: PluginSet) -> Registries:
    """Call every component hook of every plugin, each with a ``register`` bound to that plugin.

    A plugin that raises while registering is recorded as failed (by name, in ``plugins``) and the
    others go on; one name registered by two plugins raises :class:`PluginError` naming both.
    """
    registries = Registries()
    for kind, hook_name in hookspecs.COMPONENT_HOOKS.items():

        def bind(plugin: str, _registry: Any = registries[kind]) -> Callable[..., None]:
            def register(
                name: str, factory: Any, *, params: type[Params] | None = None, summary: str | None = None
            ) -> None:
                kwargs: dict[str, Any] = {"summary": summary, "plugin": plugin}
                if params is not None:
                    kwargs["params"] = params
                _registry.add(name, factory, **kwargs)

            return register

        _call_hook(plugins, hook_name, bind)
    return registries


def collect_dataset_sources(plugins: PluginSet) -> DatasetSources:
    """Call every plugin's ``register_dataset_sources``, each with a ``register`` bound to that plugin.

    Dataset sources are records, not components (no recipe builds one), so they are collected here
    rather than in the registries. The rules are the components': a plugin that raises is recorded as
    failed and the others go on; a name registered by two plugins, or a bad field, raises
    :class:`PluginError` naming the plugins.
    """
    sources = DatasetSources()

    def bind(plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            url: str,
            *,
            archive: str | None = None,
            sha256: str | None = None,
            size: int | None = None,
            summary: str = "",
            layout: str = "unpaired",
        ) -> None:
            source = make_source(
                name,
                url,
                plugin=plugin,
                archive=archive,
                sha256=sha256,
                size=size,
                summary=summary,
                layout=layout,
            )
            sources.add(source)

        return register

    _call_hook(plugins, "register_dataset_sources", bind)
    return sources


def collect_model_sources(plugins: PluginSet) -> ModelSources:
    """Call every plugin's ``register_model_sources``, each with a ``register`` bound to that plugin.

    The rules are the dataset sources': a plugin that raises is recorded as failed and the others go
    on; a name registered by two plugins, or a bad field, raises :class:`PluginError` naming them.
    """
    sources = ModelSources()

    def bind(plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            url: str,
            *,
            summary: str = "",
            translates: str = "",
            weights_format: str | None = None,
            sha256: str | None = None,
            size: int | None = None,
        ) -> None:
            sources.add(
                make_model_source(
                    name,
                    url,
                    plugin=plugin,
                    summary=summary,
                    translates=translates,
                    weights_format=weights_format,
                    sha256=sha256,
                    size=size,
                )
            )

        return register

    _call_hook(plugins, "register_model_sources", bind)
    return sources
