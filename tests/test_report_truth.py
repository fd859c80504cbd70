"""report.html on a paired test set: the ground truth beside each translation, and the paired metrics
over the epochs with the identity baseline, from a real tiny run (synthetic scenes: true test pairs)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import api
from ganforge.engine.images import HEADER, MIN_TILE, PAD, to_pil
from ganforge.engine.render import BASELINE_COLOUR, render_report
from ganforge.evaluation import evaluate, identity_translators
from ganforge.metrics import resolve_metrics
from ganforge.plugins import collect_registries, make_plugin_manager
from tests.conftest import RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")

N_SAMPLES = 2
TINY = [
    "data.size=32",
    "data.length=4",
    "train.batch_size=1",
    "data.test_length=3",
    f"output.n_samples={N_SAMPLES}",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=4",
    "train.epochs=2",
    "train.ema.enabled=false",  # the grid is compared with the trained generator's own output
    'eval.metrics=["psnr", "ssim", "l1"]',
    "eval.every_epochs=1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    return api.train(
        RECIPES / "quickstart.toml", overrides=TINY, run_dir=tmp_path_factory.mktemp("truth") / "run"
    )


def tile(grid: Image.Image, block: int, column: int, row: int, side: int) -> np.ndarray:
    """The image at ``column`` and ``row`` of block ``block`` of a sample grid of ``side`` px tiles."""
    block_h = HEADER + N_SAMPLES * (side + PAD)
    left = PAD + column * (side + PAD)
    top = PAD + block * block_h + HEADER + row * (side + PAD)
    return np.asarray(grid.crop((left, top, left + side, top + side)))


def test_truth_grid_shows_input_translation_and_ground_truth(run) -> None:
    grid = Image.open(run.path / "samples" / "truth_epoch_0002.png").convert("RGB")
    test = run.recipe.data.build("test")
    side = 32 * -(-MIN_TILE // 32)  # 32 px tiles scaled up to at least MIN_TILE
    assert grid.size == (PAD + 3 * (side + PAD), PAD + 2 * (HEADER + N_SAMPLES * (side + PAD)))
    model = run.model.eval()
    for block, (source, target, net) in enumerate((("A", "B", model.G_A), ("B", "A", model.G_B))):
        for row in range(N_SAMPLES):
            item = test[row]
            with torch.no_grad():
                fake = net(item[source][None])[0]
            for column, image in enumerate((item[source], fake, item[target])):
                expected = np.asarray(to_pil(image).resize((side, side), Image.Resampling.NEAREST))
                assert np.array_equal(tile(grid, block, column, row, side), expected), (block, row, column)


def test_report_embeds_the_truth_grid_and_the_paired_metrics_with_the_baseline(run) -> None:
    page = (run.path / "report.html").read_text()
    truth = (run.path / "samples" / "truth_epoch_0002.png").read_bytes()
    assert "Translations beside the ground truth (epoch 2)" in page
    assert base64.b64encode(truth).decode() in page
    assert base64.b64encode((run.path / "metrics.png").read_bytes()).decode() in page
    records = [json.loads(line) for line in (run.path / "eval.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(set(r["scores"]["A2B"]) == {"psnr", "ssim", "l1"} for r in records)
    # the baseline logged is "output = input" scored on the same test images
    metrics = resolve_metrics(collect_registries(make_plugin_manager()), ["psnr", "ssim", "l1"])
    identity = evaluate(identity_translators(), run.recipe.data.build("test"), metrics).scores
    for record in records:
        for direction, values in record["identity_baseline"].items():
            for name, value in values.items():
                assert value == pytest.approx(identity[direction][name], abs=1e-6)
    assert "A2B identity" in page and "<th>metric</th>" in page
    # the chart: a panel per paired metric, and the baseline drawn as a grey line
    chart = np.asarray(Image.open(run.path / "metrics.png").convert("RGB"))
    assert chart.shape[1] == 3 * 360  # psnr, ssim, l1
    assert (chart == np.array(BASELINE_COLOUR, np.uint8)).all(axis=-1).sum() > 100


def test_without_a_truth_grid_the_report_has_no_such_section(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    page = render_report(tmp_path, {"name": "x", "epoch": 0, "epochs": 1})
    assert "ground truth" not in page
