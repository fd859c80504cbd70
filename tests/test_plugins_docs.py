"""docs/plugins.md works as written: its example plugin, loaded from a recipe and as an installed package.

Every check runs the real command line in a subprocess (``python -m ganforge``), from a temporary
folder, on runs shrunk to seconds. The installed-package case builds a real ``site`` folder (module plus
``.dist-info`` with ``entry_points.txt``) and puts it on ``PYTHONPATH``, which is what ``pip install``
leaves behind, without calling pip.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import TINY_RUN, add_distribution, run_cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
QUICKSTART = ROOT / "recipes" / "quickstart.toml"


def set_options(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


def plugin_source() -> str:
    match = re.search(r'^```python title="my_gan_plugin\.py"\n(.*?)^```', DOC.read_text(), re.S | re.M)
    assert match, 'docs/plugins.md has no ```python title="my_gan_plugin.py" block'
    return match.group(1)


def write_recipe(folder: Path, *, plugins: list[str], generator: dict, cycle_loss: dict | None) -> Path:
    """quickstart.toml with a plugins list and the given generator and cycle-loss tables."""
    data = tomllib.loads(QUICKSTART.read_text())
    data.pop("plugins", None)
    if plugins:
        data = {"plugins": plugins, **data}
    data["model"]["generator"] = generator
    if cycle_loss is not None:
        data["model"]["cycle_loss"] = cycle_loss
    path = folder / "recipe.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def assert_run_dir(run: Path) -> str:
    """The files every run writes; returns the resolved recipe's text."""
    assert (run / "checkpoints" / "latest.pt").is_file()
    assert (run / "checkpoints" / "epoch_0001.pt").is_file()
    assert (run / "samples" / "epoch_0001.png").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all("losses" in record for record in records)
    assert any(record["kind"] == "epoch" for record in records)
    return (run / "recipe.toml").read_text()


# ------------------------------------------------------------------------------------ recipe plugins


