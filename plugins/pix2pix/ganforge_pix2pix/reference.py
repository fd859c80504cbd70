"""U-Net generators saved by the pix2pix authors' PyTorch implementation (pytorch-CycleGAN-and-pix2pix).

That implementation saves the generator as a plain state dict of its U-Net, whose nesting the core's
``unet`` generator (:class:`~ganforge.builtins.networks.UnetGenerator`) builds with the same keys:
``model.model.0.weight`` is the outermost 4x4 down-sampling convolution, ``model.model.1.model.1`` the
next level's, then ``.model.3`` per level inward; batch norm (the pix2pix default) leaves the
convolutions before it without a bias. What this module adds:

- it reads the generator's shape from the tensors: input channels and ``ngf`` from the first
  convolution, output channels from the outermost transposed convolution, the number of levels
  (``num_downs``: 8 for ``unet_256``) from the nesting depth, and the norm from what the norm layers
  hold (running statistics: batch norm; a scale alone: instance norm with affine; nothing: instance);
- it drops a ``module.`` prefix (``DataParallel``) and fills in batch norm's ``num_batches_tracked``
  counters, which files written by PyTorch 0.4.0 and older do not hold (they count training steps and
  play no part in the output).

Nothing here opens a file: ganforge hands over tensors it has already read safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ganforge.errors import CheckpointError

#: The name users give with ``--format``.
FORMAT = "reference_unet"

_FIRST = "model.model.0.weight"


def level_prefix(level: int) -> str:
    """State-dict prefix of the sequential of U-Net level ``level`` (0 = outermost)."""
    if level == 0:
        return "model.model"
    return "model.model.1" + ".model.3" * (level - 1) + ".model"


def _down_key(level: int) -> str:
    return _FIRST if level == 0 else f"{level_prefix(level)}.1.weight"


def looks_like_reference_unet(state: Mapping[str, Any]) -> bool:
    """Detection: a 4x4 first convolution at ``model.model.0`` and a nested level at ``model.model.1.model``."""
    first = state.get(_FIRST, state.get(f"module.{_FIRST}"))
    return (
        torch.is_tensor(first)
        and first.dim() == 4
        and tuple(first.shape[2:]) == (4, 4)
        and any(
            isinstance(key, str) and key.removeprefix("module.").startswith("model.model.1.model.")
            for key in state
        )
    )


def infer_spec(tensors: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """The ``unet`` generator spec that these tensors fit, read from their shapes."""
    first = tensors.get(_FIRST)
    if first is None or first.dim() != 4 or tuple(first.shape[2:]) != (4, 4):
        found = ", ".join(sorted(tensors)[:6]) or "no tensors"
        raise CheckpointError(
            f"{source}: not a reference U-Net generator: no 4x4 convolution '{_FIRST}' (keys: {found})"
        )
    levels = 1
    while _down_key(levels) in tensors:
        levels += 1
    up = tensors.get("model.model.3.weight")
    if up is None or up.dim() != 4 or tuple(up.shape[2:]) != (4, 4):
        raise CheckpointError(
            f"{source}: a reference U-Net's outermost level ends in a 4x4 transposed convolution "
            "'model.model.3.weight', which the file does not hold (resize-convolution U-Nets are not this format)"
        )
    norm_keys = [key for key in tensors if key.startswith(f"{level_prefix(1)}.2.")]
    if any(key.endswith(".running_mean") for key in norm_keys):
        norm, affine = "batch", f"{level_prefix(1)}.2.weight" in tensors
    else:
        norm, affine = "instance", f"{level_prefix(1)}.2.weight" in tensors
    return {
        "type": "unet",
        "in_channels": int(first.shape[1]),
        "out_channels": int(up.shape[1]),
        "ngf": int(first.shape[0]),
        "num_downs": levels,
        "upsample": "transpose",
        "norm": norm,
        "norm_affine": affine,
    }


def clean_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, without a ``module.`` prefix; missing batch-norm step counters filled in."""
    tensors = {
        key.removeprefix("module."): value
        for key, value in state.items()
        if isinstance(key, str) and torch.is_tensor(value)
    }
    for key in [k for k in tensors if k.endswith(".running_mean")]:
        counter = key.removesuffix("running_mean") + "num_batches_tracked"
        tensors.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return tensors


def load_reference_unet(
    state: Mapping[str, Any], source: str, named: bool
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(spec, state_dict)`` for a reference U-Net file; ``None`` if it is not one (and not ``named``).

    Keys that do not fit the inferred network are listed by the core's strict load.
    """
    if not named and not looks_like_reference_unet(state):
        return None
    tensors = clean_state(state)
    return infer_spec(tensors, source), tensors
