"""Built-in networks: layer layout, parameter counts, shapes, receptive fields, norms and initialisation."""

import inspect

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ganforge.builtins.networks import (
    NLayerDiscriminator,
    PatchGANParams,
    PixelDiscriminator,
    PixelParams,
    ResnetBlock,
    ResnetGenerator,
    ResnetParams,
    UnetGenerator,
    UnetParams,
    UnetSkipConnectionBlock,
    build_patchgan,
    build_pixel,
    build_resnet,
    build_unet,
    init_weights,
    receptive_field,
)
from ganforge.plugins import collect_registries, make_plugin_manager


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


def test_residual_output_starts_from_the_identity_and_learns_an_edit() -> None:
    torch.manual_seed(0)
    generator = build_resnet(ResnetParams(ngf=4, n_blocks=1, output="residual"))
    reference = build_resnet(ResnetParams(ngf=4, n_blocks=1))
    assert generator.state_dict().keys() == reference.state_dict().keys()  # checkpoints stay alike
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = generator(x)
    # the input back, up to the clamp just inside (-1, 1) that atanh needs
    assert (out - x).abs().max().item() <= 1e-3
    assert out.abs().max() < 1.0
    # the zeroed last convolution still gets a gradient, so the edit can grow from nothing
    target = (x * 0.5).detach()
    loss = (out - target).abs().mean()
    loss.backward()
    last = generator.model[-2]
    assert isinstance(last, nn.Conv2d) and last.weight.grad.abs().sum() > 0
    optimiser = torch.optim.Adam(generator.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        loss = (generator(x) - target).abs().mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.75 * (x - target).abs().mean().item()  # 0.163 against 0.247 from the start
    # image mode still draws the output through its own tanh
    assert isinstance(reference.model[-1], nn.Tanh) and not isinstance(generator.model[-1], nn.Tanh)


@pytest.mark.filterwarnings("ignore")  # torch.jit.script's deprecation notice
def test_residual_output_scripts_for_torchscript_export() -> None:
    net = build_resnet(ResnetParams(ngf=4, n_blocks=1, output="residual")).eval()
    torch.nn.init.normal_(net.model[-2].weight, std=0.1)
    scripted = torch.jit.script(net)
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))
        assert (net(x) - x).abs().max() > 1e-2


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
        "output": "image",
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
        {"output": "delta"},
        {"output": "residual", "out_channels": 1},  # an edit of the input keeps its channels
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


@pytest.mark.parametrize(("n_layers", "field"), [(0, 16), (1, 16), (2, 34), (3, 70), (4, 142), (5, 286)])
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


@pytest.mark.parametrize("factory", [build_resnet, build_unet, build_patchgan, build_pixel])
def test_factory_summary_is_one_line(factory) -> None:
    summary = inspect.getdoc(factory).splitlines()[0]
    assert summary.endswith(".") and len(summary) < 110


# -------------------------------------------------------------------------------------------------
# Norms, biases and initialisation options (every network)
# -------------------------------------------------------------------------------------------------


def convs_of(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_resnet_norm_affine_false_and_unset_give_the_same_state_dict() -> None:
    reference = ResnetGenerator(ngf=8, n_blocks=2).state_dict()  # what norm_affine = false built before
    for affine in (False, None):
        state = build_resnet(ResnetParams(ngf=8, n_blocks=2, norm_affine=affine)).state_dict()
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.items()}
    affine = build_resnet(ResnetParams(ngf=8, n_blocks=2, norm_affine=True)).state_dict()
    assert "model.2.weight" in affine and "model.10.conv_block.2.bias" in affine


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_bias_follows_the_norm(norm: str) -> None:
    resnet = build_resnet(ResnetParams(ngf=4, n_blocks=1, norm=norm))
    unet = build_unet(UnetParams(ngf=4, num_downs=5, norm=norm))
    patchgan = build_patchgan(PatchGANParams(ndf=4, norm=norm))
    pixel = build_pixel(PixelParams(ndf=4, norm=norm))
    with_bias = norm != "batch"
    # The last convolution of each generator, the first and last of the PatchGAN, and the first of
    # the PixelGAN always have one (as in the authors' code); every other follows the norm.
    for net, always in ((resnet, [-1]), (unet, [-1]), (patchgan, [0, -1]), (pixel, [0])):
        convs = convs_of(net)
        fixed = {i % len(convs) for i in always}
        assert [c.bias is not None for c in convs] == [
            True if i in fixed else with_bias for i in range(len(convs))
        ]
    norms = {"instance": nn.InstanceNorm2d, "batch": nn.BatchNorm2d, "none": nn.Identity}[norm]
    assert type(resnet.model[2]) is norms and type(patchgan.model[3]) is norms and type(pixel.net[3]) is norms
    if norm == "batch":
        assert resnet.model[2].affine and resnet.model[2].track_running_stats  # affine unless told
        assert not build_resnet(ResnetParams(ngf=4, n_blocks=1, norm=norm, norm_affine=False)).model[2].affine
    with torch.no_grad():
        assert resnet(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)
        assert unet(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_norm_none_keeps_the_key_positions() -> None:
    plain = build_resnet(ResnetParams(ngf=4, n_blocks=1, norm="none"))
    default = build_resnet(ResnetParams(ngf=4, n_blocks=1))
    assert list(plain.state_dict()) == list(default.state_dict())
    assert not any(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) for m in plain.modules())


