"""Paired metrics: each translated image against its true counterpart (PSNR, SSIM, L1).

They need ground truth, so they only run on data whose test split holds true pairs (the synthetic
scenes, paired folders). Images are compared in [0, 1] (the [-1, 1] tensors mapped linearly), each
image scored on its own, and the scores averaged over images, so the batch size changes nothing.

- PSNR: ``10 log10(1 / MSE)`` in dB; a perfect copy is capped at 100 dB.
- SSIM (Wang et al. 2004): Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, computed per
  channel over the valid part of the image and averaged.
- L1: mean absolute difference per pixel and channel (0 = identical, 1 = black against white).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from ganforge.metrics import Metric, check_batches
from ganforge.registry import NoParams, Params

MAX_PSNR = 100.0


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return (images.detach().double().clamp(-1, 1) + 1) / 2


def psnr(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, C, H, W)`` batches in [-1, 1]."""
    mse = (to_unit(real) - to_unit(fake)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-MAX_PSNR / 10)))).float()


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(
    real: torch.Tensor,
    fake: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-image SSIM of ``(N, C, H, W)`` batches in [-1, 1] (window shrunk for images smaller than it)."""
    x, y = to_unit(real), to_unit(fake)
    channels = x.shape[1]
    size = min(window, x.shape[-2], x.shape[-1])
    if size % 2 == 0:
        size -= 1
    kernel = gaussian_window(size, sigma).to(x.device).expand(channels, 1, size, size).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2  # data range 1
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.flatten(1).mean(1).float()


def l1(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference in [0, 1] units."""
    return (to_unit(real) - to_unit(fake)).abs().flatten(1).mean(1).float()


class _PerImageMean(Metric):
    """Averages a per-image score over every image seen."""

    paired = True
    name = "paired"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum = 0.0
        self._count = 0

    def score(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        check_batches(self.name, real, fake, same_shape=True)
        scores = self.score(real, fake)
        self._sum += float(scores.sum())
        self._count += int(scores.numel())

    def compute(self) -> float:
        return self._sum / self._count if self._count else math.nan


class PSNR(_PerImageMean):
    name = "psnr"
    higher_is_better = True

    def score(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return psnr(real, fake)


class SSIMParams(Params):
    window: int = Field(11, ge=3, le=63, description="Side of the Gaussian window (odd).")
    sigma: float = Field(1.5, gt=0, le=20, description="Standard deviation of the Gaussian window.")

    @field_validator("window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"window must be odd, got {value}")
        return value


class SSIM(_PerImageMean):
    name = "ssim"
    higher_is_better = True

    def __init__(self, params: SSIMParams) -> None:
        self.params = params
        super().__init__()

    def score(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return ssim(real, fake, self.params.window, self.params.sigma)


class L1(_PerImageMean):
    name = "l1"

    def score(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return l1(real, fake)


def build_psnr(params: NoParams) -> PSNR:
    """Peak signal-to-noise ratio in dB against the true pair (higher is better)."""
    return PSNR()


def build_ssim(params: SSIMParams) -> SSIM:
    """Structural similarity against the true pair, Gaussian window (higher is better)."""
    return SSIM(params)


def build_l1(params: NoParams) -> L1:
    """Mean absolute error against the true pair, in [0, 1] units (lower is better)."""
    return L1()
