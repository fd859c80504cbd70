"""Translating tensors: padding to a multiple of 4, and large images in blended tiles."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganforge.model import pad_to_multiple as model_pad
from ganforge.model import size_multiple

if TYPE_CHECKING:
    from ganforge.inference.loading import Generator

#: Image height and width are padded to a multiple of this (two stride-2 down-samplings), and of the
#: generator's own ``size_multiple`` when it has one (see :func:`input_multiple`).
PAD_MULTIPLE = 4


# -------------------------------------------------------------------------------------------------
# Translating tensors
# -------------------------------------------------------------------------------------------------


def pad_to_multiple(batch: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Pad height and width up to a multiple (right and bottom) by reflection (edge copy if too small)."""
    return model_pad(batch, multiple)


def input_multiple(generator: Any) -> int:
    """What a generator's input sides are padded to: a multiple of 4 and of the net's ``size_multiple``
    (a :class:`~ganforge.inference.loading.Generator` reports its module's, or the one an export recorded)."""
    return math.lcm(PAD_MULTIPLE, size_multiple(generator))


def translate_batch(
    generator: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, device: Any = None
) -> torch.Tensor:
    """Run ``generator`` on ``(N, C, H, W)`` in [-1, 1] of any size; returns ``(N, C', H, W)`` (same device as given)."""
    h, w = batch.shape[-2:]
    target = device if device is not None else getattr(generator, "device", batch.device)
    with torch.inference_mode():
        out = generator(pad_to_multiple(batch.to(target), input_multiple(generator)))
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


def downscaled_view(
    image: torch.Tensor, longest: int, device: torch.device, multiple: int = PAD_MULTIPLE
) -> torch.Tensor:
    """``(C, H, W)`` uint8 -> ``(1, C, h, w)`` in [-1, 1], longer side at most ``longest``, padded to
    ``multiple``."""
    h, w = image.shape[-2:]
    scale = min(1.0, longest / max(h, w))
    view = to_unit(image[None])
    if scale < 1.0:
        size = (max(PAD_MULTIPLE, round(h * scale)), max(PAD_MULTIPLE, round(w * scale)))
        view = F.interpolate(view, size=size, mode="bilinear", antialias=True, align_corners=False)
    return pad_to_multiple(view, multiple).to(device)


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
        view = downscaled_view(image, tiling.stats_size, generator.device, input_multiple(generator))
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
