"""ResNet generators saved by other CycleGAN re-implementations load, and compute what they compute.

The networks below are written here, in layouts other projects use and with attribute names of this
file's choosing (``stem``/``down``/``blocks``/``up``/``head`` modules; a bare ``nn.Sequential`` of
nested Sequentials), with reflection padding folded into the convolutions, affine or plain instance
norm (with or without tracked statistics), batch norm, and transposed or resize-conv up-sampling.
Their state dicts are saved to real files (also behind a ``module.`` prefix, inside a
``{"state_dict": ...}`` container, and as safetensors), loaded through ``load_generator`` and once
through ``ganforge translate``, and the outputs compared with the source network's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ganforge_cyclegan.any_resnet import load_any_resnet
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from ganforge.builtins.networks import ResnetGenerator
from ganforge.errors import CheckpointError
from ganforge.inference import load_generator

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.usefixtures("one_thread")


def make_norm(kind: str, channels: int) -> nn.Module:
    return {
        "in": lambda: nn.InstanceNorm2d(channels),
        "in_affine": lambda: nn.InstanceNorm2d(channels, affine=True),
        "in_affine_tracked": lambda: nn.InstanceNorm2d(channels, affine=True, track_running_stats=True),
        "in_legacy": lambda: nn.InstanceNorm2d(channels, track_running_stats=True),  # stats, no scale
        "bn": lambda: nn.BatchNorm2d(channels),
        "none": lambda: nn.Identity(),
    }[kind]()


def upsampler(kind: str, channels: int, bias: bool) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(
            channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Conv2d(channels, channels // 2, 3, padding=1, padding_mode="reflect", bias=bias),
    )


class Residual(nn.Module):
    def __init__(self, channels: int, norm: str, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))


class NamedGenerator(nn.Module):
    """Attribute-named layout: stem, down (a ModuleList of conv/norm pairs), blocks, up, head."""

    def __init__(
        self, ngf: int, n_blocks: int, norm: str, up: str, bias: bool, nc_in: int = 3, nc_out: int = 3
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(nc_in, ngf, 7, padding=3, padding_mode="reflect", bias=bias)
        self.stem_norm = make_norm(norm, ngf)
        self.down = nn.ModuleList()
        for c in (ngf, 2 * ngf):
            self.down.append(
                nn.ModuleDict(
                    {
                        "conv": nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias),
                        "norm": make_norm(norm, 2 * c),
                    }
                )
            )
        self.blocks = nn.Sequential(*[Residual(4 * ngf, norm, bias) for _ in range(n_blocks)])
        self.up = nn.ModuleList()
        for c in (4 * ngf, 2 * ngf):
            self.up.append(nn.ModuleDict({"layer": upsampler(up, c, bias), "norm": make_norm(norm, c // 2)}))
        self.head = nn.Conv2d(ngf, nc_out, 7, padding=3, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_norm(self.stem(x)))
        for step in self.down:
            x = torch.relu(step["norm"](step["conv"](x)))
        x = self.blocks(x)
        for step in self.up:
            x = torch.relu(step["norm"](step["layer"](x)))
        return torch.tanh(self.head(x))


def sequential_generator(ngf: int, n_blocks: int, norm: str, up: str, bias: bool) -> nn.Module:
    """A bare Sequential of nested Sequentials (keys ``0.1.weight``, ``2.0.body.1.weight``, ...)."""

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.ReflectionPad2d(1),
                nn.Conv2d(c, c, 3, bias=bias),
                make_norm(norm, c),
                nn.ReLU(),
                nn.Dropout(0.0),
                nn.ReflectionPad2d(1),
                nn.Conv2d(c, c, 3, bias=bias),
                make_norm(norm, c),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x)

    def down(c: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), make_norm(norm, 2 * c), nn.ReLU())

    def upper(c: int) -> nn.Sequential:
        return nn.Sequential(upsampler(up, c, bias), make_norm(norm, c // 2), nn.ReLU())

    return nn.Sequential(
        nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), make_norm(norm, ngf), nn.ReLU()
        ),
        nn.Sequential(down(ngf), down(2 * ngf)),
        nn.Sequential(*[Block(4 * ngf) for _ in range(n_blocks)]),
        nn.Sequential(upper(4 * ngf), upper(2 * ngf)),
        nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()),
    )


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and running statistic drawn at random, so a mix-up of layers shows in the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.dim() == 1 and name.endswith("weight"):
                tensor.uniform_(0.5, 1.5)  # a norm's scale
            elif tensor.dim() == 1:
                tensor.uniform_(-0.5, 0.5)  # biases, shifts, running means
            else:
                tensor.normal_(0.0, 0.1)
    return net.eval()


def per_image_statistics(net: nn.Module) -> nn.Module:
    """What CycleGAN-family code computes with instance norm that tracked statistics: each image's own
    statistics (the statistics were never used at inference, and the loader drops them)."""
    for module in net.modules():
        if isinstance(module, nn.InstanceNorm2d):
            module.track_running_stats = False
    return net


def image_batch() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1


def check_same(net: nn.Module, path: Path, expected_spec: dict, **load: object) -> None:
    generator = load_generator(path, **load)
    x = image_batch()[:, : generator.in_channels]
    with torch.no_grad():
        want = net(x)
        got = generator(x)
    assert got.shape == want.shape == (2, generator.spec["out_channels"], 32, 32)
    assert (got - want).abs().max().item() <= 1e-6
    assert {k: generator.spec[k] for k in expected_spec} == expected_spec


LAYOUTS = [
    # id, network, how it is saved, --format, the spec read from it
    (
        "named-in-affine-transpose",
        lambda: NamedGenerator(8, 2, "in_affine", "transpose", bias=True),
        "plain",
        "auto",
        {"ngf": 8, "n_blocks": 2, "upsample": "transpose", "norm": "instance", "norm_affine": True},
    ),
    (
        "named-in-affine-tracked-dataparallel",
        lambda: NamedGenerator(4, 2, "in_affine_tracked", "transpose", bias=True),
        "module",
        "resnet-instance",
        {"ngf": 4, "n_blocks": 2, "norm": "instance", "norm_affine": True},
    ),
    (
        "named-bn-resize-conv-container",
        lambda: NamedGenerator(4, 1, "bn", "resize", bias=False),
        "container",
        "auto",
        {"ngf": 4, "n_blocks": 1, "upsample": "resize_conv", "norm": "batch", "norm_affine": True},
    ),
    (
        "named-bn-with-conv-bias",  # the bias is folded into batch norm's running mean
        lambda: NamedGenerator(4, 2, "bn", "transpose", bias=True),
        "plain",
        "resnet-batch",
        {"ngf": 4, "n_blocks": 2, "norm": "batch", "norm_affine": True},
    ),
    (
        "named-plain-in-no-conv-bias-1-to-3-channels",
        lambda: NamedGenerator(4, 1, "in", "resize", bias=False, nc_in=1, nc_out=3),
        "plain",
        "auto",
        {"in_channels": 1, "out_channels": 3, "ngf": 4, "norm": "instance", "norm_affine": False},
    ),
    (
        "named-no-norm",
        lambda: NamedGenerator(4, 2, "none", "transpose", bias=True),
        "plain",
        "resnet-none",
        {"ngf": 4, "n_blocks": 2, "norm": "none"},
    ),
    (
        "sequential-legacy-stats-resize-conv",
        lambda: sequential_generator(6, 2, "in_legacy", "resize", bias=True),
        "module",
        "auto",
        {"ngf": 6, "n_blocks": 2, "upsample": "resize_conv", "norm": "instance", "norm_affine": False},
    ),
    (
        "sequential-in-affine-safetensors",  # safetensors sorts its keys: read in natural order
        lambda: sequential_generator(4, 2, "in_affine", "transpose", bias=True),
        "safetensors",
        "auto",
        {"ngf": 4, "n_blocks": 2, "upsample": "transpose", "norm": "instance", "norm_affine": True},
    ),
    (
        "sequential-no-blocks-container",
        lambda: sequential_generator(4, 0, "in", "transpose", bias=True),
        "container",
        "resnet",
        {"ngf": 4, "n_blocks": 0, "norm": "instance", "norm_affine": False},
    ),
]


def save(state: dict[str, torch.Tensor], how: str, folder: Path) -> Path:
    if how == "safetensors":
        path = folder / "generator.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    path = folder / "generator.pth"
    if how == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif how == "container":
        state = {"state_dict": state, "epoch": 200, "optimizer": {"lr": 0.0002}}
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("make", "how", "weights_format", "spec"),
    [case[1:] for case in LAYOUTS],
    ids=[case[0] for case in LAYOUTS],
)
def test_layout_loads_with_identical_outputs(tmp_path, make, how, weights_format, spec) -> None:
    net = randomised(make())
    path = save(net.state_dict(), how, tmp_path)
    check_same(per_image_statistics(net), path, spec, weights_format=weights_format)


def test_the_layouts_differ_in_their_keys() -> None:
    """The cases above are not the authors' layout in disguise."""
    named = NamedGenerator(4, 1, "in_affine", "transpose", bias=True).state_dict()
    nested = sequential_generator(4, 1, "in_affine", "transpose", bias=True).state_dict()
    assert list(named)[:4] == ["stem.weight", "stem.bias", "stem_norm.weight", "stem_norm.bias"]
    assert "blocks.0.conv1.weight" in named and "up.0.layer.weight" in named
    assert "0.1.weight" in nested and "2.0.body.6.weight" in nested
    assert not any(k.startswith("model.") for k in [*named, *nested])


