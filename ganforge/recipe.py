"""Recipes: TOML files validated by pydantic models, with ``--set key.path=value`` overrides.

Loading happens in three steps, so every error can name the file and the key it is about:

1. read and parse the TOML (syntax errors give line and column), apply overrides;
2. load the plugins (built-ins, entry points, the recipe's ``plugins`` list) and collect registries;
3. validate the recipe's structure, then each component section against its registry.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ganforge.errors import GanforgeError, RecipeError
from ganforge.metrics import resolve_metrics
from ganforge.plugins import PluginSet, collect_registries, make_plugin_manager
from ganforge.registry import ComponentSpec, Registries, format_validation_error
from ganforge.strict import StrictModel

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class _Section(StrictModel):
    """A recipe table: unknown keys are errors; numbers, bools and strings are not converted."""

    model_config = ConfigDict(extra="forbid")


class EmaSection(_Section):
    """``[train.ema]``: an exponential moving average of the generators (absent: none is kept)."""

    enabled: bool = Field(True, description="Keep the average (false: the table is ignored).")
    decay: float = Field(
        0.999,
        ge=0.0,
        lt=1.0,
        description="Weight of the old average at each update: average = decay * average + (1 - decay) * weights.",
    )
    start_step: int = Field(
        0, ge=0, description="Until this many steps are done the average is a copy of the weights."
    )
    every: int = Field(1, ge=1, le=1_000_000, description="Update the average every this many steps.")


class TrainSection(_Section):
    epochs: int = Field(ge=1, le=1_000_000, description="Number of passes over the training set.")
    batch_size: int = Field(1, ge=1, le=65_536, description="Images per domain in one training step.")
    max_iters_per_epoch: int | None = Field(
        None, ge=1, description="Stop each epoch after this many steps (default: the whole set)."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32; bf16 autocast (CPU, CUDA); fp16 autocast with a gradient scaler (CUDA)."
    )
    channels_last: bool = Field(False, description="Keep images and weights in channels-last memory format.")
    compile: bool = Field(False, description="torch.compile the model's networks.")
    cuda_graphs: bool = Field(
        False,
        description=(
            "Replay the compiled networks as CUDA graphs (torch.compile mode 'reduce-overhead': one launch "
            "per graph instead of one per kernel; training drops incomplete batches, so shapes stay the "
            "same). Needs compile = true; CUDA only (elsewhere the networks are compiled without them)."
        ),
    )
    cudnn_benchmark: bool = Field(True, description="Let cuDNN pick the fastest convolution algorithms (CUDA).")
    num_workers: int = Field(0, ge=0, le=512, description="DataLoader worker processes.")
    log_every: int = Field(10, ge=1, description="Steps between loss log entries.")
    deterministic: bool = Field(False, description="Ask torch for deterministic algorithms.")
    lr_scaling: Literal["none", "linear"] = Field(
        "none",
        description="Under torchrun: none keeps the recipe's learning rates; linear multiplies them by the "
        "number of processes (the global batch is batch_size x processes).",
    )
    dist_timeout: float = Field(
        300.0,
        ge=1,
        le=86_400,
        description="Under torchrun: seconds a process waits for the others (a collective, a barrier) "
        "before it stops with an error; must exceed the longest evaluation at an epoch's end.",
    )
    optimizer: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(type="adam"), description="Optimizer of every net."
    )
    scheduler: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(type="constant"),
        description="Learning-rate schedule, stepped once per epoch.",
    )
    optimizers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per optimizer group ([train.optimizers.D]): keys merged over train.optimizer; a type "
        "replaces it.",
    )
    schedulers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per optimizer group ([train.schedulers.D]): keys merged over train.scheduler; a type "
        "replaces it.",
    )
    ema: EmaSection | None = Field(
        None,
        description="[train.ema]: keep an exponential moving average of the generators, used for samples, "
        "evaluation, translate and export (absent: off).",
    )
    backend: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(type="auto"),
        description="How the networks execute: auto (the fastest backend available on the device), direct "
        "(torch's own layers) or a plugin's (`ganforge list-components backend`).",
    )

    _groups: dict[str, ComponentSpec] = PrivateAttr(default_factory=dict)  # resolved per-group specs

    @field_validator("optimizers", "schedulers")
    @classmethod
    def _check_groups(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for group in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", group):
                raise ValueError(f"{group!r} is not an optimizer group name (letters, digits, _)")
        return value

    def group_fields(self, group: str) -> tuple[str, str]:
        """Where ``group``'s optimizer and schedule are set: ``train.optimizers.G`` or ``train.optimizer``."""
        return (
            f"train.optimizers.{group}" if group in self.optimizers else "train.optimizer",
            f"train.schedulers.{group}" if group in self.schedulers else "train.scheduler",
        )

    def optimizer_for(self, group: str) -> ComponentSpec:
        """The optimizer of ``group``: its ``[train.optimizers.GROUP]`` merged over ``train.optimizer``."""
        return self._groups.get(f"optimizers.{group}", self.optimizer)

    def scheduler_for(self, group: str) -> ComponentSpec:
        """The schedule of ``group``: its ``[train.schedulers.GROUP]`` merged over ``train.scheduler``."""
        return self._groups.get(f"schedulers.{group}", self.scheduler)

    def check_groups(self, groups: Sequence[str]) -> None:
        """Refuse per-group settings for groups the model does not have (``groups``: the model's)."""
        for table in ("optimizers", "schedulers"):
            for group in getattr(self, table):
                if group not in groups:
                    raise RecipeError(
                        f"train.{table}.{group}: the model has no optimizer group '{group}'; "
                        f"its groups: {', '.join(groups)}"
                    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _check_cuda_graphs(self) -> TrainSection:
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs = true needs compile = true (the graphs replay torch.compile's kernels)")
        return self


class OutputSection(_Section):
    root: str = Field("runs", description="Folder that holds one run directory per run.")
    sample_every: int = Field(1, ge=1, description="Epochs between sample grids.")
    n_samples: int = Field(4, ge=1, le=64, description="Fixed test images shown in each grid.")
    checkpoint_every: int = Field(1, ge=1, description="Epochs between kept epoch checkpoints.")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Also rewrite checkpoints/latest.pt every this many steps."
    )
    keep_last: int = Field(3, ge=1, description="Epoch checkpoints kept besides latest.pt.")
    report: bool = Field(
        True, description="Write loss_curves.png, metrics.png and a static report.html in the run directory."
    )
    tensorboard: bool = Field(
        False, description="Also log losses, metrics and sample grids for TensorBoard (needs tensorboard)."
    )


class EvalSection(_Section):
    metrics: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["fid", "kid", "psnr", "ssim", "l1"],
        description="Metrics of `ganforge eval` and of evaluations during training: names, or tables "
        "with type and params.",
    )
    every_epochs: int | None = Field(
        None, ge=1, description="Evaluate on the test split every this many epochs and after the last."
    )
    best_metric: str | None = Field(
        None,
        pattern=r"^([A-Za-z0-9_]+\.)?[A-Za-z_][A-Za-z0-9_]*$",
        description="Keep checkpoints/best.pt at the best value of this metric: NAME (mean of both "
        "directions) or DIRECTION.NAME (e.g. A2B.psnr).",
    )
    max_images: int | None = Field(
        None, ge=2, description="Score at most this many test images during training."
    )
    batch_size: int = Field(8, ge=1, le=4096, description="Test images per evaluation batch.")
    preprocess: Literal["dataset", "resize"] = Field(
        "dataset",
        description="Test images as the dataset's test split gives them ('dataset'), or each whole image "
        "resized to the dataset's crop_size with no crop ('resize': the reference implementation's test protocol, as published scores use).",
    )
    inception_weights: str | None = Field(
        None, description="Inception weights file for FID and KID (default: see docs/evaluation.md)."
    )

    @model_validator(mode="after")
    def _check_best(self) -> EvalSection:
        if self.best_metric is not None:
            names = [m if isinstance(m, str) else str(m.get("type")) for m in self.metrics]
            base = self.best_metric.rsplit(".", 1)[-1]
            if base not in names:
                listed = ", ".join(names)
                raise ValueError(f"best_metric '{self.best_metric}' is not in eval.metrics: {listed}")
            if self.every_epochs is None:
                raise ValueError("best_metric needs every_epochs (how often to evaluate during training)")
        return self


