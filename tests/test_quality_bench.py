"""benchmarks/quality.py as a person runs it: a tiny recipe, a photo task, two seeds, a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("skimage", reason="the photo tasks need scikit-image (the test extra installs it)")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality.py"

TINY = """
name = "tiny"
seed = 0

[data]
type = "synthetic_scenes"
size = 32
length = 4
test_length = 2

[model]
type = "cyclegan"

[model.generator]
type = "resnet"
ngf = 4
n_blocks = 1

[model.discriminator]
type = "patchgan"
ndf = 4
n_layers = 2

[train]
epochs = 2
device = "cpu"
log_every = 1

[train.scheduler]
type = "linear_decay"
constant_epochs = 1
decay_epochs = 1

[train.ema]
decay = 0.5

[output]
n_samples = 2
"""


def run(tmp_path: Path, *args: str):
    return run_cli(str(SCRIPT), *args, cwd=tmp_path, module=False, timeout=600)


def test_photo_task_over_two_seeds_writes_scores_and_grids(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    out = tmp_path / "bench"
    result = run(
        tmp_path,
        "--recipe", str(recipe), "--task", "photo:clarity", "--seeds", "0", "1", "--steps", "3",
        "--no-fid", "--test-length", "3", "--run-dir", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "quality.json").read_text())
    assert report["task"] == "photo:clarity" and report["seeds"] == [0, 1]
    assert report["dataset"]["type"] == "photo_mappings" and report["dataset"]["mapping"] == "clarity"
    assert report["size"] == 32 and report["test_pairs"] == 3 and report["weights"] == "ema"
    assert report["budget"]["steps"] == 3 and report["steps"] == 3
    assert report["metrics"] == ["psnr", "ssim", "l1"] and report["passed"] is None
    for label in ("identity", "untrained", "trained"):
        for direction in ("A2B", "B2A"):
            assert set(report["scores"][label][direction]) == {"psnr", "ssim", "l1"}
            assert report["spread"][label][direction]["psnr"] >= 0
    assert len(report["per_seed"]["trained"]["A2B"]["psnr"]) == 2
    # doing nothing scores the same both ways on PSNR and L1; finite, and below a perfect copy
    identity = report["scores"]["identity"]
    assert identity["A2B"]["psnr"] == pytest.approx(identity["B2A"]["psnr"]) and identity["A2B"]["psnr"] < 60
    assert set(report["psnr_gain_db"]) == {"A2B", "B2A"}
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    for entry in report["runs"]:
        assert entry["steps"] == 3
        assert Path(entry["grid"]).is_file() and Path(entry["truth_grid"]).is_file()
        assert (Path(entry["run_dir"]) / "report.html").is_file()
    # the schedule was fitted to the budget: 3 epochs of 1 step, constant 2 (rounded 1.5) + decay 1
    written = (out / "recipe.toml").read_text()
    assert 'type = "photo_mappings"' in written and "max_iters_per_epoch = 1" in written


def test_bad_arguments_are_refused_before_training(tmp_path):
    result = run(tmp_path, "--task", "photo:sepia")
    assert result.returncode == 2 and "photo:sepia" in result.stderr
    result = run(tmp_path, "--steps", "0")
    assert result.returncode == 2 and "--steps must be at least 1" in result.stderr


def test_a_recipe_task_without_true_pairs_needs_the_inception_metrics(tmp_path):
    from PIL import Image

    for folder in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.new("RGB", (40, 40), (30, 60, 90)).save(tmp_path / "data" / folder / "0.png")
    recipe = tmp_path / "folders.toml"
    tiny = TINY.replace(
        'type = "synthetic_scenes"\nsize = 32\nlength = 4\ntest_length = 2',
        'type = "unpaired_folder"\nroot = "data"\nload_size = 36\ncrop_size = 32',
    )
    recipe.write_text(tiny)
    result = run(
        tmp_path, "--recipe", str(recipe), "--no-fid", "--steps", "1", "--run-dir", str(tmp_path / "b")
    )
    assert result.returncode == 1
    assert "holds no true pairs" in result.stdout and "drop --no-fid" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("error")]) == 1