def test_translate_command_reads_another_layout(tmp_path) -> None:
    """``ganforge translate FILE images/ --out out/`` in a subprocess: the saved image is the source
    network's output, to the 8-bit step."""
    net = randomised(NamedGenerator(4, 2, "in_affine", "resize", bias=True), seed=5)
    path = save(net.state_dict(), "module", tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "a.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ganforge",
            "translate",
            str(path),
            str(images),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--backend",
            "direct",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB")).astype(int)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want = net(x)[0].clamp(-1, 1).add(1).mul(127.5).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(out - want).max() <= 1
    assert (out == want).mean() > 0.99


def test_affine_statistics_after_biased_convs_are_ambiguous(tmp_path) -> None:
    """Batch norm, or instance norm that tracked statistics? The tensors cannot say: one line says so."""
    net = randomised(NamedGenerator(4, 2, "in_affine_tracked", "transpose", bias=True))
    path = save(net.state_dict(), "plain", tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(info.value) == (
        f"{path}: stem 7x7 3->4, 2 down, 2 residual blocks, 2 transposed up, final 7x7 4->3; its norm "
        "layers hold running statistics and a learned scale and shift after convolutions with a bias: "
        "batch norm, or instance norm that tracked statistics? name it with --format resnet-batch or "
        "--format resnet-instance"
    )


def test_unrecognised_layer_is_named_with_what_came_before(tmp_path) -> None:
    net = NamedGenerator(4, 2, "in_affine", "transpose", bias=True)
    state = net.state_dict()
    state["up.0.layer.weight"] = torch.zeros(16, 8, 4, 4)  # a 4x4 transposed convolution, in its place
    path = save(state, "plain", tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message == (
        f"{path}: not a ResNet generator: recognised stem 7x7 3->4, 2 down, 2 residual blocks, then "
        "'up.0.layer.weight' (16, 8, 4, 4) not recognised (expected up-sampling layer 1 of 2: transposed "
        "(16, 8, 3, 3) or resize-conv (8, 16, 3, 3))"
    )


def test_odd_residual_convolution_and_early_end(tmp_path) -> None:
    state = NamedGenerator(4, 1, "in", "transpose", bias=True).state_dict()
    keys = list(state)
    cut = keys.index("blocks.0.conv2.weight")
    with pytest.raises(
        CheckpointError,
        match=r"recognised stem 7x7 3->4, 2 down, then "
        r"'up.0.layer.weight' \(16, 8, 3, 3\) not recognised \(expected the second 3x3",
    ):
        load_any_resnet({k: state[k] for k in keys[:cut] + keys[cut + 2 :]}, "x", "resnet")
    with pytest.raises(
        CheckpointError,
        match=r"^x: not a ResNet generator: recognised stem 7x7 3->4, 1 down, "
        r"then the file ends \(expected down-sampling convolution 2 of 2",
    ):
        load_any_resnet({k: state[k] for k in keys[:4]}, "x", "resnet")


def test_detection_leaves_other_files_alone() -> None:
    """In auto mode a file that is not a ResNet generator from its stem on is not claimed (None), so the
    core's "no plugin recognises" message (and other plugins) still apply; named, it is an error."""
    unet_like = {"down.0.weight": torch.zeros(8, 3, 4, 4), "down.0.bias": torch.zeros(8)}
    assert load_any_resnet(unet_like, "x", None) is None
    with pytest.raises(
        CheckpointError, match=r"nothing recognised: 'down.0.weight' \(8, 3, 4, 4\) not recognised"
    ):
        load_any_resnet(unet_like, "x", "resnet")


def test_named_norm_that_the_tensors_contradict() -> None:
    state = randomised(NamedGenerator(4, 1, "in_affine", "transpose", bias=True)).state_dict()
    with pytest.raises(CheckpointError, match="--format resnet-none, but the file holds norm layers"):
        load_any_resnet(state, "x", "resnet-none")
    with pytest.raises(
        CheckpointError, match="--format resnet-batch, but the norm layers hold no running_mean"
    ):
        load_any_resnet(state, "x", "resnet-batch")


def test_authors_batch_norm_generator_loads_by_detection(tmp_path) -> None:
    """The authors' keys with batch norm (no convolution biases, running statistics): the authors'
    reader refuses it, the shape reader takes it, without --format."""
    net = randomised(ResnetGenerator(3, 3, 4, 1, "transpose", None, "batch"))
    assert "model.1.bias" not in net.state_dict() and "model.2.running_mean" in net.state_dict()
    path = save(net.state_dict(), "plain", tmp_path)
    check_same(net, path, {"norm": "batch", "norm_affine": True, "n_blocks": 1})


def test_formats_are_documented() -> None:
    text = (ROOT / "docs" / "export.md").read_text()
    for name in ("--format resnet", "resnet-instance", "resnet-batch", "resnet-none"):
        assert name in text
