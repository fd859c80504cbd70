"""Translation quality on benchmarks with a known right answer, over several seeds.

Tasks (``--task``), each with an unpaired training split and a paired test split, so every test
translation has its true answer in both directions:

- ``synthetic`` (default): ``synthetic_scenes``, random shapes by day (A) and at dusk (B);
- ``photo:grade``, ``photo:cartoon``, ``photo:clarity``: ``photo_mappings``, crops of real photographs
  (A) and the same crops after a known edit (B): a colour grade, a cartoon look, a local-contrast
  "clarity" edit (needs scikit-image: ``pip install 'ganforge[bench]'``);
- ``recipe``: the recipe's own ``[data]`` (the default when ``--recipe`` is given).

The synthetic and photo tasks replace the recipe's ``[data]`` with their dataset at the recipe's image
size. Any recipe trains (``--recipe``, default the CycleGAN quickstart) for a fixed budget: ``--steps N``
or ``--minutes M`` of training (a few warm steps measure the time per step first; the step count is
then the same for every seed), else ``--epochs`` x ``--length`` steps (8 x 100). The budget is split
over the recipe's epochs and its learning-rate schedule is fitted to them. For each seed the script
scores, per direction, on the test split:

- the identity baseline (output = input): what doing nothing scores (once: it has no seed);
- the untrained network (the weights training starts from);
- the trained network (the averaged generators when the recipe keeps them, ``[train.ema]``).

Paired PSNR / SSIM / L1 against the true pair and, unless ``--no-fid``, FID and KID with the FID
Inception network; mean and spread (standard deviation) over the seeds. On the synthetic task the
trained model must beat the identity baseline's PSNR by ``--min-gain-db`` (5 dB) in both directions,
else the script exits with status 1; other tasks check it only when ``--min-gain-db`` is given.

    python benchmarks/quality.py                                  # synthetic, 8 x 100 steps, seed 0
    python benchmarks/quality.py --epochs 4 --no-fid              # quicker
    python benchmarks/quality.py --task photo:grade --seeds 0 1 2 --steps 2000
    python benchmarks/quality.py --recipe my.toml --task photo:clarity --minutes 10 --set train.device=cuda

Results: a table on the console, ``quality.json`` in the output directory and one run directory per
seed (``seed-N/``: samples, ground-truth grids, checkpoints, loss curves, report.html).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ganforge
from ganforge.engine.callbacks import Callback, averaged_weights
from ganforge.engine.monitors import EVAL_LOG, Report
from ganforge.errors import GanforgeError
from ganforge.evaluation import EvalResult, evaluate, identity_translators, is_paired, translators_of
from ganforge.metrics import resolve_metrics
from ganforge.recipe import apply_overrides, read_toml, validate_recipe

QUICKSTART = ROOT / "recipes" / "quickstart.toml"
PAIRED = ("psnr", "ssim", "l1")
INCEPTION = ("fid", "kid")
PHOTO_TASKS = ("photo:grade", "photo:cartoon", "photo:clarity")
TASKS = ("synthetic", *PHOTO_TASKS, "recipe")
GENERATED = ("synthetic_scenes", "photo_mappings")  # datasets whose epoch length is a parameter
LABELS = ("identity", "untrained", "trained")
WARM_STEPS, TIMED_STEPS = 3, 10  # --minutes: steps run before and while the time per step is measured


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipe", type=Path, default=None, help="recipe to train (default recipes/quickstart.toml)"
    )
    parser.add_argument(
        "--task", choices=TASKS, default=None, help="default: synthetic, or recipe when --recipe is given"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run seeds (default: --seed)")
    parser.add_argument("--seed", type=int, default=0, help="the run seed when --seeds is not given")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="training steps per seed")
    budget.add_argument("--minutes", type=float, default=None, help="training wall-clock per seed")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs (default: the recipe's; 8 for the tasks)"
    )
    parser.add_argument(
        "--length", type=int, default=None, help="steps per epoch without --steps/--minutes (default 100)"
    )
    parser.add_argument(
        "--test-length", type=int, default=None, help="test pairs scored (synthetic 32, photo 40)"
    )
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the recipe's)")
    parser.add_argument("--no-fid", action="store_true", help="paired metrics only (no Inception network)")
    parser.add_argument("--inception-weights", default=None, help="FID Inception weights file")
    parser.add_argument(
        "--min-gain-db", type=float, default=None, help="required PSNR gain over identity (synthetic: 5)"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/benchmark-quality-<time>")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override, as for `ganforge run --set` (repeatable), e.g. train.backend.type=direct",
    )
    args = parser.parse_args(argv)
    if args.task is None:
        args.task = "synthetic" if args.recipe is None else "recipe"
    args.recipe = args.recipe or QUICKSTART
    args.seeds = args.seeds or [args.seed]
    if args.min_gain_db is None and args.task == "synthetic":
        args.min_gain_db = 5.0
    for name in ("steps", "epochs", "length", "test_length", "size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be positive, not {args.minutes}")
    return args


def recipe_size(data: dict[str, Any]) -> int:
    """The image side the recipe's dataset gives (its ``size`` or ``crop_size``; 64 if it names neither)."""
    return int(data.get("size") or data.get("crop_size") or 64)


