"""``ganforge run`` and ``ganforge validate``."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

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


@contextlib.contextmanager
def polite_signals(trainer: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask the trainer to save and stop at the next step; a second SIGINT aborts."""

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if trainer.stop_requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.request_stop(name)
        sys.stderr.write(f"{name}: saving a checkpoint at the end of this step (Ctrl-C again to abort)\n")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
        Optional[Path],  # noqa: UP045
        typer.Option(help="Start a new run from a checkpoint's weights (fine-tuning).", show_default=False),
    ] = None,
    init_only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="With --init-from: load only these nets (e.g. G_A; repeatable).", show_default=False),
    ] = None,
    allow_version_mismatch: Annotated[
        bool, typer.Option(help="Resume a checkpoint written by another ganforge version.")
    ] = False,
) -> None:
    """Train from a recipe; writes a run directory with the resolved recipe, samples, metrics and checkpoints."""
    from ganforge.engine.callbacks import Checkpoints, MetricsLog, ProgressBar, SampleGrids
    from ganforge.engine.reporting import LossCurves, MetricEvaluation, Report, TensorBoardLog, print_summary
    from ganforge.engine.resume import check_compatible, find_checkpoint, init_from as load_init, run_dir_of
    from ganforge.engine.rundir import RunDir
    from ganforge.engine.runtime import make_runtime
    from ganforge.engine.trainer import Trainer, describe_run
    from ganforge.recipe import apply_overrides, validate_recipe

    if resume is not None and init_from is not None:
        raise GanforgeError("--resume continues a run; --init-from starts a new one: use one of them")
    if init_only and init_from is None:
        raise GanforgeError("--init-only needs --init-from")
    state = None
    if resume is not None:
        checkpoint, state = find_checkpoint(resume)
        if run_dir is not None and run_dir.resolve() != run_dir_of(checkpoint).resolve():
            raise GanforgeError("--run-dir cannot be given with --resume: the run continues in its own directory")
        run_dir = run_dir_of(checkpoint)
        if recipe is not None:
            loaded = load_recipe(recipe, set_ or [])
        else:
            saved = state.get("recipe")
            if not isinstance(saved, dict):
                raise GanforgeError(f"{checkpoint}: holds no recipe; name the recipe file as well")
            try:
                loaded = validate_recipe(apply_overrides(saved, set_ or []), base_dir=Path.cwd())
            except GanforgeError as exc:
                raise type(exc)(*(f"{checkpoint} (its recipe): {line}" for line in exc.lines)) from None
        check_compatible(state, checkpoint, loaded.recipe.to_dict(), allow_version_mismatch)
    elif recipe is None:
        raise GanforgeError("name a recipe file (or --resume RUN_DIR)")
    else:
        loaded = load_recipe(recipe, set_ or [])
        if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
            raise GanforgeError(
                f"run directory {run_dir} already exists and is not empty; choose another --run-dir "
                f"or continue it with --resume {run_dir}"
            )
    warn_failed_plugins(loaded)
    r = loaded.recipe
    path = run_dir if run_dir is not None else _new_run_dir(Path(r.output.root), r.name)
    runtime = make_runtime(r.train, loaded.registries)
    console = Console(highlight=False, soft_wrap=True)
    out = RunDir(path, is_main=runtime.is_main)
    callbacks = [
        ProgressBar(console),
        MetricsLog(),
        SampleGrids(r.output.sample_every),
        Checkpoints(r.output.checkpoint_every, r.output.keep_last, r.output.checkpoint_every_steps),
    ]
    evaluation = MetricEvaluation(r.eval, loaded.registries, console) if r.eval.every_epochs else None
    callbacks += [evaluation] if evaluation is not None else []
    callbacks += [TensorBoardLog(evaluation)] if r.output.tensorboard else []
    callbacks += [LossCurves(), Report(evaluation)] if r.output.report else []
    trainer = Trainer(r, runtime, out, callbacks)  # builds data and model before anything is written
    if state is not None:
        trainer.load_state_dict(state, checkpoint)
        removed = out.remove_temporaries()
        out.truncate_jsonl(out.METRICS, trainer.step)
        console.print(
            f"resuming from {checkpoint} at step {trainer.step} (epoch {trainer.epoch + 1}/{trainer.epochs})"
            + (f"; removed {len(removed)} half-written file(s)" if removed else "")
        )
    elif init_from is not None:
        console.print(load_init(trainer.model, init_from, init_only or []))
    # a checkpoint is written next to the previous one before that is replaced: room for two
    out.ensure_free(2 * trainer.estimated_checkpoint_bytes(), "two checkpoints")
    out.create()
    out.write_text(out.RECIPE, r.to_toml())
    console.print(f"[bold]{r.name}[/]: {describe_run(trainer)}")
    console.print(f"run directory: {path}")
    started = time.perf_counter()
    with polite_signals(trainer):
        losses = trainer.fit()
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    console.print(
        f"done in {int(minutes)} min {seconds:.1f} s; final losses: "
        + "  ".join(f"{k} {v:.3f}" for k, v in losses.items())
    )
    print_summary(console, path, losses, evaluation, r.output.report)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(validate)
