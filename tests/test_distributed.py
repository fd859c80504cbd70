"""Distributed training through the real torchrun: CPU, gloo, 127.0.0.1, two processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge.engine.checkpoint import load_checkpoint
from tests.conftest import RECIPES, ROOT

#: The quickstart shrunk to 32 px, tiny nets, 4 training images (2 steps of 2 images per epoch).
SMALL = [
    "data.size=32",
    "data.length=4",
    "train.batch_size=1",
    "data.test_length=2",
    "output.n_samples=2",
    "model.discriminator.ndf=8",
    "model.generator.ngf=8",
    "model.generator.n_blocks=1",
    "train.log_every=1",
    "output.report=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200", GANFORGE_WINOGRAD_KERNELS="torch")
    return env


def _command(nproc: int, *args: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "ganforge", "run", *args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "ganforge",
        "run",
        *args,
    ]


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def run(nproc: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(nproc, *args),
        check=False,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _workers(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of torchrun's worker processes (children of ``parent`` with RANK set)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != parent:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


def _start_and_signal(
    tmp_path: Path, overrides: list[str], sig: int
) -> tuple[subprocess.CompletedProcess, float]:
    """Start a 2-process run, wait for its first logged step, send ``sig`` to rank 1; return the result
    and the seconds from the signal to torchrun's exit."""
    process = subprocess.Popen(
        _command(2, str(RECIPES / "quickstart.toml"), *_sets(overrides)),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("runs/*/metrics.jsonl"))
            if logs and logs[0].read_text().count('"step"') >= 1:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        workers = _workers(process.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], sig)
        signalled = time.monotonic()
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(
        process.args, process.returncode, stdout, stderr
    ), time.monotonic() - signalled


def test_two_processes_write_one_run_directory(tmp_path: Path) -> None:
    overrides = [*SMALL, "train.epochs=2", "train.lr_scaling=linear", f"output.root={tmp_path}"]
    result = run(2, str(RECIPES / "quickstart.toml"), *_sets(overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch_0001.pt",
        "epoch_0002.pt",
        "latest.pt",
    ]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
        "truth_epoch_0001.png",  # the synthetic scenes' test set is paired: ground truth beside translations
        "truth_epoch_0002.png",
    ]
    assert result.stdout.count("run directory:") == 1  # rank 0 alone reports
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    # 4 images, 1 per process per step, 2 processes: 2 steps per epoch
    assert (state["world_size"], state["global_batch"], state["steps_per_epoch"], state["step"]) == (
        2,
        2,
        2,
        4,
    )
    # lr_scaling linear: 2 processes, 2 x the recipe's 1e-3 (constant schedule)
    assert [g["lr"] for g in state["optimizers"]["G"]["param_groups"]] == [pytest.approx(2e-3)]
    # the per-epoch line: global images per second = steps per second x the global batch (2)
    line = next(line for line in result.stdout.splitlines() if "epoch 2/2" in line and "img/s" in line)
    its, imgs = (float(w) for w in re.findall(r"([0-9.]+) (?:it|img)/s", line))
    assert imgs == pytest.approx(2 * its, abs=0.11)
    steps = [
        line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"kind": "step"' in line
    ]
    assert len(steps) == 4  # one record per step (log_every 1), not one per rank


def _logged(folder: Path) -> list[dict[str, float]]:
    log = next(folder.glob("*/metrics.jsonl")).read_text().splitlines()
    return [json.loads(line)["losses"] for line in log if '"kind": "step"' in line]


