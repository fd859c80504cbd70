"""A local web page to try a generator: drop an image, see it translated in every direction.

:func:`load_panels` loads the generator of each direction the model declares (a file holding one
generator gives one panel), once. :func:`build_page` makes a Gradio page with one image input and one
output per panel; each output is computed by :func:`ganforge.inference.translate_image`, the function
``ganforge translate`` uses for each file, from the uploaded file itself (Gradio hands over its
path untouched), so the page shows the same pixels the command writes. :func:`serve` starts the page
on ``host:port`` (127.0.0.1 by default) and runs until Ctrl-C or SIGTERM.

Gradio is optional (the ``[demo]`` extra) and imported only here, with its telemetry turned off and
no share link, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import UnidentifiedImageError

from ganforge import api
from ganforge.errors import GanforgeError
from ganforge.inference import Generator, Tiling, input_multiple, translate_image

INSTALL_HINT = 'the demo page needs Gradio: pip install "ganforge[demo]"'


@dataclass
class Panel:
    """One output of the page: a generator and the title it is shown under."""

    title: str
    generator: Generator


def load_panels(
    source: str | Path,
    *,
    directions: Sequence[str] = (),
    weights_format: str = "auto",
    device: str | torch.device = "cpu",
    backend: str = "auto",
    plugins: Sequence[str] = (),
    weights: str = "auto",
) -> list[Panel]:
    """A panel per direction of ``source`` (``directions``: those named, in that order; default: every
    direction a checkpoint's model declares). A file holding one generator gives one panel."""
    first = api.load(
        source,
        direction=directions[0] if directions else None,
        weights_format=weights_format,
        device=device,
        backend=backend,
        plugins=plugins,
        weights=weights,
    )
    if first.direction is None:  # one generator: an export, a pretrained model, another project's weights
        if len(directions) > 1:
            raise GanforgeError(
                f"--direction: {first.source.name} holds one generator; name one direction at most"
            )
        return [Panel(first.label, first)]
    wanted = list(directions) or [d.name for d in first.directions]
    panels = [Panel(_direction_title(first), first)]
    for name in wanted[1:]:
        # the same checkpoint file again (a run directory could have a newer one by now)
        generator = api.load(
            first.source,
            direction=name,
            weights_format="checkpoint",
            device=first.device,
            backend=backend,
            plugins=plugins,
            weights=weights,
        )
        if any(p.generator.net == generator.net for p in panels):
            continue  # the same direction named twice
        panels.append(Panel(_direction_title(generator), generator))
    return panels


def _direction_title(generator: Generator) -> str:
    d = generator.direction
    assert d is not None
    return f"{d.name}: {d.source} -> {d.target} ({d.net})"


def describe(panels: Sequence[Panel], size: tuple[int, int] | int | None, tiling: Tiling) -> list[str]:
    """What the page says about the model: one line per fact."""
    first = panels[0].generator
    spec = first.spec or {}
    kind = {
        "checkpoint": "a ganforge checkpoint",
        "safetensors": "a safetensors export",
        "torchscript": "a TorchScript export",
        "onnx": "an ONNX export",
    }.get(first.kind, f"another project's weights ({first.kind})")
    lines = [f"Source: {first.source} ({kind})."]
    if spec:
        shown = ", ".join(f"{k} {v}" for k, v in spec.items() if isinstance(v, (int, float, str, bool)))
        lines.append(f"Generator: {shown}.")
    lines.extend(f"{p.title}: {p.generator.label}." for p in panels if p.title != p.generator.label)
    channels = "greyscale (1 channel)" if first.in_channels == 1 else f"{first.in_channels} channels (RGB)"
    lines.append(f"Input: {channels}; other images are converted to it.")
    if size is None:
        lines.append(
            f"Size: each image at its own size, padded by reflection to a multiple of "
            f"{input_multiple(first)} and cropped back."
        )
    elif isinstance(size, tuple):
        lines.append(f"Size: resized to {size[0]}x{size[1]} px first.")
    else:
        lines.append(f"Size: resized to a shorter side of {size} px first.")
    if tiling.tile:
        norm = tiling.norm if first.has_python_module else "per tile: this file's layers are fixed"
        lines.append(
            f"Images longer than {tiling.above} px: in tiles of {tiling.tile} px "
            f"(overlap {tiling.overlap}, instance norm {norm})."
        )
    lines.append(f"Device: {first.device}.")
    lines.extend(f"Note: {note}." for note in first.notes)
    return lines


def _to_array(image: torch.Tensor) -> np.ndarray:
    array = image.permute(1, 2, 0).numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3]


