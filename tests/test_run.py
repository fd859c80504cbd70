"""``ganforge run`` end to end in a real subprocess: the run directory and what it holds."""

from __future__ import annotations

import json
import tomllib

import torch
from PIL import Image

from ganforge.engine.checkpoint import load_checkpoint
from tests.conftest import RECIPES, run_cli

SHRINK = ["--set", "train.epochs=2", "--set", "train.max_iters_per_epoch=3", "--set", "train.log_every=2"]


def test_quickstart_trains_and_writes_its_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("run", str(RECIPES / "quickstart.toml"), *SHRINK, "--run-dir", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and "done in" in result.stdout

    recipe = tomllib.loads((run_dir / "recipe.toml").read_text())
    assert recipe["train"]["epochs"] == 2 and recipe["model"]["generator"]["n_blocks"] == 3
    assert recipe["model"]["pool"] == {"type": "history", "size": 50, "p_swap": 0.5}

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[-1]["step"] == 6
    assert set(epochs[-1]["losses"]) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B"}
    assert steps and all(r["lr"]["G"] == 1e-3 for r in steps)

    for epoch in (1, 2):
        grid = Image.open(run_dir / "samples" / f"epoch_{epoch:04d}.png")
        # 3 columns of 128 px tiles (64 px scaled x2); 2 blocks of 4 samples each
        assert grid.size == (4 + 3 * 132, 4 + 2 * (18 + 4 * 132))

    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["epoch_0001.pt", "epoch_0002.pt", "latest.pt"]
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert (state["epoch"], state["step"]) == (2, 6)
    assert state["recipe"] == recipe
    assert set(state["optimizers"]) == {"G", "D"}
    assert state["model"]["G_A.model.1.weight"].shape == torch.Size([16, 3, 7, 7])


def test_missing_dataset_is_one_clear_line_and_writes_nothing(tmp_path):
    result = run_cli("run", str(RECIPES / "cyclegan_monet.toml"), cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: data.root: dataset folder datasets/monet2photo not found")
    assert "ganforge fetch monet2photo --root datasets" in line and "trainA/ trainB/ testA/ testB/" in line
    assert not (tmp_path / "runs").exists()


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "precious.txt").write_text("a week of training")
    result = run_cli("run", str(RECIPES / "quickstart.toml"), *SHRINK, "--run-dir", str(run_dir))
    assert result.returncode == 1 and "already exists" in result.stderr
    assert (run_dir / "precious.txt").read_text() == "a week of training"
