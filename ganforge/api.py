"""The Python API: what the command line calls, and what users and benchmarks call.

.. code-block:: python

    import ganforge

    run = ganforge.train("recipes/quickstart.toml", overrides=["train.epochs=1"])
    generator = ganforge.load(run.path)  # the model's first declared direction
    ganforge.translate(generator, "photos/", "translated/")
    scores = ganforge.evaluate(run.path, metrics=["l1", "psnr"])
    ganforge.export(generator, "exported/", to=["safetensors"])
    ganforge.export("runs/quickstart", "hub/", to=["hub-folder"])  # then: hf upload owner/repo hub/
    generator = ganforge.load("hf://owner/repo")  # through huggingface_hub's cache

Every function raises :class:`ganforge.GanforgeError` (one line per problem) for a user's mistake.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ganforge.engine.callbacks import Callback, Checkpoints, MetricsLog, ProgressBar, SampleGrids, as_callback
from ganforge.engine.monitors import LossCurves, MetricEvaluation, Report, TensorBoardLog
from ganforge.engine.resume import check_compatible, find_checkpoint, run_dir_of
from ganforge.engine.resume import init_from as load_init
from ganforge.engine.rundir import RunDir
from ganforge.engine.runtime import apply_backend, make_runtime, select_device
from ganforge.engine.trainer import Trainer, describe_run
from ganforge.errors import GanforgeError, RecipeError
from ganforge.evaluation import (
    EvalResult,
    evaluation_split,
    identity_translators,
    translators_of,
    weights_info,
)
from ganforge.evaluation import evaluate as evaluate_translators
from ganforge.inference import (
    Generator,
    Job,
    NetBundle,
    Tiling,
    TranslateReport,
    find_images,
    is_hf_source,
    is_hub_folder,
    load_generator,
    load_nets,
    load_run,
    max_abs_diff,
    output_suffix,
    parse_hf,
    read_safetensors,
    save_hub_folder,
    save_onnx,
    save_safetensors,
    save_torchscript,
    translate_files,
)
from ganforge.inference.hubfolder import WEIGHTS as HUB_WEIGHTS
from ganforge.inference.zoo import resolve_source
from ganforge.metrics import resolve_metrics
from ganforge.recipe import LoadedRecipe, apply_overrides, load_recipe, validate_recipe

#: What ``export`` writes, and the suffix of each.
EXPORT_SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt"}
#: ``export``'s folder format: every generator of the model, ready to upload to the Hugging Face Hub.
HUB_FOLDER = "hub-folder"
EXPORT_FORMATS = (*EXPORT_SUFFIXES, HUB_FOLDER)


@dataclass
class Run:
    """A finished (or stopped) training run."""

    path: Path  # the run directory
    recipe: Any  # the resolved ganforge.recipe.Recipe
    losses: dict[str, float]  # the last epoch's mean losses
    trainer: Trainer  # model, optimizers, counters: everything the loop had
    evaluation: EvalResult | None = None  # the last evaluation during training, if the recipe asked
    seconds: float = 0.0
    failed_plugins: list[str] = field(default_factory=list)

    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model


def _new_run_dir(root: Path, name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{stamp}-{n}"
    return path


@contextlib.contextmanager
def polite_signals(trainer: Trainer, enabled: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM ask the trainer to save and stop at the next step; a second SIGINT aborts."""
    if not enabled:
        yield
        return

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


def _resumed_recipe(
    state: dict[str, Any], checkpoint: Path, recipe: str | Path | None, overrides: Sequence[str]
) -> LoadedRecipe:
    if recipe is not None:
        return load_recipe(recipe, overrides)
    saved = state.get("recipe")
    if not isinstance(saved, dict):
        raise GanforgeError(f"{checkpoint}: holds no recipe; name the recipe file as well")
    try:
        # a copy: the overrides must not change the saved recipe the resume checks compare against
        return validate_recipe(apply_overrides(copy.deepcopy(saved), overrides), base_dir=Path.cwd())
    except GanforgeError as exc:
        raise type(exc)(*(f"{checkpoint} (its recipe): {line}" for line in exc.lines)) from None


