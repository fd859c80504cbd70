"""Reading weight files safely: what a file is, from its first bytes, and its tensors without running code."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ganforge.errors import CheckpointError

#: Formats ganforge reads itself; plugins add their own names through ``load_generator_weights``.
CORE_FORMATS = ("auto", "checkpoint", "safetensors", "torchscript", "onnx")
#: The metadata marker of a safetensors generator export.
EXPORT_FORMAT = "ganforge.generator"
EXPORT_FORMAT_VERSION = "1"
CHECKPOINT_FORMAT = "ganforge.checkpoint"


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
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types)
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None
    return tensors, metadata


#: Keys under which training scripts commonly nest a state dict (``{"state_dict": {...}, "epoch": 3}``).
STATE_CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "params_ema", "params")


def _tensor_state(data: Any) -> dict[str, torch.Tensor] | None:
    """The tensors keyed by name at the top of ``data``, else under the first container key holding some."""
    if not isinstance(data, Mapping):
        return None
    for inner in (data, *(data.get(key) for key in STATE_CONTAINERS)):
        if isinstance(inner, Mapping):
            state = {k: v for k, v in inner.items() if isinstance(k, str) and torch.is_tensor(v)}
            if state:
                return state
    return None
