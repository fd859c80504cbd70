"""Image-to-image networks: the ResNet generator and the PatchGAN discriminator.

Layer order and attribute names follow the authors' PyTorch implementation of Zhu et al. 2017 and
Isola et al. 2017 (instance norm, no dropout), so state dicts of its checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params

_AFFINE_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise as in the paper: conv/linear weights ~ N(0, std), norm scales ~ N(1, std), biases 0."""

    def init_one(layer: nn.Module) -> None:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _AFFINE_NORMS) and getattr(layer, "weight", None) is not None:
            nn.init.normal_(layer.weight, 1.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    module.apply(init_one)


# -------------------------------------------------------------------------------------------------
# Generator
# -------------------------------------------------------------------------------------------------


class ResnetParams(Params):
    """Parameters of the ResNet generator."""

    in_channels: int = Field(3, ge=1, le=64, description="Channels of the input images.")
    out_channels: int = Field(3, ge=1, le=64, description="Channels of the output images.")
    ngf: int = Field(64, ge=1, le=1024, description="Filters in the first convolution (doubled per down-sampling).")
    n_blocks: int = Field(
        9, ge=0, le=64, description="Residual blocks at the bottleneck (paper: 6 for 128 px, 9 for 256 px and up)."
    )
    upsample: Literal["transpose", "resize_conv"] = Field(
        "transpose",
        description=(
            "Up-sampling layers: 'transpose' (fractionally strided convolutions, as in the paper) or "
            "'resize_conv' (nearest-neighbour resize then convolution, avoids checkerboard artefacts)."
        ),
    )
    norm_affine: bool = Field(
        False,
        description=(
            "Instance norm with a learned scale and shift (the paper's network has none; some published "
            "weights do)."
        ),
    )
    init_std: float = Field(0.02, ge=0, description="Standard deviation of the normal weight initialisation.")


class ResnetBlock(nn.Module):
    """Residual block: two reflection-padded 3x3 convolutions with instance norm, plus the input."""

    def __init__(self, dim: int, norm_affine: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=True),
            nn.InstanceNorm2d(dim, affine=norm_affine),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=True),
            nn.InstanceNorm2d(dim, affine=norm_affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _up_layer(channels: int, upsample: str) -> nn.Module:
    """One 2x up-sampling convolution from ``channels`` to ``channels // 2``."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(
            channels, channels // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(channels, channels // 2, kernel_size=3, bias=True),
    )


class ResnetGenerator(nn.Module):
    """Image-to-image ResNet generator (Johnson et al. 2016 layout, as in Zhu et al. 2017)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: Literal["transpose", "resize_conv"] = "transpose",
        norm_affine: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=True),
            nn.InstanceNorm2d(ngf, affine=norm_affine),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(channels * 2, affine=norm_affine),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm_affine) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                _up_layer(channels, upsample),
                nn.InstanceNorm2d(channels // 2, affine=norm_affine),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, out_channels, kernel_size=7, bias=True),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_resnet(params: ResnetParams) -> ResnetGenerator:
    """ResNet generator (Zhu et al. 2017): c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3, tanh.

    Input height and width must be multiples of 4; the output has the input's size, in [-1, 1].
    """
    network = ResnetGenerator(
        params.in_channels,
        params.out_channels,
        params.ngf,
        params.n_blocks,
        params.upsample,
        params.norm_affine,
    )
    init_weights(network, params.init_std)
    return network


# -------------------------------------------------------------------------------------------------
# Discriminator
# -------------------------------------------------------------------------------------------------


class PatchGANParams(Params):
    """Parameters of the PatchGAN discriminator."""

    in_channels: int = Field(3, ge=1, le=64, description="Channels of the input images.")
    ndf: int = Field(
        64, ge=1, le=1024, description="Filters in the first convolution (doubled per layer, at most 8x)."
    )
    n_layers: int = Field(
        3, ge=1, le=8, description="Strided convolutions; 3 gives the 70x70 PatchGAN of the paper."
    )
    init_std: float = Field(0.02, ge=0, description="Standard deviation of the normal weight initialisation.")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: classifies every overlapping patch of the input as real or fake (one logit each)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        channels = ndf
        for n in range(1, n_layers):
            out = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        out = ndf * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(channels, out, kernel_size=4, stride=1, padding=1, bias=True),
            nn.InstanceNorm2d(out),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(out, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_patchgan(params: PatchGANParams) -> NLayerDiscriminator:
    """PatchGAN discriminator (Isola et al. 2017): C64, C128, C256, C512, then a 1-channel logit map.

    With the defaults a 256x256 image gives a 30x30 map of logits.
    """
    network = NLayerDiscriminator(params.in_channels, params.ndf, params.n_layers)
    init_weights(network, params.init_std)
    return network


def receptive_field(module: nn.Module) -> int:
    """Receptive field, in input pixels, of one output pixel of a plain stack of ``Conv2d`` layers."""
    field = 1
    for conv in reversed([layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]):
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        field = (field - 1) * stride + kernel
    return field


@hookimpl
def register_generators(register: Register) -> None:
    register("resnet", build_resnet, params=ResnetParams)


@hookimpl
def register_discriminators(register: Register) -> None:
    register("patchgan", build_patchgan, params=PatchGANParams)
