"""Image-to-image networks: ResNet and U-Net generators, PatchGAN and PixelGAN discriminators.

Layer order and attribute names follow the authors' PyTorch implementation of Zhu et al. 2017 and
Isola et al. 2017, so state dicts of its checkpoints (instance or batch norm) load unchanged; with
norm "none" the convolutions here keep their bias, where that implementation drops it. Every network takes that
implementation's options: the norm after its convolutions (instance, batch or none; a convolution
followed by batch norm has no bias) and the weight initialisation (normal, xavier, kaiming,
orthogonal). docs/networks.md describes every parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import AliasChoices, Field, model_validator
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params

NormName = Literal["instance", "batch", "none"]
InitName = Literal["normal", "xavier", "kaiming", "orthogonal"]
Upsample = Literal["transpose", "resize_conv"]
Output = Literal["image", "residual"]

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
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def init_weights(module: nn.Module, gain: float = 0.02, kind: InitName = "normal") -> None:
    """Initialise convolution and linear weights by ``kind``, their biases to 0, and norm scales ~ N(1, gain).

    ``normal``: N(0, gain) (the papers' N(0, 0.02)); ``xavier`` and ``orthogonal``: ``gain`` is the
    gain; ``kaiming``: He normal with fan_in and a = 0 (``gain`` unused). Norm layers with a learned
    scale get N(1, gain) and shift 0 whatever ``kind`` is, as in the authors' code.
    """

    def init_one(layer: nn.Module) -> None:
        if isinstance(layer, _WEIGHTED):
            if parametrize.is_parametrized(layer, "weight"):
                raise ValueError("init_weights: initialise a layer before parametrizing it (spectral norm)")
            if kind == "normal":
                nn.init.normal_(layer.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(layer.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(layer.weight, gain=gain)
            else:
                raise ValueError(f"init_weights: unknown kind {kind!r}")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _AFFINE_NORMS) and getattr(layer, "weight", None) is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    module.apply(init_one)


def add_spectral_norm(module: nn.Module) -> None:
    """Put spectral normalisation (Miyato et al. 2018) on the weight of every convolution below ``module``.

    Call it after :func:`init_weights`: the weight's state-dict key becomes
    ``parametrizations.weight.original`` (plus the power iteration's ``_u`` and ``_v``).
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and not parametrize.is_parametrized(layer):
            spectral_norm(layer)


@dataclass(frozen=True)
class Norm:
    """The norm a network puts after its convolutions, and whether those convolutions keep a bias."""

    kind: NormName = "instance"
    affine: bool | None = None  # None: batch norm with, instance norm without a learned scale and shift

    @property
    def bias(self) -> bool:
        """Convolutions followed by batch norm have no bias (the norm removes it); otherwise they have one."""
        return self.kind != "batch"

    def __call__(self, channels: int) -> nn.Module:
        affine = self.kind == "batch" if self.affine is None else self.affine
        if self.kind == "batch":
            return nn.BatchNorm2d(channels, affine=affine)
        if self.kind == "instance":
            return nn.InstanceNorm2d(channels, affine=affine)
        if self.kind == "none":
            return nn.Identity()
        raise ValueError(f"unknown norm {self.kind!r}; valid: 'instance', 'batch', 'none'")


# Fields every network shares (declared per model, so that each model lists its own fields first).


def _norm_field() -> NormName:
    return Field(
        "instance",
        description=(
            "Norm after the convolutions: 'instance' (Zhu et al. 2017), 'batch' (Isola et al. 2017) or 'none'; "
            "convolutions before batch norm have no bias."
        ),
    )


def _norm_affine_field() -> bool | None:
    return Field(
        None,
        description=(
            "Learned scale and shift in the norm layers; unset: yes for batch norm, no for instance "
            "norm (as in the papers; some published weights have them)."
        ),
    )


def _init_field() -> InitName:
    return Field(
        "normal",
        description="Weight initialisation: 'normal' (the papers'), 'xavier', 'kaiming' (fan_in, a=0) or 'orthogonal'.",
    )


def _init_gain_field() -> float:
    return Field(
        0.02,
        ge=0,
        le=10,
        validation_alias=AliasChoices("init_gain", "init_std"),
        description=(
            "Standard deviation for 'normal', gain for 'xavier' and 'orthogonal' (unused by 'kaiming'); "
            "norm scales ~ N(1, init_gain). Also read as init_std."
        ),
    )


def _upsample_field(what: str) -> Upsample:
    return Field(
        "transpose",
        description=(
            f"Up-sampling layers: 'transpose' ({what}, as in the paper) or 'resize_conv' "
            "(nearest-neighbour resize then a 3x3 convolution, avoids checkerboard artefacts)."
        ),
    )


def _resize_conv(in_channels: int, out_channels: int, bias: bool) -> nn.Sequential:
    """2x nearest-neighbour up-sampling, then a reflection-padded 3x3 convolution."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=bias),
    )


# -------------------------------------------------------------------------------------------------
# ResNet generator
# -------------------------------------------------------------------------------------------------


class ResnetParams(Params):
    """Parameters of the ResNet generator."""

    in_channels: int = Field(3, ge=1, le=64, description="Channels of the input images.")
    out_channels: int = Field(3, ge=1, le=64, description="Channels of the output images.")
    ngf: int = Field(
        64, ge=1, le=1024, description="Filters in the first convolution (doubled per down-sampling)."
    )
    n_blocks: int = Field(
        9,
        ge=0,
        le=64,
        description="Residual blocks at the bottleneck (paper: 6 for 128 px, 9 for 256 px and up).",
    )
    upsample: Upsample = _upsample_field("fractionally strided 3x3 convolutions")
    output: Output = Field(
        "image",
        description=(
            "'image': the network draws the output (tanh of the last convolution, as in the paper); "
            "'residual': it edits its input, tanh(atanh(input) + last convolution), with the last "
            "convolution starting at zero so training starts from the identity. 'residual' needs "
            "in_channels == out_channels."
        ),
    )
    norm: NormName = _norm_field()
    norm_affine: bool | None = _norm_affine_field()
    init: InitName = _init_field()
    init_gain: float = _init_gain_field()

    @model_validator(mode="after")
    def _residual_channels(self) -> ResnetParams:
        if self.output == "residual" and self.in_channels != self.out_channels:
            raise ValueError(
                f"output = 'residual' edits the input, so out_channels ({self.out_channels}) must "
                f"equal in_channels ({self.in_channels}); or use output = 'image'"
            )
        return self


class ResnetBlock(nn.Module):
    """Residual block: two reflection-padded 3x3 convolutions, each followed by the norm, plus the input."""

    def __init__(self, dim: int, norm_affine: bool | None = False, norm: NormName = "instance") -> None:
        super().__init__()
        make = Norm(norm, norm_affine)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=make.bias),
            make(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=make.bias),
            make(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _up_layer(channels: int, upsample: str, bias: bool = True) -> nn.Module:
    """One 2x up-sampling convolution from ``channels`` to ``channels // 2``."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(
            channels, channels // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
        )
    return _resize_conv(channels, channels // 2, bias)


class ResnetGenerator(nn.Module):
    """Image-to-image ResNet generator (Johnson et al. 2016 layout, as in Zhu et al. 2017)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: Upsample = "transpose",
        norm_affine: bool | None = False,
        norm: NormName = "instance",
        output: Output = "image",
    ) -> None:
        super().__init__()
        if output == "residual" and in_channels != out_channels:
            raise ValueError(
                f"a residual output needs in_channels == out_channels, got {in_channels}, {out_channels}"
            )
        make = Norm(norm, norm_affine)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=make.bias),
            make(ngf),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=make.bias),
                make(channels * 2),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm_affine, norm) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [_up_layer(channels, upsample, make.bias), make(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, out_channels, kernel_size=7, bias=True),
            # a residual output applies its tanh after adding the input (the same state-dict keys)
            nn.Tanh() if output == "image" else nn.Identity(),
        ]
        self.model = nn.Sequential(*layers)
        self.residual = output == "residual"
        self.size_multiple = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            # atanh(x), written with log (ONNX has no atanh), of x clamped just inside (-1, 1)
            inside = x.clamp(-0.999, 0.999)
            return torch.tanh(0.5 * torch.log((1 + inside) / (1 - inside)) + self.model(x))
        return self.model(x)

    def start_from_identity(self) -> None:
        """Zero the last convolution: a residual generator then returns its input (up to the clamp)."""
        last = self.model[-2]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)


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
        params.norm,
        params.output,
    )
    init_weights(network, params.init_gain, params.init)
    if params.output == "residual":
        network.start_from_identity()
    return network


# -------------------------------------------------------------------------------------------------
# U-Net generator
# -------------------------------------------------------------------------------------------------


class UnetParams(Params):
    """Parameters of the U-Net generator."""

    in_channels: int = Field(3, ge=1, le=64, description="Channels of the input images.")
    out_channels: int = Field(3, ge=1, le=64, description="Channels of the output images.")
    ngf: int = Field(
        64, ge=1, le=1024, description="Filters in the first convolution (doubled per level, at most 8x)."
    )
    num_downs: int = Field(
        8,
        ge=2,
        le=10,
        description=(
            "Down-samplings (levels): 8 for 256 px (unet_256), 7 for 128 px (unet_128); input sides "
            "must be multiples of 2**num_downs."
        ),
    )
    dropout: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Dropout after the up-sampling of the num_downs - 5 ngf*8 levels above the innermost (0: none).",
    )
    upsample: Upsample = _upsample_field("fractionally strided 4x4 convolutions")
    norm: NormName = _norm_field()
    norm_affine: bool | None = _norm_affine_field()
    init: InitName = _init_field()
    init_gain: float = _init_gain_field()


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: a 4x4 stride-2 convolution, the levels inside, a 2x up-sampling.

    Every level but the outermost returns its (activated) input and its up-sampled output side by side
    (the skip connection); the outermost returns the image, through tanh.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        in_channels: int | None = None,
        submodule: nn.Module | None = None,
        *,
        outermost: bool = False,
        innermost: bool = False,
        dropout: float = 0.0,
        norm: Norm = Norm(),
        upsample: Upsample = "transpose",
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer_channels if in_channels is None else in_channels
        down = nn.Conv2d(in_channels, inner_channels, kernel_size=4, stride=2, padding=1, bias=norm.bias)

        def up(channels: int, bias: bool) -> nn.Module:
            if upsample == "transpose":
                return nn.ConvTranspose2d(
                    channels, outer_channels, kernel_size=4, stride=2, padding=1, bias=bias
                )
            return _resize_conv(channels, outer_channels, bias)

        layers: list[nn.Module]
        if outermost:
            assert submodule is not None
            layers = [down, submodule, nn.ReLU(), up(inner_channels * 2, True), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up(inner_channels, norm.bias), norm(outer_channels)]
        else:
            assert submodule is not None
            layers = [
                nn.LeakyReLU(0.2),
                down,
                norm(inner_channels),
                submodule,
                nn.ReLU(),
                up(inner_channels * 2, norm.bias),
                norm(outer_channels),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The skip carries the input after the LeakyReLU, as in the authors' code (whose in-place
        # LeakyReLU changes the tensor that is then concatenated). Written so that it scripts.
        return torch.cat([self.model[0](x), self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator (Isola et al. 2017): ``num_downs`` levels with skip connections, tanh output.

    ``size_multiple`` (``2 ** num_downs``): input height and width must be multiples of it.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        num_downs: int = 8,
        dropout: float = 0.5,
        norm: NormName = "instance",
        norm_affine: bool | None = None,
        upsample: Upsample = "transpose",
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"UnetGenerator: num_downs must be at least 2, got {num_downs}")
        make = Norm(norm, norm_affine)

        def width(level: int) -> int:
            """Channels after ``level``'s down-sampling: ngf, 2 ngf, 4 ngf, then 8 ngf."""
            return ngf * min(2**level, 8)

        block: nn.Module | None = None
        for level in reversed(range(1, num_downs)):  # innermost first
            block = UnetSkipConnectionBlock(
                width(level - 1),
                width(level),
                submodule=block,
                innermost=block is None,
                dropout=dropout if 4 <= level < num_downs - 1 else 0.0,
                norm=make,
                upsample=upsample,
            )
        self.model = UnetSkipConnectionBlock(
            out_channels, ngf, in_channels, block, outermost=True, norm=make, upsample=upsample
        )
        self.size_multiple = 2**num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_unet(params: UnetParams) -> UnetGenerator:
    """U-Net generator (Isola et al. 2017): encoder-decoder with skip connections; sides multiple of 2**num_downs.

    unet_256 is num_downs 8: C64-C128-C256-C512-C512-C512-C512-C512 down, the mirror image up, tanh.
    """
    network = UnetGenerator(
        params.in_channels,
        params.out_channels,
        params.ngf,
        params.num_downs,
        params.dropout,
        params.norm,
        params.norm_affine,
        params.upsample,
    )
    init_weights(network, params.init_gain, params.init)
    return network


# -------------------------------------------------------------------------------------------------
# Discriminators
# -------------------------------------------------------------------------------------------------


class PatchGANParams(Params):
    """Parameters of the PatchGAN discriminator."""

    in_channels: int = Field(
        3,
        ge=1,
        le=128,
        description="Channels of the input images (a conditional D sees input and output: 6).",
    )
    ndf: int = Field(
        64, ge=1, le=1024, description="Filters in the first convolution (doubled per layer, at most 8x)."
    )
    n_layers: int = Field(
        3,
        ge=0,
        le=8,
        description=(
            "Stride-2 convolutions after the first; patch size 16 (0 or 1), 34, 70 (3, the paper's), 142, 286 (5)."
        ),
    )
    norm: NormName = _norm_field()
    norm_affine: bool | None = _norm_affine_field()
    spectral_norm: bool = Field(False, description="Spectral normalisation on every convolution's weight.")
    init: InitName = _init_field()
    init_gain: float = _init_gain_field()


class NLayerDiscriminator(nn.Module):
    """PatchGAN: classifies every overlapping patch of the input as real or fake (one logit each)."""

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormName = "instance",
        norm_affine: bool | None = None,
    ) -> None:
        super().__init__()
        make = Norm(norm, norm_affine)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        channels = ndf
        for n in range(1, n_layers):
            out = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=make.bias),
                make(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        out = ndf * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(channels, out, kernel_size=4, stride=1, padding=1, bias=make.bias),
            make(out),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(out, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_patchgan(params: PatchGANParams) -> NLayerDiscriminator:
    """PatchGAN discriminator (Isola et al. 2017): C64, C128, C256, C512, then a 1-channel logit map.

    With the defaults a 256x256 image gives a 30x30 map of logits, each seeing a 70x70 patch.
    """
    network = NLayerDiscriminator(
        params.in_channels, params.ndf, params.n_layers, params.norm, params.norm_affine
    )
    init_weights(network, params.init_gain, params.init)
    if params.spectral_norm:
        add_spectral_norm(network)
    return network


class PixelParams(Params):
    """Parameters of the 1x1 PixelGAN discriminator."""

    in_channels: int = Field(
        3,
        ge=1,
        le=128,
        description="Channels of the input images (a conditional D sees input and output: 6).",
    )
    ndf: int = Field(
        64, ge=1, le=1024, description="Filters in the first 1x1 convolution (doubled in the second)."
    )
    norm: NormName = _norm_field()
    norm_affine: bool | None = _norm_affine_field()
    spectral_norm: bool = Field(False, description="Spectral normalisation on every convolution's weight.")
    init: InitName = _init_field()
    init_gain: float = _init_gain_field()


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): one logit per pixel, from that pixel alone."""

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        norm: NormName = "instance",
        norm_affine: bool | None = None,
    ) -> None:
        super().__init__()
        make = Norm(norm, norm_affine)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, kernel_size=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, bias=make.bias),
            make(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, bias=make.bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_pixel(params: PixelParams) -> PixelDiscriminator:
    """PixelGAN discriminator (Isola et al. 2017): 1x1 convolutions, a logit per pixel (1x1 patches).

    The output has the input's height and width.
    """
    network = PixelDiscriminator(params.in_channels, params.ndf, params.norm, params.norm_affine)
    init_weights(network, params.init_gain, params.init)
    if params.spectral_norm:
        add_spectral_norm(network)
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
    register("unet", build_unet, params=UnetParams)


@hookimpl
def register_discriminators(register: Register) -> None:
    register("patchgan", build_patchgan, params=PatchGANParams)
    register("pixel", build_pixel, params=PixelParams)