def test_recipe_plugin_trains(tmp_path: Path) -> None:
    (tmp_path / "my_gan_plugin.py").write_text(plugin_source())
    recipe = write_recipe(
        tmp_path,
        plugins=["my_gan_plugin.py"],
        generator={"type": "tiny_conv", "width": 8},
        cycle_loss={"type": "charbonnier", "eps": 0.001},
    )
    text = recipe.read_text()
    first_table = re.search(r"^\[", text, re.M)
    assert first_table and text.index("plugins = ") < first_table.start(), "plugins must be a top-level key"

    run_dir = ["--run-dir", str(tmp_path / "run")]
    result = run_cli("run", recipe.name, *set_options(TINY_RUN), *run_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = assert_run_dir(tmp_path / "run")
    assert "tiny_conv" in resolved and "charbonnier" in resolved
    assert tomllib.loads(resolved)["model"]["cycle_loss"]["type"] == "charbonnier"


def test_list_components_with_plugin_option(tmp_path: Path) -> None:
    (tmp_path / "my_gan_plugin.py").write_text(plugin_source())
    result = run_cli("list-components", "generator", "--plugin", "my_gan_plugin.py", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"tiny_conv", "resnet"} <= set(entries)
    assert entries["tiny_conv"]["kind"] == "generator"
    assert "my_gan_plugin" in entries["tiny_conv"]["plugin"]
    assert entries["tiny_conv"]["summary"].startswith("Two 3x3 convolutions")
    assert entries["resnet"]["plugin"] == "builtin.networks"


def test_component_params_from_plugin(tmp_path: Path) -> None:
    (tmp_path / "my_gan_plugin.py").write_text(plugin_source())
    result = run_cli(
        "list-components", "generator", "tiny_conv", "--plugin", "my_gan_plugin.py", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["name"] == "tiny_conv" and "my_gan_plugin" in info["plugin"]
    width = next(row for row in info["params"] if row["name"] == "width")
    assert width["default"] == 8
    assert width["bounds"] == ">= 1"
    assert width["description"]


# --------------------------------------------------------------------------------- installed plugins


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder with the documented plugin (entry point my_gan) and one that fails to import."""
    site = tmp_path_factory.mktemp("site")
    add_distribution(site, "my_gan_plugin", plugin_source(), "my-gan-plugin", "my_gan")
    add_distribution(
        site,
        "broken_gan_plugin",
        'raise ImportError("broken_gan_plugin needs a package that is not installed")\n',
        "broken-gan-plugin",
        "broken_gan",
    )
    return site


@pytest.fixture(scope="module")
def installed_listing(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    return run_cli("list-components", "--json", cwd=tmp_path_factory.mktemp("cwd"), pythonpath=site)


def test_entry_point_plugin_components_listed(installed_listing: subprocess.CompletedProcess[str]) -> None:
    assert installed_listing.returncode == 0, installed_listing.stderr
    entries = json.loads(installed_listing.stdout)
    mine = {(e["kind"], e["name"]): e["plugin"] for e in entries if e["plugin"] == "my_gan"}
    assert mine == {("generator", "tiny_conv"): "my_gan", ("loss", "charbonnier"): "my_gan"}


def test_broken_entry_point_is_reported_and_the_rest_work(
    installed_listing: subprocess.CompletedProcess[str],
) -> None:
    assert installed_listing.returncode == 0, installed_listing.stderr
    names = {(e["kind"], e["name"]): e["plugin"] for e in json.loads(installed_listing.stdout)}
    for component in [("buffer", "history"), ("model", "cyclegan")]:
        assert names[component] == "cyclegan"
    assert names[("generator", "resnet")] == "builtin.networks"
    problems = [line for line in installed_listing.stderr.splitlines() if "broken_gan" in line]
    assert len(problems) == 1, installed_listing.stderr
    assert "ImportError" in problems[0]
    assert "Traceback" not in installed_listing.stderr


def test_plugins_command_lists_entry_points(site: Path, tmp_path: Path) -> None:
    result = run_cli("plugins", "--json", cwd=tmp_path, pythonpath=site)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert "entry point" in rows["my_gan"]["source"] and "my-gan-plugin" in rows["my_gan"]["source"]
    assert rows["my_gan"]["error"] is None
    assert rows["cyclegan"]["error"] is None
    assert "ImportError" in rows["broken_gan"]["error"]


def test_installed_plugin_trains_without_plugins_list(site: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, plugins=[], generator={"type": "resnet"}, cycle_loss=None)
    assert "plugins" not in tomllib.loads(recipe.read_text())
    overrides = set_options([*TINY_RUN, 'model.generator.type="tiny_conv"'])
    run_dir = ["--run-dir", str(tmp_path / "run")]
    result = run_cli("run", recipe.name, *overrides, *run_dir, cwd=tmp_path, pythonpath=site)
    assert result.returncode == 0, result.stderr
    resolved = tomllib.loads(assert_run_dir(tmp_path / "run"))
    generator = {"type": "tiny_conv", "in_channels": 3, "out_channels": 3, "width": 8}
    assert resolved["model"]["generator"] == generator


# ---------------------------------------------------------------------------------------- failures


def test_recipe_plugin_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text('raise ImportError("no module named torch_magic")\n')
    recipe = write_recipe(tmp_path, plugins=["broken.py"], generator={"type": "resnet"}, cycle_loss=None)
    result = run_cli("validate", recipe.name, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "broken.py" in lines[0] and "torch_magic" in lines[0]


def test_duplicate_component_names_both_plugins(tmp_path: Path) -> None:
    (tmp_path / "dup.py").write_text(
        "from ganforge import hookimpl\n"
        "import torch\n\n\n"
        "def build(params):\n"
        '    """Not a resnet at all."""\n'
        "    return torch.nn.Identity()\n\n\n"
        "@hookimpl\n"
        "def register_generators(register):\n"
        '    register("resnet", build)\n'
    )
    result = run_cli("list-components", "generator", "--plugin", "dup.py", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'resnet'" in lines[0] and "'builtin.networks'" in lines[0] and "dup" in lines[0]


# ------------------------------------------------------------------------------------------ backends


def test_the_backend_example_runs_and_keeps_checkpoints(tmp_path: Path) -> None:
    block = r'^```python title="my_backend\.py"\n(.*?)^```'
    match = re.search(block, DOC.read_text(), re.DOTALL | re.MULTILINE)
    assert match, 'docs/plugins.md has no ```python title="my_backend.py" block'
    (tmp_path / "my_backend.py").write_text(match.group(1))
    generator = {"type": "resnet", "ngf": 8, "n_blocks": 1}
    recipe = write_recipe(tmp_path, plugins=["my_backend.py"], generator=generator, cycle_loss=None)
    options = [*set_options(TINY_RUN), "--set", "train.backend.type=channels_last_convs"]
    result = run_cli("run", recipe.name, *options, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "on cpu, backend channels_last_convs (replaced 22 convolutions)" in first
    # the same weights and keys as a run on torch's own layers: it resumes with another backend
    result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.epochs=2",
                     "--set", "train.backend.type=direct", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "backend direct" in result.stdout