def test_init_kinds() -> None:
    torch.manual_seed(0)

    def weight_std(init: str, gain: float) -> float:
        net = build_patchgan(PatchGANParams(ndf=64, init=init, init_gain=gain, norm="batch"))
        return net.model[5].weight.std().item()  # 128 -> 256, 4x4: fan_in 2048, fan_out 4096

    assert weight_std("normal", 0.05) == pytest.approx(0.05, rel=0.02)
    assert weight_std("xavier", 2.0) == pytest.approx(2.0 * (2 / (2048 + 4096)) ** 0.5, rel=0.02)
    assert weight_std("kaiming", 0.02) == pytest.approx((2 / 2048) ** 0.5, rel=0.02)
    net = build_patchgan(PatchGANParams(ndf=8, init="orthogonal", init_gain=3.0, norm="batch"))
    rows = net.model[5].weight.detach().flatten(1)  # 32 rows of 256: orthogonal, each of length 3
    assert torch.allclose(rows @ rows.T, 9.0 * torch.eye(32), atol=1e-4)
    for layer in (net.model[3], net.model[6]):  # batch norm scales ~ N(1, gain), shifts 0, any init
        assert layer.weight.std().item() > 1.0 and torch.count_nonzero(layer.bias) == 0
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs_of(net) if c.bias is not None)


def test_old_init_std_name_still_loads() -> None:
    registries = collect_registries(make_plugin_manager())
    for kind, name in (("generator", "resnet"), ("generator", "unet"), ("discriminator", "patchgan")):
        spec = registries.resolve(kind, {"type": name, "init_std": 0.3}, "net")
        assert spec.params.init_gain == 0.3
        assert "init_std" not in spec.params.model_dump()
    assert ResnetParams(init_std=0.5) == ResnetParams(init_gain=0.5)


# -------------------------------------------------------------------------------------------------
# U-Net generator
# -------------------------------------------------------------------------------------------------


# unet_256 at ngf 64 with batch norm: the authors' count, 54,413,955. unet_128 has one ngf*8 level
# less: its 4x4 down convolution 512*512*16 = 4,194,304, its 4x4 up convolution 1024*512*16 =
# 8,388,608 (no biases before batch norm) and two batch norms of 2 * 512: 12,584,960 less, 41,828,995.
@pytest.mark.parametrize(("num_downs", "count"), [(8, 54_413_955), (7, 41_828_995)])
def test_unet_parameter_count(num_downs: int, count: int) -> None:
    assert n_parameters(UnetGenerator(num_downs=num_downs, norm="batch")) == count


def level_path(level: int) -> str:
    """State-dict prefix of U-Net level ``level`` (0 = outermost) in the authors' layout."""
    return "model" + ".model.1" * (level > 0) + ".model.3" * max(level - 1, 0)


def test_unet_reference_state_dict_keys() -> None:
    state = UnetGenerator(num_downs=8, norm="batch").state_dict()
    assert state["model.model.0.weight"].shape == (64, 3, 4, 4)
    assert "model.model.0.bias" not in state  # batch norm: no bias, as the authors' checkpoints
    assert state["model.model.3.weight"].shape == (128, 3, 4, 4)  # last up: (in, out, k, k), with bias
    assert state["model.model.3.bias"].shape == (3,)
    assert state["model.model.1.model.1.weight"].shape == (128, 64, 4, 4)
    assert state["model.model.1.model.2.running_mean"].shape == (128,)
    assert state["model.model.1.model.5.weight"].shape == (256, 64, 4, 4)
    innermost = level_path(7)
    assert innermost == "model.model.1" + ".model.3" * 6
    assert state[f"{innermost}.model.1.weight"].shape == (512, 512, 4, 4)
    assert state[f"{innermost}.model.3.weight"].shape == (512, 512, 4, 4)
    assert state[f"{innermost}.model.4.weight"].shape == (512,)
    assert state[f"{level_path(6)}.model.5.weight"].shape == (1024, 512, 4, 4)
    assert not any(key.startswith(f"{innermost}.model.3.model") for key in state)


