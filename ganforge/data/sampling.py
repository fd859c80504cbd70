"""Resumable data order: what a step sees is a pure function of (seed, epoch, position).

:class:`EpochSampler` shuffles each epoch with a generator seeded from ``(seed, epoch)`` and can
start part-way through an epoch; :class:`SeededItems` gives every item its own torch random stream,
so random crops and flips do not depend on which worker loads an item or on what came before it.
Together they let a run killed mid-epoch continue with exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (a splitmix-style hash; stable across runs)."""
    value = 0
    for i, part in enumerate(parts):
        value = (value ^ (int(part) + _MIX[i % 3])) * _MIX[(i + 1) % 3] & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[tuple[int, int, int]]):
    """Yields ``(epoch, position, index)`` for the positions ``start..length-1`` of an epoch.

    Under several processes (``world_size`` > 1) the epoch's order is the same on every rank and cut
    into global batches of ``batch_size x world_size`` positions; rank ``r`` takes the ``r``-th
    ``batch_size`` positions of each. Positions stay global, so an item's random draws (its crop, its
    unpaired B image) are those a single process with the global batch would make.
    """

    def __init__(
        self, length: int, seed: int, shuffle: bool = True, *, rank: int = 0, world_size: int = 1, batch_size: int = 1
    ) -> None:
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        return torch.randperm(self.length, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = self.order(self.epoch).tolist()
        for position in range(self.start, self.length):
            if self._mine(position):
                yield (self.epoch, position, order[position])

    def _mine(self, position: int) -> bool:
        return self.world_size == 1 or (position // self.batch_size) % self.world_size == self.rank

    def __len__(self) -> int:
        if self.world_size == 1:
            return max(0, self.length - self.start)
        return sum(1 for position in range(self.start, self.length) if self._mine(position))


class SeededItems(Dataset):
    """Wraps a dataset so that item ``(epoch, position, index)`` is drawn with its own torch seed."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        epoch, position, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, position))
            return self.dataset[index]
