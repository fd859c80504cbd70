"""The ``mlflow`` callback in a real ``ganforge run``, read back with MLflow's own client.

One tiny CycleGAN (2 epochs x 4 steps, losses every 2 steps, PSNR/L1 after each epoch) trains through
the command line into a file store under the test's folder (``tracking_uri = "file:..."``, which works
with mlflow-skinny). ``MlflowClient`` reads back the params, every metric's history with its steps, the
artifacts and the run's status, compared number for number with the run directory's own files. Runs that
stop, fail, or lose their store mid-run train in this process, through ``ganforge.train``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from trackers_helpers import PLUGIN_ROOT, QUICKSTART, TINY, jsonl, run_cli, set_options

import ganforge
from ganforge.engine.trainer import Stopped


def client_for(store: Path, monkeypatch: pytest.MonkeyPatch | None = None):
    from mlflow.tracking import MlflowClient

    if monkeypatch is not None:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to read a file store
    return MlflowClient(tracking_uri=store.as_uri())


def only_run(client, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("mlflow")
    run, store = folder / "run", folder / "mlruns"
    callbacks = (
        f'callbacks=[{{type = "mlflow", tracking_uri = "{store.as_uri()}", experiment = "tiny", '
        'log_checkpoints = true, tags = {team = "gan"}}]'
    )
    started = time.perf_counter()
    result = run_cli(
        "run", str(QUICKSTART), *set_options([*TINY, callbacks]), "--run-dir", str(run), cwd=folder
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert not (folder / "mlflow.db").exists()  # MLflow's default store was not touched
    with pytest.MonkeyPatch.context() as patch:
        client = client_for(store, patch)
        info = only_run(client, "tiny")
        print(f"mlflow run: {seconds:.1f} s (CLI, 2 epochs x 4 steps, eval on)")
        history = {key: client.get_metric_history(info.info.run_id, key) for key in info.data.metrics}
        artifacts = {
            folder_name: sorted(a.path for a in client.list_artifacts(info.info.run_id, folder_name))
            for folder_name in (None, "samples", "checkpoints")
        }
        recipe_copy = client.download_artifacts(info.info.run_id, "recipe.toml", str(folder / "download"))
    return SimpleNamespace(
        run=run, info=info, history=history, artifacts=artifacts, recipe_copy=Path(recipe_copy)
    )


def test_run_name_tags_and_status(logged):
    info = logged.info
    assert info.info.run_name == "run" and info.info.status == "FINISHED"
    assert info.data.tags["ganforge.run_dir"] == str(logged.run)
    assert info.data.tags["ganforge.recipe"] == "quickstart"
    assert info.data.tags["ganforge.outcome"] == "finished"
    assert info.data.tags["team"] == "gan"


def test_params_are_the_recipe_flattened_with_dots(logged):
    params = logged.info.data.params
    assert params["model.generator.ngf"] == "4" and params["data.size"] == "32"
    assert params["train.optimizer.betas"] == "[0.5, 0.999]" and params["train.optimizer.type"] == "adam"
    assert params["output.tensorboard"] == "false" and params["name"] == "quickstart"
    recipe = tomllib.loads((logged.run / "recipe.toml").read_text())
    assert params["train.optimizer.lr"] == str(recipe["train"]["optimizer"]["lr"]) == "0.001"
    assert params["eval.metrics"] == '["psnr", "l1"]'


def test_recipe_toml_is_an_artifact(logged):
    assert logged.artifacts[None] == ["checkpoints", "recipe.toml", "samples"]
    assert logged.recipe_copy.read_text() == (logged.run / "recipe.toml").read_text()


def test_losses_and_learning_rates_at_each_log_step(logged):
    steps = [r for r in jsonl(logged.run / "metrics.jsonl") if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8]
    for name in steps[0]["losses"]:
        history = logged.history[f"loss/{name}"]
        assert [m.step for m in history] == [2, 4, 6, 8]
        assert [m.value for m in history] == pytest.approx([r["losses"][name] for r in steps], rel=1e-12)
    for group in ("G", "D"):
        history = logged.history[f"lr/{group}"]
        assert [(m.step, m.value) for m in history] == [
            (r["step"], pytest.approx(r["lr"][group])) for r in steps
        ]


def test_epoch_losses_and_evaluation_scores_by_step(logged):
    epochs = [r for r in jsonl(logged.run / "metrics.jsonl") if r["kind"] == "epoch"]
    scores = jsonl(logged.run / "eval.jsonl")
    assert [(m.step, m.value) for m in logged.history["epoch"]] == [(4, 1.0), (8, 2.0)]
    assert [m.value for m in logged.history["epoch_loss/G_A"]] == pytest.approx(
        [r["losses"]["G_A"] for r in epochs]
    )
    for key in ("A2B.psnr", "B2A.l1"):
        direction, metric = key.split(".")
        history = logged.history[f"eval/{key}"]
        assert [m.step for m in history] == [4, 8]
        assert [m.value for m in history] == pytest.approx([s["scores"][direction][metric] for s in scores])
    assert [m.value for m in logged.history["eval/psnr"]] == pytest.approx(
        [s["mean"]["psnr"] for s in scores]
    )


def test_sample_grids_and_checkpoints_are_artifacts(logged):
    assert logged.artifacts["samples"] == ["samples/epoch_0001.png", "samples/epoch_0002.png"]
    assert logged.artifacts["checkpoints"] == ["checkpoints/latest.pt"]  # no best.pt without eval.best_metric


# ------------------------------------------------------------------------- endings, in this process


class StopAt:
    """Asks the trainer to stop (as Ctrl-C does) at a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, losses):
        if trainer.step == self.step:
            trainer.request_stop("SIGINT")


