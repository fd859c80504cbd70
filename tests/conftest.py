"""Shared helpers: running the real CLI in a subprocess, and the registries of this install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``python -m ganforge ARGS`` and return the CompletedProcess (text output)."""
    full_env = {**os.environ, "COLUMNS": "200"}
    full_env.pop("GANFORGE_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ganforge", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def registries():
    from ganforge.plugins import collect_registries, make_plugin_manager

    return collect_registries(make_plugin_manager())
