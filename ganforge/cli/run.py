"""``ganforge run`` and ``ganforge validate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ganforge import api
from ganforge.engine.monitors import MetricEvaluation, print_summary
from ganforge.recipe import LoadedRecipe, load_recipe
from ganforge.registry import ComponentSpec

RecipeArg = Annotated[Path, typer.Argument(help="Recipe TOML file.", show_default=False)]
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 (typer needs Optional here)
    typer.Option("--set", "-s", help="Override a recipe value: KEY.PATH=VALUE (repeatable).", show_default=False),
]


def warn_failed_plugins(loaded: LoadedRecipe) -> None:
    for plugin in loaded.plugins.failed:
        sys.stderr.write(f"warning: plugin '{plugin.name}' ({plugin.source}) skipped: {plugin.error}\n")


def validate(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Check a recipe (and the plugins it names) without training."""
    loaded = load_recipe(recipe, set_ or [])
    warn_failed_plugins(loaded)
    r = loaded.recipe
    model = r.model.params
    parts = [f"model {r.model.type}"]
    for field in type(model).model_fields:  # the components the model names (its nets first, as declared)
        spec = getattr(model, field)
        if isinstance(spec, ComponentSpec) and spec.resolved.component.kind in ("generator", "discriminator"):
            parts.append(f"{field} {spec.type}")
    parts.append(f"data {r.data.type}")
    parts.append(f"{r.train.epochs} epochs")
    typer.echo(f"{recipe}: ok ({', '.join(parts)})")


def run(
    recipe: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="Recipe TOML file (optional with --resume).", show_default=False),
    ] = None,
    set_: SetOption = None,
    run_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Run directory (default: <output.root>/<name>-<time>).", show_default=False),
    ] = None,
    resume: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Continue a run: its directory or a checkpoint file.", show_default=False),
    ] = None,
    init_from: Annotated[
        Optional[str],  # noqa: UP045 (a str, not a Path: that would fold hf:// into hf:/)
        typer.Option(
            help="Start a new run from the weights of a checkpoint, run directory or hub folder, also as "
            "hf://OWNER/REPO or hf://OWNER/REPO/FILE, with @REVISION after REPO if need be (fine-tuning).",
            show_default=False,
        ),
    ] = None,
    init_only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="With --init-from: load only these nets (by the model's names; repeatable).", show_default=False),
    ] = None,
    allow_version_mismatch: Annotated[
        bool, typer.Option(help="Resume a checkpoint written by another ganforge version.")
    ] = False,
) -> None:
    """Train from a recipe; writes a run directory with the resolved recipe, samples, metrics and checkpoints."""
    console = Console(highlight=False, soft_wrap=True)
    run = api.train(
        recipe,
        overrides=set_ or [],
        run_dir=run_dir,
        resume=resume,
        init_from=init_from,
        init_only=init_only or [],
        console=console,
        handle_signals=True,
        allow_version_mismatch=allow_version_mismatch,
    )
    if not run.trainer.runtime.is_main:
        return  # under torchrun, rank 0 alone reports
    minutes, seconds = divmod(run.seconds, 60)
    console.print(
        f"done in {int(minutes)} min {seconds:.1f} s; final losses: "
        + "  ".join(f"{k} {v:.3f}" for k, v in run.losses.items())
    )
    evaluation = next((cb for cb in run.trainer.callbacks if isinstance(cb, MetricEvaluation)), None)
    print_summary(console, run.path, run.losses, evaluation, run.recipe.output.report)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(validate)