@pytest.mark.parametrize(("num_downs", "dropouts"), [(8, 3), (7, 2), (5, 0)])
def test_unet_dropout_sits_in_the_ngf8_levels_above_the_innermost(num_downs: int, dropouts: int) -> None:
    net = UnetGenerator(ngf=2, num_downs=num_downs)
    blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]
    with_dropout = [i for i, b in enumerate(blocks) if isinstance(b.model[-1], nn.Dropout)]
    assert with_dropout == list(range(4, num_downs - 1))
    assert len(with_dropout) == dropouts
    assert all(blocks[i].model[-1].p == 0.5 for i in with_dropout)
    none = UnetGenerator(ngf=2, num_downs=num_downs, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in none.modules())


@pytest.mark.parametrize(("size", "num_downs"), [(128, 7), (256, 8)])
@pytest.mark.parametrize(("in_channels", "out_channels"), [(1, 3), (3, 1)])
def test_unet_skip_shapes(size: int, num_downs: int, in_channels: int, out_channels: int) -> None:
    ngf = 2
    net = build_unet(
        UnetParams(in_channels=in_channels, out_channels=out_channels, ngf=ngf, num_downs=num_downs)
    )
    assert net.size_multiple == 2**num_downs == size
    blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]
    assert len(blocks) == num_downs and blocks[0].outermost
    down, skip = {}, {}
    for level, block in enumerate(blocks):
        conv = block.model[0] if level == 0 else block.model[1]
        conv.register_forward_hook(lambda m, i, o, level=level: down.__setitem__(level, tuple(o.shape)))
        if level > 0:
            block.register_forward_hook(lambda m, i, o, level=level: skip.__setitem__(level, tuple(o.shape)))
    with torch.no_grad():
        out = net(torch.rand(1, in_channels, size, size) * 2 - 1)
    assert out.shape == (1, out_channels, size, size) and out.abs().max() <= 1

    def width(level: int) -> int:
        return ngf * min(2**level, 8)

    for level in range(num_downs):
        side = size // 2 ** (level + 1)
        assert down[level] == (1, width(level), side, side), level
    assert down[num_downs - 1][2:] == (1, 1)  # the bottleneck
    for level in range(1, num_downs):  # the level's input and its up-sampled output, concatenated
        side = size // 2**level
        assert skip[level] == (1, 2 * width(level - 1), side, side), level


def test_unet_skip_carries_the_activated_input() -> None:
    torch.manual_seed(0)
    net = UnetGenerator(ngf=4, num_downs=4, norm="none").eval()
    level1 = net.model.model[1]
    seen = {}
    level1.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    skip, up = seen["out"][:, :4], seen["out"][:, 4:]
    assert torch.equal(skip, nn.functional.leaky_relu(seen["x"], 0.2))
    assert up.shape == skip.shape and (seen["x"] < 0).any()


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_unet_upsample_and_sizes(upsample: str) -> None:
    net = build_unet(UnetParams(ngf=4, num_downs=5, upsample=upsample))
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 64)).shape == (2, 3, 32, 64)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == (upsample == "transpose")
    assert isinstance(net.model.model[-1], nn.Tanh)


def test_unet_params_validation() -> None:
    assert UnetParams().model_dump() == {
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 64,
        "num_downs": 8,
        "dropout": 0.5,
        "upsample": "transpose",
        "norm": "instance",
        "norm_affine": None,
        "init": "normal",
        "init_gain": 0.02,
    }
    for bad in ({"num_downs": 1}, {"num_downs": 11}, {"dropout": 1.0}, {"dropout": -0.1}, {"ngf": 0}):
        with pytest.raises(ValidationError):
            UnetParams(**bad)
    assert all(field.description for field in UnetParams.model_fields.values())


