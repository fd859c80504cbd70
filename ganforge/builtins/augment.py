"""Augmentations applied inside a training step: ``none`` and ``diffaugment``.

An augment is called as ``augment(images) -> images`` on a ``(N, C, H, W)`` batch in [-1, 1] and
returns a batch of the same shape. It is differentiable, so a generator's gradient flows back through
it, and it draws its random numbers from torch's global generators (``torch.rand`` on the images'
device), so the run's seed and a resumed checkpoint's RNG state decide them. Its ``enabled``
attribute is ``False`` for ``none``, so a model can skip the call.

``augment(images, parts=(c1, c2))`` transforms a batch whose channel axis holds several images side
by side (a conditional pair: input and output concatenated): each gets the same random transform, so
the pair stays aligned.

``diffaugment`` is DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): the same kind of random transform is applied to every image the discriminator sees,
real or generated, in both the discriminator's and the generator's update. Each image of a batch
draws its own parameters. The transforms, in the order ``policy`` lists them:

- ``color``: brightness ``x + b``, ``b ~ U(-0.5, 0.5)`` on the [-1, 1] images (as the authors'
  code applies it to theirs); saturation ``m + s (x - m)``, ``m`` the mean over channels at each pixel,
  ``s ~ U(0, 2)``; contrast ``m + c (x - m)``, ``m`` the image's mean, ``c ~ U(0.5, 1.5)``.
- ``translation``: shift by whole pixels, ``t ~ U{-r, ..., r}`` on each axis with
  ``r = round(translation_ratio * size)``; uncovered pixels are 0.
- ``cutout``: zero a rectangle of ``round(cutout_ratio * H) x round(cutout_ratio * W)`` pixels
  lying wholly inside the image, at a uniformly random place (the authors' code also lets it run
  past an edge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import NoParams, Params

Policy = Literal["color", "translation", "cutout"]
POLICIES: tuple[str, ...] = ("color", "translation", "cutout")


class DiffAugmentParams(Params):
    """Parameters of DiffAugment."""

    policy: tuple[Policy, ...] = Field(
        POLICIES, description="Transforms applied in this order: any of color, translation, cutout."
    )
    translation_ratio: float = Field(
        0.125, ge=0, le=0.5, description="Largest shift as a fraction of the image's height and width."
    )
    cutout_ratio: float = Field(
        0.5, ge=0, le=1, description="Side of the zeroed rectangle as a fraction of height and width."
    )

    @field_validator("policy")
    @classmethod
    def _once_each(cls, policy: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({name for name in policy if policy.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once; valid values: {', '.join(POLICIES)}")
        if not policy:
            raise ValueError(f"empty: list one or more of {', '.join(POLICIES)} (or use augment type 'none')")
        return policy


def _per_image(x: torch.Tensor) -> torch.Tensor:
    """``N`` uniform draws in [0, 1), shaped to broadcast over an image batch."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def color(x: torch.Tensor, parts: Sequence[int] | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast, each image its own.

    With ``parts``, the channel axis holds several images of these channel counts (a conditional
    pair); they get the same three factors, each with its own channel and image means.
    """
    shift, saturation, contrast = _per_image(x) - 0.5, _per_image(x) * 2, _per_image(x) + 0.5
    out = []
    for part in x.split(list(parts), dim=1) if parts else (x,):
        part = part + shift
        mean = part.mean(dim=1, keepdim=True)
        part = mean + (part - mean) * saturation
        mean = part.mean(dim=(1, 2, 3), keepdim=True)
        out.append(mean + (part - mean) * contrast)
    return torch.cat(out, dim=1) if len(out) > 1 else out[0]


def _shifts(n: int, size: int, ratio: float, device: torch.device) -> tuple[torch.Tensor, int]:
    reach = int(size * ratio + 0.5)
    return torch.randint(-reach, reach + 1, (n,), device=device), reach


def translation(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Shift each image by whole pixels (up to ``ratio`` of each side), filling with zeros.

    ``out[i, :, y, x] = in[i, :, y - ty_i, x - tx_i]``, zero where that falls outside the image.
    """
    n, c, h, w = x.shape
    ty, pad_h = _shifts(n, h, ratio, x.device)
    tx, pad_w = _shifts(n, w, ratio, x.device)
    if pad_h == 0 and pad_w == 0:
        return x
    padded = nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h))
    rows = torch.arange(h, device=x.device)[None, :] - ty[:, None] + pad_h  # (N, H) rows of padded
    cols = torch.arange(w, device=x.device)[None, :] - tx[:, None] + pad_w  # (N, W) columns of padded
    picked = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad_w))
    return picked.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero a ``round(ratio H) x round(ratio W)`` rectangle, wholly inside each image."""
    n, _, h, w = x.shape
    ch, cw = min(h, int(h * ratio + 0.5)), min(w, int(w * ratio + 0.5))
    if ch == 0 or cw == 0:
        return x
    top = torch.randint(0, h - ch + 1, (n, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (n, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :] - top  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] - left  # (N, W)
    inside = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]
    return x * (~inside)[:, None].to(x.dtype)


class DiffAugment(nn.Module):
    """DiffAugment: random colour, translation and cutout, differentiable, each image its own draw."""

    enabled = True

    def __init__(self, policy: tuple[str, ...], translation_ratio: float, cutout_ratio: float) -> None:
        super().__init__()
        self.policy = tuple(policy)
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio

    def forward(self, x: torch.Tensor, parts: Sequence[int] | None = None) -> torch.Tensor:
        if parts is not None and sum(parts) != x.shape[1]:
            raise ValueError(f"parts {list(parts)} do not add up to the batch's {x.shape[1]} channels")
        for name in self.policy:
            if name == "color":
                x = color(x, parts)
            elif name == "translation":
                x = translation(x, self.translation_ratio)
            else:
                x = cutout(x, self.cutout_ratio)
        return x

    def extra_repr(self) -> str:
        return f"policy={list(self.policy)}, translation_ratio={self.translation_ratio}, cutout_ratio={self.cutout_ratio}"


class NoAugment(nn.Module):
    """No augmentation: returns its input (``enabled`` is False, so a model can skip the call)."""

    enabled = False

    def forward(self, x: torch.Tensor, parts: Sequence[int] | None = None) -> torch.Tensor:
        return x


def build_diffaugment(params: DiffAugmentParams) -> DiffAugment:
    """DiffAugment (Zhao et al. 2020): the same random colour, translation, cutout on all D sees."""
    return DiffAugment(params.policy, params.translation_ratio, params.cutout_ratio)


def build_no_augment(params: NoParams) -> NoAugment:
    """No augmentation (the default of a model's augment; the papers' recipes)."""
    return NoAugment()


@hookimpl
def register_augments(register: Register) -> None:
    register("none", build_no_augment)
    register("diffaugment", build_diffaugment, params=DiffAugmentParams)
