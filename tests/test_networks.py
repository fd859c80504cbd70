"""Built-in networks: layer layout, parameter counts, shapes, receptive fields, norms and initialisation."""

import inspect

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ganforge.builtins.networks import (
    NLayerDiscriminator,
    PatchGANParams,
    ResnetBlock,
    ResnetGenerator,
    ResnetParams,
    build_patchgan,
    build_resnet,
    init_weights,
    receptive_field,
)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def expected_generator_layers(n_blocks: int) -> list[type[nn.Module]]:
    down = [nn.Conv2d, nn.InstanceNorm2d, nn.ReLU] * 2
    up = [nn.ConvTranspose2d, nn.InstanceNorm2d, nn.ReLU] * 2
    return (
        [nn.ReflectionPad2d, nn.Conv2d, nn.InstanceNorm2d, nn.ReLU]
        + down
        + [ResnetBlock] * n_blocks
        + up
        + [nn.ReflectionPad2d, nn.Conv2d, nn.Tanh]
    )


# -------------------------------------------------------------------------------------------------
# Generator
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_blocks", [6, 9])
def test_generator_layer_sequence(n_blocks: int) -> None:
    generator = ResnetGenerator(n_blocks=n_blocks)
    assert [type(layer) for layer in generator.model] == expected_generator_layers(n_blocks)
    block = generator.model[10]
    assert [type(layer) for layer in block.conv_block] == [
        nn.ReflectionPad2d,
        nn.Conv2d,
        nn.InstanceNorm2d,
        nn.ReLU,
        nn.ReflectionPad2d,
        nn.Conv2d,
        nn.InstanceNorm2d,
    ]
    convs = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(conv.bias is not None for conv in convs)
    strided = [(type(c), c.kernel_size, c.stride) for c in convs if c.stride != (1, 1)]
    assert strided == [
        (nn.Conv2d, (3, 3), (2, 2)),
        (nn.Conv2d, (3, 3), (2, 2)),
        (nn.ConvTranspose2d, (3, 3), (2, 2)),
        (nn.ConvTranspose2d, (3, 3), (2, 2)),
    ]
    assert generator.model[1].kernel_size == (7, 7) and generator.model[-2].kernel_size == (7, 7)


# Parameters at ngf 64, in = out = 3 (weights + biases):
#   c7s1-64  : 7*7*3*64    + 64  =     9,472
#   d128     : 3*3*64*128  + 128 =    73,856
#   d256     : 3*3*128*256 + 256 =   295,168
#   R256     : 2 * (3*3*256*256 + 256) = 1,180,160 per block
#   u128     : 3*3*256*128 + 128 =   295,040
#   u64      : 3*3*128*64  + 64  =    73,792
#   c7s1-3   : 7*7*64*3    + 3   =     9,411
#   without blocks: 756,739; 9 blocks: 756,739 + 10,621,440 = 11,378,179;
#   6 blocks: 756,739 + 7,080,960 = 7,837,699. Instance norm has no parameters.
@pytest.mark.parametrize(("n_blocks", "count"), [(6, 7_837_699), (9, 11_378_179)])
def test_generator_parameter_count(n_blocks: int, count: int) -> None:
    assert n_parameters(ResnetGenerator(n_blocks=n_blocks)) == count


