"""Hooks and registration: every hook documented, plugin commands, and registration rules."""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest
from pydantic import BaseModel

from ganforge import hookspecs
from ganforge.errors import PluginError
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.registry import KINDS, Params, Registry
from tests.conftest import ROOT, add_distribution, run_cli

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hook_has_a_docstring_and_a_docs_entry():
    docs = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "docs" / "plugins.md").read_text()
    assert set(hookspecs.COMPONENT_HOOKS) == set(KINDS)
    assert set(HOOKS) == {*hookspecs.COMPONENT_HOOKS.values(), "register_commands"}
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
