"""Exporting a loaded generator as safetensors, ONNX or TorchScript, written atomically."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from ganforge._version import __version__
from ganforge.errors import GanforgeError
from ganforge.inference.files import EXPORT_FORMAT, EXPORT_FORMAT_VERSION
from ganforge.inference.hubfolder import CARD, CONFIG, WEIGHTS, make_config, model_card, weights_bytes
from ganforge.inference.loading import Generator, NetBundle
from ganforge.inference.tensors import input_multiple, translate_batch

# -------------------------------------------------------------------------------------------------
# Exporting
# -------------------------------------------------------------------------------------------------


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_safetensors(generator: Generator, path: Path) -> None:
    """The generator's weights, with its component spec (and plugin) in the metadata."""
    if not generator.has_python_module or generator.spec is None:
        raise GanforgeError(
            f"{generator.source}: safetensors export needs a generator with a known component spec "
            f"(a checkpoint, a safetensors export or plugin-read weights), not {generator.kind}"
        )
    assert generator.module is not None
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in generator.module.state_dict().items()}
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "ganforge_version": __version__,
        "generator": json.dumps(generator.spec, sort_keys=True),
        "plugin": generator.plugin or "",
        "label": generator.label,
        "source": str(generator.source),
    }
    data = save(state, metadata=metadata)
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def save_hub_folder(bundle: NetBundle, out: Path, repo_id: str, license_name: str = "other") -> list[Path]:
    """A hub folder (:mod:`ganforge.inference.hubfolder`) of the bundle's nets in ``out``; each file
    written atomically. ``repo_id`` (``owner/repo``) and ``license_name`` go into the model card."""
    state: dict[str, torch.Tensor] = {}
    nets = {}
    for name, generator in bundle.nets.items():
        if not generator.has_python_module or generator.spec is None:
            raise GanforgeError(
                f"{generator.source}: a hub folder needs generators with a known component spec "
                f"(a checkpoint, a safetensors export or plugin-read weights), not {generator.kind}"
            )
        assert generator.module is not None
        state.update({f"{name}.{k}": v for k, v in generator.module.state_dict().items()})
        spec = dict(generator.spec)
        nets[name] = {
            "generator": spec,
            "plugin": generator.plugin,
            "in_channels": generator.in_channels,
            "out_channels": spec.get("out_channels"),
            "size_multiple": input_multiple(generator),  # what translate pads its input sides to
            "label": generator.label,
        }
    directions = [
        {"name": d.name, "source": d.source, "target": d.target, "net": d.net} for d in bundle.directions
    ]
    config = make_config(nets, directions, bundle.model_type, bundle.training, bundle.source)
    data = weights_bytes(state, config)
    text = json.dumps(config, indent=2) + "\n"
    card = model_card(config, repo_id, license_name)
    written = [out / WEIGHTS, out / CONFIG, out / CARD]
    _atomic(written[0], lambda tmp: tmp.write_bytes(data))
    _atomic(written[1], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _atomic(written[2], lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return written


def _cpu_module(generator: Generator) -> nn.Module:
    if not generator.has_python_module or generator.module is None:
        raise GanforgeError(
            f"{generator.source}: ONNX and TorchScript export need a PyTorch generator, not {generator.kind}"
        )
    return generator.module.to("cpu").eval()


def save_onnx(
    generator: Generator, path: Path, opset: int = 18, exporter: str = "dynamo", example_size: int = 64
) -> str:
    """ONNX with dynamic batch, height and width (input ``image``, output ``translated``).

    ``exporter``: ``dynamo`` (torch's ``torch.export``-based exporter, its default since 2.9; if it
    fails, the TorchScript-based one is tried) or ``torchscript`` (the older exporter: much quicker
    to run, deprecated by torch). Returns the exporter that wrote the file.
    """
    try:
        import onnx  # noqa: F401 (optional dependency, the [onnx] extra; the exporters need it)
    except ImportError:
        raise GanforgeError(
            "ONNX export needs onnx and onnxscript: pip install onnx onnxscript onnxruntime"
        ) from None
    if exporter not in ("dynamo", "torchscript"):
        raise GanforgeError(f"ONNX exporter '{exporter}': use dynamo or torchscript")
    module = _cpu_module(generator)
    example = torch.zeros(1, generator.in_channels, example_size, example_size)
    names = {"input_names": ["image"], "output_names": ["translated"], "opset_version": opset}

    def with_dynamo(target: Path) -> None:
        from torch.export import Dim  # heavy (loads torch.export and its tracer): only when exporting ONNX

        dynamic = ({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},)
        torch.onnx.export(
            module, (example,), str(target), dynamic_shapes=dynamic, dynamo=True, external_data=False, **names
        )

    def with_torchscript(target: Path) -> None:
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic = {"image": axes, "translated": axes}
        torch.onnx.export(module, (example,), str(target), dynamic_axes=dynamic, dynamo=False, **names)

    used = exporter
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporters' progress lines and deprecation notices
        try:
            _atomic(path, with_dynamo if exporter == "dynamo" else with_torchscript)
        except Exception as first:  # noqa: BLE001 (any exporter failure: try the other)
            if exporter != "dynamo":
                raise GanforgeError(
                    f"ONNX export failed: {type(first).__name__}: {str(first).splitlines()[0]}"
                ) from None
            used = "torchscript"
            try:
                _atomic(path, with_torchscript)
            except Exception as second:  # noqa: BLE001
                raise GanforgeError(
                    f"ONNX export failed: dynamo: {type(first).__name__}: {str(first).splitlines()[0]}; "
                    f"torchscript: {type(second).__name__}: {str(second).splitlines()[0]}"
                ) from None
    return used


def save_torchscript(generator: Generator, path: Path) -> None:
    """TorchScript (scripted; traced on a 64 px example if the module cannot be scripted)."""
    module = _cpu_module(generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scripted = torch.jit.script(module)
        except Exception:  # noqa: BLE001 (not scriptable: trace instead)
            scripted = torch.jit.trace(module, torch.zeros(1, generator.in_channels, 64, 64))
        _atomic(path, lambda tmp: torch.jit.save(scripted, str(tmp)))


def max_abs_diff(reference: Generator, other: Generator, shape: Sequence[int], seed: int = 0) -> float:
    """Largest absolute difference of two generators' outputs on one random input in [-1, 1]."""
    noise = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=noise) * 2 - 1
    a = translate_batch(reference, x).float().cpu()
    b = translate_batch(other, x).float().cpu()
    if a.shape != b.shape:
        raise GanforgeError(f"{other.source}: output shape {tuple(b.shape)}, expected {tuple(a.shape)}")
    return float((a - b).abs().max())