def train(
    recipe: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    init_only: Sequence[str] = (),
    callbacks: Sequence[Callback] = (),
    console: Console | None = None,
    handle_signals: bool = False,
    allow_version_mismatch: bool = False,
) -> Run:
    """Train from a recipe file, or continue a run (``resume``: its directory or a checkpoint).

    ``overrides`` are ``KEY.PATH=VALUE`` strings, as ``--set`` takes them. ``callbacks`` run after the
    built-in ones and those the recipe's ``[[callbacks]]`` build. ``handle_signals`` makes SIGINT and
    SIGTERM save a checkpoint and stop (the command line turns it on; it needs the main thread).
    """
    console = console or Console(highlight=False, soft_wrap=True)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume is not None and init_from is not None:
        raise GanforgeError("--resume continues a run; --init-from starts a new one: use one of them")
    if init_only and init_from is None:
        raise GanforgeError("--init-only needs --init-from")
    state = None
    checkpoint = None
    if resume is not None:
        checkpoint, state = find_checkpoint(Path(resume))
        if run_dir is not None and run_dir.resolve() != run_dir_of(checkpoint).resolve():
            raise GanforgeError("--run-dir cannot be given with --resume: the run continues in its own directory")
        run_dir = run_dir_of(checkpoint)
        loaded = _resumed_recipe(state, checkpoint, recipe, overrides)
        check_compatible(state, checkpoint, loaded.recipe.to_dict(), allow_version_mismatch)
    elif recipe is None:
        raise GanforgeError("name a recipe file (or --resume RUN_DIR)")
    else:
        loaded = load_recipe(recipe, overrides)
        if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
            raise GanforgeError(
                f"run directory {run_dir} already exists and is not empty; choose another --run-dir "
                f"or continue it with --resume {run_dir}"
            )
    for plugin in loaded.plugins.failed:
        sys.stderr.write(f"warning: plugin '{plugin.name}' ({plugin.source}) skipped: {plugin.error}\n")
    r = loaded.recipe
    runtime = make_runtime(r.train, loaded.registries)  # under torchrun: joins the process group
    if not runtime.is_main:
        console = Console(quiet=True)  # rank 0 alone reports
    path = run_dir if run_dir is not None else _new_run_dir(Path(r.output.root), r.name)
    path = runtime.broadcast_object(path)  # rank 0 names the run directory; the others write nothing
    out = RunDir(path, is_main=runtime.is_main)
    built: list[Callback] = [
        ProgressBar(console),
        MetricsLog(),
        SampleGrids(r.output.sample_every),
        Checkpoints(r.output.checkpoint_every, r.output.keep_last, r.output.checkpoint_every_steps),
    ]
    evaluation = MetricEvaluation(r.eval, loaded.registries, console) if r.eval.every_epochs else None
    built += [evaluation] if evaluation is not None else []
    built += [TensorBoardLog(evaluation)] if r.output.tensorboard else []
    built += [LossCurves(), Report(evaluation)] if r.output.report else []
    built += [as_callback(spec.build()) for spec in r.callbacks]
    built += [as_callback(cb) for cb in callbacks]
    trainer = Trainer(r, runtime, out, built)  # builds data and model before anything is written
    if state is not None:
        trainer.load_state_dict(state, checkpoint)
        removed = out.remove_temporaries()
        out.truncate_jsonl(out.METRICS, trainer.step)
        console.print(
            f"resuming from {checkpoint} at step {trainer.step} (epoch {trainer.epoch + 1}/{trainer.epochs})"
            + (f"; removed {len(removed)} half-written file(s)" if removed else "")
        )
    elif init_from is not None:
        console.print(_init_from(trainer.model, init_from, init_only))
    # a checkpoint is written next to the previous one before that is replaced: room for two
    out.ensure_free(2 * trainer.estimated_checkpoint_bytes(), "two checkpoints")
    out.create()
    out.write_text(out.RECIPE, r.to_toml())
    console.print(f"[bold]{r.name}[/]: {describe_run(trainer)}")
    console.print(f"run directory: {path}")
    started = time.perf_counter()
    with polite_signals(trainer, handle_signals):
        losses = trainer.fit()
    runtime.finish()
    return Run(
        path=path,
        recipe=r,
        losses=losses,
        trainer=trainer,
        evaluation=evaluation.last if evaluation is not None else None,
        seconds=time.perf_counter() - started,
        failed_plugins=[p.name for p in loaded.plugins.failed],
    )


