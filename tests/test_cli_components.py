"""``ganforge list-components`` and ``ganforge plugins`` through the real CLI."""

from __future__ import annotations

import json

from ganforge.registry import KINDS
from tests.conftest import run_cli


def test_list_all_components_as_json():
    result = run_cli("list-components", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    by_name = {(e["kind"], e["name"]): e for e in entries}
    for kind, name, plugin in [
        ("generator", "resnet", "builtin.networks"),
        ("discriminator", "patchgan", "builtin.networks"),
        ("generator", "unet", "builtin.networks"),
        ("discriminator", "pixel", "builtin.networks"),
        ("loss", "lsgan", "builtin.losses"),
        ("loss", "l1", "builtin.losses"),
        ("buffer", "history", "cyclegan"),
        ("scheduler", "linear_decay", "builtin.schedules"),
        ("model", "cyclegan", "cyclegan"),
    ]:
        assert by_name[(kind, name)]["plugin"] == plugin
        assert by_name[(kind, name)]["summary"]
    assert by_name[("optimizer", "adam")]["plugin"] == "builtin.optim"
    assert by_name[("dataset", "synthetic_scenes")]["plugin"] == "builtin.data"
    assert {e["kind"] for e in entries} <= set(KINDS)


def test_table_lists_every_kind_with_plugin_and_summary():
    result = run_cli("list-components")
    assert result.returncode == 0, result.stderr
    for text in ("generator", "resnet", "cyclegan", "discriminator", "patchgan", "buffer", "history", "builtin.data"):
        assert text in result.stdout


def test_one_component_parameters():
    result = run_cli("list-components", "generator", "resnet", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    fields = {f["name"]: f for f in info["params"]}
    assert fields["n_blocks"] == {
        "name": "n_blocks",
        "type": "int",
        "required": False,
        "default": 9,
        "bounds": ">= 0, <= 64",
        "description": fields["n_blocks"]["description"],
    }
    assert "9 for 256 px" in fields["n_blocks"]["description"]
    assert fields["upsample"]["type"] == "'transpose' | 'resize_conv'"
    assert info["json_schema"]["additionalProperties"] is False
    table = run_cli("list-components", "generator", "resnet")
    assert table.returncode == 0 and "n_blocks" in table.stdout and ">= 0" in table.stdout
    model = json.loads(run_cli("list-components", "model", "cyclegan", "--json").stdout)
    generator = next(f for f in model["params"] if f["name"] == "generator")
    assert generator["type"] == "generator component" and generator["default"] == {"type": "resnet"}


def test_unknown_kind_and_name_are_one_line():
    result = run_cli("list-components", "generatr")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: unknown kind 'generatr' (did you mean 'generator'?); kinds: " + ", ".join(KINDS)
    )
    result = run_cli("list-components", "generator", "resnett")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown generator 'resnett' (did you mean 'resnet'?); known: resnet, unet"
    )


def test_plugins_lists_sources():
    rows = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    assert rows["cyclegan"]["source"] == "entry point of ganforge-cyclegan" and rows["cyclegan"]["error"] is None
    assert rows["builtin.optim"]["source"].startswith("builtin")


def test_autoload_can_be_disabled():
    result = run_cli("list-components", "--json", env={"GANFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    names = {e["name"] for e in json.loads(result.stdout)}
    assert "adam" in names and "resnet" in names and "cyclegan" not in names
    result = run_cli("list-components", "--json", env={"GANFORGE_PLUGINS": "cyclegan"})
    assert "cyclegan" in {e["name"] for e in json.loads(result.stdout)}