class FailAtEpochEnd:
    def on_epoch_end(self, trainer, losses):
        raise RuntimeError("a bug in a callback")


def train(folder: Path, store: Path, *callbacks, extra: tuple[str, ...] = ()) -> None:
    spec = f'callbacks=[{{type = "mlflow", tracking_uri = "{store.as_uri()}", experiment = "e"}}]'
    overrides = [o for o in TINY if not o.startswith("eval.")] + [spec, *extra]
    ganforge.train(QUICKSTART, overrides=overrides, run_dir=folder / "run", callbacks=list(callbacks))


@pytest.mark.parametrize(
    ("callback", "error", "status", "outcome"),
    [(StopAt(3), Stopped, "KILLED", "stopped"), (FailAtEpochEnd(), RuntimeError, "FAILED", "failed")],
    ids=["stopped", "failed"],
)
def test_a_run_that_ends_early_ends_its_mlflow_run_so(
    callback, error, status, outcome, tmp_path, monkeypatch, one_thread
):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    with pytest.raises(error):
        train(tmp_path, store, callback)
    run = only_run(client_for(store), "e")
    assert run.info.status == status and run.data.tags["ganforge.outcome"] == outcome


def test_a_store_that_fails_mid_run_costs_one_warning_not_the_run(tmp_path, monkeypatch, capsys, one_thread):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    calls = []
    real = MlflowClient.log_batch

    def flaky(self, run_id, metrics=(), params=(), tags=()):
        calls.append(len(metrics))
        if metrics:
            raise ConnectionError("tracking server went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    store = tmp_path / "mlruns"
    train(tmp_path, store)
    assert (tmp_path / "run" / "checkpoints" / "epoch_0002.pt").is_file()  # training went on to the end
    warnings = [line for line in capsys.readouterr().err.splitlines() if "mlflow" in line]
    assert warnings == [
        (
            "warning: mlflow: logging step 2 failed (ConnectionError: tracking server went away); "
            "logging to it stops, training goes on"
        )
    ]
    assert sum(1 for n in calls if n) == 1  # nothing more was tried after the failure
    run = only_run(client_for(store), "e")
    assert run.info.status == "FINISHED"  # the run is still closed, with what it had
    assert run.data.params["model.generator.ngf"] == "4" and not run.data.metrics


def test_neither_library_is_imported_until_a_recipe_names_it():
    code = "import ganforge_trackers.plugin, sys; print('mlflow' in sys.modules, 'wandb' in sys.modules)"
    path = os.pathsep.join(p for p in (str(PLUGIN_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_a_resumed_run_is_a_new_mlflow_run_whose_steps_go_on(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    train(tmp_path, store, extra=("train.epochs=1",))
    spec = f'callbacks=[{{type = "mlflow", tracking_uri = "{store.as_uri()}", experiment = "e"}}]'
    ganforge.train(resume=tmp_path / "run", overrides=["train.epochs=2", spec])
    client = client_for(store)
    runs = client.search_runs(
        [client.get_experiment_by_name("e").experiment_id], order_by=["attributes.start_time ASC"]
    )
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert {r.data.tags["ganforge.run_dir"] for r in runs} == {str(tmp_path / "run")}
    assert "ganforge.resumed_from_step" not in runs[0].data.tags
    assert runs[1].data.tags["ganforge.resumed_from_step"] == "4"
    steps = [[m.step for m in client.get_metric_history(r.info.run_id, "loss/G_A")] for r in runs]
    assert steps == [[2, 4], [6, 8]]
