"""The quickstart recipe through the real command line, shrunk to seconds: run, then eval --baseline,
translate and export on the result, with no pix2pix-specific code in the core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file is in plugins/pix2pix/tests/)
RECIPE = ROOT / "recipes" / "pix2pix_quickstart.toml"


#: The quickstart, one epoch of four 32 px pairs.
SHRINK = [
    "data.size=32",
    "data.length=4",
    "data.test_length=3",
    "train.epochs=1",
    "train.batch_size=2",
    'train.scheduler={type="constant"}',  # so that a resume may add an epoch
    "output.n_samples=2",
    "model.discriminator.ndf=8",
]
#: The same with a tiny ResNet generator: the quickest pipeline check (the U-Net is run below).
TINY_RESNET = 'model.generator={type="resnet", ngf=4, n_blocks=1}'


def ganforge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}
    env.update(COLUMNS="200", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "ganforge", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_quickstart(tmp: Path, *extra: str) -> Path:
    sets = [item for pair in (("--set", s) for s in (*SHRINK, *extra)) for item in pair]
    result = ganforge("run", str(RECIPE), *sets, "--run-dir", str(tmp / "run"), cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert "G_GAN" in result.stdout and "G_L1" in result.stdout and "D_real" in result.stdout
    return tmp / "run"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return run_quickstart(tmp_path_factory.mktemp("p2p"), TINY_RESNET)


def test_the_run_writes_samples_of_input_output_target(run):
    grids = sorted((run / "samples").glob("epoch_*.png"))
    assert grids
    width, height = Image.open(grids[-1]).size
    assert width > 3 * 32 and height >= 2 * 32  # input | output | target, for each of two test pairs
    # the core's ground-truth grid (a paired test set): one block for the one direction, 3 columns
    truth = Image.open(run / "samples" / "truth_epoch_0001.png")
    assert truth.size == (width, height)  # the same layout as the model's own rows here
    assert "Translations beside the ground truth" in (run / "report.html").read_text()
    assert tomllib.loads((run / "recipe.toml").read_text())["model"]["type"] == "pix2pix"


def test_eval_baseline_scores_the_direction_and_identity(run, tmp_path):
    out = tmp_path / "scores.json"
    result = ganforge(
        "eval", str(run), "-m", "psnr", "-m", "ssim", "--baseline", "--json", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["scores"]) == {"A2B"} and set(report["identity_baseline"]) == {"A2B"}
    for scores in (report["scores"]["A2B"], report["identity_baseline"]["A2B"]):
        assert np.isfinite(scores["psnr"]) and -1 <= scores["ssim"] <= 1


def test_translate_and_export_the_generator(run, tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / "odd.png")
    result = ganforge("translate", str(run), str(folder), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "odd.png").size == (44, 36)  # any size: padded and cropped back
    exports = tmp_path / "exports"
    result = ganforge(
        "export", str(run), "--out", str(exports), "--to", "safetensors", "--to", "torchscript", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in exports.iterdir()) == ["run_G.safetensors", "run_G.torchscript.pt"]  # net G
    exported = exports / "run_G.safetensors"
    result = ganforge("translate", str(exported), str(folder), "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = np.asarray(Image.open(tmp_path / "out" / "odd.png")).astype(int)
    again = np.asarray(Image.open(tmp_path / "again" / "odd.png")).astype(int)
    assert np.abs(first - again).max() <= 1


def test_the_quickstart_as_written_runs_with_its_unet(tmp_path):
    # 32 px through num_downs 6 (64 px multiple): training needs 64; the U-Net's own size at a shrunk scale
    run = run_quickstart(tmp_path, "data.size=64", "model.generator.ngf=4")
    result = ganforge("eval", str(run), "-m", "psnr", "--baseline", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "labels"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "small.png")
    result = ganforge("translate", str(run), str(folder), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # 40x50 padded to 64x64 for the U-Net, cropped back
    assert Image.open(tmp_path / "out" / "small.png").size == (50, 40)


def test_resume_continues_bit_identical_and_reports(run, tmp_path):
    import shutil

    import torch

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    result = ganforge("run", "--resume", str(resumed), "--set", "train.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    straight = tmp_path / "straight"
    sets = [item for s in (*SHRINK, TINY_RESNET, "train.epochs=2") for item in ("--set", s)]
    result = ganforge("run", str(RECIPE), *sets, "--run-dir", str(straight), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    def weights(folder):
        state = torch.load(folder / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
        model = state["model"]
        return {k: v for k, v in model.items() if k.startswith(("G.", "D.")) and torch.is_tensor(v)}

    a, b = weights(resumed), weights(straight)
    assert a and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed / "report.html").is_file()


def test_image_sides_the_unet_cannot_take_are_one_line_before_training(tmp_path):
    """The quickstart's U-Net (6 levels) needs sides that are multiples of 64: at 96 px the run stops
    before training with one line naming the generator and the data's size, and writes nothing."""
    sets = [item for s in (*SHRINK, "data.size=96") for item in ("--set", s)]
    result = ganforge("run", str(RECIPE), *sets, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    expected = (
        "error: model.generator needs image sides that are multiples of 64 but the data gives 96x96 "
        "(data.size = 96): make the (crop) size a multiple of 64, or use a generator with fewer "
        "down-sampling levels"
    )
    assert result.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "run").exists()
