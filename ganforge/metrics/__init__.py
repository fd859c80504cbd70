"""Evaluation metrics: FID and KID on Inception features, and paired PSNR, SSIM and L1.

Every metric is a registered component (kind ``metric``, see :func:`ganforge.hookspecs.register_metrics`),
so a plugin adds one the same way. A metric object collects batches with ``update(real, fake)``
(both ``(N, C, H, W)`` in [-1, 1]; for a paired metric ``real[i]`` is the true counterpart of
``fake[i]``) and returns one number from ``compute()``.

Two optional attributes tell the evaluation how to use a metric (:class:`Metric` sets both):

- ``paired``: ``True`` when the metric compares each image with its true counterpart, so it only
  runs on data with ground-truth pairs;
- ``higher_is_better``: which way "best checkpoint" selection goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ganforge.errors import RecipeError
from ganforge.registry import ComponentSpec, Registries


class Metric:
    """Base class of the built-in metrics (a plugin's metric only needs ``update`` and ``compute``)."""

    paired: bool = False
    higher_is_better: bool = False

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every batch seen so far."""
        raise NotImplementedError


def check_batches(name: str, real: torch.Tensor, fake: torch.Tensor, *, same_shape: bool) -> None:
    """Raise a ``ValueError`` naming the metric when two batches cannot be compared."""
    if real.dim() != 4 or fake.dim() != 4:
        raise ValueError(
            f"{name}: expected (N, C, H, W) batches, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if same_shape and real.shape != fake.shape:
        raise ValueError(f"{name}: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")


def resolve_metrics(
    registries: Registries,
    specs: Sequence[str | Mapping[str, Any]],
    path: str = "eval.metrics",
    inception_weights: str | None = None,
) -> dict[str, ComponentSpec]:
    """Metric names or ``{type = ..., params}`` tables -> resolved specs by name (errors carry a path)."""
    resolved: dict[str, ComponentSpec] = {}
    errors: list[str] = []
    for i, spec in enumerate(specs):
        data = {"type": spec} if isinstance(spec, str) else dict(spec)
        registry = registries["metric"]
        component = (
            registry.get(data["type"])
            if isinstance(data.get("type"), str) and data["type"] in registry
            else None
        )
        if inception_weights and component is not None and "weights" in component.params.model_fields:
            data.setdefault("weights", inception_weights)
        try:
            item = registries.resolve("metric", data, f"{path}[{i}]")
        except RecipeError as exc:
            errors.extend(exc.lines)
            continue
        name = str(item.type)
        if name in resolved:
            errors.append(f"{path}[{i}]: metric '{name}' is listed twice")
        resolved[name] = item
    if errors:
        raise RecipeError(*errors)
    return resolved
