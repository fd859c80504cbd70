"""Hooks and registration: every hook documented, plugin commands, and registration rules."""

from __future__ import annotations

import inspect
import json
import re
import textwrap

import pytest
from pydantic import BaseModel

from ganforge import hookspecs
from ganforge.data.sources import DatasetSource
from ganforge.errors import PluginError
from ganforge.plugins import collect_dataset_sources, collect_registries, make_plugin_manager
from ganforge.registry import KINDS, Params, Registry
from tests.conftest import ROOT, add_distribution, run_cli

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hook_has_a_docstring_and_a_docs_entry():
    docs = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "docs" / "plugins.md").read_text()
    assert set(hookspecs.COMPONENT_HOOKS) == set(KINDS)
    # not component kinds
    other_hooks = {"register_commands", "register_dataset_sources", "register_model_sources"}
    assert set(HOOKS) == {*hookspecs.COMPONENT_HOOKS.values(), *other_hooks}
    for name in HOOKS:
        assert inspect.getdoc(getattr(hookspecs, name)), name
        assert f"`{name}" in docs, f"{name} is not documented in docs/"


def write_plugin(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text("from ganforge import hookimpl, Params\nimport torch\n\n" + textwrap.dedent(body))
    return str(path)


def test_plugin_that_raises_while_registering_is_reported_and_others_work(tmp_path):
    bad = write_plugin(
        tmp_path,
        "bad",
        """
        @hookimpl
        def register_losses(register):
            raise RuntimeError("losses are hard")
        """,
    )
    plugins = make_plugin_manager([bad])
    registries = collect_registries(plugins)
    (failed,) = plugins.failed
    assert failed.name == bad and "RuntimeError: losses are hard" in failed.error
    assert "resnet" in registries["generator"] and "lsgan" in registries["loss"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('register("my net", lambda p: None)', "must be an identifier"),
        ('register("net", 42)', "factory is not callable"),
        ('register("net", lambda p: None, params=dict)', "params must be a pydantic model"),
        ('register("net", lambda p: None, params=Loose)', "must set extra='forbid'"),
    ],
)
def test_invalid_registrations_are_refused_with_the_plugin_name(tmp_path, call, message):
    plugin = write_plugin(
        tmp_path,
        "sloppy",
        f"""
        from pydantic import BaseModel

        class Loose(BaseModel):
            x: int = 1

        @hookimpl
        def register_generators(register):
            {call}
        """,
    )
    with pytest.raises(PluginError, match=message) as info:
        collect_registries(make_plugin_manager([plugin]))
    assert plugin in str(info.value)


def test_registry_rejects_duplicates_naming_both_plugins():
    registry = Registry("generator")
    registry.add("net", lambda p: None, plugin="first")
    with pytest.raises(PluginError) as info:
        registry.add("net", lambda p: None, plugin="second")
    assert str(info.value) == "generator 'net' is registered twice: by plugin 'first' and by plugin 'second'"


def test_summary_defaults_to_the_first_docstring_line():
    def factory(params):
        """Makes a thing.

        More words.
        """

    class P(Params):
        pass

    assert Registry("loss").add("x", factory, params=P).summary == "Makes a thing."
    assert issubclass(P, BaseModel)


def test_model_that_is_not_a_training_model_is_rejected_at_build(tmp_path):
    plugin = write_plugin(
        tmp_path,
        "wrong_model",
        '''
        def build(params, seed):
            """Returns a plain module."""
            return torch.nn.Linear(1, 1)

        @hookimpl
        def register_models(register):
            register("linear", build)
        ''',
    )
    result = run_cli(
        "run",
        str(ROOT / "recipes" / "quickstart.toml"),
        "--set",
        f'plugins=["{plugin}"]',
        "--set",
        'model={type = "linear"}',
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: model 'linear' (plugin '{plugin}') returned Linear, not a ganforge TrainingModel"
    )
    assert not (tmp_path / "run").exists()


def test_plugin_adds_a_command(tmp_path):
    add_distribution(
        tmp_path,
        "hello_plugin",
        textwrap.dedent(
            """
            import json
            import typer
            from ganforge import hookimpl

            @hookimpl
            def register_commands(app):
                @app.command()
                def hello(name: str = "world") -> None:
                    \"\"\"Say hello.\"\"\"
                    typer.echo(json.dumps({"hello": name}))
            """
        ),
        "hello-plugin",
        "hello",
    )
    result = run_cli("hello", "--name", "gan", pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"hello": "gan"}
    assert "hello" in run_cli("--help", pythonpath=tmp_path).stdout


