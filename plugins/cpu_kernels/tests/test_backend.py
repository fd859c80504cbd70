"""The ``cpu_kernels`` backend: registered with its params, taken by ``auto`` on a CPU in fp32 with a C++
compiler, and applied by runs, ``translate`` and ``export`` without changing parameters or files."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from ganforge_cpu_kernels import KernelLayer
from ganforge_cpu_kernels.norm import FoldedReLU
from ganforge_cpu_kernels.plugin import CpuKernels, CpuKernelsParams, compiler
from ganforge_cpu_kernels.winograd import FoldedReflectionPad2d, WinogradConv2d
from PIL import Image
from torch import nn

from ganforge.engine.runtime import Runtime
from ganforge.plugins import collect_registries, make_plugin_manager

SMALL = ("data.size=32", "data.length=2", "train.batch_size=1", "data.test_length=2", "train.epochs=1", "output.n_samples=2")
TINY = [f"--set={option}" for option in (*SMALL, "output.report=false")]


@pytest.fixture(scope="module")
def installed() -> None:
    """The command line finds the backend through the package's entry point: it must be installed."""
    try:
        metadata.distribution("ganforge-cpu-kernels")
    except metadata.PackageNotFoundError:
        pytest.skip("ganforge-cpu-kernels is not installed (pip install -e plugins/cpu_kernels)")


def expected_by_auto() -> str:
    return "cpu_kernels" if compiler() is not None else "direct"


def test_available_on_the_cpu_in_fp32_only():
    backend = CpuKernels(CpuKernelsParams())
    assert backend.name == "cpu_kernels" and backend.priority > 0
    cpu = torch.device("cpu")
    if compiler() is not None:
        assert backend.available(cpu, "fp32") is True
    else:
        assert backend.available(cpu, "fp32") == "no C++ compiler (install g++ or set CXX)"
    assert backend.available(torch.device("cuda"), "fp32") == "CPU only, this is cuda"
    assert backend.available(cpu, "bf16") == "fp32 only, this run is bf16"


def test_registered_with_its_params(installed, cli):
    registries = collect_registries(make_plugin_manager())
    component = registries["backend"].get("cpu_kernels")
    assert component.plugin == "cpu_kernels" and component.params is CpuKernelsParams
    result = cli("list-components", "backend", "--json")
    assert result.returncode == 0, result.stderr
    names = {entry["name"] for entry in json.loads(result.stdout)}
    assert names == {"auto", "direct", "cpu_kernels"}
    result = cli("list-components", "backend", "cpu_kernels")
    assert result.returncode == 0, result.stderr
    for field in ("winograd", "winograd_min_channels", "narrow", "norm", "strided", "upsampling"):
        assert field in result.stdout


def test_prepare_keeps_parameters_keys_and_folds(installed):
    """Through the engine's runtime, as a run prepares a model's networks: the same Parameter objects
    and state-dict keys, the Sequential neighbours folded, the same function."""
    registries = collect_registries(make_plugin_manager())
    spec = {"type": "cyclegan", "generator": {"type": "resnet", "ngf": 32, "n_blocks": 1},
            "discriminator": {"type": "patchgan", "ndf": 64}}
    torch.manual_seed(0)
    model = registries.resolve("model", spec, "model").build(0)
    reference = registries.resolve("model", spec, "model").build(0)
    reference.load_state_dict(model.state_dict())
    parameters = dict(model.named_parameters())
    keys = list(model.state_dict())
    runtime = Runtime(torch.device("cpu"), backend=CpuKernels(CpuKernelsParams()))
    assert runtime.prepare_model(model, model.networks()) is model
    assert all(p is parameters[k] for k, p in model.named_parameters())
    assert len(list(model.parameters())) == len(parameters)
    assert list(model.state_dict()) == keys
    nets = model.networks()
    blocks = [m for m in nets["G_A"].modules() if isinstance(m, nn.Sequential)]
    blocks = [block for block in blocks if isinstance(block[0], FoldedReflectionPad2d)]
    assert blocks and isinstance(blocks[0][1], WinogradConv2d) and blocks[0][1].reflect_pad
    assert any(isinstance(m, FoldedReLU) for m in nets["G_A"].modules())
    assert runtime.describe_backend() == (
        "backend cpu_kernels (replaced 6 Winograd, 6 narrow, 8 strided, 4 transposed, "
        "20 instance-norm layers)"
    )
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for name, net in nets.items():
        with torch.no_grad():
            assert (net(x) - reference.networks()[name](x)).abs().max() < 1e-4, name


def run(cli, tmp_path, *sets: str):
    root = f'output.root="{tmp_path.as_posix()}"'
    return cli("run", "recipes/quickstart.toml", *TINY, "--set", root, *sets)


