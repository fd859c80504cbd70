"""``ganforge translate``: run a trained generator over an image or a folder of images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ganforge import api
from ganforge.engine.runtime import apply_backend, select_device
from ganforge.errors import GanforgeError
from ganforge.inference import Job, Tiling, load_generator, parse_size

#: Options shared with ``ganforge export``.
SourceArg = Annotated[
    str,  # not a Path: that would fold hf:// into hf:/
    typer.Argument(
        help="Generator: a ganforge checkpoint or run directory, an export (.safetensors, .onnx, TorchScript, "
        "a hub folder), another project's weights that a plugin reads (see --format), the name of a "
        "pretrained model (ganforge models list; downloaded into the cache the first time), or "
        "hf://OWNER/REPO or hf://OWNER/REPO/FILE on the Hugging Face Hub, with @REVISION after REPO if need be "
        "(through huggingface_hub's cache).",
        show_default=False,
    ),
]
DirectionOption = Annotated[
    Optional[str],  # noqa: UP045 (typer needs Optional here)
    typer.Option(
        "--direction",
        "-d",
        help="A translation direction the checkpoint's model declares (also SOURCE2TARGET or source-to-target); "
        "files holding one generator need none. [default: the model's first]",
        show_default=False,
    ),
]
NetOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Name of one of the checkpoint's exported nets, instead of --direction.", show_default=False
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Format of SOURCE: auto, checkpoint, safetensors, torchscript, onnx, or a plugin's format.",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        help="How the generator executes: auto (the fastest backend available on the device), direct "
        "(torch's own layers) or a plugin's (`ganforge list-components backend`).",
    ),
]
#: Tiling options shared with ``ganforge demo``.
TileOption = Annotated[
    int, typer.Option(min=0, help="Tile side for large images (multiple of 4; 0: never tile).")
]
TileOverlapOption = Annotated[
    int, typer.Option(min=0, help="Least overlap of neighbouring tiles, in pixels.")
]
TileAboveOption = Annotated[
    int, typer.Option(min=1, help="Tile images whose longer side exceeds this many pixels.")
]
TileNormOption = Annotated[
    str,
    typer.Option(help="Instance-norm statistics of tiles: global (from a downscaled whole image) or tile."),
]
WeightsOption = Annotated[
    str,
    typer.Option(
        help="A ganforge checkpoint's weights: auto (the averaged (EMA) generator when the run kept one with "
        "[train.ema], else the trained one), ema, or raw (the trained weights).",
    ),
]
PluginOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--plugin", "-p", help="Also load this plugin module or .py file (repeatable).", show_default=False
    ),
]


def pick_device(name: str) -> torch.device:
    try:
        return select_device(name)
    except GanforgeError as exc:
        raise GanforgeError(*(line.replace("train.device", "--device") for line in exc.lines)) from None
    except RuntimeError as exc:  # torch.device() of a name it does not know
        raise GanforgeError(f"--device '{name}': {exc}; use auto, cpu, cuda, cuda:N or mps") from None


def translate(
    source: SourceArg,
    inputs: Annotated[
        Path,
        typer.Argument(help="An image, or a folder of images (searched recursively).", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the translated images (created).", show_default=False),
    ],
    direction: DirectionOption = None,
    net: NetOption = None,
    weights_format: FormatOption = "auto",
    size: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Translate at this size: N (shorter side, keeps the aspect ratio) or WxH. [default: the image's own]",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1,
            help="Images (or tiles) per forward pass. [default: 1 on a CPU, 4 on a GPU or MPS]",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    image_format: Annotated[
        str, typer.Option(help="auto (keep PNG/JPEG, others become PNG), png or jpeg.")
    ] = "auto",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality.")] = 95,
    tile: TileOption = 512,
    tile_overlap: TileOverlapOption = 64,
    tile_above: TileAboveOption = 1024,
    tile_norm: TileNormOption = "global",
    overwrite: Annotated[bool, typer.Option(help="Replace images already in --out.")] = False,
    backend: BackendOption = "auto",
    plugin: PluginOption = None,
    weights: WeightsOption = "auto",
) -> None:
    """Translate an image or a folder of images with a trained generator, keeping file names and folders."""
    tiling = Tiling(tile=tile, overlap=tile_overlap, above=tile_above, norm=tile_norm)
    image_format = api.check_translation_options(image_format, tiling)  # before anything is loaded
    wanted = parse_size(size)
    jobs = api.plan_translation(inputs, out, image_format, overwrite)

    generator = load_generator(
        source,
        direction=direction,
        net=net,
        weights_format=weights_format,
        device=pick_device(device),
        plugins=plugin or [],
        weights=weights,
    )
    apply_backend(backend, generator, plugins=[*generator.plugins, *(plugin or [])])
    for note in generator.notes:
        sys.stderr.write(f"note: {note}\n")
    console = Console(stderr=True, highlight=False)
    out_console = Console(highlight=False, soft_wrap=True)
    out_console.print(f"generator: {generator.label} on {generator.device}; {len(jobs)} image(s) -> {out}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        images = progress.add_task("translating", total=len(jobs))
        tiles = None

        def on_image(job: Job) -> None:
            nonlocal tiles
            progress.advance(images)
            if tiles is not None:
                progress.remove_task(tiles)
                tiles = None

        def on_tile(done: int, total: int) -> None:
            nonlocal tiles
            if tiles is None:
                tiles = progress.add_task("  tiles", total=total)
            progress.update(tiles, completed=done)

        report = api.translate(
            generator,
            inputs,
            out,
            size=wanted,
            image_format=image_format,
            overwrite=overwrite,
            batch_size=batch_size,
            tiling=tiling,
            quality=quality,
            on_image=on_image,
            on_tile=on_tile,
            jobs=jobs,
        )
    for line in report.failed:
        sys.stderr.write(f"warning: {line}\n")
    rate = report.translated / report.seconds if report.seconds > 0 else 0.0
    tiled = f", {report.tiled} in tiles" if report.tiled else ""
    out_console.print(
        f"translated {report.translated} image(s){tiled} in {report.seconds:.1f} s ({rate:.2f} images/s) -> {out}"
    )
    if report.failed:
        raise GanforgeError(f"{len(report.failed)} of {len(jobs)} image(s) could not be read (listed above)")


def register(app: typer.Typer) -> None:
    app.command()(translate)
