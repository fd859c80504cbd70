"""The README's set-up commands are the ones CI runs and the ones that exist."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert ci in commands
    assert any("ganforge run recipes/quickstart.toml" in c and "pip install" in c for c in commands)
