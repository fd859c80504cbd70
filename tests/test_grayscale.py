"""Greyscale (1-channel) models end to end: train from the command line on 1-channel synthetic scenes,
translate, export and evaluate; channel counts that do not match the data are one line.

The generator's input channels come from its first convolution's weight, so nothing but the weights
tells ``translate``/``export`` that a model is greyscale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge.engine.channels import input_channels
from ganforge.engine.images import sample_grid, to_pil
from ganforge.engine.rundir import RunDir
from ganforge.engine.runtime import make_runtime
from ganforge.engine.trainer import Trainer
from ganforge.errors import RecipeError
from ganforge.inference import load_generator, load_run, translate_batch
from ganforge.metrics.weights import packaged_path
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, TINY_RUN, run_cli

GREY = [
    *TINY_RUN,
    "model.generator.ngf=8",
    "data.a_channels=1",
    "data.b_channels=1",
    "model.generator.in_channels=1",
    "model.generator.out_channels=1",
    "model.discriminator.in_channels=1",
    "train.backend.type=direct",  # torch's own layers: no backend set-up in each command
]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory) -> Path:
    """A one-epoch greyscale CycleGAN run, trained by ``ganforge run``."""
    run = tmp_path_factory.mktemp("grey") / "run"
    result = run_cli(
        "run", str(RECIPES / "quickstart.toml"), *sets(GREY), "--run-dir", str(run), env=ONE_THREAD
    )
    assert result.returncode == 0, result.stderr
    return run


def test_a_grey_run_trains_and_draws_grey_samples(grey_run):
    (samples,) = sorted((grey_run / "samples").glob("epoch_*.png"))  # the model's own grid
    grid = np.asarray(Image.open(samples).convert("RGB"))
    assert grid.shape[2] == 3
    loaded = load_run(grey_run)
    assert input_channels(loaded.model.G_A) == 1  # the nets are 1-channel throughout
    item = loaded.recipe.data.build("test")[0]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (1, 32, 32)


def test_translate_writes_grey_images(grey_run, tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (22, 30, 3), dtype=np.uint8)
    Image.fromarray(colour).save(images / "colour.png")  # converted to grey for the 1-channel generator
    Image.fromarray(colour).convert("L").save(images / "grey.png")
    out = tmp_path / "out"
    result = run_cli(
        "translate",
        str(grey_run),
        str(images),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--backend",
        "direct",
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr
    written = {p.name: Image.open(p) for p in out.iterdir()}
    assert sorted(written) == ["colour.png", "grey.png"]
    assert all(image.mode == "L" and image.size == (30, 22) for image in written.values())
    # the colour image was read as its grey version: both translate to the same picture
    assert np.array_equal(np.asarray(written["colour.png"]), np.asarray(written["grey.png"]))
    # the same as translating the grey image in-process
    generator = load_generator(grey_run)
    assert generator.in_channels == 1
    grey = (
        torch.from_numpy(np.asarray(Image.fromarray(colour).convert("L"), np.float32))[None, None] / 127.5 - 1
    )
    expected = ((translate_batch(generator, grey)[0, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.abs(np.asarray(written["grey.png"], np.int16) - expected.numpy().astype(np.int16)).max() <= 1


def test_export_a_grey_generator(grey_run, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "exports"
    result = run_cli(
        "export",
        str(grey_run),
        "--out",
        str(out),
        "--onnx-exporter",
        "torchscript",
        "--backend",
        "direct",
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("random 1x1x64x72 input") == 3, result.stdout  # one line per format
    reference = load_generator(grey_run)
    x = torch.rand(2, 1, 24, 28) * 2 - 1
    expected = translate_batch(reference, x)
    assert expected.shape == (2, 1, 24, 28)
    for name in ("run_G_A.safetensors", "run_G_A.torchscript.pt", "run_G_A.onnx"):
        exported = load_generator(out / name)
        assert exported.in_channels == 1, name  # read from the weights (ONNX: from its input)
        assert (translate_batch(exported, x) - expected).abs().max() < 1e-4, name


def test_eval_scores_grey_images(grey_run, tmp_path):
    inception = ["-m", "fid"] if packaged_path() is not None else []
    out = tmp_path / "scores.json"
    result = run_cli(
        "eval", str(grey_run), "-m", "psnr", "-m", "l1", *inception, "--baseline", "--json", str(out),
        env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["scores"]["A2B"]) == {"psnr", "l1", *(["fid"] if inception else [])}
    # identity's L1 on the 1-channel pairs, computed here: not the colour pairs' number
    test_set = load_run(grey_run).recipe.data.build("test")
    a = torch.stack([test_set[i]["A"] for i in range(len(test_set))])
    b = torch.stack([test_set[i]["B"] for i in range(len(test_set))])
    assert a.shape[1] == 1
    l1 = ((a - b).abs().mean() / 2).item()
    assert report["identity_baseline"]["A2B"]["l1"] == pytest.approx(l1, rel=1e-4)
    colour = load_recipe(RECIPES / "quickstart.toml", TINY_RUN).recipe.data.build("test")
    colour_l1 = (
        (torch.stack([colour[i]["A"] for i in range(2)]) - torch.stack([colour[i]["B"] for i in range(2)]))
        .abs()
        .mean()
        / 2
    ).item()
    assert abs(l1 - colour_l1) > 1e-3
    if inception:
        assert report["scores"]["A2B"]["fid"] > 0  # grey repeated to 3 channels for Inception


# ------------------------------------------------------------------------- mismatched channel counts


def test_a_generator_that_does_not_fit_the_data_is_one_line(tmp_path):
    mismatched = [*TINY_RUN, "data.a_channels=1", "data.b_channels=1"]  # nets stay 3-channel
    result = run_cli(
        "run", str(RECIPES / "quickstart.toml"), *sets(mismatched), "--run-dir", str(tmp_path / "r")
    )
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: data.a_channels is 1 but model.generator.in_channels is 3")
    assert "Traceback" not in result.stderr


def trainer_for(overrides: list[str], path: Path) -> Trainer:
    recipe = load_recipe(
        RECIPES / "quickstart.toml",
        [*TINY_RUN, "model.generator.ngf=8", "train.backend.type=direct", *overrides],
    ).recipe
    return Trainer(recipe, make_runtime(recipe.train), RunDir(path))


def test_a_discriminator_that_does_not_fit_fails_at_the_first_step(tmp_path, one_thread):
    grey_nets = ["model.generator.in_channels=1", "model.generator.out_channels=1"]
    # caught before training: G_B (B -> A) takes B's images, which are 1-channel
    with pytest.raises(RecipeError, match=r"data\.b_channels is 1 but model\.generator\.out_channels is 3"):
        trainer_for(["data.b_channels=1"], tmp_path / "b")
    trainer = trainer_for(["data.a_channels=1", "data.b_channels=1", *grey_nets], tmp_path / "d")
    trainer.run_dir.create()
    with pytest.raises(RecipeError) as error:
        trainer.fit()
    assert trainer.step == 0
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "net D_A, D_B (a layer of weight [8, 3, 4, 4]) takes 3 channels but was given 1"
    )
    assert "model.discriminator.in_channels = 3" in message and "data.a_channels = 1" in message


def test_generator_output_channels_are_checked(tmp_path):
    with pytest.raises(RecipeError, match=r"data\.b_channels is 3 but model\.generator\.out_channels is 1"):
        trainer_for(["model.generator.out_channels=1"], tmp_path / "g")


# ----------------------------------------------------------------------------------------- pieces


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_input_channels_come_from_the_first_convolution():
    net = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1))
    assert input_channels(net) == 1
    assert input_channels(torch.jit.script(net)) == 1
    assert input_channels(nn.Sequential(nn.ConvTranspose2d(5, 2, 3))) == 5
    assert input_channels(nn.Conv2d(6, 6, 3, groups=3)) == 6
    assert input_channels(nn.Linear(3, 3)) is None


def test_sample_grids_show_one_channel_and_mixed_rows():
    grey = torch.full((2, 1, 8, 8), 0.2)  # (0.2 + 1) * 127.5 = 153
    colour = torch.full((2, 3, 8, 8), -1.0)
    colour[:, 0] = 1.0  # red
    assert to_pil(grey[0]).getpixel((0, 0)) == (153, 153, 153)
    grid = sample_grid([[("grey", grey), ("colour", colour)], [("colour", colour), ("grey", grey)]])
    pixels = np.asarray(grid)
    # tiles are 128 px (8 px scaled by 16), 4 px apart, below an 18 px header
    assert tuple(pixels[4 + 18 + 10, 4 + 10]) == (153, 153, 153)
    assert tuple(pixels[4 + 18 + 10, 4 + 128 + 4 + 10]) == (255, 0, 0)
    block = 18 + 2 * (128 + 4)
    assert tuple(pixels[4 + block + 18 + 10, 4 + 10]) == (255, 0, 0)
    assert tuple(pixels[4 + block + 18 + 10, 4 + 128 + 4 + 10]) == (153, 153, 153)