def test_a_plain_run_takes_the_kernels_and_direct_stays_selectable(installed, cli, tmp_path):
    result = run(cli, tmp_path, "--set", "model.generator.upsample=transpose")  # the paper\'s layers
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    if compiler() is not None:
        assert first.split("; averaged")[0].endswith(
            "on cpu, backend cpu_kernels (auto; replaced 2 narrow, 4 strided, 4 transposed, "
            "28 instance-norm layers)"
        ), first
    else:
        assert first.split("; averaged")[0].endswith(
            "on cpu, backend direct (auto; cpu_kernels: no C++ compiler (install g++ or set CXX))"
        )
    assert result.stderr == ""
    (saved,) = tmp_path.glob("*/recipe.toml")
    assert '[train.backend]\ntype = "auto"' in saved.read_text()  # the choice is made again where it resumes
    result = run(cli, tmp_path, "--set", "train.backend.type=direct")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split("; averaged")[0].endswith("on cpu, backend direct")


def test_older_recipes_asking_for_winograd_take_auto(installed, cli, tmp_path):
    result = run(cli, tmp_path, "--set", 'train.conv_algorithm="winograd"')
    assert result.returncode == 0, result.stderr
    assert f"backend {expected_by_auto()} (auto" in result.stdout.splitlines()[0]
    result = run(cli, tmp_path, "--set", 'train.conv_algorithm="direct"')
    assert result.stdout.splitlines()[0].split("; averaged")[0].endswith("backend direct")


def test_named_outright_it_must_run_here(installed, cli, tmp_path):
    result = run(cli, tmp_path, "--set", "train.backend.type=cpu_kernels", "--set", 'train.precision="bf16"')
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: train.backend: backend 'cpu_kernels' does not run on cpu in bf16: fp32 only, this run is "
        "bf16; use auto (the fastest available) or direct"
    )
    typo = ["--set", "train.backend.type=cpu_kernels", "--set", "train.backend.winogrd=false"]
    result = run(cli, tmp_path, *typo)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: recipes/quickstart.toml: train.backend.winogrd: unknown key (did you mean 'winograd'?); "
        "valid keys: narrow, norm, strided, upsampling, winograd, winograd_min_channels"
    )


def test_translate_with_the_kernels_gives_the_same_pixels(installed, cli, tmp_path):
    from ganforge.builtins.networks import ResnetParams, build_resnet

    torch.manual_seed(0)
    net = build_resnet(ResnetParams(ngf=32, n_blocks=1))  # residual blocks at 128 channels: eligible
    torch.save(net.state_dict(), tmp_path / "latest_net_G_A.pth")
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    pixels, notes = [], []
    for backend in ("direct", "cpu_kernels"):
        result = cli("translate", str(tmp_path / "latest_net_G_A.pth"), str(tmp_path / "in"),
                     "--out", str(tmp_path / backend), "--device", "cpu", "--backend", backend)
        assert result.returncode == 0, result.stderr
        notes.append([line for line in result.stderr.splitlines() if "backend" in line])
        pixels.append(np.asarray(Image.open(tmp_path / backend / "a.png"), dtype=np.int64))
    assert notes == [
        ["note: backend direct"],
        ["note: backend cpu_kernels (replaced 2 Winograd, 2 narrow, 2 transposed, 7 instance-norm layers)"],
    ]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1  # fp32 rounding at most flips a grey level


@pytest.mark.filterwarnings("ignore")
def test_export_with_the_kernels_writes_torchs_operators(installed, cli, tmp_path):
    """The backend runs the PyTorch side of export's checks; the files are those of torch's layers."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ganforge.builtins.networks import ResnetParams, build_resnet

    torch.manual_seed(0)
    torch.save(build_resnet(ResnetParams(ngf=32, n_blocks=1)).state_dict(), tmp_path / "latest_net_G_A.pth")
    result = cli("export", str(tmp_path / "latest_net_G_A.pth"), "--out", str(tmp_path / "out"),
                 "--backend", "cpu_kernels", "--check-size", "32")
    assert result.returncode == 0, result.stderr
    assert "note: backend cpu_kernels (replaced 2 Winograd" in result.stderr
    for line in result.stdout.splitlines()[1:]:
        assert float(line.split("max abs diff vs PyTorch ")[1].split()[0]) < 1e-4, line
    graph = onnx.load(str(next(Path(tmp_path / "out").glob("*.onnx")))).graph
    assert {node.domain for node in graph.node} == {""}  # standard operators only
    scripted = torch.jit.load(str(next(Path(tmp_path / "out").glob("*.torchscript.pt"))))
    assert not any("ganforge_cpu_kernels" in str(type(m)) for m in scripted.modules())
    assert not any(isinstance(m, KernelLayer) for m in scripted.modules())
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "in" / "a.png")
    onnx_file = next(Path(tmp_path / "out").glob("*.onnx"))
    result = cli("translate", str(onnx_file), str(tmp_path / "in"), "--out", str(tmp_path / "t"),
                 "--backend", "cpu_kernels")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: --backend cpu_kernels: {onnx_file.name} (ONNX) is not a PyTorch module; use auto or direct"
    )
