"""Make ``ganforge_cpu_kernels`` importable from a source checkout where the plugin is not installed, and
run the real command line in a subprocess (as the core's tests/conftest.py does)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

try:
    import ganforge_cpu_kernels  # noqa: F401
except ImportError:
    # appended, not prepended: the repository's own tests/ package must stay the first one on the path
    sys.path.append(str(Path(__file__).resolve().parents[1]))

PLUGIN = Path(__file__).resolve().parents[1]
ROOT = PLUGIN.parents[1]  # the repository: recipes/, ganforge/


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m ganforge ARGS`` in a subprocess from the repository root, without GANFORGE_* variables,
    with this plugin importable (as if installed)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}
        full_env["COLUMNS"] = "200"
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (full_env.get("PYTHONPATH"), str(PLUGIN)) if p)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "ganforge", *args],
            check=False, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600,
        )

    return run
