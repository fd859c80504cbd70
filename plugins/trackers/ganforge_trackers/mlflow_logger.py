"""``mlflow``: a run's recipe, losses, learning rates, sample grids and evaluation scores in MLflow."""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import Field

from ganforge import Params
from ganforge.errors import GanforgeError
from ganforge_trackers.common import (
    Guard,
    epoch_values,
    flatten,
    missing_package,
    one_line,
    outcome,
    sample_grid,
    step_values,
)

#: MLflow's limit on a parameter's value (longer recipe values are cut; recipe.toml has them whole).
MAX_PARAM_VALUE = 6000
#: How many parameters one request carries (MLflow's limit for a batch).
PARAMS_PER_BATCH = 100
#: A run's end as MLflow names it.
STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class MlflowParams(Params):
    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="Tracking store: file:./mlruns, sqlite:///mlflow.db, http://host:5000 (default: "
        "MLFLOW_TRACKING_URI, else MLflow's own default).",
    )
    experiment: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Experiment name, created if new (default: MLFLOW_EXPERIMENT_NAME, else the recipe's name).",
    )
    run_name: str | None = Field(
        None, min_length=1, max_length=250, description="Run name (default: the run directory's name)."
    )
    tags: dict[Annotated[str, Field(min_length=1, max_length=250)], str] = Field(
        default_factory=dict, description="Extra run tags, name = value."
    )
    log_images: bool = Field(True, description="Log each sample grid as an artifact under samples/.")
    log_checkpoints: bool = Field(
        False, description="When the run ends, log checkpoints/latest.pt (and best.pt) as artifacts."
    )


def build_mlflow(params: MlflowParams) -> MlflowLogger:
    """MLflow: recipe as params and recipe.toml; losses, learning rates, eval scores by step; samples."""
    if importlib.util.find_spec("mlflow") is None:
        raise missing_package("mlflow", "mlflow (or mlflow-skinny)")
    import mlflow  # optional: pip install "ganforge-trackers[mlflow]"

    uri = params.tracking_uri or mlflow.get_tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):  # a folder: MLflow's file store
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked; a recipe or
        # MLFLOW_TRACKING_URI that names a folder asks.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif scheme.split("+")[0] in DATABASE_SCHEMES and importlib.util.find_spec("sqlalchemy") is None:
        raise GanforgeError(
            f"callback 'mlflow': the tracking store {uri} needs sqlalchemy, which mlflow-skinny lacks: "
            'pip install mlflow, or set tracking_uri = "file:./mlruns" (a folder) or an http:// server'
        )
    return MlflowLogger(params, uri)


class MlflowLogger:
    """One MLflow run per ``ganforge run`` (a resumed run starts another, tagged with the same run
    directory). Talks to the store through its own client: it neither needs nor changes an active run."""

    def __init__(self, params: MlflowParams, uri: str) -> None:
        self.params = params
        self.uri = uri
        self.client: Any = None
        self.run_id: str | None = None
        self.guard = Guard("mlflow")

    def on_train_start(self, trainer: Any) -> None:
        from mlflow.entities import Param  # optional: pip install "ganforge-trackers[mlflow]"
        from mlflow.tracking import MlflowClient

        p = self.params
        run_dir = trainer.run_dir.path
        name = p.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or trainer.recipe.name
        tags = {"ganforge.run_dir": str(run_dir), "ganforge.recipe": trainer.recipe.name, **p.tags}
        if trainer.step:
            tags["ganforge.resumed_from_step"] = str(trainer.step)
        try:
            client = MlflowClient(tracking_uri=self.uri)
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            run = client.create_run(experiment_id, run_name=p.run_name or run_dir.name, tags=tags)
        except Exception as exc:  # noqa: BLE001 - any store failure at the start is one line
            raise GanforgeError(
                f"callback 'mlflow' could not start a run in {self.uri}: {one_line(exc)}"
            ) from None
        self.client, self.run_id = client, run.info.run_id
        params = [Param(k, v[:MAX_PARAM_VALUE]) for k, v in flatten(trainer.recipe.to_dict()).items()]

        def log_recipe() -> None:
            for i in range(0, len(params), PARAMS_PER_BATCH):
                client.log_batch(self.run_id, params=params[i : i + PARAMS_PER_BATCH])
            recipe_file = run_dir / trainer.run_dir.RECIPE
            if recipe_file.is_file():
                client.log_artifact(self.run_id, str(recipe_file))

        self.guard("logging the recipe", log_recipe)

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # optional, as above

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), stamp, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_step_end(self, trainer: Any, losses: dict[str, float] | None) -> None:
        if self.run_id is None or losses is None:
            return
        values = step_values(trainer, losses)
        self.guard(f"logging step {trainer.step}", lambda: self._metrics(values, trainer.step))

    def on_epoch_end(self, trainer: Any, losses: dict[str, float]) -> None:
        if self.run_id is None:
            return

        def log() -> None:
            self._metrics(epoch_values(trainer, losses), trainer.step)
            grid = sample_grid(trainer) if self.params.log_images else None
            if grid is not None:
                self.client.log_artifact(self.run_id, str(grid), "samples")

        self.guard(f"logging epoch {trainer.epoch}", log)

    def on_train_end(self, trainer: Any) -> None:
        if self.run_id is None:
            return
        state, _ = outcome(trainer)
        run_id, self.run_id = self.run_id, None
        folder = trainer.run_dir.path / trainer.run_dir.CHECKPOINTS

        def checkpoints() -> None:
            for name in ("latest.pt", "best.pt"):
                if (folder / name).is_file():
                    self.client.log_artifact(run_id, str(folder / name), "checkpoints")

        def finish() -> None:
            self.client.set_tag(run_id, "ganforge.outcome", state)
            self.client.set_terminated(run_id, status=STATUS[state])

        if self.params.log_checkpoints:
            self.guard("logging the checkpoints", checkpoints)
        self.guard("finishing the run", finish, always=True)