def _init_from(model: torch.nn.Module, source: str | Path, only: Sequence[str]) -> str:
    """``--init-from``: a checkpoint, a run directory (its newest checkpoint), a hub folder (its
    generators' weights), each also as ``hf://``."""
    resolved = resolve_source(source)
    path = resolved.path
    shown = str(resolved.hub) if resolved.hub is not None else str(path)
    if path.is_dir() and is_hub_folder(path):
        tensors, _ = read_safetensors(path / HUB_WEIGHTS)
        return load_init(model, path, only, state=tensors, label=shown)
    if path.is_dir():
        path, _ = find_checkpoint(path)
    return load_init(model, path, only, label=shown if resolved.hub is not None else None)


def source_name(source: str | Path) -> str:
    """A short name for the files written from ``source``: an ``hf://`` source's file stem or
    repository name, a file's stem, or a folder's name."""
    if is_hf_source(source):
        return parse_hf(str(source)).name
    path = Path(source)
    return path.stem if path.is_file() else (path.name or path.resolve().name)


def load(
    source: str | Path,
    *,
    direction: str | None = None,
    net: str | None = None,
    weights_format: str = "auto",
    device: str | torch.device = "cpu",
    backend: str = "auto",
    plugins: Sequence[str] = (),
    weights: str = "auto",
) -> Generator:
    """A generator ready to run, from a run directory, checkpoint, export or another project's weights,
    prepared by ``backend`` (``auto``: the fastest available on the device; ``direct``: torch's layers).
    ``weights`` (a ganforge checkpoint's): ``auto`` (the averaged (EMA) generator when the run kept one,
    else the trained one), ``ema`` or ``raw``."""
    device = select_device(device) if isinstance(device, str) else device
    generator = load_generator(
        source,
        direction=direction,
        net=net,
        weights_format=weights_format,
        device=device,
        plugins=plugins,
        weights=weights,
    )
    apply_backend(backend, generator, plugins=[*generator.plugins, *plugins])
    return generator