# -------------------------------------------------------------------------------------------------
# PatchGAN depths, PixelGAN, spectral norm
# -------------------------------------------------------------------------------------------------


def measured_field(net: nn.Module, size: int) -> tuple[int, int]:
    """Rows and columns of the input that one central output pixel depends on, with all weights set
    to positive constants (every path adds, none cancels), biases 0 and a positive input."""
    net = net.double()
    with torch.no_grad():
        for layer in convs_of(net):
            layer.weight.fill_(0.01)
            if layer.bias is not None:
                layer.bias.zero_()
    image = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = net(image)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    touched = image.grad[0, 0] != 0
    rows = touched.any(dim=1).nonzero().flatten()
    cols = touched.any(dim=0).nonzero().flatten()
    assert 0 < rows[0] and rows[-1] < size - 1, "the field reaches the border: use a larger input"
    assert touched.sum() == len(rows) * len(cols)  # a full rectangle
    return len(rows), len(cols)


@pytest.mark.parametrize(("n_layers", "field"), [(0, 16), (1, 16), (3, 70), (5, 286)])
def test_patchgan_receptive_field_by_gradient(n_layers: int, field: int) -> None:
    net = build_patchgan(PatchGANParams(ndf=2, n_layers=n_layers, norm="none"))
    assert measured_field(net, 512) == (field, field)
    assert receptive_field(net) == field


def test_pixel_receptive_field_is_one_pixel() -> None:
    assert measured_field(build_pixel(PixelParams(ndf=2, norm="none")), 16) == (1, 1)


# Output side for 256 px: the first and n_layers - 1 more stride-2 convolutions halve it, the two
# stride-1 4x4 convolutions with padding 1 take 1 each: 256 / 2**max(n_layers, 1) - 2.
@pytest.mark.parametrize(("n_layers", "side"), [(0, 126), (1, 126), (2, 62), (3, 30), (4, 14), (5, 6)])
def test_patchgan_output_size_at_256(n_layers: int, side: int) -> None:
    net = build_patchgan(PatchGANParams(ndf=2, n_layers=n_layers, in_channels=6))
    with torch.no_grad():
        assert net(torch.randn(1, 6, 256, 256)).shape == (1, 1, side, side)
    assert net.model[0].in_channels == 6


def test_pixel_discriminator_layout_and_count() -> None:
    net = build_pixel(PixelParams())
    assert [type(m) for m in net.net] == [
        nn.Conv2d, nn.LeakyReLU, nn.Conv2d, nn.InstanceNorm2d, nn.LeakyReLU, nn.Conv2d
    ]  # fmt: skip
    assert all(c.kernel_size == (1, 1) for c in convs_of(net))
    # 3*64 + 64 = 256; 64*128 + 128 = 8,320; 128*1 + 1 = 129 -> 8,705
    assert n_parameters(net) == 8_705
    # batch norm: 256; 64*128 = 8,192; 2*128 = 256; 128 -> 8,832
    assert n_parameters(PixelDiscriminator(norm="batch")) == 8_832
    with torch.no_grad():
        assert net(torch.randn(2, 3, 256, 256)).shape == (2, 1, 256, 256)
        assert net(torch.randn(1, 3, 7, 5)).shape == (1, 1, 7, 5)


@pytest.mark.parametrize("factory", [lambda: build_patchgan(PatchGANParams(ndf=8, spectral_norm=True)),
                                     lambda: build_pixel(PixelParams(ndf=8, spectral_norm=True))])  # fmt: skip
def test_spectral_norm(factory) -> None:
    torch.manual_seed(0)
    net = factory()
    keys = list(net.state_dict())
    first = "model.0" if "model.0.parametrizations.weight.original" in keys else "net.0"
    assert f"{first}.parametrizations.weight.original" in keys and f"{first}.weight" not in keys
    convs = convs_of(net)
    assert all(nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    original = convs[-2].parametrizations.weight.original
    assert original.std().item() == pytest.approx(0.02, rel=0.2)  # initialised before normalising
    x = torch.randn(1, 3, 64, 64)
    for _ in range(5):  # power iterations run in training mode
        net(x)
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.filterwarnings("ignore")  # torch.jit.script's deprecation notice
def test_unet_scripts_for_torchscript_export() -> None:
    torch.manual_seed(0)
    net = build_unet(UnetParams(ngf=4, num_downs=5, norm="batch")).eval()
    scripted = torch.jit.script(net)  # what `ganforge export --to torchscript` tries first
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))
