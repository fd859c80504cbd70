"""Generators saved by the CycleGAN authors' PyTorch implementation load, and compute what theirs compute.

The reference network below is written from the published architecture, independently of
``ganforge.builtins.networks``: a ``model`` Sequential of ReflectionPad2d(3), Conv 7x7, IN, ReLU,
2 x [Conv 3x3 stride 2, IN, ReLU], n ResNet blocks (each a ``conv_block`` Sequential: ReflectionPad2d(1),
Conv 3x3, IN, ReLU, [Dropout], ReflectionPad2d(1), Conv 3x3, IN; plus the input), 2 x [ConvTranspose2d
k3 s2 p1 op1, IN, ReLU], ReflectionPad2d(3), Conv 7x7, Tanh. Its state dict is what the authors' code
saves as ``latest_net_G_A.pth``; old files also carry instance-norm running statistics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ganforge_cyclegan.reference import clean_state, infer_spec
from torch import nn

from ganforge.builtins.networks import ResnetParams, build_resnet
from ganforge.cli import main
from ganforge.errors import CheckpointError
from ganforge.inference import load_generator
from ganforge.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file is in plugins/cyclegan/tests/)


pytestmark = pytest.mark.usefixtures("one_thread")


class ReferenceBlock(nn.Module):
    def __init__(self, dim: int, affine: bool, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim, affine=affine),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=affine)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ReferenceGenerator(nn.Module):
    def __init__(
        self, ngf: int, n_blocks: int, affine: bool = False, dropout: bool = False, nc: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(nc, ngf, 7),
            nn.InstanceNorm2d(ngf, affine=affine),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(ngf * mult * 2, affine=affine),
                nn.ReLU(True),
            ]
        layers += [ReferenceBlock(ngf * 4, affine, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ngf * mult // 2, affine=affine),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def reference_net(
    ngf: int, n_blocks: int, affine: bool = False, dropout: bool = False, seed: int = 0
) -> nn.Module:
    torch.manual_seed(seed)
    net = ReferenceGenerator(ngf, n_blocks, affine, dropout)
    for p in net.parameters():  # not the default init, so a mix-up of layers cannot go unnoticed
        nn.init.normal_(p, 0.0, 0.05) if p.dim() > 1 else nn.init.uniform_(p, -0.5, 0.5)
        if affine and p.dim() == 1:
            p.data.add_(1.0)
    return net.eval()


def with_running_stats(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """What PyTorch < 0.4 saved for every instance norm: running_mean, running_var, num_batches_tracked."""
    out = dict(state)
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            out[f"{name}.running_mean"] = torch.rand(module.num_features)
            out[f"{name}.running_var"] = torch.rand(module.num_features) + 0.5
            out[f"{name}.num_batches_tracked"] = torch.tensor(1234)
    return out


def assert_same_outputs(net: nn.Module, path: Path, **load: object) -> dict:
    generator = load_generator(path, **load)
    x = torch.rand(2, 3, 32, 44, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = net(x)
        got = generator(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-6
    assert generator.spec is not None
    return generator.spec


@pytest.mark.parametrize(
    ("ngf", "n_blocks", "affine", "dropout", "old_stats", "prefix", "legacy_file"),
    [
        (8, 9, False, False, False, "", False),  # latest_net_G_A.pth of a 9-block run
        (4, 6, False, False, True, "", True),  # an old file: running stats, pre-1.6 serialisation
        (8, 9, True, False, False, "", False),  # affine instance norm
        (4, 2, True, True, True, "module.", False),  # dropout blocks, DataParallel prefix, stats
    ],
)
def test_reference_file_loads_with_identical_outputs(
    tmp_path, ngf, n_blocks, affine, dropout, old_stats, prefix, legacy_file
) -> None:
    net = reference_net(ngf, n_blocks, affine, dropout)
    state = net.state_dict()
    if old_stats:
        state = with_running_stats(state, net)
    state = {prefix + k: v for k, v in state.items()}
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy_file)
    spec = assert_same_outputs(net, path)  # detected from the keys
    assert spec == {
        "type": "resnet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": ngf,
        "n_blocks": n_blocks,
        "upsample": "transpose",
        "norm_affine": affine,
    }
    assert assert_same_outputs(net, path, weights_format="reference") == spec  # named


def test_published_size_generator(tmp_path) -> None:
    """The pretrained ``<name>.pth`` files: ngf 64, 9 blocks, ``model.19`` the first transposed conv."""
    net = reference_net(64, 9)
    state = net.state_dict()
    assert tuple(state["model.19.weight"].shape) == (256, 128, 3, 3)
    assert tuple(state["model.10.conv_block.1.weight"].shape) == (256, 256, 3, 3)
    path = tmp_path / "horse2zebra.pth"
    torch.save(state, path)
    generator = load_generator(path)
    assert generator.kind == "cyclegan"
    assert sum(p.numel() for p in generator.module.parameters()) == 11_378_179
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(generator(x), net(x), atol=1e-6, rtol=0)


def test_norm_affine_param_keeps_the_paper_default() -> None:
    assert sum(p.numel() for p in build_resnet(ResnetParams()).parameters()) == 11_378_179
    affine = build_resnet(ResnetParams(norm_affine=True))
    norms = [m for m in affine.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(m.affine for m in norms)
    extra = 2 * sum(m.num_features for m in norms)
    assert sum(p.numel() for p in affine.parameters()) == 11_378_179 + extra


def test_keys_that_do_not_fit_are_named(tmp_path) -> None:
    state = reference_net(4, 3).state_dict()
    del state["model.11.conv_block.5.weight"]
    state["model.12.conv_block.1.weight"] = torch.zeros(16, 16, 5, 5)
    state["model.99.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert "\n" not in message
    assert "missing: model.11.conv_block.5.weight" in message
    assert "unexpected: model.99.weight" in message
    assert "wrong shape: model.12.conv_block.1.weight (16, 16, 5, 5) (expected (16, 16, 3, 3))" in message


def test_named_format_that_does_not_fit_says_why(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(
        CheckpointError, match=r"not a reference ResNet generator: no 7x7 convolution 'model.1.weight'"
    ):
        load_generator(path, weights_format="reference")
    with pytest.raises(CheckpointError, match=r"neither a ganforge file nor a format a plugin recognises"):
        load_generator(path)  # auto: no plugin claims it
    with pytest.raises(CheckpointError, match=r"no plugin reads format 'pix2pix'"):
        load_generator(path, weights_format="pix2pix")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``ganforge ARGS`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_of_reference_weights(tmp_path, capsys) -> None:
    """The authors' .pth becomes a safetensors file that rebuilds the same network without them."""
    net = reference_net(4, 2, affine=True)
    torch.save(net.state_dict(), tmp_path / "latest_net_G_A.pth")
    code, _, err = cli(
        capsys,
        "export",
        str(tmp_path / "latest_net_G_A.pth"),
        "--out",
        str(tmp_path / "x"),
        "--to",
        "safetensors",
        "--format",
        "reference",
    )
    assert code == 0, err
    generator = load_generator(tmp_path / "x" / "latest_net_G_A.safetensors")
    assert generator.spec["norm_affine"] is True
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        assert (generator(x) - net(x)).abs().max() <= 1e-6


def test_hook_through_the_plugin_manager() -> None:
    state = reference_net(4, 1).state_dict()
    hook = make_plugin_manager().manager.hook.load_generator_weights
    spec, tensors = hook(path=Path("x.pth"), state=state, weights_format=None)
    assert spec["n_blocks"] == 1 and spec["ngf"] == 4 and set(tensors) == set(state)
    assert hook(path=Path("x.pth"), state=state, weights_format="something_else") is None
    assert hook(path=Path("x.pth"), state={"a.weight": torch.zeros(1)}, weights_format=None) is None


def test_clean_state_and_infer_spec_directly() -> None:
    net = reference_net(4, 2, dropout=True)
    state = with_running_stats(net.state_dict(), net)
    cleaned = clean_state(state)
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in cleaned)
    assert "model.10.conv_block.5.weight" in cleaned and "model.10.conv_block.6.weight" not in cleaned
    assert infer_spec(cleaned, "x")["n_blocks"] == 2


def test_hook_is_documented() -> None:
    docs = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "docs" / "plugins.md").read_text()
    assert "`load_generator_weights" in docs
