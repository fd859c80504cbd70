"""The shape of the core, checked: imports flow one way (import-linter contracts in pyproject.toml),
no module names a model, and a new upward import fails the suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_them(tmp_path):
    shutil.copytree(ROOT / "ganforge", tmp_path / "ganforge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "ganforge" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom ganforge import api  # noqa: E402 (upward, on purpose)\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "Layers: each module imports only from the layers below it BROKEN" in result.stdout
    assert "ganforge.errors -> ganforge.api" in result.stdout



def test_the_core_names_no_model():
    """What a model calls its nets and directions belongs to the model plugin (docs may name examples)."""
    pattern = re.compile(r"cyclegan|pix2pix|\bG_A\b|\bG_B\b|AtoB|BtoA|winograd", re.I)
    hits = []
    for path in sorted((ROOT / "ganforge").rglob("*")):
        if path.suffix not in (".py", ".cpp") or "__pycache__" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