def task_data(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """The ``[data]`` of the task: the recipe's own, or the benchmark dataset at the recipe's size."""
    if args.task == "recipe":
        if args.size is not None:
            data = {**data, ("size" if "size" in data else "crop_size"): args.size}
        if args.test_length is not None and "test_length" in data:
            data = {**data, "test_length": args.test_length}
        return data
    size = args.size or recipe_size(data)
    if args.task == "synthetic":
        return {"type": "synthetic_scenes", "size": size, "test_length": args.test_length or 32}
    return {
        "type": "photo_mappings",
        "mapping": args.task.split(":", 1)[1],
        "size": size,
        "test_length": args.test_length or 40,
    }


def _scaled(value: int, factor: float) -> int:
    return max(1, round(value * factor))


def fit_schedule(schedule: dict[str, Any], old_epochs: int, new_epochs: int) -> dict[str, Any]:
    """The learning-rate schedule stretched from ``old_epochs`` to ``new_epochs`` (same shape)."""
    if old_epochs == new_epochs:
        return schedule
    factor = new_epochs / old_epochs
    kind = schedule.get("type")
    fitted = dict(schedule)
    if kind == "linear_decay":
        constant = round(schedule.get("constant_epochs", 100) * factor)
        decay = schedule.get("decay_epochs", 100)
        fitted["constant_epochs"] = constant
        fitted["decay_epochs"] = max(_scaled(decay, factor), new_epochs - constant)
    elif kind == "step" and "step_size" in schedule:
        fitted["step_size"] = _scaled(schedule["step_size"], factor)
    elif kind == "cosine" and schedule.get("epochs"):
        fitted["epochs"] = _scaled(schedule["epochs"], factor)
    return fitted


def with_budget(data: dict[str, Any], steps: int, epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` (a resolved recipe) set to train ``steps`` steps over at most ``epochs`` epochs, its
    schedules fitted; also what was chosen."""
    data = json.loads(json.dumps(data))  # a deep copy
    train = data["train"]
    old_epochs = train["epochs"]
    epochs = min(epochs, steps)
    per_epoch = math.ceil(steps / epochs)
    epochs = math.ceil(steps / per_epoch)
    train["epochs"] = epochs
    train["max_iters_per_epoch"] = per_epoch
    if data["data"]["type"] in GENERATED:
        data["data"]["length"] = per_epoch * train.get("batch_size", 1)
    train["scheduler"] = fit_schedule(train["scheduler"], old_epochs, epochs)
    for group, schedule in train.get("schedulers", {}).items():
        train["schedulers"][group] = fit_schedule(schedule, old_epochs, epochs)
    return data, {"epochs": epochs, "steps_per_epoch": per_epoch, "steps": epochs * per_epoch}


def write_recipe(data: dict[str, Any], path: Path, base_dir: Path) -> Path:
    """Check ``data`` as a recipe (errors name the original file's folder) and write it as TOML."""
    validate_recipe(json.loads(json.dumps(data)), base_dir=base_dir, path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


class StepTimes(Callback):
    """When each step ended (CUDA work finished first), for the wall-clock calibration."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, trainer, losses) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def calibrate(data: dict[str, Any], path: Path, run_dir: Path, console: Console) -> float:
    """Seconds per training step of this recipe here: a short run, warm steps left out."""
    probe, _ = with_budget(data, WARM_STEPS + TIMED_STEPS, 1)
    probe["output"]["report"] = False
    timer = StepTimes()
    write_recipe(probe, path, path.parent)
    ganforge.train(path, run_dir=run_dir, callbacks=[timer], console=Console(quiet=True))
    shutil.rmtree(run_dir, ignore_errors=True)  # only its time per step is wanted
    times = timer.times[WARM_STEPS - 1 :]
    seconds = (times[-1] - times[0]) / (len(times) - 1)
    console.print(
        f"calibration: {seconds * 1000:.1f} ms per step ({TIMED_STEPS} steps after {WARM_STEPS} warm)"
    )
    return seconds


def newest(folder: Path, pattern: str) -> str | None:
    found = sorted(folder.glob(pattern))
    return str(found[-1]) if found else None


def summarise(per_seed: list[dict], names: list[str]) -> tuple[dict, dict, dict]:
    """Mean, spread (sample standard deviation; 0 for one seed) and the values, per direction and metric."""
    means: dict = {}
    spreads: dict = {}
    values: dict = {}
    for direction in per_seed[0]:
        means[direction], spreads[direction], values[direction] = {}, {}, {}
        for name in names:
            xs = [scores[direction][name] for scores in per_seed]
            xs = [x for x in xs if x is not None]
            values[direction][name] = xs
            means[direction][name] = statistics.fmean(xs) if xs else None
            spreads[direction][name] = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return means, spreads, values


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return run(args, console)
    except GanforgeError as exc:
        for line in exc.lines:
            console.print(f"[red]error[/]: {line}", markup=True, highlight=False)
        return exc.exit_code


def run(args: argparse.Namespace, console: Console) -> int:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = args.run_dir or ROOT / "runs" / f"benchmark-quality-{stamp}"
    if root.exists() and any(root.iterdir()):
        raise GanforgeError(f"--run-dir {root} already exists and is not empty; choose another")
    loaded = validate_recipe(
        apply_overrides(read_toml(args.recipe), args.overrides), args.recipe.parent, args.recipe
    )
    base = loaded.recipe.to_dict()
    base["name"] = "benchmark-quality"
    base["output"]["keep_last"] = 1
    base["data"] = task_data(args, base["data"])
    if args.task != "recipe" and "eval" in base:
        base["eval"]["preprocess"] = "dataset"  # the benchmark datasets render at their size
    if args.length is not None and base["data"]["type"] in GENERATED:
        base["data"]["length"] = args.length
    recipe_epochs = args.epochs or (base["train"]["epochs"] if args.task == "recipe" else 8)
    budget: dict[str, Any] = {}
    if args.minutes is not None:
        seconds = calibrate(base, root / "calibration.toml", root / "calibration", console)
        budget = {"minutes": args.minutes, "seconds_per_step": round(seconds, 5)}
        steps = max(1, int(args.minutes * 60 / seconds))
    elif args.steps is not None:
        steps = args.steps
    elif args.task == "recipe" and args.epochs is None and args.length is None:
        steps = None  # the recipe's own budget
    else:
        steps = recipe_epochs * (args.length or 100)
    if steps is not None:
        base, chosen = with_budget(base, steps, recipe_epochs)
        budget.update(requested_steps=steps, **chosen)
    recipe_path = write_recipe(base, root / "recipe.toml", args.recipe.parent)
    loaded = validate_recipe(json.loads(json.dumps(base)), args.recipe.parent, recipe_path)
    recipe = loaded.recipe

    test_set = recipe.data.build("test")
    names = [*(PAIRED if is_paired(test_set) else ()), *([] if args.no_fid else INCEPTION)]
    if not names:
        raise GanforgeError(
            f"data.type = {recipe.data.type!r}: the test split holds no true pairs, so there is nothing to "
            "score with --no-fid (PSNR, SSIM and L1 need pairs); drop --no-fid to score FID and KID"
        )
    metrics = resolve_metrics(loaded.registries, names, "metrics", args.inception_weights)
    if not args.no_fid:
        for spec in metrics.values():  # find the Inception weights before spending time on training
            spec.build()
    last: list[EvalResult] = []

    def score(label: str, model: torch.nn.Module | None, translators: list, trainer=None) -> dict:
        started = time.perf_counter()
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
        if model is not None:
            model.eval()
        with averaged_weights(trainer) if trainer is not None else nullcontext():
            result = evaluate(translators, test_set, metrics, device=device, batch_size=16)
        if model is not None:
            model.train()
        console.print(f"scored {label} in {time.perf_counter() - started:.0f} s")
        last[:] = [result]
        return result.scores

    console.print(
        f"[bold]benchmark[/]: task {args.task}, {len(test_set)} test pairs, seeds {args.seeds}; output {root}"
    )
    identity = score("identity baseline", None, identity_translators())
    per_seed: dict[str, list[dict]] = {"untrained": [], "trained": []}
    runs = []
    weights = "ema" if recipe.train.ema is not None else "raw"
    for seed in args.seeds:

        class ScoreFirst(Callback):
            """The untrained network, scored once the run is built (its time left out of training's)."""

            seconds = 0.0

            def on_train_start(self, trainer, seed: int = seed) -> None:
                started = time.perf_counter()
                label = f"seed {seed}: untrained"
                per_seed["untrained"].append(score(label, trainer.model, translators_of(trainer.model)))
                ScoreFirst.seconds = time.perf_counter() - started

        run_dir = root / f"seed-{seed}"
        result = ganforge.train(
            recipe_path,
            overrides=[f"seed={seed}"],
            run_dir=run_dir,
            callbacks=[ScoreFirst()],
            console=console,
        )
        trainer, train_seconds = result.trainer, result.seconds - ScoreFirst.seconds
        trained = score(f"seed {seed}: trained", result.model, translators_of(result.model), trainer)
        per_seed["trained"].append(trained)
        # the trained model's scores in the run's eval.jsonl, so its report.html shows them
        last[0].baseline = identity
        if weights == "ema":
            last[0].info["weights"] = "ema"  # scored with the averaged generators
        record = {
            "kind": "eval",
            "epoch": trainer.epoch,
            "step": trainer.step,
            **last[0].to_dict(),
            "best": False,
        }
        trainer.run_dir.append_json(EVAL_LOG, record)
        Report().write(trainer, "finished")
        if budget.get("steps_per_epoch") and trainer.steps_per_epoch < budget["steps_per_epoch"]:
            console.print(
                f"[yellow]note[/]: the dataset gives {trainer.steps_per_epoch} steps per epoch, fewer than the "
                f"{budget['steps_per_epoch']} asked for: {trainer.step} steps in all"
            )
        runs.append(
            {
                "seed": seed,
                "run_dir": str(run_dir),
                "steps": trainer.step,
                "train_seconds": round(train_seconds, 1),
                "steps_per_second": round(trainer.step / train_seconds, 3) if train_seconds else None,
                "grid": newest(run_dir / "samples", "epoch_*.png"),
                "truth_grid": newest(run_dir / "samples", "truth_epoch_*.png"),
                "scores": trained,
            }
        )

    scores: dict[str, Any] = {"identity": identity}
    spread: dict[str, Any] = {"identity": {d: dict.fromkeys(v, 0.0) for d, v in identity.items()}}
    values: dict[str, Any] = {}
    for label, seeds in per_seed.items():
        scores[label], spread[label], values[label] = summarise(seeds, names)
    trained = scores["trained"]
    psnr = "psnr" in names
    gains = {d: trained[d]["psnr"] - identity[d]["psnr"] for d in trained} if psnr else {}
    learned = {d: trained[d]["psnr"] - scores["untrained"][d]["psnr"] for d in trained} if psnr else {}
    passed = None
    if args.min_gain_db is not None and psnr:
        passed = all(g >= args.min_gain_db for g in gains.values()) and all(g > 0 for g in learned.values())

    table = Table(
        title=f"{args.task}: {recipe.data.type}, {recipe_size(base['data'])} px, {len(test_set)} test pairs, "
        f"{len(args.seeds)} seed(s): mean ± std"
    )
    table.add_column("model")
    table.add_column("direction")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("PSNR vs identity", justify="right")
    for label in LABELS:
        for direction, means in scores[label].items():
            cells = []
            for name in names:
                mean, std = means[name], spread[label][direction][name]
                cells.append(
                    "-"
                    if mean is None
                    else f"{mean:.4g}"
                    + (f" ± {std:.2g}" if len(args.seeds) > 1 and label != "identity" else "")
                )
            gain = f"{means['psnr'] - identity[direction]['psnr']:+.2f} dB" if psnr else "-"
            table.add_row(label, direction, *cells, gain)
    console.print(table)

    train_seconds = [r["train_seconds"] for r in runs]
    report = {
        "task": args.task,
        "recipe": str(args.recipe),
        "overrides": args.overrides,
        "dataset": base["data"],
        "size": recipe_size(base["data"]),
        "seeds": args.seeds,
        "budget": budget or {"recipe": True},
        "steps": runs[0]["steps"],
        "train_seconds": round(statistics.fmean(train_seconds), 1),
        "weights": weights,
        "test_pairs": len(test_set),
        "torch_threads": torch.get_num_threads(),
        "metrics": names,
        "scores": scores,
        "spread": spread,
        "per_seed": values,
        "psnr_gain_db": gains,
        "psnr_gain_over_untrained_db": learned,
        "min_gain_db": args.min_gain_db,
        "passed": passed,
        "runs": runs,
    }
    (root / "quality.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    verdict = ""
    if passed is not None:
        verdict = (
            f" -> {'PASS' if passed else 'FAIL'} (needs >= {args.min_gain_db} dB over identity and a gain over"
            " the untrained network, both ways)"
        )
    console.print(
        f"trained {runs[0]['steps']} steps per seed ({statistics.fmean(train_seconds) / 60:.1f} min on average)"
        + (
            "; mean PSNR gain over identity: "
            + ", ".join(f"{d} {g:+.2f} dB" for d, g in gains.items())
            + "; over the untrained network: "
            + ", ".join(f"{d} {g:+.2f} dB" for d, g in learned.items())
            if psnr
            else "; no true pairs in the test split: FID and KID only"
        )
        + verdict
    )
    console.print(f"written: {root / 'quality.json'}, {root}/seed-*/report.html")
    return 0 if passed is not False else 1


if __name__ == "__main__":
    sys.exit(main())
