"""``ganforge fetch``: download a published dataset that a plugin registers, and unpack it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ganforge.data.fetch import Fetched, resolve
from ganforge.data.fetch import fetch as fetch_dataset
from ganforge.data.folders import list_images
from ganforge.data.sources import LAYOUTS, DatasetSources
from ganforge.errors import GanforgeError
from ganforge.plugins import collect_dataset_sources, make_plugin_manager


def load_sources(extra: list[str] | None = None) -> DatasetSources:
    """Every plugin's dataset sources; a plugin that failed is named on stderr and the rest are used."""
    plugins = make_plugin_manager(extra or [], source="--plugin")
    sources = collect_dataset_sources(plugins)
    for plugin in plugins.failed:
        sys.stderr.write(f"warning: plugin '{plugin.name}' ({plugin.source}) skipped: {plugin.error}\n")
    return sources


def recipe_hint(done: Fetched) -> str:
    """The ``[data]`` table that reads the unpacked folder, when it holds the layout the source states."""
    folders = set(done.folders)
    fits = {
        "unpaired": {"trainA", "trainB"} <= folders,
        "paired": "train" in folders,
        "aligned": {"A", "B"} <= folders and (done.path / "A" / "train").is_dir(),
        "images": bool(list_images(done.path)),
    }
    if not fits.get(done.source.layout, False):
        return ""
    root = done.path.as_posix()
    lines = ["in a recipe:", "  [data]", f'  type = "{LAYOUTS[done.source.layout][1]}"', f'  root = "{root}"']
    if done.source.layout == "paired" and "test" not in folders and "val" in folders:
        lines.append('  test_folder = "val"')
    aligned_test = done.path / "A" / "test"
    if done.source.layout == "aligned" and not aligned_test.is_dir() and (done.path / "A" / "val").is_dir():
        lines.append('  test_folder = "val"')
    return "\n".join(lines)


def fetch(
    name: Annotated[
        Optional[str],  # noqa: UP045 (typer needs Optional here)
        typer.Argument(help="Dataset name, e.g. horse2zebra (see --list).", show_default=False),
    ] = None,
    root: Annotated[Path, typer.Option(help="Folder to put the dataset in, as ROOT/NAME.")] = Path(
        "datasets"
    ),
    base_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="A mirror to download <base-url>/NAME.<archive> from, instead of the URL the plugin "
            "registered (default: $GANFORGE_DATASET_URL, if set). A mirror may serve other names too, as "
            "NAME.zip.",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="Print the registered datasets: name, plugin, archive, summary.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --list: print JSON instead of a table.")
    ] = False,
    keep_archive: Annotated[bool, typer.Option(help="Keep ROOT/NAME.<archive> after unpacking.")] = False,
    plugin: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--plugin",
            "-p",
            help="Also load this plugin module or .py file (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download a dataset that a plugin registers (resuming a partial download) and unpack it to ROOT/NAME."""
    sources = load_sources(plugin)
    if list_:
        if name is not None:
            raise GanforgeError("--list takes no dataset name")
        rows = [
            {
                "name": s.name,
                "plugin": s.plugin,
                "archive": s.archive,
                "layout": s.layout,
                "summary": s.summary,
                "url": s.url,
                "sha256": s.sha256,
                "size": s.size,
            }
            for s in sources
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table("name", "plugin", "archive", "summary")
        for index in (0, 2):  # name and archive stay on one line; a plugin's path may fold
            table.columns[index].no_wrap = True
        for row in rows:
            table.add_row(row["name"], row["plugin"], row["archive"], row["summary"])
        Console(highlight=False).print(table)
        return
    if as_json:
        raise GanforgeError("--json goes with --list")
    if name is None:
        raise GanforgeError("name a dataset to fetch (ganforge fetch --list shows them)")
    source = resolve(name, sources, base_url)
    console = Console(stderr=True, highlight=False)
    done = fetch_dataset(source, root, keep_archive=keep_archive, console=console)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    if done.resumed_from and done.downloaded_bytes:
        out.print(f"resumed at {done.resumed_from:,} bytes; downloaded the other {done.downloaded_bytes:,}")
    counts = ", ".join(f"{folder} {n:,}" for folder, n in done.folders.items()) or "no folders"
    out.print(f"{done.name}: {done.path} ({counts} images)")
    hint = recipe_hint(done)
    if hint:
        out.print(hint)


def register(app: typer.Typer) -> None:
    app.command()(fetch)
