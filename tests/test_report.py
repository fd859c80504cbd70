"""Seeing a run: loss and metric charts, report.html (self-contained, rendered by headless Chromium),
evaluation every N epochs with the best checkpoint, TensorBoard logs and the end-of-run summary."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from ganforge.engine import monitors
from ganforge.engine.checkpoint import load_checkpoint
from ganforge.engine.render import (
    PALETTE,
    PANEL_H,
    PANEL_W,
    loss_curves_png,
    metric_curves_png,
    render_report,
)
from ganforge.errors import GanforgeError, RecipeError
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, ROOT, run_cli

sys.path.insert(0, str(ROOT / "benchmarks"))
import screenshot_report

TINY = [
    "data.size=32",
    "data.length=2",
    "train.batch_size=1",
    "data.test_length=2",
    "train.epochs=2",
    "train.scheduler.constant_epochs=1",
    "train.scheduler.decay_epochs=1",
    "output.n_samples=2",
    "model.discriminator.ndf=8",
    "model.generator.ngf=8",
    'eval.metrics=["psnr", "ssim", "l1"]',
    "eval.every_epochs=1",
    "eval.best_metric=B2A.psnr",
]
HAS_TENSORBOARD = monitors.tensorboard_available()


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def distinct_colors(image: Image.Image) -> int:
    colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colors) if colors else 1 << 20


def test_loss_and_metric_charts():
    records = [
        {"kind": "step", "step": 10 * i, "losses": {"G_A": 1 / (1 + i), "D_A": 0.25, "cycle_A": 5 - i / 10}}
        for i in range(1, 60)
    ] + [{"kind": "epoch", "step": 590, "losses": {"G_A": 9.0}}]
    image = png(loss_curves_png(records))
    assert image.size == (3 * PANEL_W, PANEL_H) and distinct_colors(image) > 20
    assert loss_curves_png([]) is None

    evals = [
        {
            "epoch": e,
            "scores": {"A2B": {"fid": 100 / e, "psnr": 10 + e}, "B2A": {"fid": 90 / e, "psnr": 11 + e}},
        }
        for e in (1, 2, 3)
    ]
    chart = png(metric_curves_png(evals)).convert("RGB")
    assert chart.size == (2 * PANEL_W, PANEL_H)  # one panel per metric, a line per direction
    colors = {c for _, c in chart.getcolors(maxcolors=1 << 20)}
    assert PALETTE[0] in colors and PALETTE[1] in colors


def fake_run(path: Path) -> Path:
    (path / "samples").mkdir(parents=True)
    for epoch in (1, 2):
        Image.new("RGB", (40, 20), (10 * epoch, 100, 200)).save(path / "samples" / f"epoch_{epoch:04d}.png")
    (path / "recipe.toml").write_text('name = "demo"\ndescription = "<script>alert(1)</script> & more"\n')
    lines = [{"kind": "epoch", "epoch": 1, "step": 5, "losses": {"G_A": 0.5}}]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{cut sho")
    evals = [{"kind": "eval", "epoch": 1, "step": 5, "n_images": {"A": 2, "B": 2},
              "scores": {"A2B": {"psnr": 12.5}, "B2A": {"psnr": 13.25}}}]  # fmt: skip
    (path / "eval.jsonl").write_text(json.dumps(evals[0]) + "\n")
    (path / "loss_curves.png").write_bytes(loss_curves_png(lines))
    return path


def test_report_html_is_one_self_contained_escaped_page(tmp_path):
    run = fake_run(tmp_path / "run")
    best = {"metric": "B2A.psnr", "value": 13.25, "epoch": 1, "checkpoint": "checkpoints/best.pt"}
    status = {"name": "demo", "description": "<b>bold</b>", "epoch": 1, "epochs": 2, "step": 5, "best": best}
    page = render_report(run, status)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page  # the recipe
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert page.count("data:image/png;base64,") == 2  # loss curves and the newest sample grid
    assert "src='samples/epoch_0001.png'" in page  # older grids by relative path
    assert "http://" not in page and "https://" not in page and "<link" not in page  # nothing from outside
    assert "13.2" in page and "best B2A.psnr = 13.2 at epoch 1" in page
    assert "images per domain: A: 2, B: 2" in page
    empty = render_report(tmp_path / "empty", {"epoch": 0, "epochs": 1})
    assert (
        "No evaluation yet" in empty
        and "No sample grid yet" in empty
        and "recipe.toml not written yet" in empty
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, str]:
    """A two-epoch quickstart run through the CLI, evaluated after each epoch (paired metrics)."""
    folder = tmp_path_factory.mktemp("reportrun")
    overrides = [*TINY, *(["output.tensorboard=true"] if HAS_TENSORBOARD else [])]
    args = [arg for o in overrides for arg in ("--set", o)]
    result = run_cli(
        "run", str(RECIPES / "quickstart.toml"), *args, "--run-dir", str(folder / "run"), cwd=folder
    )
    assert result.returncode == 0, result.stderr
    return folder / "run", result.stdout


def test_a_run_writes_charts_report_metrics_and_the_best_checkpoint(finished_run):
    run, stdout = finished_run
    for name in ("loss_curves.png", "metrics.png", "report.html", "eval.jsonl", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(r["paired"] for r in records)
    assert set(records[0]["scores"]) == {"A2B", "B2A"} and set(records[0]["scores"]["A2B"]) == {
        "psnr",
        "ssim",
        "l1",
    }
    best_epoch = max(r["epoch"] for r in records if r["best"])
    values = [r["scores"]["B2A"]["psnr"] for r in records]
    assert records[best_epoch - 1]["scores"]["B2A"]["psnr"] == max(values)
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == best_epoch
    page = (run / "report.html").read_text()
    assert "finished: epoch 2/2" in page and "best B2A.psnr" in page and "[eval]" in page
    assert "summary" in stdout and "best checkpoint" in stdout and str(run / "report.html") in stdout
    assert "eval epoch 1: A2B psnr" in stdout and "done in" in stdout


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard not installed")
def test_tensorboard_logs_scalars_and_sample_grids(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = finished_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/G_A", "epoch_loss/D_B", "lr/G", "eval/A2B.psnr", "eval/psnr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("eval/B2A.ssim")] == [2, 4]
    assert tags["images"] == ["samples"] and len(events.Images("samples")) == 2


def test_tensorboard_without_the_package_is_one_line(monkeypatch):
    monkeypatch.setattr(monitors, "tensorboard_available", lambda: False)
    with pytest.raises(
        GanforgeError, match="output.tensorboard = true needs the tensorboard package: pip install"
    ):
        monitors.TensorBoardLog()


@pytest.mark.skipif(
    screenshot_report.find_chromium() is None, reason="no Chromium (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(finished_run, tmp_path):
    run, _ = finished_run
    copy = tmp_path / "report.html"  # alone, away from its run directory: the charts travel inside it
    shutil.copy(run / "report.html", copy)
    shot = screenshot_report.screenshot(copy, tmp_path / "shot.png", width=1200, height=1800)
    assert not screenshot_report.is_blank(shot)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1800)
    colors = {c for _, c in image.getcolors(maxcolors=1 << 22)}
    assert PALETTE[0] in colors  # the charts' first colour: the embedded images were decoded and shown


def test_recipe_switches_and_eval_section():
    recipe = load_recipe(RECIPES / "quickstart.toml").recipe
    assert recipe.output.report is True and recipe.output.tensorboard is False
    assert recipe.eval.metrics == ["fid", "kid", "psnr", "ssim", "l1"] and recipe.eval.every_epochs is None
    with pytest.raises(RecipeError, match="eval: Value error, best_metric needs every_epochs"):
        load_recipe(RECIPES / "quickstart.toml", ["eval.best_metric=fid"])
    with pytest.raises(RecipeError, match="best_metric 'A2B.lpips' is not in eval.metrics: fid, kid"):
        load_recipe(RECIPES / "quickstart.toml", ["eval.best_metric=A2B.lpips", "eval.every_epochs=2"])


def test_best_metric_is_a_mean_or_one_direction():
    evaluation = object.__new__(monitors.MetricEvaluation)
    scores = {"A2B": {"fid": 10.0, "psnr": 20.0}, "B2A": {"fid": 30.0, "psnr": float("nan")}}
    evaluation.best_metric = "fid"
    assert evaluation._value(scores) == 20.0
    evaluation.best_metric = "A2B.psnr"
    assert evaluation._value(scores) == 20.0
    evaluation.best_metric = "B2A.psnr"
    assert evaluation._value(scores) is None  # a NaN never becomes "best"


def test_a_resumed_run_forgets_later_evaluations_and_keeps_its_best(tmp_path):
    from types import SimpleNamespace

    from ganforge.engine.rundir import RunDir
    from ganforge.plugins import collect_registries, make_plugin_manager
    from ganforge.recipe import EvalSection

    section = EvalSection(metrics=["psnr"], every_epochs=1, best_metric="psnr")
    evaluation = monitors.MetricEvaluation(section, collect_registries(make_plugin_manager()))
    assert evaluation.higher_is_better
    out = RunDir(tmp_path)
    for epoch, psnr, best in ((1, 10.0, True), (2, 12.0, True), (3, 14.0, True)):
        scores = {"A2B": {"psnr": psnr}, "B2A": {"psnr": psnr}}
        out.append_json("eval.jsonl", {"epoch": epoch, "step": 2 * epoch, "scores": scores, "best": best})
    data = SimpleNamespace(build=lambda split: ["test set"])
    trainer = SimpleNamespace(recipe=SimpleNamespace(data=data), run_dir=out, step=4, epoch=2, epochs=5)
    evaluation.on_train_start(trainer)  # resumed at step 4: the epoch-3 evaluation is redone
    assert [r["epoch"] for r in monitors.read_jsonl(tmp_path / "eval.jsonl")] == [1, 2]
    assert evaluation.best is not None and (evaluation.best["epoch"], evaluation.best["value"]) == (2, 12.0)
    assert evaluation._better(12.5) and not evaluation._better(11.0)
