"""Translation quality on a benchmark with a known right answer: synthetic day <-> dusk scenes.

The ``synthetic_scenes`` dataset renders random scenes in two appearances (geometry kept, palette,
background light and outlines changed). Training draws different scenes for A and B (unpaired), the
test split renders the *same* scene both ways, so every translation has its true answer. This script
trains the CycleGAN quickstart recipe (64 px, small networks) for a fixed number of steps on the CPU
and scores, in both directions, on the test split:

- the identity baseline (output = input): what doing nothing scores;
- the untrained network (the same initial weights training starts from);
- the trained network.

Paired PSNR / SSIM / L1 against the true pair and, unless ``--no-fid``, FID and KID with the FID
Inception network. The trained model must beat the identity baseline's PSNR by ``--min-gain-db`` in
both directions, else the script exits with status 1.

    python benchmarks/quality.py                       # 8 epochs x 100 steps, 32 test pairs
    python benchmarks/quality.py --epochs 4 --no-fid   # quicker
    python benchmarks/quality.py --no-fid --set 'model.generator.ngf=32' --set train.backend.type=direct

Results: a table on the console and ``quality.json`` in the run directory (which also holds the
usual samples, checkpoints, loss curves and report.html).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ganforge  # noqa: E402
from ganforge.engine.callbacks import Callback  # noqa: E402
from ganforge.engine.monitors import EVAL_LOG, Report  # noqa: E402
from ganforge.evaluation import EvalResult, evaluate, identity_translators, translators_of  # noqa: E402
from ganforge.metrics import resolve_metrics  # noqa: E402
from ganforge.recipe import load_recipe  # noqa: E402

QUICKSTART = ROOT / "recipes" / "quickstart.toml"
PAIRED = ("psnr", "ssim", "l1")
INCEPTION = ("fid", "kid")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument(
        "--length", type=int, default=100, help="training images per domain = steps per epoch"
    )
    parser.add_argument("--test-length", type=int, default=32, help="test pairs scored (default 32)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fid", action="store_true", help="paired metrics only (no Inception network)")
    parser.add_argument("--inception-weights", default=None, help="FID Inception weights file")
    parser.add_argument("--min-gain-db", type=float, default=5.0, help="required PSNR gain over identity")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/benchmark-quality-<time>")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override, as for `ganforge run --set` (repeatable), e.g. train.backend.type=direct",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    half = max(1, args.epochs // 2)
    overrides = [
        "name=benchmark-quality",
        f"seed={args.seed}",
        f"data.size={args.size}",
        f"data.length={args.length}",
        f"data.test_length={args.test_length}",
        f"train.epochs={args.epochs}",
        "train.device=cpu",
        f"train.scheduler.constant_epochs={half}",
        f"train.scheduler.decay_epochs={max(1, args.epochs - half)}",
        "output.keep_last=1",
        *args.overrides,
    ]
    loaded = load_recipe(QUICKSTART, overrides)
    recipe = loaded.recipe
    names = [*PAIRED, *([] if args.no_fid else INCEPTION)]
    metrics = resolve_metrics(loaded.registries, names, "metrics", args.inception_weights)
    if not args.no_fid:
        for spec in metrics.values():  # find the Inception weights before spending time on training
            spec.build()

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_path = args.run_dir or ROOT / "runs" / f"benchmark-quality-{stamp}"
    test_set = recipe.data.build("test")
    last: list[EvalResult] = []
    results: dict[str, dict] = {}

    def score(label: str, model: torch.nn.Module, translators: list) -> dict:
        started = time.perf_counter()
        model.eval()
        device = next(model.parameters()).device
        result = evaluate(translators, test_set, metrics, device=device, batch_size=16)
        model.train()
        console.print(f"scored {label} in {time.perf_counter() - started:.0f} s")
        last[:] = [result]
        return result.scores

    class ScoreFirst(Callback):
        """The identity baseline and the untrained network, scored once the run is built."""

        seconds = 0.0  # spent scoring, inside the run's timed loop

        def on_train_start(self, trainer) -> None:
            started = time.perf_counter()
            results["identity"] = score("identity baseline", trainer.model, identity_translators())
            results["untrained"] = score("untrained network", trainer.model, translators_of(trainer.model))
            ScoreFirst.seconds = time.perf_counter() - started

    console.print(f"[bold]benchmark[/]: {len(test_set)} test pairs; run directory {run_path}")
    run = ganforge.train(QUICKSTART, overrides=overrides, run_dir=run_path, callbacks=[ScoreFirst()], console=console)
    trainer, train_seconds = run.trainer, run.seconds - ScoreFirst.seconds
    results["trained"] = score("trained network", run.model, translators_of(run.model))
    # the trained model's scores in the run's eval.jsonl, so its report.html shows them
    record = {
        "kind": "eval",
        "epoch": trainer.epoch,
        "step": trainer.step,
        **last[0].to_dict(),
        "best": False,
    }
    trainer.run_dir.append_json(EVAL_LOG, record)
    Report().write(trainer, "finished")

    table = Table(title=f"synthetic day <-> dusk scenes, {args.size} px, {len(test_set)} test pairs")
    table.add_column("model")
    table.add_column("direction")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("PSNR vs identity", justify="right")
    table.add_column("PSNR vs untrained", justify="right")
    for label, scores in results.items():
        for direction, values in scores.items():
            gains = [values["psnr"] - results[base][direction]["psnr"] for base in ("identity", "untrained")]
            table.add_row(
                label, direction, *[f"{values[n]:.4g}" for n in names], *[f"{g:+.2f} dB" for g in gains]
            )
    console.print(table)
    trained = results["trained"]
    gains = {d: trained[d]["psnr"] - results["identity"][d]["psnr"] for d in trained}
    learned = {d: trained[d]["psnr"] - results["untrained"][d]["psnr"] for d in trained}
    ok = all(g >= args.min_gain_db for g in gains.values()) and all(g > 0 for g in learned.values())
    report = {
        "recipe": "recipes/quickstart.toml",
        "overrides": overrides,
        "steps": trainer.step,
        "train_seconds": round(train_seconds, 1),
        "steps_per_second": round(trainer.step / train_seconds, 3) if train_seconds else None,
        "test_pairs": len(test_set),
        "torch_threads": torch.get_num_threads(),
        "scores": results,
        "psnr_gain_db": gains,
        "psnr_gain_over_untrained_db": learned,
        "min_gain_db": args.min_gain_db,
        "passed": ok,
    }
    trainer.run_dir.write_text("quality.json", json.dumps(report, indent=2) + "\n")
    console.print(
        f"trained in {train_seconds / 60:.1f} min ({trainer.step} steps); PSNR gain over identity: "
        + ", ".join(f"{d} {g:+.2f} dB" for d, g in gains.items())
        + "; over the untrained network: "
        + ", ".join(f"{d} {g:+.2f} dB" for d, g in learned.items())
        + f" -> {'PASS' if ok else 'FAIL'} (needs >= {args.min_gain_db} dB over identity and a gain over"
        " the untrained network, both ways)"
    )
    console.print(f"written: {run_path / 'quality.json'}, {run_path / 'report.html'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