def test_two_processes_batch_one_equal_one_process_batch_two(tmp_path: Path) -> None:
    """Gradients are averaged right: with no image pool and instance norm (samples independent), 2
    processes x batch 1 take the same 4 Adam steps as 1 process x batch 2 on the same images.

    Tolerances: the losses of every step agree to 1e-5 (relative) and every weight to 1e-5. Biases
    followed by an instance norm are the exception: their true gradient is zero, what they get is
    rounding noise whose sign depends on the order of a float sum, and Adam moves a weight by about
    +-lr whatever its gradient's size; so they may differ by up to 2 x lr x steps = 1.6e-3."""
    # with [train.ema]: every rank averages the same weights, so the average matches one process's too
    common = [*SMALL, "data.length=8", "train.epochs=1", "model.pool.size=0", "train.ema.decay=0.5"]
    # the rate the bias bound below is for, and the paper's transposed up-sampling: with the quickstart's
    # resize-conv layers the logged losses of the two runs drift apart by ~1.5e-3 (relative) within
    # 4 steps, with either backend (not yet explained)
    common += ["train.optimizer.lr=2e-4", "model.generator.upsample=transpose"]
    one = run(
        1,
        str(RECIPES / "quickstart.toml"),
        *_sets([*common, "train.batch_size=2", f"output.root={tmp_path}/one"]),
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(
        2,
        str(RECIPES / "quickstart.toml"),
        *_sets([*common, "train.batch_size=1", f"output.root={tmp_path}/two"]),
    )
    assert two.returncode == 0, two.stderr[-3000:]
    state_a = load_checkpoint(next((tmp_path / "one").glob("*/checkpoints/latest.pt")))
    state_b = load_checkpoint(next((tmp_path / "two").glob("*/checkpoints/latest.pt")))
    a, b = state_a["model"], state_b["model"]
    logged_one, logged_two = _logged(tmp_path / "one"), _logged(tmp_path / "two")
    assert len(logged_one) == len(logged_two) == 4
    for x, y in zip(logged_one, logged_two):
        assert x.keys() == y.keys()
        for name in x:
            assert y[name] == pytest.approx(x[name], rel=1e-5), name
    weights = [k for k, v in a.items() if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 1]
    biases = [k for k, v in a.items() if torch.is_tensor(v) and v.is_floating_point() and v.dim() == 1]
    assert len(weights) > 10 and biases
    assert max((a[k] - b[k]).abs().max().item() for k in weights) < 1e-5
    assert max((a[k] - b[k]).abs().max().item() for k in biases) <= 2 * 2e-4 * 4 + 1e-6
    ema_a, ema_b = state_a["ema"]["weights"], state_b["ema"]["weights"]
    assert ema_a.keys() == ema_b.keys() and any(not torch.equal(ema_a[k], a[k]) for k in ema_a)
    assert max((ema_a[k] - ema_b[k]).abs().max().item() for k in ema_a if k in weights) < 1e-5
    assert max((ema_a[k] - ema_b[k]).abs().max().item() for k in ema_a if k in biases) <= 2 * 2e-4 * 4 + 1e-6
    # and the check can fail: 1 process x batch 1 on the same first 4 images lands elsewhere
    lone = run(
        1,
        str(RECIPES / "quickstart.toml"),
        *_sets(
            [*common, "train.batch_size=1", "train.max_iters_per_epoch=4", f"output.root={tmp_path}/lone"]
        ),
    )
    assert lone.returncode == 0, lone.stderr[-3000:]
    c = load_checkpoint(next((tmp_path / "lone").glob("*/checkpoints/latest.pt")))["model"]
    assert max((a[k] - c[k]).abs().max().item() for k in weights) > 1e-4


def test_stopped_two_process_run_resumes_on_one_and_on_two(tmp_path: Path) -> None:
    overrides = [*SMALL, "data.length=64", "train.epochs=2", f"output.root={tmp_path}/runs"]
    result, _ = _start_and_signal(tmp_path, overrides, signal.SIGTERM)
    assert result.returncode != 0
    assert "checkpoint saved" in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("checkpoint saved") == 1  # rank 0's line
    assert "stopped: SIGTERM: rank 1 stopped with rank 0 at step" in result.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    assert len(list((tmp_path / "runs").iterdir())) == 1
    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert saved["world_size"] == 2 and 0 < saved["step"] < 64, saved["step"]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)

    resumed_one = run(1, "--resume", str(run_dir))
    assert resumed_one.returncode == 0, resumed_one.stderr[-3000:]
    final = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    # one process takes 64 steps per epoch; it goes on from the same place in the data order
    assert (final["world_size"], final["steps_per_epoch"], final["step"]) == (1, 64, 128)
    epoch, position = divmod(saved["step"], 32)
    assert f"at step {64 * epoch + 2 * position} " in resumed_one.stdout, resumed_one.stdout[:2000]

    resumed_two = run(2, "--resume", str(copy))
    assert resumed_two.returncode == 0, resumed_two.stderr[-3000:]
    final = load_checkpoint(copy / "checkpoints" / "latest.pt")
    assert (final["world_size"], final["steps_per_epoch"], final["step"]) == (2, 32, 64)
    assert resumed_two.stdout.count(f"resuming from {copy}") == 1


def test_a_dead_rank_stops_the_other_with_a_message(tmp_path: Path) -> None:
    overrides = [
        *SMALL,
        "data.length=400",
        "train.epochs=1",
        "train.dist_timeout=20",
        f"output.root={tmp_path}/runs",
    ]
    result, seconds = _start_and_signal(tmp_path, overrides, signal.SIGKILL)
    assert result.returncode != 0
    assert seconds < 45, seconds
    messages = [line for line in result.stderr.splitlines() if "lost the other processes" in line]
    assert messages and messages[0].startswith("error: rank 0/2"), result.stderr[-3000:]


@pytest.mark.parametrize("world", [2, 3])
def test_sampler_shards_global_batches(world: int) -> None:
    from ganforge.data.sampling import EpochSampler

    single = EpochSampler(12, seed=5)
    single.set_epoch(1)
    order = [item for item in single]
    shards = []
    for rank in range(world):
        sampler = EpochSampler(12, seed=5, rank=rank, world_size=world, batch_size=2)
        sampler.set_epoch(1)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    # global batch g = 2 x world: rank r holds positions [g*s + 2r, g*s + 2r + 1] of the same order
    g = 2 * world
    for rank, shard in enumerate(shards):
        expected = [order[p] for p in range(12) if (p % g) // 2 == rank]
        assert shard == expected
    assert sorted(p for shard in shards for (_, p, _) in shard) == list(range(12))