class Recipe(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the run directory.")
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63, description="Seed of every random number generator.")
    plugins: list[str] = Field(
        default_factory=list, description="Plugin modules or .py files this recipe needs."
    )
    data: ComponentSpec = Field(description="The dataset (type = a registered dataset).")
    model: ComponentSpec = Field(description="The model (type = a registered model).")
    train: TrainSection
    output: OutputSection = Field(default_factory=OutputSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    callbacks: list[ComponentSpec] = Field(
        default_factory=list,
        description="Callbacks a plugin registers (loggers, trackers): [[callbacks]] tables with type and params.",
    )

    #: Component sections and their kinds, resolved against the registries.
    COMPONENT_SECTIONS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("data", "dataset"),
        ("model", "model"),
        ("train.optimizer", "optimizer"),
        ("train.scheduler", "scheduler"),
        ("train.backend", "backend"),
    )

    def to_dict(self) -> dict[str, Any]:
        """The recipe with every default filled in, as plain TOML-ready data."""
        return _plain(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path | None
    plugins: PluginSet
    registries: Registries


def _plain(value: Any) -> Any:
    if isinstance(value, ComponentSpec):
        return {"type": value.type, **_plain(value.params)}
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        return {k: _plain(v) for k, v in fields.items() if v is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.generator.n_blocks=6"`` -> ``(["model", "generator", "n_blocks"], 6)``.

    The value is read as a TOML value (numbers, booleans, arrays, quoted strings, inline tables);
    anything that is not valid TOML is taken as a plain string.
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. train.epochs=5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise RecipeError(f"--set {text!r}: {where} is a value, not a table")
            node = child
        node[parts[-1]] = value
    return data


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder, not a recipe file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start}); a recipe is a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: TOML syntax error: {exc}") from None


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> LoadedRecipe:
    """Read, override, load plugins and validate; raise :class:`RecipeError` with one line per error."""
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides)
    try:
        return validate_recipe(data, base_dir=path.parent, path=path)
    except GanforgeError as exc:
        raise type(exc)(*(f"{path}: {line}" for line in exc.lines)) from None


