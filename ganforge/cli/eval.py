"""``ganforge eval``: score a trained run on its dataset's test split, in both directions."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ganforge import api
from ganforge.cli.translate import WeightsOption
from ganforge.engine.resume import run_dir_of
from ganforge.errors import GanforgeError
from ganforge.inference import is_hf_source, parse_hf

# typer reads these annotations at run time and needs Optional, not "X | None"
OptionalStrings = Optional[list[str]]  # noqa: UP045
OptionalInt = Optional[int]  # noqa: UP045
OptionalPath = Optional[Path]  # noqa: UP045
TargetArg = Annotated[
    str,  # not a Path: that would fold hf:// into hf:/
    typer.Argument(
        metavar="RUN_DIR|CHECKPOINT",
        help="A run directory (its newest checkpoint) or a checkpoint file, also as "
        "hf://OWNER/REPO (a repository holding a run directory) or hf://OWNER/REPO/FILE (a checkpoint in one), "
        "with @REVISION after REPO if need be.",
        show_default=False,
    ),
]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GanforgeError(f"cannot write {path}: {exc.strerror or exc}") from None


def results_table(
    title: str,
    scores: dict[str, dict[str, float]],
    higher: dict[str, bool],
    baseline: dict[str, dict[str, float]] | None = None,
) -> Table:
    """One row per metric, a column per direction; with ``baseline``, an identity column beside each."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    directions = list(scores)
    for direction in directions:
        table.add_column(direction.replace("2", " -> "), justify="right")
        if baseline is not None:
            table.add_column("identity", justify="right", style="dim")
    names: list[str] = []
    for values in scores.values():
        names.extend(n for n in values if n not in names)
    for name in names:
        arrow = " (higher is better)" if higher.get(name) else " (lower is better)"
        cells = []
        for d in directions:
            cells.append(f"{scores[d].get(name, float('nan')):.4f}")
            if baseline is not None:
                cells.append(f"{baseline.get(d, {}).get(name, float('nan')):.4f}")
        table.add_row(name + arrow, *cells)
    return table


def eval_command(
    target: TargetArg,
    metric: Annotated[
        OptionalStrings,
        typer.Option(
            "--metric",
            "-m",
            help="Metric to compute (repeatable; default: the recipe's eval.metrics).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split to score.")] = "test",
    batch_size: Annotated[
        OptionalInt, typer.Option(min=1, help="Images per batch (default: eval.batch_size).")
    ] = None,
    max_images: Annotated[OptionalInt, typer.Option(min=2, help="Score at most this many images.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    inception_weights: Annotated[
        OptionalPath,
        typer.Option(
            help="FID Inception weights file (pt_inception-2015-12-05-6726825d.pth or equivalent).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        OptionalPath,
        typer.Option(
            "--json",
            help="Where to write the results (default: RUN_DIR/eval/<checkpoint>.json; for an hf:// "
            "source ./eval/<repo>-<checkpoint>.json).",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        OptionalStrings,
        typer.Option(
            "--set",
            "-s",
            help="Override a value of the run's recipe, e.g. data.test_length=64.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Also score the identity baseline (output = input) on the same images, shown beside "
            "each direction and written under identity_baseline.",
        ),
    ] = False,
    weights: WeightsOption = "auto",
    preprocess: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Test images as the dataset gives them (dataset) or each whole image resized to the crop size "
            "with no crop (resize: the reference implementation's test protocol, as published scores use). [default: the recipe's eval.preprocess]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score a run on its dataset's test split: FID and KID both ways, PSNR/SSIM/L1 where pairs exist."""
    console = Console(highlight=False, soft_wrap=True)
    result = api.evaluate(
        target,
        metrics=metric,
        split=split,
        batch_size=batch_size,
        max_images=max_images,
        device=device,
        inception_weights=inception_weights,
        overrides=set_ or [],
        announce=console.print,
        baseline=baseline,
        weights=weights,
        preprocess=preprocess,
    )
    info = result.info
    resized = ", resized to the crop size" if info["dataset"].get("preprocess") == "resize" else ""
    title = (
        f"{info['recipe']}, epoch {info['epoch']}: {split} split{resized}, images per domain "
        + ", ".join(f"{k} {v}" for k, v in result.n_images.items())
    )
    console.print(results_table(title, result.scores, result.higher_is_better, result.baseline))
    if result.skipped:
        console.print(f"skipped (need true pairs, which this split has not): {', '.join(result.skipped)}")
    checkpoint = Path(info["checkpoint"])
    if output is None and is_hf_source(target):  # not into huggingface_hub's cache
        output = Path("eval") / f"{parse_hf(target).repo_id.split('/')[1]}-{checkpoint.stem}.json"
    path = output or run_dir_of(checkpoint) / "eval" / f"{checkpoint.stem}.json"
    record = result.to_dict()
    _write_json(path, record)
    if "inception_weights" in record:
        used = record["inception_weights"]
        console.print(f"FID/KID network: {used['path']} ({used['source']})")
    console.print(f"written: {path}")


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)