def test_factories_that_fail_or_return_the_wrong_thing_are_named(tmp_path):
    plugin = write_plugin(
        tmp_path,
        "odd",
        '''
        def not_a_module(params):
            """Returns a string."""
            return "a generator, honestly"

        def broken(params):
            """Raises."""
            raise ValueError("bad weights")

        @hookimpl
        def register_generators(register):
            register("stringy", not_a_module)
            register("broken", broken)
        ''',
    )
    registries = collect_registries(make_plugin_manager([plugin]))
    with pytest.raises(PluginError) as info:
        registries.resolve("generator", {"type": "stringy"}, "model.generator").build()
    assert str(info.value) == f"generator 'stringy' (plugin '{plugin}') returned str, not a torch.nn.Module"
    with pytest.raises(PluginError) as info:
        registries.resolve("generator", {"type": "broken"}, "model.generator").build()
    assert str(info.value) == f"generator 'broken' (plugin '{plugin}') failed to build: ValueError: bad weights"


# ------------------------------------------------------------------------------------- dataset sources


def test_dataset_sources_are_collected_per_plugin(tmp_path):
    plugin = write_plugin(
        tmp_path,
        "collected",
        """
        @hookimpl
        def register_dataset_sources(register):
            register("one", "https://example.org/one.tar.xz", summary="  first\\n set  ", size=10)
            register("two", "https://example.org/get?id=2", archive="zip", sha256="AB" * 32, layout="images")
        """,
    )
    sources = collect_dataset_sources(make_plugin_manager([plugin]))
    one, two = sources.get("one"), sources.get("two")
    assert one == DatasetSource(
        "one", "https://example.org/one.tar.xz", "tar.xz", "unpaired", plugin, "first set", None, 10
    )
    assert two is not None and (two.archive, two.sha256, two.layout) == ("zip", "ab" * 32, "images")
    assert two.file_name == "two.zip" and two.dataset_type == "single_folder"
    assert sources.names()[-2:] == ["one", "two"]  # load order: a recipe or --plugin module comes last
    without = collect_dataset_sources(make_plugin_manager())
    assert "one" not in without and not any(s.plugin.startswith("builtin.") for s in without)


def test_duplicate_dataset_source_names_name_both_plugins(tmp_path):
    body = """
        @hookimpl
        def register_dataset_sources(register):
            register("same", "http://127.0.0.1:9/same.zip")
        """
    first, second = write_plugin(tmp_path, "first", body), write_plugin(tmp_path, "second", body)
    with pytest.raises(PluginError) as info:
        collect_dataset_sources(make_plugin_manager([first, second]))
    assert str(info.value) == (
        f"dataset source 'same' is registered twice: by plugin '{first}' and by plugin '{second}'"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('register("my set", "http://h/x.zip")', "name must be letters, digits"),
        ('register("x.zip", "http://h/x.zip")', "must not end in an archive suffix"),
        ('register("x", "ftp://h/x.zip")', "is not an http:// or https:// URL"),
        ('register("x", "http://h/x.rar")', "does not end in a known archive suffix; pass archive= one of"),
        ('register("x", "http://h/x", archive="rar")', "archive 'rar' is not one of zip, tar, tar.gz"),
        ('register("x", "http://h/x.zip", layout="pairs")', "layout 'pairs' is not one of unpaired, paired"),
        ('register("x", "http://h/x.zip", sha256="abc")', "sha256 'abc' is not 64 hexadecimal digits"),
        ('register("x", "http://h/x.zip", size=True)', "size True is not a positive number of bytes"),
    ],
)
def test_invalid_dataset_sources_are_refused_with_the_plugin_name(tmp_path, call, message):
    plugin = write_plugin(
        tmp_path,
        "sloppy_sources",
        f"""
        @hookimpl
        def register_dataset_sources(register):
            {call}
        """,
    )
    with pytest.raises(PluginError, match=re.escape(message)) as info:
        collect_dataset_sources(make_plugin_manager([plugin]))
    assert f"plugin '{plugin}': dataset source " in str(info.value)


def test_dataset_source_hook_that_raises_is_reported_and_others_work(tmp_path):
    bad = write_plugin(
        tmp_path,
        "bad_sources",
        """
        @hookimpl
        def register_dataset_sources(register):
            raise RuntimeError("the list is offline")
        """,
    )
    good = write_plugin(
        tmp_path,
        "good_sources",
        """
        @hookimpl
        def register_dataset_sources(register):
            register("tiny_set", "http://127.0.0.1:9/tiny_set.zip")
        """,
    )
    plugins = make_plugin_manager([bad, good])
    sources = collect_dataset_sources(plugins)
    (failed,) = plugins.failed
    assert failed.name == bad
    assert failed.error == "failed in register_dataset_sources: RuntimeError: the list is offline"
    tiny = sources.get("tiny_set")
    assert tiny is not None and tiny.plugin == good