def _check_optimization(recipe: Recipe) -> None:
    """Build the optimizer and schedule on a probe parameter, so ``validate`` catches what ``run`` would.

    (A schedule may depend on ``train.epochs``, which its own params cannot see.)
    """
    train = recipe.train
    for group in ("", *train.optimizers, *train.schedulers):
        optimizer = train.optimizer_for(group).build([torch.nn.Parameter(torch.zeros(1))])
        where = train.group_fields(group)[1] if group else "train.scheduler"
        try:
            train.scheduler_for(group).build(optimizer, train.epochs)
        except RecipeError as exc:
            raise RecipeError(*(_moved(line, "train.scheduler", where) for line in exc.lines)) from None
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin's schedule is a recipe error here
            raise RecipeError(f"{where}: {type(exc).__name__}: {exc}") from None


def _moved(line: str, field: str, where: str) -> str:
    """An error line about ``field`` (a schedule names its own field as ``train.scheduler``) moved to ``where``."""
    return where + line[len(field) :] if line.startswith(field) and where != field else line


def _resolve_groups(recipe: Recipe, registries: Registries) -> list[str]:
    """Resolve ``[train.optimizers.GROUP]`` and ``[train.schedulers.GROUP]``, each merged over its default
    (``train.optimizer``, ``train.scheduler``): its keys replace the default's, a ``type`` replaces all of it."""
    errors: list[str] = []
    train = recipe.train
    for table, kind, default in (
        ("optimizers", "optimizer", train.optimizer),
        ("schedulers", "scheduler", train.scheduler),
    ):
        for group, override in getattr(train, table).items():
            merged = dict(override) if "type" in override else {**_plain(default), **override}
            try:
                train._groups[f"{table}.{group}"] = registries.resolve(kind, merged, f"train.{table}.{group}")
            except RecipeError as exc:
                errors.extend(exc.lines)
    return errors


