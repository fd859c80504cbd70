"""``eval.preprocess``: test images as the dataset gives them (the default, unchanged), or each whole
image resized to the crop size with no crop (``resize``), as published CycleGAN scores are made."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import api
from ganforge.data.folders import to_tensor
from ganforge.errors import RecipeError
from ganforge.evaluation import evaluate, evaluation_split, identity_translators
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRIES = collect_registries(make_plugin_manager())


def write_pairs(root: Path, n: int = 2, size: tuple[int, int] = (48, 40)) -> dict[str, list[np.ndarray]]:
    """``root/train`` and ``root/test`` of A|B images side by side, each half ``size`` (w, h) of noise."""
    rng = np.random.default_rng(0)
    halves: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            b = (255 - a) // 2 + rng.integers(0, 40, a.shape, dtype=np.uint8)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i}.png")
            if split == "test":
                halves["A"].append(a)
                halves["B"].append(b)
    return halves


def data_spec(root: Path, **params):
    spec = {"type": "paired_folder", "root": str(root), **params}
    return REGISTRIES.resolve("dataset", spec, "data")


SEEN: list[tuple[tuple[int, ...], tuple[int, ...]]] = []


class Shapes:
    """A metric that keeps the shapes of what it is shown (in ``SEEN``)."""

    paired = False

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        SEEN.append((tuple(real.shape), tuple(fake.shape)))

    def compute(self) -> float:
        return 0.0


class ShapesSpec:
    def build(self) -> Shapes:
        return Shapes()


def shapes_seen(dataset) -> set[tuple[int, ...]]:
    SEEN.clear()
    evaluate(identity_translators(), dataset, {"shapes": ShapesSpec()}, batch_size=2)
    return {shape for pair in SEEN for shape in pair}


def test_resize_changes_the_image_size_the_metric_sees(tmp_path: Path) -> None:
    write_pairs(tmp_path / "data")
    spec = data_spec(tmp_path / "data", preprocess="none", crop_size=32)
    native = evaluation_split(spec, "test")  # the default: as the dataset builds its test split
    assert shapes_seen(native) == {(2, 3, 40, 48)}
    assert shapes_seen(evaluation_split(spec, "test", "resize")) == {(2, 3, 32, 32)}
    # the default is exactly the dataset's own test split
    built = spec.build("test")
    assert all(torch.equal(native[i][d], built[i][d]) for i in range(2) for d in "AB")


def test_resize_is_the_whole_image_resized_without_a_crop(tmp_path: Path) -> None:
    halves = write_pairs(tmp_path / "data")
    spec = data_spec(tmp_path / "data", load_size=36, crop_size=32)  # the training default: resize, crop
    cropped = evaluation_split(spec, "test")[0]
    resized = evaluation_split(spec, "test", "resize")[0]
    assert cropped["A"].shape == resized["A"].shape == (3, 32, 32)
    for domain in "AB":
        whole = Image.fromarray(halves[domain][0]).resize((32, 32), Image.Resampling.BICUBIC)
        assert torch.equal(resized[domain], to_tensor(whole))
        centre = (
            Image.fromarray(halves[domain][0]).resize((36, 36), Image.Resampling.BICUBIC).crop((2, 2, 34, 34))
        )
        assert torch.equal(cropped[domain], to_tensor(centre))
        assert not torch.equal(resized[domain], cropped[domain])


def test_a_dataset_without_preprocess_refuses_resize_in_one_line() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / "quickstart.toml", ['eval.preprocess="resize"'])
    assert len(info.value.lines) == 1
    assert "eval.preprocess: 'resize' needs a dataset with a preprocess parameter" in info.value.lines[0]
    assert "'synthetic_scenes'" in info.value.lines[0]
    with pytest.raises(RecipeError, match=r"eval.preprocess: Input should be 'dataset' or 'resize'"):
        load_recipe(RECIPES / "quickstart.toml", ['eval.preprocess="crop"'])
    assert load_recipe(RECIPES / "quickstart.toml").recipe.eval.preprocess == "dataset"


RECIPE = """
name = "pairs"
seed = 0

[data]
type = "paired_folder"
root = "{root}"
load_size = 36
crop_size = 32

[model]
type = "cyclegan"

[model.generator]
type = "resnet"
ngf = 4
n_blocks = 1

[model.discriminator]
type = "patchgan"
ndf = 4

[train]
epochs = 1
device = "cpu"

[output]
n_samples = 2
report = false

[eval]
metrics = ["l1"]
every_epochs = 1
preprocess = "resize"
"""


def test_eval_command_and_training_evaluations_take_the_option(tmp_path: Path) -> None:
    write_pairs(tmp_path / "data")
    recipe = tmp_path / "pairs.toml"
    recipe.write_text(textwrap.dedent(RECIPE).format(root=tmp_path / "data"))
    run = api.train(recipe, run_dir=tmp_path / "run")
    record = json.loads((run.path / "eval.jsonl").read_text().splitlines()[-1])
    assert record["preprocess"] == "resize"
    scores = {}
    for flag in ("dataset", "resize"):
        out = tmp_path / f"{flag}.json"
        result = run_cli("eval", str(run.path), "--preprocess", flag, "--json", str(out))
        assert result.returncode == 0, result.stderr
        written = json.loads(out.read_text())
        assert written["dataset"].get("preprocess", "dataset") == flag  # said when not the default
        scores[flag] = written["scores"]["A2B"]["l1"]
    assert ("resized to the crop size" in result.stdout) and scores["dataset"] != scores["resize"]
    assert scores["resize"] == pytest.approx(record["scores"]["A2B"]["l1"], abs=1e-6)
    # without the flag, the recipe's eval.preprocess
    assert api.evaluate(run.path, device="cpu").info["dataset"]["preprocess"] == "resize"
    bad = run_cli("eval", str(run.path), "--preprocess", "crop")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].endswith("use dataset or resize")
