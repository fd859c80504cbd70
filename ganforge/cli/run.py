"""``ganforge run`` and ``ganforge validate``."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ganforge.errors import GanforgeError
from ganforge.recipe import LoadedRecipe, load_recipe

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
    for field in ("generator", "discriminator"):
        spec = getattr(model, field, None)
        if spec is not None and hasattr(spec, "type"):
            parts.append(f"{field} {spec.type}")
    parts.append(f"data {r.data.type}")
    parts.append(f"{r.train.epochs} epochs")
    typer.echo(f"{recipe}: ok ({', '.join(parts)})")


def _new_run_dir(root: Path, name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{stamp}-{n}"
    return path


def run(
    recipe: RecipeArg,
    set_: SetOption = None,
    run_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Run directory (default: <output.root>/<name>-<time>).", show_default=False),
    ] = None,
) -> None:
    """Train from a recipe; writes a run directory with the resolved recipe, samples, metrics and checkpoints."""
    from ganforge.engine.callbacks import Checkpoints, MetricsLog, ProgressBar, SampleGrids
    from ganforge.engine.rundir import RunDir
    from ganforge.engine.runtime import make_runtime
    from ganforge.engine.trainer import Trainer, describe_run

    loaded = load_recipe(recipe, set_ or [])
    warn_failed_plugins(loaded)
    r = loaded.recipe
    if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
        raise GanforgeError(f"run directory {run_dir} already exists and is not empty; choose another --run-dir")
    path = run_dir if run_dir is not None else _new_run_dir(Path(r.output.root), r.name)
    runtime = make_runtime(r.train.device, r.train.precision)
    console = Console(highlight=False, soft_wrap=True)
    out = RunDir(path, is_main=runtime.is_main)
    callbacks = [
        ProgressBar(console),
        MetricsLog(),
        SampleGrids(r.output.sample_every),
        Checkpoints(r.output.checkpoint_every, r.output.keep_last),
    ]
    trainer = Trainer(r, runtime, out, callbacks)  # builds data and model before anything is written
    out.create()
    out.write_text(out.RECIPE, r.to_toml())
    console.print(f"[bold]{r.name}[/]: {describe_run(trainer)}")
    console.print(f"run directory: {path}")
    started = time.perf_counter()
    losses = trainer.fit()
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    console.print(
        f"done in {int(minutes)} min {seconds:.1f} s; final losses: "
        + "  ".join(f"{k} {v:.3f}" for k, v in losses.items())
    )
    console.print(f"checkpoint: {path / out.CHECKPOINTS / 'latest.pt'}")
    console.print(f"samples:    {path / out.SAMPLES}")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(validate)