def _check_eval_preprocess(recipe: Recipe) -> list[str]:
    """``eval.preprocess = "resize"`` sets the test split's ``preprocess`` param: the dataset needs one."""
    try:
        recipe.data.with_params(preprocess=recipe.eval.preprocess)
    except RecipeError:
        line = (
            f"eval.preprocess: '{recipe.eval.preprocess}' needs a dataset with a preprocess parameter that "
            f"offers it (the image folders); dataset '{recipe.data.type}' has none: use 'dataset'"
        )
        return [line]
    return []


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def upgrade_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the keys of older recipes (and of the recipes saved in older checkpoints) renamed:
    ``train.conv_algorithm`` became ``[train.backend]``: "direct" stays torch's own layers (backend
    direct), any other value asked for faster CPU layers, which ``auto`` now takes wherever they run.
    A recipe that has both keeps its ``train.backend``. ``data`` itself is left as it was."""
    section = data.get("data")
    if isinstance(section, dict) and section.get("type") == "paired_folder" and "direction" in section:
        # paired_folder's direction = "<A or B>to<the other>" became a_half: which half is domain A
        section = dict(section)
        old = section.pop("direction")
        match = re.fullmatch(r"([AB])to([AB])", old) if isinstance(old, str) else None
        if match is None or match.group(1) == match.group(2):
            raise RecipeError(f"data.direction: {old!r} is not an option; it is now a_half = \"left\" or \"right\"")
        section.setdefault("a_half", "left" if match.group(1) == "A" else "right")
        data = {**data, "data": section}
    train = data.get("train")
    if not (isinstance(train, dict) and "conv_algorithm" in train):
        return data
    train = dict(train)
    old = train.pop("conv_algorithm")
    if not isinstance(old, str):  # it held "direct" or the name of the faster CPU layers
        raise RecipeError(
            f"train.conv_algorithm: {old!r} is not an option; it is now [train.backend] type = \"auto\", "
            "\"direct\" or a plugin's backend"
        )
    train.setdefault("backend", {"type": "direct" if old == "direct" else "auto"})
    return {**data, "train": train}


def validate_recipe(
    data: dict[str, Any], base_dir: Path | None = None, path: Path | None = None
) -> LoadedRecipe:
    data = upgrade_recipe(data)
    plugin_refs = data.get("plugins", [])
    if not isinstance(plugin_refs, list) or not all(isinstance(p, str) for p in plugin_refs):
        raise RecipeError("plugins: must be a list of module names or .py file paths")
    plugins = make_plugin_manager(plugin_refs, base_dir=base_dir)
    registries = collect_registries(plugins)
    errors: list[str] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc, "", Recipe))
    for section, kind in Recipe.COMPONENT_SECTIONS:
        # From the validated recipe; after structural errors, from the raw tables still worth checking.
        spec = _lookup(recipe if recipe is not None else data, section)
        if not isinstance(spec, (ComponentSpec, dict)):
            continue
        try:
            resolved = registries.resolve(kind, spec, section)
        except RecipeError as exc:
            errors.extend(exc.lines)
            continue
        if isinstance(spec, ComponentSpec):
            spec._resolved = resolved.resolved
    raw_callbacks = recipe.callbacks if recipe is not None else data.get("callbacks", [])
    for i, spec in enumerate(raw_callbacks if isinstance(raw_callbacks, list) else []):
        if not isinstance(spec, (ComponentSpec, dict)):
            continue
        try:
            resolved = registries.resolve("callback", spec, f"callbacks[{i}]")
        except RecipeError as exc:
            errors.extend(exc.lines)
            continue
        if isinstance(spec, ComponentSpec):
            spec._resolved = resolved.resolved
    if recipe is not None and not errors:
        errors.extend(_resolve_groups(recipe, registries))
    if recipe is not None and not errors and recipe.eval.preprocess != "dataset":
        errors.extend(_check_eval_preprocess(recipe))
    if recipe is not None:
        # metric names are resolved here too, so a typo fails now and not at the first evaluation
        try:
            resolve_metrics(registries, recipe.eval.metrics, "eval.metrics", recipe.eval.inception_weights)
        except RecipeError as exc:
            errors.extend(exc.lines)
    if errors:
        raise RecipeError(*errors)
    assert recipe is not None
    _check_optimization(recipe)
    return LoadedRecipe(recipe, path, plugins, registries)
