"""``ganforge fetch``: download an official CycleGAN dataset into the reference layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ganforge.errors import GanforgeError


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
            help="Server to download <base-url>/NAME.zip from (default: $GANFORGE_DATASET_URL, else the "
            "CycleGAN authors' server).",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="Print the names of the official datasets.")] = False,
    keep_archive: Annotated[bool, typer.Option(help="Keep ROOT/NAME.zip after unpacking.")] = False,
) -> None:
    """Download a CycleGAN dataset (resuming a partial download) and unpack it to ROOT/NAME."""
    from ganforge.data.fetch import DATASETS
    from ganforge.data.fetch import fetch as fetch_dataset

    if list_:
        if name is not None:
            raise GanforgeError("--list takes no dataset name")
        for known in DATASETS:
            typer.echo(known)
        return
    if name is None:
        raise GanforgeError("name a dataset to fetch (ganforge fetch --list shows them)")
    console = Console(stderr=True, highlight=False)
    done = fetch_dataset(name, root, base_url, keep_archive=keep_archive, console=console)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    if done.resumed_from and done.downloaded_bytes:
        out.print(f"resumed at {done.resumed_from:,} bytes; downloaded the other {done.downloaded_bytes:,}")
    counts = ", ".join(f"{folder} {n:,}" for folder, n in done.folders.items()) or "no folders"
    out.print(f"{done.name}: {done.path} ({counts} images)")
    if {"trainA", "trainB"} <= set(done.folders):
        out.print(f'in a recipe:\n  [data]\n  type = "unpaired_folder"\n  root = "{done.path.as_posix()}"')


def register(app: typer.Typer) -> None:
    app.command()(fetch)