def translator(
    panels: Sequence[Panel], size: tuple[int, int] | int | None, tiling: Tiling, batch_size: int
) -> Callable[[str | None], tuple[Any, ...]]:
    """The page's function: an image file's path -> one array per panel, then a line of timings.
    An unreadable file raises ``ValueError`` with one line."""

    def run(path: str | None) -> tuple[Any, ...]:
        if path is None:
            return (*[None] * len(panels), "")
        outputs, times = [], []
        for panel in panels:
            started = time.perf_counter()
            try:
                result = translate_image(
                    panel.generator, Path(path), size=size, batch_size=batch_size, tiling=tiling
                )
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                raise ValueError(f"cannot read this image: {exc}") from None
            outputs.append(_to_array(result))
            times.append(f"{panel.title.split(':')[0]} {time.perf_counter() - started:.2f} s")
        height, width = outputs[0].shape[:2]
        return (*outputs, f"{width}x{height} px; " + ", ".join(times))

    return run


def import_gradio() -> Any:
    """Gradio, with its telemetry off; one line saying what to install when it is missing."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported, and by every Blocks
    try:
        import gradio  # optional dependency (the [demo] extra)
    except ImportError:
        raise GanforgeError(INSTALL_HINT) from None
    return gradio


def build_page(
    panels: Sequence[Panel],
    *,
    size: tuple[int, int] | int | None = None,
    tiling: Tiling | None = None,
    batch_size: int = 4,
    example: str | Path | None = None,
) -> Any:
    """The Gradio page (a ``gradio.Blocks``): an image input, an output per panel, a description.
    ``example``: an image file the page opens with, already translated."""
    gr = import_gradio()
    tiling = tiling or Tiling()
    run = translator(panels, size, tiling, batch_size)

    def on_image(path: str | None) -> tuple[Any, ...]:
        try:
            return run(path)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    shown: tuple[Any, ...] = (*[None] * len(panels), "")
    if example is not None:
        if not Path(example).is_file():
            raise GanforgeError(f"--example {example}: no such file")
        try:
            shown = run(str(example))
        except ValueError as exc:
            raise GanforgeError(f"--example {example}: {exc}") from None
    facts = "\n".join(f"- {line}" for line in describe(panels, size, tiling))
    # uploads and results live in Gradio's temporary folder; files older than an hour are removed
    with gr.Blocks(title="ganforge demo", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"## ganforge demo\n\n{facts}")
        with gr.Row():
            source = gr.Image(
                label="Image to translate",
                type="filepath",  # the uploaded file itself, as `ganforge translate` would read it
                image_mode=None,  # no conversion by Gradio: ganforge converts as it does for files
                sources=["upload", "clipboard"],
                format="png",
                value=str(example) if example is not None else None,
            )
            outputs = [
                gr.Image(
                    value=value,
                    label=panel.title,
                    format="png",
                    interactive=False,
                    buttons=["download", "fullscreen"],  # no "share": that is for Hugging Face Spaces
                )
                for panel, value in zip(panels, shown, strict=False)
            ]
        timing = gr.Markdown(shown[-1])
        source.change(on_image, inputs=source, outputs=[*outputs, timing], api_name="translate")
    return page


def serve(
    page: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``page`` on ``host:port`` until Ctrl-C or SIGTERM, then close it."""
    page.queue(default_concurrency_limit=1)  # one image at a time: the model uses every core
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=False,
            prevent_thread_lock=True,
            quiet=True,
            show_error=True,
            ssr_mode=False,  # no Node.js server
            mcp_server=False,
            pwa=False,
            footer_links=[],
        )
    except OSError as exc:
        if "port" in str(exc).lower():
            raise GanforgeError(f"--port {port}: in use on {host}; choose another --port") from None
        raise GanforgeError(f"--host {host} --port {port}: cannot serve: {exc}") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{shown}:{port}/"
    where = " (and on every network interface of this machine)" if host in ("0.0.0.0", "::", "") else ""
    announce(f"serving at {url}{where}; Ctrl-C stops it")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while page.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        page.close(verbose=False)
    sys.stdout.flush()
    announce("stopped")
