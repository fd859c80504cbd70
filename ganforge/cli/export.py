"""``ganforge export``: write a generator as safetensors, ONNX and TorchScript, each checked against PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ganforge.cli.translate import (
    BackendOption,
    DirectionOption,
    FormatOption,
    NetOption,
    PluginOption,
    SourceArg,
    check_direction,
)
from ganforge.errors import GanforgeError

EXPORT_FORMATS = ("safetensors", "onnx", "torchscript")
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt"}


def export(
    source: SourceArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder to write the exports to (created).", show_default=False),
    ],
    to: Annotated[
        Optional[list[str]],  # noqa: UP045 (typer needs Optional here)
        typer.Option(
            "--to",
            "-t",
            help="safetensors, onnx or torchscript (repeatable). [default: all three]",
            show_default=False,
        ),
    ] = None,
    direction: DirectionOption = None,
    net: NetOption = None,
    weights_format: FormatOption = "auto",
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="File name stem. [default: SOURCE's stem, plus the net for a checkpoint]", show_default=False
        ),
    ] = None,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset version.")] = 18,
    onnx_exporter: Annotated[
        str,
        typer.Option(
            help="dynamo (torch's default exporter) or torchscript (older and deprecated, but much quicker)."
        ),
    ] = "dynamo",
    check_size: Annotated[
        int, typer.Option(min=4, help="Side of the random image each export is checked on.")
    ] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace files already in --out.")] = False,
    backend: BackendOption = "auto",
    plugin: PluginOption = None,
) -> None:
    """Export a generator; each file is loaded back and compared with PyTorch on a random input."""
    from ganforge.engine.runtime import apply_backend
    from ganforge.inference import (
        DIRECTIONS,
        load_generator,
        max_abs_diff,
        save_onnx,
        save_safetensors,
        save_torchscript,
    )

    direction = check_direction(direction)
    formats = list(dict.fromkeys(to or EXPORT_FORMATS))
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise GanforgeError(f"--to {unknown[0]}: use {', '.join(EXPORT_FORMATS)}")
    generator = load_generator(
        source,
        direction=direction,
        net=net,
        weights_format=weights_format,
        device="cpu",
        plugins=plugin or [],
    )
    if name is None:
        stem = source.stem if source.is_file() else source.name
        if generator.kind == "checkpoint":
            stem = f"{stem}_{net or DIRECTIONS[direction or 'AtoB']}"
        name = stem
    targets = {f: out / f"{name}{SUFFIXES[f]}" for f in formats}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise GanforgeError(
            f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out or --name"
        )
    apply_backend(backend, generator, plugins=plugin or [])  # for the checks; the files hold torch's ops
    for note in generator.notes:
        sys.stderr.write(f"note: {note}\n")
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"generator: {generator.label}")
    shape = (1, generator.in_channels, check_size, check_size + 8)  # not square: height and width stay apart
    if onnx_exporter not in ("dynamo", "torchscript"):
        raise GanforgeError(f"--onnx-exporter '{onnx_exporter}': use dynamo or torchscript")
    for fmt, path in targets.items():
        how = ""
        if fmt == "onnx":
            used = save_onnx(generator, path, opset=opset, exporter=onnx_exporter)
            how = f", {used} exporter, opset {opset}"
        elif fmt == "safetensors":
            save_safetensors(generator, path)
        else:
            save_torchscript(generator, path)
        reloaded = load_generator(path, weights_format=fmt, device="cpu", plugins=plugin or [])
        diff = max_abs_diff(generator, reloaded, shape)
        size = path.stat().st_size / 2**20
        checked = "onnxruntime" if fmt == "onnx" else "PyTorch"
        console.print(
            f"{fmt:<12} {path}  {size:.1f} MiB  max abs diff vs PyTorch {diff:.2e} "
            f"({checked}, random {'x'.join(map(str, shape))} input{how})"
        )


def register(app: typer.Typer) -> None:
    app.command()(export)
