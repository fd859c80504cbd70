"""The hub folder: a model's generators as a folder to publish on the Hugging Face Hub.

``ganforge export SOURCE --to hub-folder --out DIR`` writes three files, and ganforge reads the
folder back, as a local path or as ``hf://owner/repo`` once uploaded:

- ``model.safetensors``: every exported net's weights, keyed ``<net>.<parameter>`` as in the
  model's own state dict (so ``--init-from`` can start a run from them); its metadata holds the
  marker and the whole config, so the file alone is readable too;
- ``config.json``: the marker, versions, each net's generator spec (type plus every param), plugin,
  channels and size multiple, the model's translation directions, and an excerpt of the training
  recipe;
- ``README.md``: a model card (YAML front matter the Hub reads, then what the model is and how to
  run it).

Nothing in the folder is a pickle or a program: tensors and text only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors.torch import save

from ganforge._version import __version__
from ganforge.errors import CheckpointError

HUB_FORMAT = "ganforge.hub-folder"
HUB_FORMAT_VERSION = "1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, CARD)


def is_hub_folder(path: Path) -> bool:
    """``path`` is a folder with a ``config.json`` that carries the hub-folder marker."""
    config = path / CONFIG
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == HUB_FORMAT


def read_config(path: Path) -> dict[str, Any]:
    """A hub folder's ``config.json``, its version checked."""
    try:
        data = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG}: unreadable: {exc}") from None
    return check_config(data, path / CONFIG)


def check_config(data: Any, where: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != HUB_FORMAT:
        raise CheckpointError(f"{where}: not a ganforge hub folder config (no '{HUB_FORMAT}' marker)")
    if str(data.get("format_version")) != HUB_FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: hub folder format {data.get('format_version')} written by ganforge "
            f"{data.get('ganforge_version')}; this ganforge ({__version__}) reads format {HUB_FORMAT_VERSION}"
        )
    nets = data.get("nets")
    if not isinstance(nets, dict) or not nets or not all(isinstance(v, dict) for v in nets.values()):
        raise CheckpointError(f"{where}: its 'nets' table is missing or empty")
    return data


def config_from_metadata(metadata: Mapping[str, str], where: Path) -> dict[str, Any]:
    """The config a hub folder's ``model.safetensors`` carries in its metadata."""
    try:
        data = json.loads(metadata["config"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{where}: its metadata has no readable 'config'") from None
    return check_config(data, where)


def net_state(tensors: Mapping[str, torch.Tensor], net: str) -> dict[str, torch.Tensor]:
    """One net's tensors (``<net>.`` prefix removed)."""
    prefix = f"{net}."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def make_config(
    nets: Mapping[str, Mapping[str, Any]],
    directions: list[dict[str, str]],
    model_type: str | None,
    training: Mapping[str, Any] | None,
    source: str,
) -> dict[str, Any]:
    return {
        "format": HUB_FORMAT,
        "format_version": HUB_FORMAT_VERSION,
        "ganforge_version": __version__,
        "model_type": model_type,
        "nets": {name: dict(info) for name, info in nets.items()},
        "directions": directions,
        "training": dict(training) if training else None,
        "exported_from": source,
    }


def weights_bytes(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> bytes:
    """``model.safetensors``: the tensors (on the CPU, contiguous) with the marker and config as metadata."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    metadata = {
        "format": HUB_FORMAT,
        "format_version": HUB_FORMAT_VERSION,
        "config": json.dumps(config, sort_keys=True),
    }
    return save(tensors, metadata=metadata)


def model_card(config: Mapping[str, Any], repo_hint: str, license_name: str) -> str:
    """``README.md``: YAML front matter for the Hub, then what the model is and how to use it."""
    model_type = config.get("model_type")
    tags = ["ganforge", "image-to-image", "gan", *([model_type] if model_type else [])]
    lines = [
        "---",
        "library_name: ganforge",
        f"license: {license_name}",
        "pipeline_tag: image-to-image",
        "tags:",
        *(f"- {tag}" for tag in dict.fromkeys(tags)),
        "---",
        "",
        f"# {repo_hint}",
        "",
    ]
    kind = f"a {model_type} model" if model_type else "an image-to-image generator"
    lines.append(
        f"Generator weights of {kind}, exported by ganforge {config.get('ganforge_version')} "
        f"(hub folder format {config.get('format_version')}) from `{config.get('exported_from')}`."
    )
    lines += ["", "## Nets and directions", ""]
    directions = config.get("directions") or []
    if directions:
        lines += ["| direction | from | to | net |", "|---|---|---|---|"]
        lines += [f"| `{d['name']}` | {d['source']} | {d['target']} | `{d['net']}` |" for d in directions]
        lines.append("")
    lines += [
        "| net | generator | input channels | output channels | sides a multiple of |",
        "|---|---|---|---|---|",
    ]
    for name, info in config["nets"].items():
        spec = info.get("generator") or {}
        params = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "type")
        lines.append(
            f"| `{name}` | `{spec.get('type')}` ({params}) | {info.get('in_channels')} | "
            f"{info.get('out_channels', '?')} | {info.get('size_multiple')} |"
        )
    plugins = sorted({str(info["plugin"]) for info in config["nets"].values() if info.get("plugin")})
    lines += ["", "## Use with ganforge", "", "```console"]
    lines.append(f"$ ganforge translate hf://{repo_hint} photo.jpg --out out/")
    for d in directions[1:]:
        lines.append(f"$ ganforge translate hf://{repo_hint} photo.jpg --out out/ --direction {d['name']}")
    lines += ["```", "", "```python", "import ganforge", "", f'generator = ganforge.load("hf://{repo_hint}")']
    lines += ['ganforge.translate(generator, "photos/", "translated/")', "```", ""]
    if plugins:
        lines += [f"The generators' components come from the ganforge plugin(s): {', '.join(plugins)}.", ""]
    lines += [
        (
            "The folder holds `model.safetensors` (tensors only, keyed `<net>.<parameter>`), `config.json` "
            "(what ganforge rebuilds the nets from) and this card; no pickles and no code."
        ),
        "",
    ]
    training = config.get("training")
    if training:
        try:
            text, language = tomli_w.dumps(dict(training)), "toml"
        except (TypeError, ValueError):  # a value TOML cannot hold (None): JSON then
            text, language = json.dumps(training, indent=2), "json"
        lines += ["## Training recipe (excerpt)", "", f"```{language}", text.rstrip(), "```", ""]
    return "\n".join(lines)
