"""``ganforge demo``: a local web page to try a generator on your own images (needs the [demo] extra)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ganforge import api
from ganforge import demo as page_demo
from ganforge.cli.translate import (
    BackendOption,
    FormatOption,
    PluginOption,
    SourceArg,
    TileAboveOption,
    TileNormOption,
    TileOption,
    TileOverlapOption,
    WeightsOption,
    pick_device,
)
from ganforge.inference import Tiling, parse_size


def demo(
    source: SourceArg,
    direction: Annotated[
        Optional[list[str]],  # noqa: UP045 (typer needs Optional here)
        typer.Option(
            "--direction",
            "-d",
            help="Show only this direction (repeatable). [default: every direction the model declares]",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. 127.0.0.1: this machine only; 0.0.0.0: every network interface."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    weights_format: FormatOption = "auto",
    size: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Translate at this size: N (shorter side, keeps the aspect ratio) or WxH. [default: the image's own]",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass (large images).")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    tile: TileOption = 512,
    tile_overlap: TileOverlapOption = 64,
    tile_above: TileAboveOption = 1024,
    tile_norm: TileNormOption = "global",
    example: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="An image file the page opens with, already translated.", show_default=False),
    ] = None,
    backend: BackendOption = "auto",
    plugin: PluginOption = None,
    weights: WeightsOption = "auto",
) -> None:
    """Serve a local web page to translate an image in every direction of a generator (Ctrl-C stops it)."""
    tiling = Tiling(tile=tile, overlap=tile_overlap, above=tile_above, norm=tile_norm)
    api.check_translation_options("png", tiling)  # before anything is loaded
    wanted = parse_size(size)
    page_demo.import_gradio()  # a missing extra is said before a model is loaded
    panels = page_demo.load_panels(
        source,
        directions=direction or [],
        weights_format=weights_format,
        device=pick_device(device),
        backend=backend,
        plugins=plugin or [],
        weights=weights,
    )
    for note in panels[0].generator.notes:
        sys.stderr.write(f"note: {note}\n")
    titles = "; ".join(panel.title for panel in panels)
    print(f"generator: {titles} on {panels[0].generator.device}", flush=True)
    page = page_demo.build_page(panels, size=wanted, tiling=tiling, batch_size=batch_size, example=example)
    page_demo.serve(page, host=host, port=port, announce=lambda line: print(line, flush=True))


def register(app: typer.Typer) -> None:
    app.command()(demo)
