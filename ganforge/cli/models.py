"""``ganforge models``: the pretrained generators plugins register (list, fetch into the cache, where)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ganforge.data.fetch import fetch_model, model_base_url, model_cache, resolve_model
from ganforge.data.sources import ModelSources
from ganforge.plugins import collect_model_sources, make_plugin_manager

app = typer.Typer(
    help="Pretrained generators that plugins register: list them, download one into the cache. "
    "`ganforge translate NAME ...` fetches one by name too.",
    no_args_is_help=True,
)

PluginOption = Annotated[
    Optional[list[str]],  # noqa: UP045 (typer needs Optional here)
    typer.Option(
        "--plugin", "-p", help="Also load this plugin module or .py file (repeatable).", show_default=False
    ),
]


def load_model_sources(extra: list[str] | None = None) -> ModelSources:
    """Every plugin's model sources; a plugin that failed is named on stderr and the rest are used."""
    plugins = make_plugin_manager(extra or [], source="--plugin")
    sources = collect_model_sources(plugins)
    for plugin in plugins.failed:
        sys.stderr.write(f"warning: plugin '{plugin.name}' ({plugin.source}) skipped: {plugin.error}\n")
    return sources


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    plugin: PluginOption = None,
) -> None:
    """Print the registered pretrained generators: name, plugin, what each translates, cached or not."""
    cache = model_cache()
    rows = [
        {
            "name": s.name,
            "plugin": s.plugin,
            "translates": s.translates,
            "summary": s.summary,
            "url": s.url,
            "format": s.weights_format,
            "sha256": s.sha256,
            "size": s.size,
            "cached": (cache / s.file_name).is_file(),
            "path": str(cache / s.file_name),
        }
        for s in load_model_sources(plugin)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "plugin", "translates", "cached")
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(
            row["name"], row["plugin"], row["translates"] or row["summary"], "yes" if row["cached"] else ""
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(f"cache: {cache} (GANFORGE_CACHE moves it)", soft_wrap=True)


@app.command("fetch")
def fetch_command(
    names: Annotated[
        list[str], typer.Argument(help="Model names (see ganforge models list).", show_default=False)
    ],
    base_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="A mirror to download <base-url>/NAME.pth (the cache's file name) from, instead of the "
            "URL the plugin registered (default: $GANFORGE_MODEL_URL, if set).",
            show_default=False,
        ),
    ] = None,
    plugin: PluginOption = None,
) -> None:
    """Download pretrained generators into the cache (resuming a partial download); print each file's path."""
    sources = load_model_sources(plugin)
    model_base_url(base_url)  # a bad mirror is an error before anything is downloaded
    chosen = [resolve_model(name, sources, base_url) for name in names]
    progress = Console(stderr=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    for source in chosen:
        done = fetch_model(source, console=progress)
        if done.cached:
            out.print(f"{source.name}: {done.path} (already cached)")
            continue
        if done.resumed_from and done.downloaded_bytes:
            out.print(
                f"resumed at {done.resumed_from:,} bytes; downloaded the other {done.downloaded_bytes:,}"
            )
        out.print(f"{source.name}: {done.path} ({done.size:,} bytes from {source.url})")


@app.command("path")
def path_command(
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    plugin: PluginOption = None,
) -> None:
    """Print where the cache keeps a model's file (whether or not it is there yet)."""
    source = resolve_model(name, load_model_sources(plugin))
    typer.echo(str(model_cache() / source.file_name))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")
