"""History pool of generated images (Shrivastava et al. 2017), as used by CycleGAN.

The discriminators are updated with a mix of the newest fakes and fakes from earlier iterations,
which reduces model oscillation.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ganforge.errors import CheckpointError
from ganforge.registry import Params


class HistoryPoolParams(Params):
    """Parameters of the history pool."""

    size: int = Field(50, ge=0, le=100_000, description="Images kept (paper: 50); 0 disables the pool.")
    p_swap: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Once full, chance that a query returns a stored image instead of the new one.",
    )


class HistoryPool(nn.Module):
    """A pool of up to ``size`` earlier images; its contents and random state live in ``state_dict``."""

    def __init__(self, size: int = 50, p_swap: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.size = size
        self.p_swap = p_swap
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch like ``images``, each image either the new one or a stored one it replaces.

        While the pool is filling, every image is stored (detached) and returned as is. Once full, each
        image is swapped with probability ``p_swap`` for a uniformly chosen stored one, which it replaces.
        """
        if self.size == 0:
            return images
        returned = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.detach().clone())
                returned.append(image)
            elif torch.rand(1, generator=self.generator).item() < self.p_swap:
                index = int(torch.randint(self.size, (1,), generator=self.generator).item())
                returned.append(self.images[index].to(device=image.device, dtype=image.dtype))
                self.images[index] = image.detach().clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "images": list(self.images),
            "count": len(self.images),
            "generator": self.generator.get_state(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        images = list(state["images"])
        if len(images) != state["count"] or len(images) > self.size:
            raise CheckpointError(
                f"history pool state holds {len(images)} images (count {state['count']}), "
                f"but this pool keeps at most {self.size}"
            )
        self.images = images
        self.generator.set_state(state["generator"].cpu())


def build_history_pool(params: HistoryPoolParams, seed: int) -> HistoryPool:
    """History pool of generated images (size 50 in the paper); the discriminator sees past fakes too."""
    return HistoryPool(params.size, params.p_swap, seed)
