"""Registries: component name -> factory, parameter model, summary and owning plugin.

A *component* is a factory plus a pydantic *params model*. Plugins add components by calling the
``register`` callback they receive in a hook (see :mod:`ganforge.hookspecs`); nothing registers itself
on import. A recipe section names a component with ``type = "<name>"`` and sets its parameters beside it.

Parameters of one component may name other components (a model names its generator, say):
such a field holds a :class:`ComponentSpec`, declared with :func:`component_field`, and is validated
against the registry of its kind when the recipe is resolved, so errors carry the full path.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from torch import nn

from ganforge.errors import GanforgeError, PluginError, RecipeError, did_you_mean
from ganforge.model import TrainingModel
from ganforge.strict import StrictModel


def _has(*names: str) -> Callable[[Any], bool]:
    return lambda obj: all(callable(getattr(obj, name, None)) for name in names)


@dataclass(frozen=True)
class Kind:
    """One kind of component: the hook that registers it and what its factories must return."""

    name: str
    hook: str
    returns: str
    check: Callable[[Any], bool]


#: What the engine calls on a callback; a callback component defines any of them.
CALLBACK_METHODS = ("on_train_start", "on_step_end", "on_epoch_end", "on_train_end")


def _module(obj: Any) -> bool:
    return isinstance(obj, nn.Module)


def _backend(obj: Any) -> bool:
    """A selector (``choose()``, as ``auto``) or a backend (see :class:`ganforge.backends.Backend`)."""
    if _has("choose")(obj):
        return True
    named = isinstance(getattr(obj, "name", None), str) and isinstance(getattr(obj, "priority", None), int)
    return named and _has("available", "prepare")(obj)


#: Every kind of component, in the order ``list-components`` shows them. The one list: the hook
#: names (:data:`ganforge.hookspecs.COMPONENT_HOOKS`) and the return checks are read from here.
KIND_TABLE: tuple[Kind, ...] = (
    Kind("generator", "register_generators", "a torch.nn.Module", _module),
    Kind("discriminator", "register_discriminators", "a torch.nn.Module", _module),
    Kind("loss", "register_losses", "a callable loss", callable),
    Kind("buffer", "register_buffers", "a torch.nn.Module with query()", lambda o: _module(o) and _has("query")(o)),
    Kind("augment", "register_augments", "a torch.nn.Module mapping images to images", _module),
    Kind("optimizer", "register_optimizers", "a torch.optim.Optimizer", lambda o: isinstance(o, torch.optim.Optimizer)),
    Kind(
        "scheduler",
        "register_schedulers",
        "a scheduler with step() and state_dict()",
        _has("step", "state_dict", "load_state_dict"),
    ),
    Kind("dataset", "register_datasets", "a dataset with __len__ and __getitem__", _has("__len__", "__getitem__")),
    Kind("model", "register_models", "a ganforge TrainingModel", lambda o: isinstance(o, TrainingModel)),
    Kind("metric", "register_metrics", "a metric with update() and compute()", _has("update", "compute")),
    Kind("backend", "register_backends", "a backend (available(), prepare()) or a selector", _backend),
    Kind(
        "callback",
        "register_callbacks",
        "a callback with on_train_start/on_step_end/on_epoch_end/on_train_end",
        lambda o: any(callable(getattr(o, name, None)) for name in CALLBACK_METHODS),
    ),
)
KINDS: tuple[str, ...] = tuple(kind.name for kind in KIND_TABLE)
_BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KIND_TABLE}


class Params(StrictModel):
    """Base class of every params model: unknown keys are errors, instances are immutable.

    Numbers, bools and strings are not converted into one another (:mod:`ganforge.strict`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """Params model of a component that takes no parameters."""


class ComponentSpec(BaseModel):
    """A reference to a component inside another component's parameters: ``type`` plus its params.

    Resolution (:meth:`Registries.resolve`) validates the params and attaches the component, after
    which :meth:`build` constructs it.
    """

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(None, description="Registered name of the component.")
    _resolved: Resolved | None = PrivateAttr(default=None)

    @property
    def resolved(self) -> Resolved:
        if self._resolved is None:
            raise RuntimeError(f"component spec {self.type!r} was used before the recipe was resolved")
        return self._resolved

    @property
    def params(self) -> Any:
        """The validated params model instance."""
        return self.resolved.params

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the component's factory with its validated params (plus any extra arguments)."""
        return self.resolved.build(*args, **kwargs)

    def with_params(self, **changes: Any) -> ComponentSpec:
        """A resolved copy with some params replaced and validated again, for a component that adapts a
        part to its others (a discriminator's input channels set from its generator's, say).

        A name the component's params model lacks, or a value it refuses, is a :class:`RecipeError`.
        """
        resolved = self.resolved
        fields = type(resolved.params).model_fields
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise RecipeError(
                f"{resolved.component.kind} '{self.type}' has no parameter {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(fields))}"
            )
        data = {name: getattr(resolved.params, name) for name in fields} | changes
        try:
            params = type(resolved.params).model_validate(data)
        except ValidationError as exc:
            where = f"{resolved.component.kind} '{self.type}'"
            raise RecipeError(*format_validation_error(exc, where, type(resolved.params))) from None
        result = ComponentSpec(type=self.type, **{**self.model_extra, **changes})
        result._resolved = Resolved(resolved.component, params)
        return result


def component_field(kind: str, default_type: str, description: str, **default_params: Any) -> Any:
    """Declare a params field that names a component of ``kind`` (default ``default_type``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return Field(
        default_factory=lambda: ComponentSpec(type=default_type, **default_params),
        description=description,
        json_schema_extra={"component_kind": kind},
    )


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[Params]
    summary: str
    plugin: str


@dataclass(frozen=True)
class Resolved:
    """A component together with its validated params."""

    component: Component
    params: Any

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory; a factory that fails or returns the wrong kind of object is named."""
        c = self.component
        try:
            built = c.factory(self.params, *args, **kwargs)
        except GanforgeError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{c.kind} '{c.name}' (plugin '{c.plugin}') failed to build: {type(exc).__name__}: {exc}"
            ) from exc
        kind = _BY_NAME[c.kind]
        if not kind.check(built):
            raise PluginError(
                f"{c.kind} '{c.name}' (plugin '{c.plugin}') returned {type(built).__name__}, not {kind.returns}"
            )
        return built


