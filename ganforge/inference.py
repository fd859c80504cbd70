"""Using a trained generator: load it from any file it may come in, translate images, export it.

**Loading** (:func:`load_generator`). The file's kind is read from its first bytes, not its name:

- a ganforge checkpoint (or a run directory: its newest checkpoint). The generator's spec is the
  recipe's ``model.generator`` section; its weights are the net named by the direction (``G_A`` for
  A->B, ``G_B`` for B->A) or by ``net``. It is built through the registries, like in training.
- a safetensors export (:func:`save_safetensors`): the spec travels in the file's metadata, so it is
  rebuilt without the recipe.
- TorchScript and ONNX exports: run as they are (ONNX through onnxruntime).
- anything else holding tensors (a ``.pth`` state dict, a safetensors file without ganforge metadata)
  goes to the plugins' ``load_generator_weights`` hook, which recognises its own formats (the
  CycleGAN plugin reads the authors' ``latest_net_G_A.pth`` files).

Loading never executes code from a file: pickles are read with ``torch.load(weights_only=True)``,
which refuses one that would call a function, and safetensors holds tensors only. TorchScript and
ONNX files are programs by nature: they run their own graph of tensor operations (never Python).

**Translating**. :func:`translate_batch` pads a batch to a multiple of 4 by reflection and crops the
result back, so images keep their own size. :func:`translate_tiled` does large images in overlapping
tiles with bounded memory: each tile's result is weighted by a raised-cosine window that falls to
almost zero at the tile's inner edges (where the network saw padding, not the picture), the weights
are normalised where tiles overlap, and rows are finished band by band. Instance norm, which would
otherwise normalise each tile by its own statistics (and give each tile its own tone), can use
statistics taken once from a downscaled view of the whole image.

**Exporting**: :func:`save_safetensors`, :func:`save_onnx`, :func:`save_torchscript`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from ganforge import __version__
from ganforge.errors import CheckpointError, DatasetError, GanforgeError, PluginError, RecipeError
from ganforge.plugins import PluginSet, collect_registries, make_plugin_manager

#: Image height and width are padded to a multiple of this (two stride-2 down-samplings).
PAD_MULTIPLE = 4
#: Which net of a ganforge checkpoint each direction uses.
DIRECTIONS: dict[str, str] = {"AtoB": "G_A", "BtoA": "G_B"}
#: Formats ganforge reads itself; plugins add their own names (CycleGAN: ``reference``).
CORE_FORMATS = ("auto", "checkpoint", "safetensors", "torchscript", "onnx")
#: The metadata marker of a safetensors generator export.
EXPORT_FORMAT = "ganforge.generator"
EXPORT_FORMAT_VERSION = "1"
CHECKPOINT_FORMAT = "ganforge.checkpoint"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# -------------------------------------------------------------------------------------------------
# The loaded generator
# -------------------------------------------------------------------------------------------------


@dataclass
class Generator:
    """A generator ready to run: ``generator(batch)`` maps ``(N, C, H, W)`` in [-1, 1] on ``device``."""

    run: Callable[[torch.Tensor], torch.Tensor]
    kind: str  # checkpoint, safetensors, torchscript, onnx, or a plugin's format name
    source: Path
    device: torch.device
    module: nn.Module | None = None  # a plain nn.Module (not TorchScript or ONNX): can be exported
    spec: dict[str, Any] | None = None  # the generator component spec, when known
    plugin: str | None = None  # the plugin that registered the spec's type
    in_channels: int = 3
    label: str = ""
    notes: list[str] = field(default_factory=list)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.run(batch)

    @property
    def has_python_module(self) -> bool:
        return self.module is not None and not isinstance(self.module, torch.jit.ScriptModule)


# -------------------------------------------------------------------------------------------------
# Reading files safely
# -------------------------------------------------------------------------------------------------


def sniff(path: Path) -> str:
    """What a file is, from its first bytes: torchscript, pickle, safetensors, onnx or unknown."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
            return "torchscript"
        return "pickle"  # torch.save's zip format
    if len(head) >= 9 and head[8:9] == b"{":
        header = int.from_bytes(head[:8], "little")
        if 0 < header < path.stat().st_size:
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch.save's legacy format too)
        return "pickle"
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":  # protobuf field 1 (ir_version)
        return "onnx"
    return "unknown"