def test_generator_reference_state_dict_keys() -> None:
    generator = ResnetGenerator(n_blocks=9)
    state = generator.state_dict()
    for key in (
        "model.1.weight",
        "model.1.bias",
        "model.10.conv_block.1.weight",
        "model.10.conv_block.5.weight",
        "model.18.conv_block.5.bias",
        "model.19.weight",
        "model.22.weight",
        "model.26.weight",
        "model.26.bias",
    ):
        assert key in state, key
    assert isinstance(generator.model[19], nn.ConvTranspose2d)
    assert state["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose2d: (in, out, k, k)
    assert state["model.26.weight"].shape == (3, 64, 7, 7)
    assert not any("running" in key or "num_batches" in key for key in state)
    norms = [m for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 5 + 2 * 9
    assert all(not norm.affine and not norm.track_running_stats for norm in norms)


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_generator_output_shape_and_range(upsample: str) -> None:
    torch.manual_seed(0)
    generator = build_resnet(ResnetParams(upsample=upsample))
    with torch.no_grad():
        out = generator(torch.randn(1, 3, 32, 32))
        wide = generator(torch.randn(2, 3, 16, 24))
    assert out.shape == (1, 3, 32, 32)
    assert wide.shape == (2, 3, 16, 24)
    assert out.abs().max() <= 1.0
    assert isinstance(generator.model[-1], nn.Tanh)


def test_resize_conv_is_a_drop_in_for_the_transposed_convolutions() -> None:
    generator = ResnetGenerator(ngf=8, n_blocks=2, upsample="resize_conv")
    reference = ResnetGenerator(ngf=8, n_blocks=2)
    assert len(generator.model) == len(reference.model)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in generator.modules())
    up = generator.model[12]
    assert [type(layer) for layer in up] == [nn.Upsample, nn.ReflectionPad2d, nn.Conv2d]
    assert up[0].scale_factor == 2 and up[0].mode == "nearest"
    assert (up[2].in_channels, up[2].out_channels) == (32, 16)
    assert n_parameters(generator) == n_parameters(reference)


def test_generator_channels() -> None:
    generator = build_resnet(ResnetParams(in_channels=1, out_channels=2, ngf=4, n_blocks=1))
    with torch.no_grad():
        assert generator(torch.randn(1, 1, 8, 8)).shape == (1, 2, 8, 8)


def test_resnet_params_validation() -> None:
    assert ResnetParams().model_dump() == {
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 64,
        "n_blocks": 9,
        "upsample": "transpose",
        "norm": "instance",
        "norm_affine": None,
        "init": "normal",
        "init_gain": 0.02,
    }
    ResnetParams(n_blocks=0)
    for bad in (
        {"n_blocks": -1},
        {"ngf": 0},
        {"upsample": "bilinear"},
        {"init_std": -0.1},
        {"init_gain": -0.1},
        {"blocks": 6},
        {"norm": "group"},
        {"init": "uniform"},
        {"init_std": 0.1, "init_gain": 0.1},  # one name or the other, not both
    ):
        with pytest.raises(ValidationError):
            ResnetParams(**bad)
    assert all(field.description for field in ResnetParams.model_fields.values())


# -------------------------------------------------------------------------------------------------
# Discriminator
# -------------------------------------------------------------------------------------------------


def test_patchgan_output_shape_and_parameter_count() -> None:
    discriminator = build_patchgan(PatchGANParams())
    with torch.no_grad():
        out = discriminator(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 1, 30, 30)
    # C64 : 4*4*3*64    + 64  =     3,136
    # C128: 4*4*64*128  + 128 =   131,200
    # C256: 4*4*128*256 + 256 =   524,544
    # C512: 4*4*256*512 + 512 = 2,097,664 (stride 1)
    # out : 4*4*512*1   + 1   =     8,193  -> 2,764,737
    assert n_parameters(discriminator) == 2_764_737


def test_patchgan_layer_sequence() -> None:
    layers = list(NLayerDiscriminator().model)
    assert [type(layer) for layer in layers] == [
        nn.Conv2d, nn.LeakyReLU,
        nn.Conv2d, nn.InstanceNorm2d, nn.LeakyReLU,
        nn.Conv2d, nn.InstanceNorm2d, nn.LeakyReLU,
        nn.Conv2d, nn.InstanceNorm2d, nn.LeakyReLU,
        nn.Conv2d,
    ]  # fmt: skip
    convs = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [(64, 2), (128, 2), (256, 2), (512, 1), (1, 1)]
    assert all(c.kernel_size == (4, 4) and c.padding == (1, 1) for c in convs)
    assert all(layer.negative_slope == 0.2 for layer in layers if isinstance(layer, nn.LeakyReLU))


def test_patchgan_channels_cap_at_eight_times_ndf() -> None:
    convs = [m for m in NLayerDiscriminator(ndf=2, n_layers=5).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 4, 8, 16, 16, 16, 1]


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70), (4, 142)])
def test_receptive_field(n_layers: int, field: int) -> None:
    assert receptive_field(NLayerDiscriminator(n_layers=n_layers, ndf=2)) == field


def test_patchgan_receptive_field_empirically() -> None:
    torch.manual_seed(0)
    discriminator = NLayerDiscriminator(ndf=16).double()
    # Instance norm makes every output depend on the whole image; without it each logit sees one patch.
    for index, layer in enumerate(discriminator.model):
        if isinstance(layer, nn.InstanceNorm2d):
            discriminator.model[index] = nn.Identity()
    image = torch.randn(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    out = discriminator(image)
    assert out.shape == (1, 1, 18, 18)
    out[0, 0, 9, 9].backward()
    touched = image.grad.abs().sum(dim=(0, 1)) != 0
    rows = touched.any(dim=1).nonzero().flatten()
    cols = touched.any(dim=0).nonzero().flatten()
    assert rows.tolist() == list(range(49, 119)) and cols.tolist() == list(range(49, 119))
    assert touched.sum() == 70 * 70
    assert touched[49:119, 49:119].all()


def test_patchgan_params_validation() -> None:
    assert PatchGANParams().model_dump() == {
        "in_channels": 3,
        "ndf": 64,
        "n_layers": 3,
        "norm": "instance",
        "norm_affine": None,
        "spectral_norm": False,
        "init": "normal",
        "init_gain": 0.02,
    }
    assert PatchGANParams(n_layers=0).n_layers == 0
    for bad in ({"n_layers": -1}, {"n_layers": 9}, {"ndf": 0}, {"norm": "layer"}, {"spectral_norm": 1}):
        with pytest.raises(ValidationError):
            PatchGANParams(**bad)


# -------------------------------------------------------------------------------------------------
# Initialisation and summaries
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "params"), [(build_resnet, ResnetParams()), (build_patchgan, PatchGANParams())]
)
def test_initialisation(factory, params) -> None:
    torch.manual_seed(0)
    network = factory(params)
    convs = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0
        if conv.weight.numel() >= 9000:
            weight = conv.weight.detach()
            assert weight.std().item() == pytest.approx(0.02, rel=0.05)
            assert abs(weight.mean().item()) < 5 * 0.02 / weight.numel() ** 0.5


def test_init_weights_std_and_affine_norms() -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(300, 300), nn.BatchNorm1d(20000), nn.GroupNorm(2, 4, affine=False))
    init_weights(network, gain=0.1)
    linear, norm = network[0], network[1]
    assert linear.weight.std().item() == pytest.approx(0.1, rel=0.03)
    assert torch.count_nonzero(linear.bias) == 0
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.005)
    assert norm.weight.std().item() == pytest.approx(0.1, rel=0.03)
    assert torch.count_nonzero(norm.bias) == 0
    init_weights(linear, gain=0.0)
    assert torch.count_nonzero(linear.weight) == 0


@pytest.mark.parametrize("factory", [build_resnet, build_patchgan])
def test_factory_summary_is_one_line(factory) -> None:
    summary = inspect.getdoc(factory).splitlines()[0]
    assert summary.endswith(".") and len(summary) < 110
