"""``ganforge export``: safetensors (spec in the metadata), ONNX (checked with onnxruntime) and TorchScript.

One real export from the command line (with torch's default ONNX exporter, the slow part), then each
file loaded back: through ``load_generator`` against the checkpoint's net, and through ``translate``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.inference import (
    Tiling,
    load_generator,
    max_abs_diff,
    save_onnx,
    translate_batch,
    translate_tiled,
)
from tests.conftest import run_cli
from tests.test_translate import cli, make_run, noise_image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
safetensors = pytest.importorskip("safetensors")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, str]:
    """(run directory, export folder, stdout of ``ganforge export RUN --direction BtoA``)."""
    base = tmp_path_factory.mktemp("export")
    run = make_run(base / "run", seed=1)
    out = base / "exports"
    result = run_cli(  # torch's own layers on the PyTorch side: the diffs below are exact
        "export", str(run), "--out", str(out), "--direction", "BtoA", "--backend", "direct",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return run, out, result.stdout


def test_export_writes_three_files_and_reports_the_differences(exported) -> None:
    _, out, stdout = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "run_G_B.onnx",
        "run_G_B.safetensors",
        "run_G_B.torchscript.pt",
    ]
    diffs = dict(
        re.findall(r"^(\w+)\s+\S+\s+[\d.]+ MiB\s+max abs diff vs PyTorch (\S+)", stdout, re.MULTILINE)
    )
    assert set(diffs) == {"safetensors", "onnx", "torchscript"}, stdout
    assert float(diffs["safetensors"]) == 0.0 and float(diffs["torchscript"]) == 0.0
    assert float(diffs["onnx"]) < 1e-4
    assert "onnxruntime, random 1x3x64x72 input, dynamo exporter, opset 18" in stdout


def test_safetensors_carries_the_spec_and_needs_no_recipe(exported, tmp_path) -> None:
    from safetensors import safe_open

    run, out, _ = exported
    copy = tmp_path / "alone.safetensors"
    shutil.copy(out / "run_G_B.safetensors", copy)  # far from the run and its recipe
    with safe_open(str(copy), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == "ganforge.generator" and metadata["plugin"] == "builtin.networks"
    assert json.loads(metadata["generator"]) == {
        "type": "resnet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 4,
        "n_blocks": 1,
        "upsample": "resize_conv",
        "output": "image",
        "norm": "instance",
        "init": "normal",
        "init_gain": 0.02,
    }  # norm_affine unset (None) is left out
    generator = load_generator(copy)
    assert generator.kind == "safetensors" and generator.spec["ngf"] == 4
    assert max_abs_diff(load_generator(run, direction="BtoA"), generator, (2, 3, 30, 42)) == 0.0


@pytest.mark.parametrize(
    ("name", "kind", "tolerance"),
    [("run_G_B.torchscript.pt", "torchscript", 0.0), ("run_G_B.onnx", "onnx", 1e-4)],
)
def test_torchscript_and_onnx_load_with_any_size_and_batch(exported, name, kind, tolerance) -> None:
    run, out, _ = exported
    reference = load_generator(run, net="G_B")
    generator = load_generator(out / name)
    assert generator.kind == kind
    for shape in [(1, 3, 64, 72), (3, 3, 30, 42)]:  # dynamic batch, height and width; 30x42 is padded
        assert max_abs_diff(reference, generator, shape) <= tolerance


def test_translate_accepts_the_onnx_export(exported, tmp_path, capsys) -> None:
    run, out, _ = exported
    image = noise_image(tmp_path / "in" / "p.png", 44, 30)
    noise_image(tmp_path / "in" / "wide.png", 140, 60, seed=5)
    code, stdout, stderr = cli(
        capsys,
        "translate",
        str(out / "run_G_B.onnx"),
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--tile-above",
        "100",
        "--tile",
        "64",
        "--tile-overlap",
        "16",
    )
    assert code == 0, stderr
    assert "run_G_B.onnx (ONNX)" in stdout and "1 in tiles" in stdout
    got = np.asarray(Image.open(tmp_path / "out" / "p.png")).astype(int)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = translate_batch(load_generator(run, net="G_B"), x)[0]
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() <= 1
    # ONNX has no Python module to change: its tiles use their own instance-norm statistics
    wide = np.asarray(Image.open(tmp_path / "out" / "wide.png")).astype(int)
    onnx_generator = load_generator(out / "run_G_B.onnx")
    source = torch.from_numpy(np.array(Image.open(tmp_path / "in" / "wide.png"))).permute(2, 0, 1)
    tiled = translate_tiled(onnx_generator, source, Tiling(64, 16, 100), batch_size=4)
    assert np.abs(wide - tiled.permute(1, 2, 0).numpy().astype(int)).max() <= 1


def test_the_older_onnx_exporter_also_works(exported, tmp_path) -> None:
    run, _, _ = exported
    generator = load_generator(run)
    assert save_onnx(generator, tmp_path / "g.onnx", exporter="torchscript") == "torchscript"
    assert max_abs_diff(generator, load_generator(tmp_path / "g.onnx"), (2, 3, 36, 28)) < 1e-4


def test_export_mistakes_get_one_line(exported, tmp_path, capsys) -> None:
    run, out, _ = exported
    code, _, err = cli(
        capsys, "export", str(out / "run_G_B.onnx"), "--out", str(tmp_path), "--to", "safetensors"
    )
    assert code == 1 and len(err.splitlines()) == 1
    assert "safetensors export needs a generator with a known component spec" in err
    code, _, err = cli(
        capsys, "export", str(run), "--out", str(out), "--direction", "BtoA", "--to", "torchscript"
    )
    assert (
        code == 1
        and err
        == f"error: {out / 'run_G_B.torchscript.pt'} exists; pass --overwrite to replace it, or choose another --out or --name\n"
    )
    code, _, err = cli(capsys, "export", str(run), "--out", str(tmp_path), "--to", "tflite")
    assert code == 1 and err.startswith("error: --to tflite: use safetensors, onnx, torchscript")


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_input_editing_generator_exports_to_onnx(tmp_path, exporter) -> None:
    from ganforge.builtins.networks import ResnetParams, build_resnet
    from ganforge.inference.loading import Generator

    torch.manual_seed(0)
    net = build_resnet(ResnetParams(ngf=4, n_blocks=1, output="residual")).eval()
    torch.nn.init.normal_(net.model[-2].weight, std=0.1)  # an edit, not the starting identity
    spec = {"type": "resnet", "ngf": 4, "n_blocks": 1, "output": "residual"}
    cpu = torch.device("cpu")
    generator = Generator(run=net, kind="checkpoint", source=tmp_path, device=cpu, module=net, spec=spec)
    assert save_onnx(generator, tmp_path / "g.onnx", exporter=exporter, example_size=16) == exporter
    assert max_abs_diff(generator, load_generator(tmp_path / "g.onnx"), (2, 3, 20, 12)) < 1e-4