def _refusal(message: str) -> str:
    """The useful part of torch's weights-only refusal (it also advises the unsafe way out; we do not)."""
    called = re.search(r"GLOBAL ([\w.]+)", message)
    if called:
        return f"it would call {called.group(1)}"
    for line in message.splitlines():
        line = line.strip()
        if line.startswith(("Unsupported", "Trying to")):
            return f"it holds more than tensors ({line.rstrip('.')})"
    return "it holds objects that loading would have to execute"


def read_pickle(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only; code is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "pickle protocol N" notices
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: {_refusal(str(exc))}; ganforge loads tensors only and never runs code from a file"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable weight file (truncated or damaged?): {first}"
        ) from None


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types)
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None
    return tensors, metadata


def _tensor_state(data: Any) -> dict[str, torch.Tensor] | None:
    if not isinstance(data, Mapping):
        return None
    state = {k: v for k, v in data.items() if isinstance(k, str) and torch.is_tensor(v)}
    return state or None


# -------------------------------------------------------------------------------------------------
# Loading a generator
# -------------------------------------------------------------------------------------------------


def load_generator(
    path: Path,
    *,
    direction: str | None = None,
    net: str | None = None,
    weights_format: str = "auto",
    device: torch.device | str = "cpu",
    plugins: Sequence[str] = (),
) -> Generator:
    """Load a generator from ``path`` (see the module docstring for the kinds of file).

    ``direction`` (``AtoB``/``BtoA``) or ``net`` picks the net of a ganforge checkpoint; other files
    hold one generator. ``weights_format`` is ``auto`` (detect), a core format or a plugin's format
    name. ``plugins`` are extra plugin modules or files (a recipe's plugins are loaded as well).
    """
    path = Path(path)
    device = torch.device(device)
    if direction is not None and direction not in DIRECTIONS:
        raise GanforgeError(f"direction '{direction}': use one of {', '.join(DIRECTIONS)}")
    if path.is_dir():
        if weights_format not in ("auto", "checkpoint"):
            raise CheckpointError(f"{path}: is a folder; --format {weights_format} needs a file")
        from ganforge.engine.resume import find_checkpoint

        checkpoint, data = find_checkpoint(path)
        return _from_checkpoint(checkpoint, data, direction, net, device, plugins)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    kind = sniff(path)
    expected = {
        "checkpoint": ("pickle",),
        "safetensors": ("safetensors",),
        "torchscript": ("torchscript",),
        "onnx": ("onnx", "unknown"),
    }
    if weights_format in expected and kind not in expected[weights_format]:
        raise CheckpointError(
            f"{path}: --format {weights_format}, but the file looks like {_kind_name(kind)}"
        )
    single = (
        []
        if direction is None and net is None
        else [f"{path.name} holds one generator; --direction/--net apply to ganforge checkpoints only"]
    )
    if kind == "torchscript":
        _only_core(weights_format, kind, path)
        generator = _from_torchscript(path, device)
    elif kind == "onnx" or weights_format == "onnx":
        _only_core(weights_format, "onnx", path)
        generator = _from_onnx(path, device)
    elif kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") == EXPORT_FORMAT and weights_format in ("auto", "safetensors"):
            generator = _from_export(path, tensors, metadata, device, plugins)
        elif weights_format == "safetensors":
            raise CheckpointError(
                f"{path}: a safetensors file without ganforge metadata; name its format with --format "
                "(a plugin's, e.g. reference)"
            )
        else:
            generator = _from_plugins(path, tensors, weights_format, device, plugins)
    elif kind == "pickle":
        data = read_pickle(path)
        if isinstance(data, Mapping) and data.get("format") == CHECKPOINT_FORMAT:
            if weights_format not in ("auto", "checkpoint"):
                raise CheckpointError(f"{path}: a ganforge checkpoint, not format '{weights_format}'")
            from ganforge.engine.checkpoint import FORMAT_VERSION

            if data.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint format {data.get('format_version')} written by ganforge "
                    f"{data.get('ganforge_version')}; this ganforge ({__version__}) reads format {FORMAT_VERSION}"
                )
            return _from_checkpoint(path, data, direction, net, device, plugins)
        if weights_format == "checkpoint":
            raise CheckpointError(f"{path}: not a ganforge checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
        state = _tensor_state(data)
        if state is None:
            raise CheckpointError(f"{path}: holds no tensors keyed by name (a {type(data).__name__})")
        generator = _from_plugins(path, state, weights_format, device, plugins)
    else:
        raise CheckpointError(
            f"{path}: not a file ganforge can read (expected a ganforge checkpoint, a .pth state dict, "
            "safetensors, TorchScript or ONNX)"
        )
    generator.notes.extend(single)
    return generator


def _kind_name(kind: str) -> str:
    return {
        "pickle": "a torch pickle (checkpoint or state dict)",
        "safetensors": "a safetensors file",
        "torchscript": "a TorchScript archive",
        "onnx": "an ONNX model",
    }.get(kind, "none of the formats ganforge reads")


def _only_core(weights_format: str, kind: str, path: Path) -> None:
    if weights_format not in ("auto", kind):
        raise CheckpointError(f"{path}: {_kind_name(kind)}, not format '{weights_format}'")


def _plugin_set(names: Sequence[str], base_dir: Path | None) -> PluginSet:
    return make_plugin_manager(list(dict.fromkeys(names)), base_dir=base_dir, source="--plugin")


def _from_checkpoint(
    path: Path,
    data: Mapping[str, Any],
    direction: str | None,
    net: str | None,
    device: torch.device,
    plugins: Sequence[str],
) -> Generator:
    recipe = data.get("recipe") if isinstance(data.get("recipe"), Mapping) else {}
    model = recipe.get("model") if isinstance(recipe.get("model"), Mapping) else {}
    spec = model.get("generator")
    if not isinstance(spec, Mapping):
        raise CheckpointError(
            f"{path}: its recipe's model ('{model.get('type')}') has no generator section to rebuild a generator from"
        )
    net = net or DIRECTIONS[direction or "AtoB"]
    weights = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    state = {
        k[len(net) + 1 :]: v for k, v in weights.items() if k.startswith(f"{net}.") and torch.is_tensor(v)
    }
    if not state:
        nets = sorted({k.split(".")[0] for k, v in weights.items() if torch.is_tensor(v)})
        raise CheckpointError(
            f"{path}: no net '{net}' in this checkpoint (its nets: {', '.join(nets) or 'none'})"
        )
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    plugin_set = _plugin_set([*recipe.get("plugins", []), *plugins], run_dir)
    module, plugin = build_generator(dict(spec), state, plugin_set, f"{path} ({net})")
    epoch = data.get("epoch")
    label = f"{net} of {path.name}" + (f" (epoch {epoch})" if isinstance(epoch, int) else "")
    return _module_generator(module, "checkpoint", path, device, dict(spec), plugin, label)


def _from_export(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: Mapping[str, str],
    device: torch.device,
    plugins: Sequence[str],
) -> Generator:
    if metadata.get("format_version") != EXPORT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: generator export format {metadata.get('format_version')} (ganforge "
            f"{metadata.get('ganforge_version')}); this ganforge reads format {EXPORT_FORMAT_VERSION}"
        )
    try:
        spec = json.loads(metadata["generator"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: its metadata has no readable 'generator' spec") from None
    plugin_set = _plugin_set(plugins, path.parent)
    try:
        module, plugin = build_generator(spec, tensors, plugin_set, str(path))
    except CheckpointError as exc:
        wanted = metadata.get("plugin")
        if wanted and wanted not in {p.name for p in plugin_set.plugins}:
            raise CheckpointError(
                *exc.lines, f"it was exported with plugin '{wanted}': load it with --plugin"
            ) from None
        raise
    label = metadata.get("label") or path.name
    return _module_generator(module, "safetensors", path, device, spec, plugin, label)


def _from_plugins(
    path: Path,
    state: dict[str, torch.Tensor],
    weights_format: str,
    device: torch.device,
    plugins: Sequence[str],
) -> Generator:
    plugin_set = _plugin_set(plugins, path.parent)
    named = None if weights_format == "auto" else weights_format
    spec, tensors, owner = plugin_weights(plugin_set, path, state, named)
    module, plugin = build_generator(spec, tensors, plugin_set, str(path))
    label = f"{path.name} ({owner}: {describe_spec(spec)})"
    return _module_generator(module, named or owner, path, device, spec, plugin, label)


def plugin_weights(
    plugin_set: PluginSet, path: Path, state: dict[str, torch.Tensor], weights_format: str | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Ask each plugin's ``load_generator_weights`` in turn; the first answer wins. Returns its plugin too."""
    hook = plugin_set.manager.hook.load_generator_weights
    failed = {p.name for p in plugin_set.failed}
    arguments = {"path": path, "state": state, "weights_format": weights_format}
    for impl in reversed(hook.get_hookimpls()):  # pluggy's call order: last registered first
        if impl.plugin_name in failed:
            continue
        try:
            result = impl.function(**{name: arguments[name] for name in impl.argnames})
        except GanforgeError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin '{impl.plugin_name}' failed to read {path}: {type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            continue
        if not (
            isinstance(result, tuple)
            and len(result) == 2
            and isinstance(result[0], Mapping)
            and isinstance(result[1], Mapping)
        ):
            raise PluginError(
                f"plugin '{impl.plugin_name}': load_generator_weights returned {type(result).__name__}, "
                "not (generator_spec, state_dict)"
            )
        return dict(result[0]), dict(result[1]), impl.plugin_name
    if weights_format is not None:
        raise CheckpointError(
            f"{path}: no plugin reads format '{weights_format}' (ganforge reads {', '.join(CORE_FORMATS[1:])}; "
            "plugins add their own, such as the CycleGAN plugin's 'reference')"
        )
    keys = ", ".join(sorted(state)[:4]) + (" ..." if len(state) > 4 else "")
    raise CheckpointError(
        f"{path}: {len(state)} tensors ({keys}), but neither a ganforge file nor a format a plugin "
        "recognises; name the format with --format"
    )


def build_generator(
    spec: dict[str, Any], state: Mapping[str, torch.Tensor], plugin_set: PluginSet, source: str
) -> tuple[nn.Module, str]:
    """Resolve ``spec`` against the generator registry, build it and load ``state`` strictly."""
    registries = collect_registries(plugin_set)
    try:
        resolved = registries.resolve("generator", spec, "generator")
    except RecipeError as exc:
        raise CheckpointError(*(f"{source}: {line}" for line in exc.lines)) from None
    module = resolved.build()
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(keys[:6])}" + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise CheckpointError(
            f"{source}: the weights do not fit generator '{spec.get('type')}' ({describe_spec(spec)}): "
            + "; ".join(parts)
        )
    module.load_state_dict(state, strict=True)
    return module, resolved.resolved.component.plugin


def describe_spec(spec: Mapping[str, Any]) -> str:
    shown = [
        f"{k} {v}" for k, v in spec.items() if k in ("ngf", "n_blocks", "norm_affine", "upsample", "width")
    ]
    return f"{spec.get('type')}" + (f", {', '.join(shown)}" if shown else "")


def _module_generator(
    module: nn.Module,
    kind: str,
    path: Path,
    device: torch.device,
    spec: dict[str, Any] | None,
    plugin: str | None,
    label: str,
) -> Generator:
    module = module.to(device).eval().requires_grad_(False)
    in_channels = int(spec.get("in_channels", 3)) if spec else 3
    return Generator(module, kind, path, device, module, spec, plugin, in_channels, label)


def _from_torchscript(path: Path, device: torch.device) -> Generator:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 (torch.jit raises many kinds; all mean "cannot load")
        raise CheckpointError(
            f"{path}: not a loadable TorchScript module: {str(exc).splitlines()[0]}"
        ) from None
    module.eval()
    return Generator(module, "torchscript", path, device, module, None, None, 3, f"{path.name} (TorchScript)")


def _from_onnx(path: Path, device: torch.device) -> Generator:
    try:
        import onnxruntime as ort
    except ImportError:
        raise GanforgeError("ONNX models need onnxruntime: pip install onnxruntime") from None
    providers = ["CPUExecutionProvider"]
    notes = []
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            notes.append("this onnxruntime has no CUDA provider; the ONNX model runs on the CPU")
    elif device.type != "cpu":
        notes.append(f"ONNX models run on the CPU here, not {device.type}")
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 (onnxruntime's errors have no common base)
        raise CheckpointError(f"{path}: not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CheckpointError(f"{path}: an ONNX generator takes one input; this model takes {len(inputs)}")
    name = inputs[0].name
    channels = inputs[0].shape[1] if len(inputs[0].shape) == 4 and isinstance(inputs[0].shape[1], int) else 3

    def run(batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (output, *_) = session.run(None, {name: array})
        return torch.from_numpy(output).to(batch.device)

    generator = Generator(run, "onnx", path, device, None, None, None, channels, f"{path.name} (ONNX)")
    generator.notes.extend(notes)
    return generator


# -------------------------------------------------------------------------------------------------
# Translating tensors
# -------------------------------------------------------------------------------------------------


def pad_to_multiple(batch: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Pad height and width up to a multiple (right and bottom) by reflection (edge copy if too small)."""
    h, w = batch.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return batch
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(batch, (0, pw, 0, ph), mode=mode)


def translate_batch(
    generator: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, device: Any = None
) -> torch.Tensor:
    """Run ``generator`` on ``(N, C, H, W)`` in [-1, 1] of any size; returns ``(N, C', H, W)`` (same device as given)."""
    h, w = batch.shape[-2:]
    target = device if device is not None else getattr(generator, "device", batch.device)
    with torch.inference_mode():
        out = generator(pad_to_multiple(batch.to(target)))
    return out[..., :h, :w]


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> ``(C, H, W)`` uint8 tensor."""
    array = np.array(image)  # a writable copy
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]`` (the training data's scaling)."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]``."""
    return images.float().clamp(-1, 1).add(1).mul_(127.5).round_().to(torch.uint8)


@dataclass(frozen=True)
class Tiling:
    """How large images are translated in tiles."""

    tile: int = 512  # tile side in pixels (a multiple of 4); 0 disables tiling
    overlap: int = 64  # least overlap between neighbouring tiles
    above: int = 1024  # tile images whose longer side is larger than this
    norm: str = "global"  # instance-norm statistics: "global" (downscaled whole image) or "tile"
    stats_size: int = 512  # longer side of the downscaled view the global statistics come from

    def applies(self, height: int, width: int) -> bool:
        return self.tile > 0 and max(height, width) > self.above


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``, evenly spread, overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_window(starts: Sequence[int], index: int, tile: int) -> torch.Tensor:
    """1-d blending weights of tile ``index``: a raised-cosine ramp over each overlap with a neighbour."""
    weights = torch.ones(tile)
    for neighbour, flip in ((index - 1, False), (index + 1, True)):
        if not 0 <= neighbour < len(starts):
            continue  # an image border: full weight
        overlap = tile - abs(starts[index] - starts[neighbour])
        ramp_len = max(1, min(overlap, tile // 2))
        ramp = torch.sin(0.5 * math.pi * (torch.arange(ramp_len) + 0.5) / ramp_len) ** 2
        if flip:
            weights[tile - ramp_len :] *= ramp.flip(0)
        else:
            weights[:ramp_len] *= ramp
    return weights


def _instance_norms(module: nn.Module) -> list[nn.Module]:
    """Instance-norm layers that normalise by the statistics of their input (the usual kind)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.instancenorm._InstanceNorm) and (m.training or not m.track_running_stats)
    ]


@contextlib.contextmanager
def global_instance_norm(module: nn.Module, view: torch.Tensor) -> Iterator[int]:
    """Inside the block, ``module``'s instance norms use the statistics they had on ``view`` (1 image).

    Yields the number of layers changed (0 when the module has none, and then changes nothing).
    """
    norms = _instance_norms(module)
    if not norms:
        yield 0
        return
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(layer: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = args[0]
        stats[layer] = (x.mean(dim=(-2, -1), keepdim=True), x.var(dim=(-2, -1), unbiased=False, keepdim=True))

    def apply(layer: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        mean, var = stats[layer]
        y = (args[0] - mean) * torch.rsqrt(var + layer.eps)
        if layer.affine:
            y = y * layer.weight[:, None, None] + layer.bias[:, None, None]
        return y

    handles = [layer.register_forward_hook(record) for layer in norms]
    try:
        with torch.inference_mode():
            module(view)
    finally:
        for handle in handles:
            handle.remove()
    handles = [layer.register_forward_hook(apply) for layer in norms]
    try:
        yield len(norms)
    finally:
        for handle in handles:
            handle.remove()


def downscaled_view(image: torch.Tensor, longest: int, device: torch.device) -> torch.Tensor:
    """``(C, H, W)`` uint8 -> ``(1, C, h, w)`` in [-1, 1], longer side at most ``longest``, padded to 4."""
    h, w = image.shape[-2:]
    scale = min(1.0, longest / max(h, w))
    view = to_unit(image[None])
    if scale < 1.0:
        size = (max(PAD_MULTIPLE, round(h * scale)), max(PAD_MULTIPLE, round(w * scale)))
        view = F.interpolate(view, size=size, mode="bilinear", antialias=True, align_corners=False)
    return pad_to_multiple(view).to(device)


def translate_tiled(
    generator: Generator,
    image: torch.Tensor,
    tiling: Tiling = Tiling(),
    batch_size: int = 1,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Translate one ``(C, H, W)`` uint8 image in overlapping tiles; returns ``(C', H, W)`` uint8.

    Memory is bounded by the tile size and ``batch_size``: the network sees one batch of tiles at a
    time, and float accumulators hold only one band of tile rows (rows above it are finished and
    stored as uint8). ``on_tile(done, total)`` reports progress.
    """
    _, height, width = image.shape
    th, tw = min(tiling.tile, height), min(tiling.tile, width)
    ys, xs = tile_starts(height, th, tiling.overlap), tile_starts(width, tw, tiling.overlap)
    wy = [tile_window(ys, i, th) for i in range(len(ys))]
    wx = [tile_window(xs, j, tw) for j in range(len(xs))]
    total, done = len(ys) * len(xs), 0
    output: torch.Tensor | None = None
    carry: tuple[torch.Tensor, torch.Tensor] | None = None
    context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if tiling.norm == "global" and generator.has_python_module and generator.module is not None:
        view = downscaled_view(image, tiling.stats_size, generator.device)
        context = global_instance_norm(generator.module, view)
    with context:
        for i, y in enumerate(ys):
            band: torch.Tensor | None = None
            weight = torch.zeros(th, width)
            for first in range(0, len(xs), batch_size):
                columns = list(range(first, min(first + batch_size, len(xs))))
                tiles = torch.stack([image[:, y : y + th, xs[j] : xs[j] + tw] for j in columns])
                result = translate_batch(generator, to_unit(tiles)).float().cpu()
                if band is None:
                    band = torch.zeros(result.shape[1], th, width)
                    if carry is not None:
                        band[:, : carry[0].shape[1]] += carry[0]
                        weight[: carry[1].shape[0]] += carry[1]
                for k, j in enumerate(columns):
                    w = wy[i][:, None] * wx[j][None, :]
                    band[:, :, xs[j] : xs[j] + tw] += result[k] * w
                    weight[:, xs[j] : xs[j] + tw] += w
                done += len(columns)
                if on_tile is not None:
                    on_tile(done, total)
            assert band is not None
            if output is None:
                output = torch.empty(band.shape[0], height, width, dtype=torch.uint8)
            end = ys[i + 1] - y if i + 1 < len(ys) else th
            output[:, y : y + end] = to_uint8(band[:, :end] / weight[:end])
            carry = (band[:, end:].clone(), weight[end:].clone())
    assert output is not None
    return output


# -------------------------------------------------------------------------------------------------
# Translating files
# -------------------------------------------------------------------------------------------------


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """``"256"`` (shorter side) -> 256; ``"320x240"`` (width x height) -> (320, 240); None -> None."""
    if text is None or text.strip().lower() in ("", "native", "own"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text.lower())
    if not match or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
        raise GanforgeError(
            f"--size '{text}': give N (the shorter side, in pixels) or WIDTHxHEIGHT, e.g. 256 or 320x240"
        )
    if match.group(2) is None:
        return int(match.group(1))
    return int(match.group(1)), int(match.group(2))


def output_size(width: int, height: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    """The (width, height) an image is translated at."""
    if size is None:
        return width, height
    if isinstance(size, tuple):
        return size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), read from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_image(path: Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image file as a ``(C, H, W)`` uint8 tensor: EXIF orientation applied, RGB (or L), resized if asked."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image_to_tensor(image)


def write_image(image: torch.Tensor, path: Path, quality: int = 95) -> None:
    """Save a ``(C, H, W)`` uint8 tensor; the suffix picks PNG or JPEG. Written to a temp file, then renamed."""
    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3])
    path.parent.mkdir(parents=True, exist_ok=True)
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG" if is_jpeg else "PNG", **({"quality": quality} if is_jpeg else {}))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def find_images(source: Path, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(file, path relative to source)`` for an image file, or every image under a folder, sorted."""
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise DatasetError(f"{source}: no such file or folder")
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            found.append((path, relative))
    return found


def output_suffix(source: Path, image_format: str) -> str:
    """Keep a PNG/JPEG input's suffix; other inputs become PNG, unless a format is asked for."""
    suffix = source.suffix.lower()
    if image_format == "png":
        return ".png"
    if image_format == "jpeg":
        return suffix if suffix in (".jpg", ".jpeg") else ".jpg"
    return source.suffix if suffix in (".png", ".jpg", ".jpeg") else ".png"


@dataclass
class Job:
    source: Path
    target: Path
    size: tuple[int, int] = (0, 0)  # (width, height) it is translated at


@dataclass
class TranslateReport:
    translated: int = 0
    tiled: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def translate_files(
    generator: Generator,
    jobs: list[Job],
    *,
    size: tuple[int, int] | int | None = None,
    batch_size: int = 4,
    tiling: Tiling = Tiling(),
    quality: int = 95,
    on_image: Callable[[Job], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> TranslateReport:
    """Translate every job's file into its target. Images of one size are batched together; large ones are tiled.

    An unreadable image is recorded in the report (and skipped); every other error stops.
    """
    import time

    started = time.perf_counter()
    report = TranslateReport()
    groups: dict[tuple[int, int], list[Job]] = {}
    tiled: list[Job] = []
    for job in jobs:
        try:
            job.size = output_size(*image_size(job.source), size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.failed.append(f"{job.source}: cannot read: {exc}")
            continue
        (tiled if tiling.applies(job.size[1], job.size[0]) else groups.setdefault(job.size, [])).append(job)
    for same_size in groups.values():
        for first in range(0, len(same_size), batch_size):
            batch_jobs, images = [], []
            for job in same_size[first : first + batch_size]:
                try:
                    images.append(read_image(job.source, generator.in_channels, job.size))
                    batch_jobs.append(job)
                except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                    report.failed.append(f"{job.source}: cannot read: {exc}")
            if not images:
                continue
            results = to_uint8(translate_batch(generator, to_unit(torch.stack(images)))).cpu()
            for job, result in zip(batch_jobs, results, strict=True):
                write_image(result, job.target, quality)
                report.translated += 1
                if on_image is not None:
                    on_image(job)
    for job in tiled:
        try:
            image = read_image(job.source, generator.in_channels, job.size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.failed.append(f"{job.source}: cannot read: {exc}")
            continue
        result = translate_tiled(generator, image, tiling, batch_size, on_tile)
        del image
        write_image(result, job.target, quality)
        report.translated += 1
        report.tiled += 1
        if on_image is not None:
            on_image(job)
    report.seconds = time.perf_counter() - started
    return report


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
    from safetensors.torch import save

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
        import onnx  # noqa: F401 (the exporters need it)
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
        from torch.export import Dim

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