def translate(
    generator: Generator | str | Path,
    inputs: str | Path,
    out: str | Path,
    *,
    direction: str | None = None,
    size: tuple[int, int] | int | None = None,
    batch_size: int | None = None,
    tiling: Tiling | None = None,
    image_format: str = "auto",
    quality: int = 95,
    overwrite: bool = False,
    on_image: Callable[[Job], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    jobs: Sequence[Job] | None = None,
) -> TranslateReport:
    """Translate an image or a folder (recursively) into ``out``, keeping names and sub-folders
    (``jobs``: the plan :func:`plan_translation` already made for them, so the folder is walked once).
    ``batch_size``: images (or tiles) per forward pass; ``None`` takes :func:`default_batch_size`."""
    tiling = tiling or Tiling()
    image_format = check_translation_options(image_format, tiling)
    if batch_size is not None and batch_size < 1:
        raise GanforgeError(f"batch_size: {batch_size}; give 1 or more images per pass (or None for the default)")
    if not isinstance(generator, Generator):
        generator = load(generator, direction=direction)
    elif direction is not None:
        raise GanforgeError("direction: pass it to ganforge.load(); a loaded generator has its direction")
    inputs, out = Path(inputs), Path(out)
    if jobs is None:
        jobs = plan_translation(inputs, out, image_format, overwrite)
    return translate_files(
        generator,
        list(jobs),
        size=size,
        batch_size=default_batch_size(generator.device) if batch_size is None else batch_size,
        tiling=tiling,
        quality=quality,
        on_image=on_image,
        on_tile=on_tile,
    )


def default_batch_size(device: torch.device | str) -> int:
    """Images (or tiles) per forward pass when none is asked for: 1 on a CPU, 4 on an accelerator (CUDA, MPS).

    A CPU runs a batch's images one after another anyway and a batch of 1 keeps each layer's working
    set in its caches (256 px, 9 blocks: 2.40 against 2.21 images/s at batch 4, docs/performance.md);
    a GPU fills its cores with the larger batch."""
    return 1 if torch.device(device).type == "cpu" else 4


def check_translation_options(image_format: str, tiling: Tiling) -> str:
    """One line for an option a translation cannot take; returns the image format's canonical name."""
    if image_format not in ("auto", "png", "jpeg", "jpg"):
        raise GanforgeError(f"--image-format '{image_format}': use auto, png or jpeg")
    if tiling.norm not in ("global", "tile"):
        raise GanforgeError(f"--tile-norm '{tiling.norm}': use global or tile")
    if tiling.tile and (tiling.tile % 4 or tiling.tile < 16):
        raise GanforgeError(f"--tile {tiling.tile}: use a multiple of 4, at least 16 (or 0 to never tile)")
    if tiling.tile and tiling.overlap * 2 > tiling.tile:
        raise GanforgeError(f"--tile-overlap {tiling.overlap}: at most half of --tile ({tiling.tile})")
    return "jpeg" if image_format == "jpg" else image_format


def plan_translation(inputs: Path, out: Path, image_format: str = "auto", overwrite: bool = False) -> list[Job]:
    """The (source, target) pairs of a translation, refusing to overwrite or to collide."""
    if inputs.is_dir() and out.resolve() == inputs.resolve():
        raise GanforgeError(f"--out {out}: is the input folder; write the translations somewhere else")
    found = find_images(inputs, exclude=out)
    if not found:
        raise GanforgeError(f"{inputs}: no images (looked for .png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff)")
    jobs = [Job(path, out / relative.with_suffix(output_suffix(path, image_format))) for path, relative in found]
    targets: dict[Path, Path] = {}
    for job in jobs:
        if job.target in targets:
            raise GanforgeError(f"{targets[job.target]} and {job.source} would both be written to {job.target}")
        targets[job.target] = job.source
    existing = [job.target for job in jobs if job.target.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise GanforgeError(f"{existing[0]} exists{more}; pass --overwrite to replace, or choose another --out")
    return jobs


def evaluate(
    run: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    split: str = "test",
    batch_size: int | None = None,
    max_images: int | None = None,
    device: str = "auto",
    inception_weights: str | Path | None = None,
    overrides: Sequence[str] = (),
    announce: Callable[[str], None] | None = None,
    baseline: bool = False,
    weights: str = "auto",
    preprocess: str | None = None,
) -> EvalResult:
    """Score a run's declared directions on its dataset's ``split`` (default metrics: the recipe's).

    The result's ``info`` says what was scored (checkpoint, epoch, step, recipe, dataset, device and the
    Inception weights used); ``announce`` gets one line before the scoring starts. With ``baseline``,
    the same metrics are also computed for "output = input" on the same images (``result.baseline``):
    what a translation has to beat. ``weights``: ``auto`` scores the averaged (EMA) generators when
    the run kept them, else the trained ones; ``ema`` or ``raw`` ask for one. ``preprocess``
    (default: the recipe's ``eval.preprocess``): ``dataset`` or ``resize`` (see docs/evaluation.md).
    """
    if preprocess not in (None, "dataset", "resize"):
        raise GanforgeError(f"--preprocess '{preprocess}': use dataset or resize")
    if inception_weights is not None and not Path(inception_weights).is_file():
        raise GanforgeError(f"--inception-weights: {inception_weights} not found")
    loaded = load_run(run if is_hf_source(run) else Path(run), overrides, weights=weights)
    recipe = loaded.recipe
    inception = str(inception_weights) if inception_weights is not None else recipe.eval.inception_weights
    specs = list(metrics) if metrics else recipe.eval.metrics
    resolved = resolve_metrics(loaded.registries, specs, "--metric" if metrics else "eval.metrics", inception)
    torch_device = select_device(device)
    preprocess = preprocess or recipe.eval.preprocess
    try:
        dataset = evaluation_split(recipe.data, split, preprocess)
    except RecipeError:
        raise GanforgeError(
            f"--preprocess {preprocess}: dataset '{recipe.data.type}' has no preprocess parameter that offers "
            "it (the image folders have); use dataset"
        ) from None
    loaded.model.to(torch_device)
    if announce is not None:
        announce(
            f"evaluating {loaded.checkpoint} (epoch {loaded.epoch}, step {loaded.step}"
            + (", averaged (EMA) generators" if loaded.weights == "ema" else "")
            + (", trained (raw) weights" if weights == "raw" else "")
            + f") on {recipe.data.type} {split} split ({len(dataset)} items) on {torch_device}"
        )
    translators = translators_of(loaded.model)
    result = evaluate_translators(
        translators,
        dataset,
        resolved,
        device=torch_device,
        batch_size=batch_size or recipe.eval.batch_size,
        max_images=max_images,
    )
    if baseline:
        result.baseline = evaluate_translators(
            identity_translators(translators),
            dataset,
            resolved,
            device=torch_device,
            batch_size=batch_size or recipe.eval.batch_size,
            max_images=max_images,
        ).scores
    result.info = {
        "checkpoint": str(loaded.checkpoint),
        "epoch": loaded.epoch,
        "step": loaded.step,
        "recipe": recipe.name,
        "dataset": {
            "type": recipe.data.type,
            "split": split,
            **({"preprocess": preprocess} if preprocess != "dataset" else {}),
        },
        "device": str(torch_device),
        # which weights were scored, where there was a choice (a run that kept averaged generators)
        **({"weights": loaded.weights} if loaded.weights == "ema" or weights != "auto" else {}),
        **weights_info(resolved),
    }
    result.higher_is_better = {
        name: bool(getattr(spec.build(), "higher_is_better", False)) for name, spec in resolved.items()
    }
    return result


@dataclass
class Exported:
    path: Path
    format: str
    max_abs_diff: float  # against PyTorch, on a random input
    how: str = ""


def export(
    generator: Generator | str | Path,
    out: str | Path,
    *,
    to: Sequence[str] = ("safetensors", "onnx", "torchscript"),
    name: str | None = None,
    opset: int = 18,
    onnx_exporter: str = "dynamo",
    check_size: int = 64,
    overwrite: bool = False,
    plugins: Sequence[str] = (),
    repo_id: str | None = None,
    license_name: str = "other",
    weights: str = "auto",
) -> list[Exported]:
    """Write ``generator`` in each format of ``to``; each file is loaded back and compared with PyTorch.

    ``hub-folder`` writes ``model.safetensors``, ``config.json`` and ``README.md`` into ``out`` itself:
    every generator the source's model exports (:func:`export_hub_folder`); ``repo_id`` and
    ``license_name`` go into its model card.
    """
    formats = list(dict.fromkeys(to))
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise GanforgeError(f"--to {unknown[0]}: use {', '.join(EXPORT_FORMATS)}")
    if onnx_exporter not in ("dynamo", "torchscript"):
        raise GanforgeError(f"--onnx-exporter '{onnx_exporter}': use dynamo or torchscript")
    out = Path(out)
    written: list[Exported] = []
    if HUB_FOLDER in formats:
        formats.remove(HUB_FOLDER)
        bundle = generator if isinstance(generator, Generator) else load_nets(generator, plugins=plugins)
        written += export_hub_folder(
            bundle,
            out,
            repo_id=repo_id,
            license_name=license_name,
            check_size=check_size,
            overwrite=overwrite,
        )
        if not formats:
            return written
    source = generator if not isinstance(generator, Generator) else None
    if source is not None:
        generator = load(source, plugins=plugins, weights=weights)
    assert isinstance(generator, Generator)
    if name is None:  # the source's name (a checkpoint's: its run directory's), plus the net
        if source is None and generator.kind == "checkpoint":
            name = run_dir_of(generator.source).name
        else:
            name = source_name(source if source is not None else generator.source)
        if generator.net is not None:
            name = f"{name}_{generator.net}"
    targets = {f: out / f"{name}{EXPORT_SUFFIXES[f]}" for f in formats}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise GanforgeError(f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out or --name")
    shape = (1, generator.in_channels, check_size, check_size + 8)  # not square: height and width stay apart
    for fmt, path in targets.items():
        how = ""
        if fmt == "onnx":
            used = save_onnx(generator, path, opset=opset, exporter=onnx_exporter)
            how = f", {used} exporter, opset {opset}"
        elif fmt == "safetensors":
            save_safetensors(generator, path)
        else:
            save_torchscript(generator, path)
        reloaded = load_generator(path, weights_format=fmt, device="cpu", plugins=generator.plugins or plugins)
        written.append(Exported(path, fmt, max_abs_diff(generator, reloaded, shape), how))
    return written


def _parses(source: str) -> bool:
    try:
        parse_hf(source)
    except GanforgeError:
        return False
    return True


def export_hub_folder(
    source: NetBundle | Generator | str | Path,
    out: str | Path,
    *,
    direction: str | None = None,
    net: str | None = None,
    weights_format: str = "auto",
    repo_id: str | None = None,
    license_name: str = "other",
    check_size: int = 64,
    overwrite: bool = False,
    plugins: Sequence[str] = (),
) -> list[Exported]:
    """Write a hub folder into ``out``: the source's generators (every net its model exports, or the one
    of ``direction``/``net``) as ``model.safetensors``, with ``config.json`` and a ``README.md`` model
    card. Each net is loaded back from the folder and compared with the source's (one entry per net).

    ``repo_id`` (``owner/repo``) is what the card's examples name (default ``OWNER/<folder name>``).
    """
    if isinstance(source, NetBundle):
        bundle = source
    elif isinstance(source, Generator):
        bundle = NetBundle({source.net or "generator": source}, [], str(source.source))
    else:
        bundle = load_nets(
            source, direction=direction, net=net, weights_format=weights_format, plugins=plugins
        )
    out = Path(out)
    if repo_id is not None and (repo_id.count("/") != 1 or "@" in repo_id or not _parses(f"hf://{repo_id}")):
        raise GanforgeError(f"--repo-id '{repo_id}': use OWNER/REPO (letters, digits, '.', '_', '-')")
    existing = [out / f for f in (HUB_WEIGHTS, "config.json", "README.md") if (out / f).exists()]
    if existing and not overwrite:
        raise GanforgeError(f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out")
    paths = save_hub_folder(bundle, out, repo_id or f"OWNER/{out.resolve().name}", license_name)
    written = []
    for name, generator in bundle.nets.items():
        reloaded = load_generator(out, net=name, device="cpu", plugins=generator.plugins or plugins)
        shape = (1, generator.in_channels, check_size, check_size + 8)
        difference = max_abs_diff(generator, reloaded, shape)
        written.append(Exported(paths[0], HUB_FOLDER, difference, f", net {name}"))
    return written
