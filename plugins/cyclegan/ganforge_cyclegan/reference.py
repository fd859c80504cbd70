"""Generators saved by the authors' PyTorch implementation (pytorch-CycleGAN-and-pix2pix).

That implementation saves each generator as a plain state dict of its ResNet generator: the
``latest_net_G_A.pth`` files of a run and the published pretrained ``<name>.pth`` files. Its layer
list is the one :class:`~ganforge.builtins.networks.ResnetGenerator` builds, so the keys are the same
(``model.1.weight``, ``model.10.conv_block.1.weight``, ``model.19.weight`` for the first transposed
convolution of a 9-block net). What this module adds:

- it drops what the network does not have: instance-norm ``running_mean`` / ``running_var`` /
  ``num_batches_tracked`` (files from PyTorch < 0.4, where instance norm tracked them by default and
  the authors' loader deleted them too) and a ``module.`` prefix (a ``DataParallel`` wrapper);
- it renumbers the residual blocks of a net built with dropout (``conv_block.5`` is a ``Dropout``
  there, which does nothing at inference, so the second convolution is ``conv_block.6``);
- it reads the generator's shape from the tensors: input and output channels and ``ngf`` from the
  first and last 7x7 convolutions, the number of residual blocks from the ``conv_block`` indices, and
  whether instance norm has a scale and shift from the presence of ``model.2.weight``.

Nothing here opens a file: ganforge hands over tensors it has already read safely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ganforge.builtins.networks import ResnetGenerator
from ganforge.errors import CheckpointError

#: The name users give with ``--format``.
FORMAT = "reference"

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(.+)$")
_SHOWN = 6  # keys listed in an error, at most


def clean_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, without a ``module.`` prefix or running statistics; dropout blocks renumbered."""
    tensors = {}
    for key, value in state.items():
        if not (isinstance(key, str) and torch.is_tensor(value)):
            continue
        key = key.removeprefix("module.")
        if key.rsplit(".", 1)[-1] in _RUNNING_STATS:
            continue
        tensors[key] = value
    if _has_dropout(tensors):
        tensors = {_without_dropout(key): value for key, value in tensors.items()}
    return tensors


def _has_dropout(tensors: Mapping[str, torch.Tensor]) -> bool:
    """With dropout the second 3x3 convolution of a block is ``conv_block.6`` (a 4-d weight)."""
    return any(
        (m := _BLOCK_KEY.match(key)) and m.group(2) == "6" and m.group(3) == "weight" and value.dim() == 4
        for key, value in tensors.items()
    )


def _without_dropout(key: str) -> str:
    m = _BLOCK_KEY.match(key)
    if m is None or int(m.group(2)) < 5:
        return key
    return f"model.{m.group(1)}.conv_block.{int(m.group(2)) - 1}.{m.group(3)}"


def looks_like_reference(state: Mapping[str, Any]) -> bool:
    """Detection: a 7x7 first convolution at ``model.1`` and residual blocks under ``model.N.conv_block``."""
    first = state.get("model.1.weight", state.get("module.model.1.weight"))
    return (
        torch.is_tensor(first)
        and first.dim() == 4
        and tuple(first.shape[2:]) == (7, 7)
        and any(isinstance(key, str) and ".conv_block." in key for key in state)
    )


def infer_spec(tensors: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """The ``resnet`` generator spec that these tensors fit, read from their shapes."""
    first = tensors.get("model.1.weight")
    if first is None or first.dim() != 4 or tuple(first.shape[2:]) != (7, 7):
        found = ", ".join(sorted(tensors)[:_SHOWN]) or "no tensors"
        raise CheckpointError(
            f"{source}: not a reference ResNet generator: no 7x7 convolution 'model.1.weight' (keys: {found})"
        )
    ngf, in_channels = int(first.shape[0]), int(first.shape[1])
    blocks = sorted({int(m.group(1)) for key in tensors if (m := _BLOCK_KEY.match(key))})
    n_blocks = len(blocks)
    if blocks and blocks != list(range(10, 10 + n_blocks)):
        raise CheckpointError(
            f"{source}: residual blocks at model.{blocks[0]}..model.{blocks[-1]} are not numbered "
            f"model.10 onwards without gaps, as in the reference ResNet generator"
        )
    last = tensors.get(f"model.{17 + n_blocks}.weight")
    if last is None or last.dim() != 4:
        raise CheckpointError(
            f"{source}: with {n_blocks} residual blocks the last convolution should be "
            f"'model.{17 + n_blocks}.weight', which the file does not hold"
        )
    return {
        "type": "resnet",
        "in_channels": in_channels,
        "out_channels": int(last.shape[0]),
        "ngf": ngf,
        "n_blocks": n_blocks,
        "upsample": "transpose",
        "norm_affine": "model.2.weight" in tensors,
    }


def check_fit(tensors: Mapping[str, torch.Tensor], spec: Mapping[str, Any], source: str) -> None:
    """Compare names and shapes with the network ``spec`` describes; list what does not fit."""
    with torch.device("meta"):  # shapes only, no memory, no initialisation cost
        expected = ResnetGenerator(
            spec["in_channels"],
            spec["out_channels"],
            spec["ngf"],
            spec["n_blocks"],
            "transpose",
            spec["norm_affine"],
        ).state_dict()
    missing = sorted(set(expected) - set(tensors), key=_natural)
    unexpected = sorted(set(tensors) - set(expected), key=_natural)
    wrong = [
        f"{key} {tuple(tensors[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(tensors), key=_natural)
        if tensors[key].shape != expected[key].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            problems.append(f"{label}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        shape = f"ngf {spec['ngf']}, {spec['n_blocks']} blocks"
        raise CheckpointError(
            f"{source}: these keys do not fit a reference ResNet generator ({shape}): " + "; ".join(problems)
        )


def _natural(key: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in key.split(".")]


def load_reference_generator(
    state: Mapping[str, Any], source: str, named: bool
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(spec, state_dict)`` for a reference generator file; ``None`` if it is not one (and not ``named``).

    ``named``: the user asked for this format, so a file that does not fit is an error that says why.
    """
    if not named and not looks_like_reference(state):
        return None
    tensors = clean_state(state)
    spec = infer_spec(tensors, source)
    check_fit(tensors, spec, source)
    return spec, tensors
