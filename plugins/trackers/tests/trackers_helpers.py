"""Helpers the trackers' tests share: a tiny recipe, the command line in a subprocess, offline settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
ROOT = PLUGIN_ROOT.parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"

#: A CycleGAN shrunk to seconds: 32 px, 4 images, 2 epochs of 4 steps, losses logged every 2 steps,
#: PSNR and L1 on the 2 test pairs after each epoch, torch's own layers (no kernels to compile). The
#: plugin is named, so the run works whether it is installed (entry point) or only on the path; an
#: installed one is not registered twice.
TINY = [
    "train.backend.type=direct",
    "data.size=32",
    "data.length=4",
    "train.batch_size=1",
    "data.test_length=2",
    "train.epochs=2",
    "train.log_every=2",
    "output.n_samples=2",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=8",
    "eval.every_epochs=1",
    'eval.metrics=["psnr", "l1"]',
    'plugins=["ganforge_trackers.plugin"]',
]


def offline_env(folder: Path) -> dict[str, str]:
    """Environment variables that keep W&B and MLflow off the network and inside ``folder``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CACHE_DIR": str(folder / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(folder / "wandb-config"),
        "WANDB_DATA_DIR": str(folder / "wandb-data"),
        "WANDB_ARTIFACT_DIR": str(folder / "wandb-artifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def set_options(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, prelude: str = ""
) -> subprocess.CompletedProcess:
    """``python -m ganforge ARGS`` in a subprocess, offline into ``cwd`` (``prelude``: Python run first,
    in that process)."""
    own = ("GANFORGE_", "WANDB_", "MLFLOW_")  # none of the caller's settings leak in
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    # one thread: tiny networks gain nothing from more, and on a shared machine they spin-wait
    full_env.update({"COLUMNS": "200", "OMP_NUM_THREADS": "1", **offline_env(cwd), **(env or {})})
    code = f"{prelude}\nimport runpy, sys\nsys.argv = ['ganforge', *sys.argv[1:]]\nrunpy.run_module('ganforge', run_name='__main__')"
    return subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
