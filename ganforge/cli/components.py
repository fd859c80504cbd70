"""``ganforge list-components`` and ``ganforge plugins``, generated from the registries."""

from __future__ import annotations

import json
import sys
import types
import typing
from typing import Annotated, Any, Optional

import annotated_types
import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.table import Table

from ganforge.errors import GanforgeError, did_you_mean
from ganforge.plugins import PluginSet, collect_registries, make_plugin_manager
from ganforge.registry import KINDS, Component, ComponentSpec, Registries

PluginOption = Annotated[
    Optional[list[str]],  # noqa: UP045 (typer needs Optional here)
    typer.Option("--plugin", "-p", help="Also load this plugin module or .py file (repeatable).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _load(extra: list[str] | None) -> tuple[PluginSet, Registries]:
    plugins = make_plugin_manager(extra or [], source="--plugin")
    registries = collect_registries(plugins)
    for plugin in plugins.failed:
        sys.stderr.write(f"warning: plugin '{plugin.name}' ({plugin.source}) skipped: {plugin.error}\n")
    return plugins, registries


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if annotation is ComponentSpec:
        return "component"
    return getattr(annotation, "__name__", str(annotation))


def bounds(field: FieldInfo) -> str:
    symbols = {
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("<=", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    parts = []
    for meta in field.metadata:
        for cls, (symbol, attr) in symbols.items():
            if isinstance(meta, cls):
                parts.append(f"{symbol} {getattr(meta, attr)}")
    return ", ".join(parts)


def default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return None
    else:
        value = field.default
    if isinstance(value, ComponentSpec):
        return value.model_dump()
    return list(value) if isinstance(value, tuple) else value


def describe_params(component: Component) -> list[dict[str, Any]]:
    rows = []
    for name, field in component.params.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = extra.get("component_kind")
        rows.append(
            {
                "name": name,
                "type": f"{kind} component" if kind else type_name(field.annotation),
                "required": field.is_required(),
                "default": default_of(field),
                "bounds": bounds(field),
                "description": field.description or "",
            }
        )
    return rows


def list_components(
    kind: Annotated[Optional[str], typer.Argument(help=f"One of: {', '.join(KINDS)}.", show_default=False)] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Argument(help="A component name: show its parameters.", show_default=False)] = None,  # noqa: UP045
    plugin: PluginOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registered components, or one component's parameters."""
    _, registries = _load(plugin)
    if kind is not None and kind not in KINDS:
        raise GanforgeError(f"unknown kind '{kind}'{did_you_mean(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    console = Console(highlight=False)
    if name is not None:
        assert kind is not None
        component = registries[kind].get(name)
        params = describe_params(component)
        if as_json:
            info = {"kind": kind, "name": name, "plugin": component.plugin, "summary": component.summary}
            info["params"] = params
            info["json_schema"] = component.params.model_json_schema()
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        console.print(f"[bold]{kind} {name}[/] (plugin {component.plugin}): {component.summary}")
        table = Table("field", "type", "default", "bounds", "description")
        for index in (0, 3):  # field and bounds stay on one line; the rest wraps
            table.columns[index].no_wrap = True
        for row in params:
            default = "required" if row["required"] else json.dumps(row["default"], default=str)
            table.add_row(row["name"], row["type"], default, row["bounds"], row["description"])
        console.print(table)
        return
    kinds = [kind] if kind else list(KINDS)
    entries = [
        {"kind": k, "name": c.name, "plugin": c.plugin, "summary": c.summary} for k in kinds for c in registries[k]
    ]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table("kind", "name", "plugin", "summary")
    for column in table.columns[:3]:
        column.no_wrap = True
    for entry in entries:
        table.add_row(entry["kind"], entry["name"], entry["plugin"], entry["summary"])
    console.print(table)


def plugins(plugin: PluginOption = None, as_json: JsonOption = False) -> None:
    """List loaded plugins, where each came from, and any that failed to load."""
    loaded, _ = _load(plugin)
    rows = [{"name": p.name, "source": p.source, "error": p.error} for p in loaded.plugins]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "source", "status")
    for row in rows:
        table.add_row(row["name"], row["source"], f"failed: {row['error']}" if row["error"] else "ok")
    Console(highlight=False).print(table)


def register(app: typer.Typer) -> None:
    app.command("list-components")(list_components)
    app.command("plugins")(plugins)
