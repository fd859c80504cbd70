"""``ganforge export``: write a generator as safetensors, ONNX and TorchScript, each checked against PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ganforge import api
from ganforge.cli.translate import (
    BackendOption,
    DirectionOption,
    FormatOption,
    NetOption,
    PluginOption,
    SourceArg,
    WeightsOption,
)
from ganforge.engine.runtime import apply_backend
from ganforge.errors import GanforgeError
from ganforge.inference import load_generator

EXPORT_FORMATS = api.EXPORT_FORMATS


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
            help="safetensors, onnx, torchscript, or hub-folder (every generator of the model with config.json "
            "and a model card, written into --out itself, to upload to the Hugging Face Hub) (repeatable). "
            "[default: the first three]",
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
    repo_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="hub-folder: the OWNER/REPO the model card's examples name. [default: OWNER/<--out's name>]",
            show_default=False,
        ),
    ] = None,
    license_name: Annotated[
        str,
        typer.Option("--license", help="hub-folder: the license the model card declares (a Hub license id)."),
    ] = "other",
    backend: BackendOption = "auto",
    plugin: PluginOption = None,
    weights: WeightsOption = "auto",
) -> None:
    """Export a generator; each file is loaded back and compared with PyTorch on a random input."""
    formats = list(dict.fromkeys(to or api.EXPORT_SUFFIXES))
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise GanforgeError(f"--to {unknown[0]}: use {', '.join(EXPORT_FORMATS)}")
    if onnx_exporter not in ("dynamo", "torchscript"):
        raise GanforgeError(f"--onnx-exporter '{onnx_exporter}': use dynamo or torchscript")
    console = Console(highlight=False, soft_wrap=True)
    if api.HUB_FOLDER in formats:
        formats.remove(api.HUB_FOLDER)
        folder = api.export_hub_folder(
            source,
            out,
            direction=direction,
            net=net,
            weights_format=weights_format,
            repo_id=repo_id,
            license_name=license_name,
            check_size=check_size,
            overwrite=overwrite,
            plugins=plugin or [],
        )
        shape = f"{check_size}x{check_size + 8}"
        for item in folder:
            console.print(
                f"{item.format:<12} {item.path}{item.how}  max abs diff vs the source {item.max_abs_diff:.2e} "
                f"(PyTorch, random {shape} input)"
            )
        console.print(f"{item.format:<12} {out}: model.safetensors, config.json, README.md")
        if not formats:
            return
    generator = load_generator(
        source,
        direction=direction,
        net=net,
        weights_format=weights_format,
        device="cpu",
        plugins=plugin or [],
        weights=weights,
    )
    if name is None:
        stem = api.source_name(source)
        name = f"{stem}_{generator.net}" if generator.net is not None else stem
    existing = [out / f"{name}{api.EXPORT_SUFFIXES[f]}" for f in formats]
    existing = [path for path in existing if path.exists()]
    if existing and not overwrite:  # before any note, so a mistake stays one line
        raise GanforgeError(f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out or --name")
    apply_backend(backend, generator, plugins=[*generator.plugins, *(plugin or [])])  # for the checks; the files hold torch's ops
    for note in generator.notes:
        sys.stderr.write(f"note: {note}\n")
    console.print(f"generator: {generator.label}")
    written = api.export(
        generator,
        out,
        to=formats,
        name=name,
        opset=opset,
        onnx_exporter=onnx_exporter,
        check_size=check_size,
        overwrite=overwrite,
        plugins=plugin or [],
    )
    shape = f"1x{generator.in_channels}x{check_size}x{check_size + 8}"
    for item in written:
        size = item.path.stat().st_size / 2**20
        checked = "onnxruntime" if item.format == "onnx" else "PyTorch"
        console.print(
            f"{item.format:<12} {item.path}  {size:.1f} MiB  max abs diff vs PyTorch {item.max_abs_diff:.2e} "
            f"({checked}, random {shape} input{item.how})"
        )


def register(app: typer.Typer) -> None:
    app.command()(export)
