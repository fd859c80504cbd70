"""recipes/cyclegan_fast.toml: the measured CPU-budget recipe (docs/evaluation.md) trains end to end."""

from __future__ import annotations

import pytest
import torch

import ganforge
from ganforge.builtins.networks import ResnetGenerator
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, run_cli

pytest.importorskip(
    "skimage", reason="the fast recipe's data is photo_mappings (the test extra installs scikit-image)"
)

FAST = RECIPES / "cyclegan_fast.toml"


def test_the_fast_recipe_keeps_the_measured_settings() -> None:
    recipe = load_recipe(FAST).recipe
    data = recipe.to_dict()
    measured = {"type": "resnet", "ngf": 16, "n_blocks": 3, "upsample": "resize_conv", "output": "residual"}
    assert {key: data["model"]["generator"][key] for key in measured} == measured
    assert data["model"]["lambda_identity"] == 0.1 and data["model"]["lambda_cycle"] == 10.0
    assert recipe.train.ema.decay == 0.999 and data["train"]["optimizer"]["lr"] == 5e-4
    assert data["train"]["batch_size"] == 2 and data["data"]["type"] == "photo_mappings"


def test_the_fast_recipe_trains_and_its_generators_start_from_the_identity(tmp_path) -> None:
    overrides = [
        "data.size=32",
        "data.length=2",
        "data.test_length=2",
        "train.epochs=1",
        "train.batch_size=1",
    ]
    args = ["run", str(FAST), "--run-dir", "run"]
    for item in overrides:
        args += ["--set", item]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert (run / "samples" / "truth_epoch_0001.png").is_file()  # the test split has true pairs
    generator = ganforge.load(run, direction="AtoB", backend="direct")
    assert generator.weights == "ema" and isinstance(generator.module, ResnetGenerator)
    assert generator.module.residual and generator.spec["output"] == "residual"
    # two steps from "do nothing" at lr 5e-4: the average still returns its input nearly unchanged,
    # and it is no longer the input (the edit has started: far above the ~1e-7 rounding of atanh/tanh)
    x = torch.rand(1, 3, 32, 32) * 1.8 - 0.9
    with torch.no_grad():
        change = (generator(x) - x).abs()
    assert 1e-5 < change.max().item() < 0.05, change.max().item()
