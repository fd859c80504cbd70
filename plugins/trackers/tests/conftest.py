"""The plugin's own test fixtures; they make ``ganforge_trackers`` importable from a source checkout and
keep every tracker on this machine.

These tests need only ``ganforge``, this plugin, ``wandb`` and ``mlflow`` (or ``mlflow-skinny``), not the
core's ``tests/`` package. Test files under ``plugins/*/tests`` have no ``__init__.py`` and are imported
by their base name, so their names start with ``test_trackers_``, and the helpers they share live in
``trackers_helpers.py`` (a ``conftest`` module name is shared by every plugin's tests).

Nothing here reaches a network: W&B runs in offline mode with every folder it writes under the test's
temporary folder, MLflow writes to a file store there, and both libraries' usage reports are off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]

try:
    import ganforge_trackers  # noqa: F401
except ImportError:
    sys.path.insert(0, str(PLUGIN_ROOT))

from trackers_helpers import offline_env


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test, in this process and in the processes it starts, keeps the trackers local."""
    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from threads, and on a shared 2-core machine two threads spin-wait."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
