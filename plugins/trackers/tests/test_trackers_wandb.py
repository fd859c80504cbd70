"""The ``wandb`` callback in a real ``ganforge run``, read back from W&B's offline transaction log.

One tiny CycleGAN (2 epochs x 4 steps, losses every 2 steps, PSNR/L1 after each epoch) trains through
the command line with ``[[callbacks]] type = "wandb", mode = "offline"``. What it logged is read with
``wandb leet inspect --json`` (W&B's own reader of a run's ``.wandb`` file) and compared, number for
number, with what the run directory holds: ``metrics.jsonl``, ``eval.jsonl``, ``samples/``, ``recipe.toml``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from trackers_helpers import QUICKSTART, TINY, jsonl, offline_env, run_cli, set_options


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("wandb")
    run = folder / "run"
    callbacks = 'callbacks=[{type = "wandb", mode = "offline", tags = ["tiny", "test"]}]'
    started = time.perf_counter()
    result = run_cli(
        "run", str(QUICKSTART), *set_options([*TINY, callbacks]), "--run-dir", str(run), cwd=folder
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    offline = sorted((run / "wandb").glob("offline-run-*"))  # no WANDB_DIR: under the run directory
    assert len(offline) == 1, sorted(p.name for p in run.iterdir())
    read = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**offline_env(folder), "PATH": "/usr/bin:/bin"},
    )
    assert read.returncode == 0, read.stderr
    records = [json.loads(line) for line in read.stdout.splitlines() if line.startswith("{")]
    history: dict[int, dict] = {}
    for record in records:
        if record["type"] == "history":
            history.setdefault(int(record["history"]["step"].get("num", 0)), {}).update(
                record["history"]["item"]
            )
    summary: dict = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"]["update"])
    print(f"wandb run: {seconds:.1f} s (CLI, 2 epochs x 4 steps, eval on)")
    return SimpleNamespace(
        run=run,
        files=offline[0] / "files",
        records=records,
        history=history,
        summary=summary,
        first=next(r["run"] for r in records if r["type"] == "run"),
    )


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_run_is_named_after_the_run_directory_and_the_recipe(logged):
    assert logged.first["display_name"] == "run"  # the run directory's name
    assert logged.first["project"] == "quickstart"  # the recipe's name
    assert logged.first["tags"] == ["tiny", "test"]
    assert logged.summary["run_dir"] == str(logged.run)


def test_config_is_the_resolved_recipe(logged):
    config = logged.first["config"]["update"]
    config.pop("_wandb", None)
    assert config["model"]["generator"]["ngf"] == 4 and config["model"]["generator"]["n_blocks"] == 1
    assert config["data"]["size"] == 32 and config["train"]["optimizer"]["betas"] == [0.5, 0.999]
    resolved = leaves(tomllib.loads((logged.run / "recipe.toml").read_text()))
    assert len(resolved) > 50
    assert {k: v for k, v in leaves(config).items() if k in resolved} == resolved


def test_losses_and_learning_rates_at_each_log_step(logged):
    steps = [r for r in jsonl(logged.run / "metrics.jsonl") if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8]
    assert sorted(s for s, item in logged.history.items() if any(k.startswith("loss/") for k in item)) == [
        2,
        4,
        6,
        8,
    ]
    for record in steps:
        item = logged.history[record["step"]]
        assert item["_step"] == record["step"]
        for name, value in record["losses"].items():
            assert item[f"loss/{name}"] == pytest.approx(value, rel=1e-9)
        for group, lr in record["lr"].items():
            assert item[f"lr/{group}"] == pytest.approx(lr, rel=1e-12)
    assert {"lr/G", "lr/D", "loss/G_A", "loss/cycle_B"} <= set(logged.history[2])


def test_epoch_losses_and_evaluation_scores_at_the_epochs_last_step(logged):
    epochs = [r for r in jsonl(logged.run / "metrics.jsonl") if r["kind"] == "epoch"]
    scores = jsonl(logged.run / "eval.jsonl")
    assert [r["step"] for r in epochs] == [r["step"] for r in scores] == [4, 8]
    for epoch, score in zip(epochs, scores, strict=True):
        item = logged.history[epoch["step"]]
        assert item["epoch"] == epoch["epoch"]
        for name, value in epoch["losses"].items():
            assert item[f"epoch_loss/{name}"] == pytest.approx(value, rel=1e-9)
        for direction in ("A2B", "B2A"):
            for metric in ("psnr", "l1"):
                assert item[f"eval/{direction}.{metric}"] == pytest.approx(
                    score["scores"][direction][metric], rel=1e-9
                )
        assert item["eval/psnr"] == pytest.approx(score["mean"]["psnr"], rel=1e-9)
    assert not any(k.startswith("eval/") for k in logged.history[2])  # no evaluation mid-epoch


def test_each_sample_grid_is_an_image_at_its_epochs_step(logged):
    for epoch, step in ((1, 4), (2, 8)):
        item = logged.history[step]
        assert item["samples._type"] == "image-file" and item["samples.caption"] == f"epoch {epoch}"
        logged_image = np.asarray(Image.open(logged.files / item["samples.path"]).convert("RGB"))
        grid = np.asarray(Image.open(logged.run / "samples" / f"epoch_{epoch:04d}.png").convert("RGB"))
        assert logged_image.shape == grid.shape and (logged_image == grid).all()
        assert (item["samples.width"], item["samples.height"]) == (grid.shape[1], grid.shape[0])


def test_the_run_finishes_with_its_outcome(logged):
    assert logged.summary["outcome"] == "finished"
    (end,) = [r["exit"] for r in logged.records if r["type"] == "exit"]
    assert end.get("exit_code", 0) == 0


def test_a_run_of_the_callers_own_is_left_alone(tmp_path, one_thread):
    """ganforge.train inside a script that has its own W&B run: the callback logs to a run of its own
    and finishes only that one (W&B would otherwise hand it the caller's run, and it would end it)."""
    import wandb

    import ganforge

    mine = wandb.init(project="mine", mode="offline", dir=str(tmp_path / "mine"), reinit="create_new")
    try:
        overrides = [o for o in TINY if not o.startswith("eval.")]
        overrides += ["train.epochs=1", 'callbacks=[{type = "wandb", mode = "offline"}]']
        ganforge.train(QUICKSTART, overrides=overrides, run_dir=tmp_path / "run")
        mine.log({"still_mine": 1.0})  # raises if the callback had finished this run
    finally:
        mine.finish()
    (ours,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (theirs,) = (tmp_path / "mine" / "wandb").glob("offline-run-*")
    assert ours.name.rsplit("-", 1)[1] != theirs.name.rsplit("-", 1)[1] == mine.id
