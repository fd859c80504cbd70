"""Loading a generator from any file it may come in (see the package docstring)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge._version import __version__
from ganforge.engine.channels import input_channels
from ganforge.engine.checkpoint import FORMAT_VERSION
from ganforge.engine.ema import WEIGHT_CHOICES, checkpoint_weights
from ganforge.engine.resume import find_checkpoint
from ganforge.errors import CheckpointError, GanforgeError, PluginError, RecipeError, did_you_mean
from ganforge.inference.files import (
    CHECKPOINT_FORMAT,
    CORE_FORMATS,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    _tensor_state,
    read_pickle,
    read_safetensors,
    sniff,
)
from ganforge.inference.hubfolder import (
    HUB_FORMAT,
    WEIGHTS,
    config_from_metadata,
    is_hub_folder,
    net_state,
    read_config,
)
from ganforge.inference.zoo import Resolved, is_bare_name, resolve_source
from ganforge.model import Direction, size_multiple
from ganforge.plugins import PluginSet, collect_registries, make_plugin_manager
from ganforge.recipe import apply_overrides, validate_recipe
from ganforge.registry import Registries

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
    net: str | None = None  # the model's net this generator is, for a ganforge checkpoint
    weights: str | None = None  # a checkpoint's "ema" (averaged) or "raw" (trained) weights
    plugins: list[str] = field(default_factory=list)  # plugin modules or files it was built with
    notes: list[str] = field(default_factory=list)
    direction: Direction | None = None  # the direction it translates, for a ganforge checkpoint
    directions: list[Direction] = field(default_factory=list)  # all its checkpoint's model declares

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.run(batch)

    @property
    def size_multiple(self) -> int:
        """The multiple the net's input sides must be (its module's ``size_multiple``; 1 if none)."""
        return size_multiple(self.module)

    @property
    def has_python_module(self) -> bool:
        return self.module is not None and not isinstance(self.module, torch.jit.ScriptModule)


# -------------------------------------------------------------------------------------------------
# Loading a generator
# -------------------------------------------------------------------------------------------------


def load_generator(
    path: str | Path,
    *,
    direction: str | None = None,
    net: str | None = None,
    weights_format: str = "auto",
    device: torch.device | str = "cpu",
    plugins: Sequence[str] = (),
    weights: str = "auto",
) -> Generator:
    """Load a generator from ``path`` (see the module docstring for the kinds of file).

    ``path`` may also be the name of a pretrained model a plugin registers (and not an existing path):
    its file in the model cache is loaded, downloaded first if need be (:mod:`ganforge.inference.zoo`).

    ``direction`` (one the checkpoint's model declares; default: its first)
    or ``net`` (one of its exported nets) picks the net of a ganforge checkpoint; other files hold one
    generator. ``weights_format`` is ``auto`` (detect), a core format or a plugin's format
    name. ``plugins`` are extra plugin modules or files (a recipe's plugins are loaded as well).
    ``weights`` picks a ganforge checkpoint's weights: ``auto`` (the averaged (EMA) generators when the
    run kept them, else the trained ones), ``ema`` or ``raw`` (the trained ones).
    """
    if weights not in WEIGHT_CHOICES:
        raise GanforgeError(f"--weights '{weights}': use {', '.join(WEIGHT_CHOICES)}")
    resolved = resolve_source(path, plugins)
    if weights_format == "auto" and resolved.weights_format is not None:
        weights_format = resolved.weights_format
    try:
        generator = _load_path(
            resolved.path, direction, net, weights_format, torch.device(device), plugins, weights
        )
    except CheckpointError as exc:
        if resolved.hub is not None:
            raise CheckpointError(*exc.lines[:-1], f"{resolved.hub}: {exc.lines[-1]}") from None
        if resolved.model is None:
            raise
        hint = f"; it is the cached download of '{resolved.model.name}': delete it to download it again"
        raise CheckpointError(*exc.lines[:-1], exc.lines[-1] + hint) from None
    if resolved.hub is not None:
        generator.label = f"{resolved.hub} ({generator.label})"
    if resolved.model is not None:
        model = resolved.model
        generator.label = f"{model.name} ({model.translates or model.summary}; {generator.label})"
        fetched = resolved.fetched
        if fetched is not None and not fetched.cached:
            generator.notes.append(f"downloaded {model.name} from {model.url} to {resolved.path}")
    return generator


@dataclass
class NetBundle:
    """Every generator a source offers (what a hub folder export holds), with the directions that use them."""

    nets: dict[str, Generator]
    directions: list[Direction]
    source: str  # as the user named it
    model_type: str | None = None
    training: dict[str, Any] | None = None  # an excerpt of the training recipe, when the source has one


def load_nets(
    source: str | Path,
    *,
    direction: str | None = None,
    net: str | None = None,
    weights_format: str = "auto",
    plugins: Sequence[str] = (),
) -> NetBundle:
    """All exported nets of a checkpoint, run directory or hub folder (only the one of ``direction`` or
    ``net`` when given), on the CPU; any other source's one generator, named by its net or ``generator``."""
    resolved = resolve_source(source, plugins)
    path = resolved.path
    cpu = torch.device("cpu")
    try:
        bundle = _load_nets(resolved, direction, net, weights_format, cpu, plugins)
    except CheckpointError as exc:
        if resolved.hub is None:
            raise
        raise CheckpointError(*exc.lines[:-1], f"{resolved.hub}: {exc.lines[-1]}") from None
    # the model card names it: an hf:// source as it is, a local one by its name only (no local folders)
    bundle.source = str(resolved.hub) if resolved.hub is not None else (Path(source).resolve().name)
    if not bundle.nets:
        raise CheckpointError(f"{path}: no generator to export")
    return bundle


def _load_nets(
    resolved: Resolved,
    direction: str | None,
    net: str | None,
    weights_format: str,
    device: torch.device,
    plugins: Sequence[str],
) -> NetBundle:
    path = resolved.path
    picked = direction is not None or net is not None
    hub_config = None
    if path.is_dir() and is_hub_folder(path) and weights_format in ("auto", "checkpoint"):
        hub_config, (tensors, _) = read_config(path), read_safetensors(path / WEIGHTS)
    elif path.is_file() and sniff(path) == "safetensors" and weights_format in ("auto", "safetensors"):
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") == HUB_FORMAT:
            hub_config = config_from_metadata(metadata, path)
    if hub_config is not None:
        directions = hub_directions(hub_config)
        if picked:
            names = [_hub_choice(path, hub_config, direction, net)]
        else:
            names = list(hub_config["nets"])
        nets = {n: _hub_net(path, hub_config, tensors, n, device, plugins) for n in names}
        return NetBundle(
            nets,
            [d for d in directions if d.net in nets],
            str(path),
            hub_config.get("model_type"),
            hub_config.get("training"),
        )
    checkpoint = None
    if path.is_dir() and weights_format in ("auto", "checkpoint"):
        checkpoint, data = find_checkpoint(path)
    elif path.is_file() and sniff(path) == "pickle" and weights_format in ("auto", "checkpoint"):
        data = read_pickle(path)
        if isinstance(data, Mapping) and data.get("format") == CHECKPOINT_FORMAT:
            checkpoint = path
    if checkpoint is not None:
        model, refs, run_dir = _checkpoint_model(checkpoint, data, plugins)
        if picked:
            chosen, _ = choose_net(model, direction, net, str(checkpoint))
            names = [chosen]
        else:
            names = model.exported_nets()
        nets = {n: _checkpoint_net(checkpoint, data, model, n, None, device, refs, run_dir) for n in names}
        recipe = data.get("recipe") if isinstance(data.get("recipe"), Mapping) else {}
        model_spec = recipe.get("model") if isinstance(recipe.get("model"), Mapping) else {}
        return NetBundle(
            nets,
            [d for d in model.directions() if d.net in nets],
            str(path),
            model_spec.get("type"),
            training_excerpt(recipe),
        )
    generator = _load_path(path, direction, net, weights_format, device, plugins)
    return NetBundle({generator.net or "generator": generator}, [], str(path))


def training_excerpt(recipe: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a model card shows of a training recipe: name, seed, data (without its folders), model, and
    the training length, batch and optimiser."""
    if not recipe:
        return None

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items() if v is not None}
        return value

    excerpt: dict[str, Any] = {k: recipe[k] for k in ("name", "description", "seed") if k in recipe}
    data = recipe.get("data") if isinstance(recipe.get("data"), Mapping) else {}
    local = ("root", "path", "dir", "folder", "file")
    excerpt["data"] = {k: v for k, v in data.items() if not any(word in k for word in local)}
    if isinstance(recipe.get("model"), Mapping):
        excerpt["model"] = recipe["model"]
    train = recipe.get("train") if isinstance(recipe.get("train"), Mapping) else {}
    excerpt["train"] = {
        k: train[k] for k in ("epochs", "batch_size", "precision", "optimizer", "scheduler") if k in train
    }
    return plain(excerpt)


def _load_path(
    path: Path,
    direction: str | None,
    net: str | None,
    weights_format: str,
    device: torch.device,
    plugins: Sequence[str],
    weights: str = "auto",
) -> Generator:
    """:func:`load_generator` of a path (names resolved)."""
    if path.is_dir():
        if weights_format not in ("auto", "checkpoint"):
            raise CheckpointError(f"{path}: is a folder; --format {weights_format} needs a file")
        if is_hub_folder(path):
            tensors, _ = read_safetensors(path / WEIGHTS)
            return _from_hub(path, read_config(path), tensors, direction, net, device, plugins)
        checkpoint, data = find_checkpoint(path)
        return _from_checkpoint(checkpoint, data, direction, net, device, plugins, weights)
    if not path.is_file():
        hint = " (nor a pretrained model's name: see ganforge models list)" if is_bare_name(path) else ""
        raise CheckpointError(f"{path}: no such file{hint}")
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
    if weights != "auto":
        single.append(f"{path.name} holds one set of weights; --weights applies to ganforge checkpoints only")
    if kind == "torchscript":
        _only_core(weights_format, kind, path)
        generator = _from_torchscript(path, device)
    elif kind == "onnx" or weights_format == "onnx":
        _only_core(weights_format, "onnx", path)
        generator = _from_onnx(path, device)
    elif kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") == HUB_FORMAT and weights_format in ("auto", "safetensors"):
            config = config_from_metadata(metadata, path)
            return _from_hub(path, config, tensors, direction, net, device, plugins)
        if metadata.get("format") == EXPORT_FORMAT and weights_format in ("auto", "safetensors"):
            generator = _from_export(path, tensors, metadata, device, plugins)
        elif weights_format == "safetensors":
            raise CheckpointError(
                f"{path}: a safetensors file without ganforge metadata; name its format with --format "
                "(a plugin's: see ganforge plugins)"
            )
        else:
            generator = _from_plugins(path, tensors, weights_format, device, plugins)
    elif kind == "pickle":
        data = read_pickle(path)
        if isinstance(data, Mapping) and data.get("format") == CHECKPOINT_FORMAT:
            if weights_format not in ("auto", "checkpoint"):
                raise CheckpointError(f"{path}: a ganforge checkpoint, not format '{weights_format}'")
            if data.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint format {data.get('format_version')} written by ganforge "
                    f"{data.get('ganforge_version')}; this ganforge ({__version__}) reads format {FORMAT_VERSION}"
                )
            return _from_checkpoint(path, data, direction, net, device, plugins, weights)
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
    path: str | Path,
    data: Mapping[str, Any],
    direction: str | None,
    net: str | None,
    device: torch.device,
    plugins: Sequence[str],
    weights: str = "auto",
) -> Generator:
    """Rebuild the checkpoint's model from its recipe, load its weights (``weights``: see
    :func:`load_generator`), and take the net of the direction (or the named net) the model declares."""
    model, refs, run_dir = _checkpoint_model(path, data, plugins)
    chosen, declared = choose_net(model, direction, net, str(path))
    return _checkpoint_net(path, data, model, chosen, declared, device, refs, run_dir, weights)


def _checkpoint_model(
    path: str | Path, data: Mapping[str, Any], plugins: Sequence[str]
) -> tuple[Any, list[str], Path]:
    """The checkpoint's model, rebuilt from its recipe (weights not loaded), with the plugin
    references it was built with and the run directory they are relative to."""
    path = Path(path)
    recipe = data.get("recipe") if isinstance(data.get("recipe"), Mapping) else {}
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    plugin_set = _plugin_set([*recipe.get("plugins", []), *plugins], run_dir)
    registries = collect_registries(plugin_set)
    try:
        spec = registries.resolve("model", recipe.get("model") or {}, "model")
    except RecipeError as exc:
        raise CheckpointError(*(f"{path} (its recipe): {line}" for line in exc.lines)) from None
    return spec.build(int(recipe.get("seed", 0))), [*recipe.get("plugins", []), *plugins], run_dir


def _checkpoint_net(
    path: str | Path,
    data: Mapping[str, Any],
    model: Any,
    chosen: str,
    declared: Direction | None,
    device: torch.device,
    refs: Sequence[str],
    run_dir: Path,
    weights: str = "auto",
) -> Generator:
    """The model's net ``chosen``, with the checkpoint's weights loaded (``weights``: see
    :func:`load_generator`), as a generator."""
    path = Path(path)
    model_state, which = checkpoint_weights(data, weights, path)
    state = {
        k[len(chosen) + 1 :]: v
        for k, v in model_state.items()
        if k.startswith(f"{chosen}.") and torch.is_tensor(v)
    }
    if not state:
        nets = sorted({k.split(".")[0] for k, v in model_state.items() if torch.is_tensor(v)})
        raise CheckpointError(
            f"{path}: no net '{chosen}' in this checkpoint (its nets: {', '.join(nets) or 'none'})"
        )
    module = getattr(model, chosen)
    if declared is None:  # a net named by --net: its spec from the direction that uses it, if one does
        declared = next((d for d in model.directions() if d.net == chosen), None)
    generator_spec = _plain_spec(declared.generator) if declared is not None else None
    load_strict(module, state, generator_spec or {"type": chosen}, f"{path} ({chosen})")
    epoch = data.get("epoch")
    shown = [f"epoch {epoch}"] if isinstance(epoch, int) else []
    shown += ["averaged (EMA) weights"] if which == "ema" else []
    label = f"{chosen} of {path.name}" + (f" ({', '.join(shown)})" if shown else "")
    spec_object = declared.generator if declared is not None else None
    plugin = spec_object.resolved.component.plugin if hasattr(spec_object, "resolved") else None
    generator = _module_generator(module, "checkpoint", path, device, generator_spec, plugin, label)
    generator.net = chosen
    generator.direction = declared
    generator.directions = list(model.directions())
    generator.weights = which
    # as found from the run directory, so whoever loads them again (a backend, an export's check) finds them
    generator.plugins = list(dict.fromkeys(_found_from(ref, run_dir) for ref in refs))
    return generator


def _found_from(ref: str, base: Path) -> str:
    """A plugin file named relative to ``base`` (else the working directory) as an absolute path;
    module names as they are."""
    if not (ref.endswith(".py") or "/" in ref):
        return ref
    for candidate in (base / ref, Path.cwd() / ref):
        if candidate.is_file():
            return str(candidate.resolve())
    return ref


def choose_net(
    model: Any, direction: str | None, net: str | None, source: str
) -> tuple[str, Direction | None]:
    """The net to translate with: the named one (among the model's exported nets), else the net of the
    named direction, else of the model's first direction. Returns it with its direction, if it has one."""
    directions: list[Direction] = model.directions()
    if net is not None:
        exported = model.exported_nets()
        if net not in exported:
            raise CheckpointError(
                f"{source}: no net '{net}' to translate with in this checkpoint "
                f"(its exported nets: {', '.join(exported) or 'none'})"
            )
        return net, next((d for d in directions if d.net == net), None)
    if not directions:
        raise CheckpointError(f"{source}: {type(model).__name__} declares no translation directions")
    if direction is None:
        return directions[0].net, directions[0]
    for d in directions:
        if d.matches(direction):
            return d.net, d
    names = [d.name for d in directions]
    listed = ", ".join(f"{d.name} ({d.source} -> {d.target})" for d in directions)
    raise GanforgeError(
        f"--direction '{direction}'{did_you_mean(direction, names)}; this model's directions: {listed}"
    )


def _plain_spec(spec: Any) -> dict[str, Any] | None:
    """A component spec as a recipe would write it (``type`` plus every param)."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    return {"type": spec.type, **spec.params.model_dump(mode="json", exclude_none=True)}


def _from_export(
    path: str | Path,
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


class _Declared:
    """A hub folder's declaration, answering like a model does (for :func:`choose_net`)."""

    def __init__(self, directions: list[Direction], nets: list[str]) -> None:
        self._directions, self._nets = directions, nets

    def directions(self) -> list[Direction]:
        return self._directions

    def exported_nets(self) -> list[str]:
        return self._nets


def hub_directions(config: Mapping[str, Any]) -> list[Direction]:
    """The translation directions a hub folder's config declares."""
    found = []
    for item in config.get("directions") or []:
        try:
            found.append(
                Direction(str(item["name"]), str(item["source"]), str(item["target"]), str(item["net"]))
            )
        except (KeyError, TypeError):
            raise CheckpointError(
                f"config.json: direction {item!r} lacks name, source, target or net"
            ) from None
    return found


def _from_hub(
    where: Path,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    direction: str | None,
    net: str | None,
    device: torch.device,
    plugins: Sequence[str],
) -> Generator:
    """One net of a hub folder (``where``: the folder, or its ``model.safetensors`` read alone)."""
    generator = _hub_net(where, config, tensors, _hub_choice(where, config, direction, net), device, plugins)
    if direction is not None and not hub_directions(config):
        generator.notes.append(f"{where.name} declares no translation directions; --direction does not apply")
    return generator


def _hub_choice(where: Path, config: Mapping[str, Any], direction: str | None, net: str | None) -> str:
    """The hub folder's net to translate with: as for a checkpoint (:func:`choose_net`); in a folder that
    declares no directions (a lone generator's), the named net or else its first."""
    nets = list(config["nets"])
    directions = hub_directions(config)
    if net is None and not directions:
        return nets[0]
    return choose_net(_Declared(directions, nets), direction, net, str(where))[0]


def _hub_net(
    where: Path,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    chosen: str,
    device: torch.device,
    plugins: Sequence[str],
) -> Generator:
    info = config["nets"][chosen]
    spec = info.get("generator")
    if not isinstance(spec, dict) or "type" not in spec:
        raise CheckpointError(f"{where}: net '{chosen}' has no generator spec in its config")
    state = net_state(tensors, chosen)
    if not state:
        raise CheckpointError(f"{where}: {WEIGHTS} holds no tensors of net '{chosen}'")
    plugin_set = _plugin_set(plugins, where if where.is_dir() else where.parent)
    try:
        module, plugin = build_generator(spec, state, plugin_set, f"{where} ({chosen})")
    except CheckpointError as exc:
        wanted = info.get("plugin")
        if wanted and wanted not in {p.name for p in plugin_set.plugins}:
            raise CheckpointError(
                *exc.lines, f"its net {chosen} needs plugin '{wanted}': load it with --plugin"
            ) from None
        raise
    generator = _module_generator(
        module, "hub-folder", where, device, spec, plugin, f"{chosen} of {where.name}"
    )
    generator.net = chosen
    generator.plugins = list(plugins)
    return generator


def _from_plugins(
    path: str | Path,
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
            "plugins add their own: see `ganforge plugins`)"
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
    load_strict(module, state, spec, source)
    return module, resolved.resolved.component.plugin


def load_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], spec: Mapping[str, Any], source: str
) -> None:
    """Load ``state`` into ``module`` with ``strict=True``, first listing what does not fit, if anything."""
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


def describe_spec(spec: Mapping[str, Any]) -> str:
    shown = [f"{k} {v}" for k, v in spec.items() if k != "type" and isinstance(v, (int, float, str, bool))][
        :5
    ]
    return f"{spec.get('type')}" + (f", {', '.join(shown)}" if shown else "")


def _module_generator(
    module: nn.Module,
    kind: str,
    path: str | Path,
    device: torch.device,
    spec: dict[str, Any] | None,
    plugin: str | None,
    label: str,
) -> Generator:
    module = module.to(device).eval().requires_grad_(False)
    in_channels = input_channels(module) or (int(spec.get("in_channels", 3)) if spec else 3)
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
    channels = input_channels(module) or 3
    return Generator(
        module, "torchscript", path, device, module, None, None, channels, f"{path.name} (TorchScript)"
    )


def _from_onnx(path: Path, device: torch.device) -> Generator:
    try:
        import onnxruntime as ort  # optional dependency (the [onnx] extra)
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
# A whole run, for evaluation
# -------------------------------------------------------------------------------------------------


@dataclass
class LoadedRun:
    model: Any
    recipe: Any
    registries: Registries
    checkpoint: Path
    epoch: int
    step: int
    weights: str = "raw"  # "ema": the generators hold their averaged weights


def load_run(
    path: str | Path, overrides: Sequence[str] = (), device: torch.device | str = "cpu", weights: str = "auto"
) -> LoadedRun:
    """A run directory or checkpoint (also as ``hf://``) -> its model (weights loaded, eval mode) and
    resolved recipe.

    ``weights``: ``auto`` (the generators' averaged (EMA) weights when the run kept them), ``ema`` or
    ``raw`` (the trained weights)."""
    resolved = resolve_source(path) if isinstance(path, str) else Resolved(path)
    if resolved.path.is_dir() and is_hub_folder(resolved.path):
        raise CheckpointError(
            f"{path}: a hub folder holds generators only; evaluation needs a run directory or checkpoint "
            "(its recipe names the dataset)"
        )
    checkpoint, state = find_checkpoint(resolved.path)
    saved = state.get("recipe")
    if not isinstance(saved, dict):
        raise GanforgeError(f"{checkpoint}: holds no recipe")
    try:
        loaded = validate_recipe(apply_overrides(saved, overrides), base_dir=Path.cwd())
    except GanforgeError as exc:
        raise type(exc)(*(f"{checkpoint} (its recipe): {line}" for line in exc.lines)) from None
    recipe = loaded.recipe
    model = recipe.model.build(recipe.seed)
    model_state, which = checkpoint_weights(state, weights, checkpoint)
    try:
        model.load_state_dict(model_state)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise GanforgeError(f"{checkpoint}: weights do not fit the recipe's model: {first}") from None
    model.to(device).eval()
    return LoadedRun(
        model,
        recipe,
        loaded.registries,
        checkpoint,
        int(state.get("epoch", 0)),
        int(state.get("step", 0)),
        which,
    )
