"""Shared helpers: running the real CLI in a subprocess, and the registries of this install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

#: Recipe overrides that shrink the quickstart to one epoch of two 32 px images.
TINY_RUN = [
    "data.size=32",
    "data.length=2",
    "train.batch_size=1",  # the quickstart trains batches of 2; tests keep 2 steps of 1 per epoch
    "data.test_length=2",
    "train.epochs=1",
    "output.n_samples=2",
    "model.discriminator.ndf=8",
]


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    pythonpath: Path | None = None,
    timeout: float = 300,
    module: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ganforge ARGS`` (``python ARGS`` with ``module=False``; no GANFORGE_* variables
    unless given) and return the result."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}
    full_env["COLUMNS"] = "200"
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), full_env.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *(["-m", "ganforge"] if module else []), *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session", autouse=True)
def trackers_stay_local(tmp_path_factory: pytest.TempPathFactory):
    """An installed tracker plugin (W&B, MLflow: plugins/trackers) that a test builds with its defaults
    logs offline into a temporary folder, in this process and in the CLI processes tests start."""
    folder = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(folder),
            "WANDB_CACHE_DIR": str(folder / "wandb-cache"),
            "WANDB_CONFIG_DIR": str(folder / "wandb-config"),
            "WANDB_DATA_DIR": str(folder / "wandb-data"),
            "MLFLOW_TRACKING_URI": (folder / "mlruns").as_uri(),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def registries():
    from ganforge.plugins import collect_registries, make_plugin_manager

    return collect_registries(make_plugin_manager())


def add_distribution(site: Path, module: str, source: str, dist: str, entry_point: str) -> None:
    """What ``pip install`` leaves in site-packages: the module, and a .dist-info with its entry point."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ganforge]\n{entry_point} = {module}\n")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from threads, and on a shared 2-core machine two threads spin-wait."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