class Registry:
    """The components of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._components: dict[str, Component] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        params: type[Params] = NoParams,
        summary: str | None = None,
        plugin: str = "?",
    ) -> Component:
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin '{plugin}': {self.kind} name {name!r} must be an identifier")
        if not callable(factory):
            raise PluginError(f"plugin '{plugin}': {self.kind} '{name}' factory is not callable")
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise PluginError(f"plugin '{plugin}': {self.kind} '{name}' params must be a pydantic model")
        if params.model_config.get("extra") != "forbid":
            raise PluginError(
                f"plugin '{plugin}': {self.kind} '{name}' params model {params.__name__} must set "
                "extra='forbid' (subclass ganforge.Params)"
            )
        if name in self._components:
            other = self._components[name].plugin
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by plugin '{other}' and by plugin '{plugin}'"
            )
        if summary is None:
            doc = inspect.getdoc(factory) or ""
            summary = doc.strip().splitlines()[0] if doc.strip() else ""
        component = Component(self.kind, name, factory, params, summary, plugin)
        self._components[name] = component
        return component

    def get(self, name: str) -> Component:
        try:
            return self._components[name]
        except KeyError:
            known = ", ".join(sorted(self._components)) or "none registered"
            raise RecipeError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._components)}; known: {known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._components)

    def __iter__(self) -> Iterator[Component]:
        return iter(self._components[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __len__(self) -> int:
        return len(self._components)


def format_validation_error(error: ValidationError, prefix: str, params: type[BaseModel]) -> list[str]:
    """One line per pydantic error, each led by its dotted path in the recipe."""
    lines = []
    for err in error.errors():
        inside = err.get("ctx", {}).get("at", ()) if err["type"] == "strict_type" else ()
        loc = ".".join(str(part) for part in (prefix, *err["loc"], *inside) if part != "")
        if err["type"] == "extra_forbidden":
            model = _model_at(params, err["loc"][:-1])
            key = str(err["loc"][-1])
            known = sorted(model.model_fields) if model is not None else []
            hint = did_you_mean(key, known)
            lines.append(f"{loc}: unknown key{hint}; valid keys: {', '.join(known) or 'none'}")
        else:
            lines.append(f"{loc}: {err['msg']}")
    return lines


_UNIONS = (typing.Union, types.UnionType)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow ``loc`` through nested pydantic models to the one an error was raised in."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        # an optional table (``Section | None``) is its model
        members = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else (annotation,)
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) != 1:
            return None
        model = models[0]
    return model


class Registries(Mapping[str, Registry]):
    """One :class:`Registry` per kind, filled by the plugin manager."""

    def __init__(self) -> None:
        self._by_kind = {kind: Registry(kind) for kind in KINDS}

    def __getitem__(self, kind: str) -> Registry:
        return self._by_kind[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_kind)

    def __len__(self) -> int:
        return len(self._by_kind)

    def resolve(self, kind: str, spec: Mapping[str, Any] | ComponentSpec, path: str) -> ComponentSpec:
        """Validate ``spec`` (``type`` plus params) against the ``kind`` registry, recursively.

        Returns a resolved :class:`ComponentSpec`; raises :class:`RecipeError` holding one line per
        problem, each led by its path (``model.generator.n_blocks: ...``).
        """
        data = spec.model_dump() if isinstance(spec, ComponentSpec) else dict(spec)
        name = data.pop("type", None)
        if name is None:
            known = ", ".join(self[kind].names()) or "none registered"
            raise RecipeError(f"{path}.type: missing; name a {kind} (known: {known})")
        if not isinstance(name, str):
            raise RecipeError(f"{path}.type: must be a string naming a {kind}, got {name!r}")
        try:
            component = self[kind].get(name)
        except RecipeError as exc:
            raise RecipeError(f"{path}.type: {exc}") from None
        errors: list[str] = []
        params = None
        try:
            params = component.params.model_validate(data)
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, path, component.params))
        for field_name, field in component.params.model_fields.items():
            extra = field.json_schema_extra
            child_kind = extra.get("component_kind") if isinstance(extra, dict) else None
            if not child_kind:
                continue
            # Nested components are checked even when a sibling parameter is wrong.
            value = getattr(params, field_name) if params is not None else data.get(field_name)
            if not isinstance(value, (ComponentSpec, dict)):
                continue
            try:
                child = self.resolve(str(child_kind), value, f"{path}.{field_name}")
            except RecipeError as exc:
                errors.extend(exc.lines)
                continue
            if isinstance(value, ComponentSpec):
                value._resolved = child._resolved
        if errors:
            raise RecipeError(*errors)
        result = ComponentSpec(type=name, **data)
        result._resolved = Resolved(component, params)
        return result



ComponentSpec.model_rebuild()
