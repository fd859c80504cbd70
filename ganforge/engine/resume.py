"""Continuing a run, or starting one from another run's weights, with checks that say what differs."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge._version import __version__
from ganforge.engine.checkpoint import load_checkpoint
from ganforge.engine.rundir import RunDir
from ganforge.errors import CheckpointError, GanforgeError
from ganforge.recipe import validate_recipe

#: Recipe keys that may change when a run is resumed (they do not change what is being trained).
MAY_CHANGE_ON_RESUME = (
    "description",
    "train.epochs",
    "train.device",
    "train.precision",
    "train.channels_last",
    "train.compile",
    "train.cuda_graphs",
    "train.backend.",
    "train.conv_algorithm",  # what train.backend was called before
    "train.cudnn_benchmark",
    "train.num_workers",
    "train.log_every",
    "train.deterministic",
    "train.dist_timeout",
    "train.optimizer.implementation",  # loop, foreach or fused: the same update to fp32 rounding
    "train.optimizers.*.implementation",
    "train.ema.",  # the average of the generators is kept beside the trained weights, not trained
    "data.on_corrupt",
    "eval.",
    "output.",
    "callbacks",  # loggers and trackers watch a run; they do not change it
)

REQUIRED_KEYS = ("recipe", "epoch", "step", "steps_per_epoch", "model", "optimizers", "schedulers", "rng")


def find_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file, or a run directory's newest readable one (``latest.pt`` first)."""
    if path.is_file():
        return path, load_checkpoint(path)
    folder = path / RunDir.CHECKPOINTS
    if not folder.is_dir():
        raise CheckpointError(f"{path}: neither a checkpoint file nor a run directory with {RunDir.CHECKPOINTS}/")
    candidates = [folder / "latest.pt", *sorted(folder.glob("epoch_*.pt"), reverse=True)]
    problems = []
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate, load_checkpoint(candidate)
            except CheckpointError as exc:
                problems.append(str(exc))
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"{path}: no readable checkpoint in {folder}{detail}")


def run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == RunDir.CHECKPOINTS else checkpoint.parent


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: checkpoint X, recipe Y`` for every value that differs and may not change on resume."""
    a, b = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key) and not any(
            key == allowed
            or (allowed.endswith(".") and key.startswith(allowed))
            or ("*" in allowed and fnmatch.fnmatchcase(key, allowed))
            for allowed in MAY_CHANGE_ON_RESUME
        ):
            lines.append(f"{key}: checkpoint {a.get(key, '(unset)')!r}, recipe {b.get(key, '(unset)')!r}")
    return lines


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """The saved recipe with today's defaults filled in (a parameter added since is not a change)."""
    try:
        return validate_recipe(dict(saved)).recipe.to_dict()
    except GanforgeError:
        return saved


def check_compatible(
    state: dict[str, Any], source: Path, current_recipe: dict[str, Any], allow_version_mismatch: bool
) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{source}: incomplete checkpoint, missing {', '.join(missing)}")
    version = state.get("ganforge_version")
    if version != __version__ and not allow_version_mismatch:
        raise CheckpointError(
            f"{source}: written by ganforge {version}, this is ganforge {__version__}; "
            "pass --allow-version-mismatch to resume anyway"
        )
    saved_type = state["recipe"].get("model", {}).get("type")
    if saved_type != current_recipe["model"]["type"]:
        raise CheckpointError(
            f"{source}: holds a '{saved_type}' model, the recipe asks for '{current_recipe['model']['type']}'"
        )
    differences = recipe_differences(_with_defaults(state["recipe"]), current_recipe)
    if differences:
        raise CheckpointError(
            f"{source}: the recipe differs from the checkpoint's in what is trained: "
            + "; ".join(differences)
            + " (to start a new run from these weights use --init-from)"
        )


def init_from(
    model: nn.Module,
    source: Path,
    only: Sequence[str] = (),
    state: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> str:
    """Load matching weights (all nets, or those named in ``only``) from a checkpoint into ``model``.

    ``state``: the weights, keyed like the model's state dict, when they come from elsewhere than a
    checkpoint (a hub folder's generators); ``label``: how the report names the source.
    Returns a one-line report. Tensors whose name or shape does not fit are left as initialised;
    if nothing fits, that is an error.
    """
    state = dict(state) if state is not None else load_checkpoint(source)["model"]
    own = model.state_dict()
    if only:
        unknown = sorted({net for net in only if not any(k.startswith(f"{net}.") for k in own)})
        if unknown:
            nets = sorted({k.split(".")[0] for k in own})
            raise GanforgeError(f"--init-only {', '.join(unknown)}: not in this model; its nets: {', '.join(nets)}")
        state = {k: v for k, v in state.items() if any(k.startswith(f"{net}.") for net in only)}
    state = {k: v for k, v in state.items() if torch.is_tensor(v)}  # weights, not pools or other state
    fitting = {k: v for k, v in state.items() if k in own and torch.is_tensor(own[k]) and own[k].shape == v.shape}
    if not fitting:
        raise CheckpointError(
            f"{label or source}: no weights fit this model (names or shapes differ everywhere)"
        )
    model.load_state_dict(fitting, strict=False)
    skipped = len(state) - len(fitting)
    nets = sorted({k.split(".")[0] for k in fitting})
    return (
        f"initialised {len(fitting)} tensors ({', '.join(nets)}) from {label or source}"
        + (f"; {skipped} did not fit and were skipped" if skipped else "")
    )
