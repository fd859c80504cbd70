"""What a user sees when a tracker cannot run: one line, before any training, naming what to do.

Each case runs the real command line in a subprocess. A missing library is simulated by putting
``None`` in ``sys.modules`` for it (what Python does for a module that must not be imported), so the
tests need no second environment.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from trackers_helpers import QUICKSTART, TINY, run_cli, set_options

NO_EVAL = [o for o in TINY if not o.startswith("eval.")]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("callback", "module", "extra"),
    [("wandb", "wandb", "wandb"), ("mlflow", "mlflow", "mlflow")],
)
def test_a_missing_library_is_one_line_with_the_install_command(callback, module, extra, tmp_path: Path):
    spec = f'callbacks=[{{type = "{callback}"}}]'
    args = ["run", str(QUICKSTART), *set_options([*NO_EVAL, spec]), "--run-dir", str(tmp_path / "run")]
    result = run_cli(*args, cwd=tmp_path, prelude=f"import sys; sys.modules[{module!r}] = None")
    assert result.returncode == 1
    assert error_lines(result) == [
        (
            f"error: callback '{callback}' needs the {module}{' (or mlflow-skinny)' if module == 'mlflow' else ''} "
            f'package: pip install "ganforge-trackers[{extra}]" '
            f'(from a source checkout: pip install -e "plugins/trackers[{extra}]")'
        )
    ]
    assert not (tmp_path / "run").exists()  # nothing started


def test_bad_parameters_are_one_line_each_naming_the_field(tmp_path: Path):
    spec = (
        'callbacks=[{type = "wandb", mode = "online-ish", tags = [""]}, {type = "mlflow", log_image = true}]'
    )
    result = run_cli("validate", str(QUICKSTART), *set_options([*NO_EVAL, spec]), cwd=tmp_path)
    assert result.returncode == 2
    lines = [line.split(": ", 2)[-1] for line in error_lines(result)]
    assert lines == [
        "callbacks[0].mode: Input should be 'online', 'offline' or 'disabled'",
        "callbacks[0].tags.0: String should have at least 1 character",
        (
            "callbacks[1].log_image: unknown key (did you mean 'log_images'?); valid keys: experiment, "
            "log_checkpoints, log_images, run_name, tags, tracking_uri"
        ),
    ]


def test_a_database_store_without_sqlalchemy_says_what_works_with_mlflow_skinny(tmp_path: Path):
    # MLflow 3's default store is sqlite:///mlflow.db, which needs sqlalchemy; mlflow-skinny has none
    spec = f'callbacks=[{{type = "mlflow", tracking_uri = "sqlite:///{tmp_path}/m.db"}}]'
    args = ["run", str(QUICKSTART), *set_options([*NO_EVAL, spec]), "--run-dir", str(tmp_path / "run")]
    result = run_cli(*args, cwd=tmp_path, prelude="import sys; sys.modules['sqlalchemy'] = None")
    assert result.returncode == 1
    assert error_lines(result) == [
        (
            f"error: callback 'mlflow': the tracking store sqlite:///{tmp_path}/m.db needs sqlalchemy, which "
            'mlflow-skinny lacks: pip install mlflow, or set tracking_uri = "file:./mlruns" (a folder) or an '
            "http:// server"
        )
    ]
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.db").exists()


def test_a_store_that_cannot_be_reached_stops_the_run_before_training(tmp_path: Path):
    with socket.socket() as probe:  # a loopback port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = f'callbacks=[{{type = "mlflow", tracking_uri = "http://127.0.0.1:{port}"}}]'
    args = ["run", str(QUICKSTART), *set_options([*NO_EVAL, spec]), "--run-dir", str(tmp_path / "run")]
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith(f"error: callback 'mlflow' could not start a run in http://127.0.0.1:{port}: ")
    assert "epoch 1" not in result.stdout and not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_the_entry_point_names_the_module_that_registers_both_callbacks():
    import tomllib

    from ganforge.plugins import collect_registries, make_plugin_manager

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["ganforge"] == {"trackers": "ganforge_trackers.plugin"}
    assert project["project"]["optional-dependencies"] == {
        "wandb": ["wandb>=0.19.10"],
        "mlflow": ["mlflow-skinny>=2.10"],
    }
    registries = collect_registries(make_plugin_manager(["ganforge_trackers.plugin"]))
    assert {"wandb", "mlflow"} <= set(registries["callback"].names())
    for name in ("wandb", "mlflow"):
        assert registries["callback"].get(name).summary  # the line `ganforge list-components` shows
