"""Never lose a run: exact resume after SIGKILL, polite stops, divergence, full or read-only disks.

Every training run here is a real ``python -m ganforge run`` subprocess on 32 px images with tiny nets.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

import ganforge
from ganforge.engine.callbacks import Callback
from ganforge.engine.checkpoint import load_checkpoint
from ganforge.engine.resume import find_checkpoint
from ganforge.engine.rundir import RunDir
from ganforge.engine.trainer import Stopped
from ganforge.errors import GanforgeError
from tests.conftest import RECIPES, ROOT, run_cli

QUICKSTART = str(RECIPES / "quickstart.toml")
TINY = [
    "data.size=32",
    "data.length=8",
    "train.batch_size=1",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=8",
    "model.pool.size=3",  # full after 3 steps, so resumes must carry the pool and its RNG
    "train.epochs=3",
    "train.log_every=2",
    "output.checkpoint_every_steps=1",
]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def popen(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ganforge", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_progress(latest: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until ``latest`` is (re)written by ``process`` after the call."""
    before = latest.stat().st_mtime_ns if latest.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if latest.exists() and latest.stat().st_mtime_ns != before:
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint progress; process exited with {process.poll()}")


def assert_same_state(a: dict, b: dict) -> None:
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        if torch.is_tensor(value):
            assert torch.equal(value, b["model"][key]), key
    for group in a["optimizers"]:
        for index, slot in a["optimizers"][group]["state"].items():
            for name, value in slot.items():
                assert torch.equal(value, b["optimizers"][group]["state"][index][name]), (group, index, name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run's final checkpoint."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_cli("run", QUICKSTART, *sets(TINY), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path: Path, reference: dict) -> None:
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pt"
    rng = random.Random(1234)
    seen_steps = []
    for attempt in range(3):
        args = ["run", QUICKSTART, *sets(TINY), "--run-dir", str(run_dir)] if attempt == 0 else ["run", "--resume", str(run_dir)]
        process = popen(*args)
        wait_for_progress(latest, process)
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere in a step or in a checkpoint write
        process.kill()
        process.wait()
        # The last complete checkpoint always loads.
        path, state = find_checkpoint(run_dir)
        seen_steps.append(state["step"])
    assert seen_steps == sorted(seen_steps) and seen_steps[-1] < reference["step"], seen_steps
    result = run_cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    assert_same_state(load_checkpoint(latest), reference)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    steps = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
    assert len(steps) == 3  # each epoch logged once, however often the run was killed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_polite_stop_saves_and_says_how_to_resume(tmp_path: Path, reference: dict, sig: signal.Signals) -> None:
    run_dir = tmp_path / "run"
    process = popen("run", QUICKSTART, *sets(TINY), "--set", "output.checkpoint_every_steps=1000", "--run-dir", str(run_dir))
    wait_for_progress(run_dir / "metrics.jsonl", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + sig
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"stopped: {sig.name} at step ") and f"ganforge run --resume {run_dir}" in last
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert 0 < state["step"] < reference["step"]
    result = run_cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert_same_state(load_checkpoint(run_dir / "checkpoints" / "latest.pt"), reference)


class StopAt(Callback):
    """Asks the run to stop after ``step`` steps, as a SIGTERM would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, losses) -> None:
        if trainer.step == self.step:
            trainer.request_stop("SIGTERM")


def test_mid_epoch_resume_with_random_draws_in_the_step_is_bit_identical(tmp_path: Path) -> None:
    """DiffAugment draws from torch's global RNG inside every step; the data loader must not (each
    ``iter(loader)`` draws a worker seed, from its own generator), or a resumed epoch drifts."""
    augmented = [*TINY, "model.augment.type=diffaugment", "train.epochs=2", "output.checkpoint_every_steps=1000"]
    quiet = Console(file=io.StringIO())
    ganforge.train(QUICKSTART, overrides=augmented, run_dir=tmp_path / "reference", console=quiet)
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "latest.pt")
    run_dir = tmp_path / "run"
    with pytest.raises(Stopped):
        ganforge.train(QUICKSTART, overrides=augmented, run_dir=run_dir, callbacks=[StopAt(11)], console=quiet)
    stopped = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert stopped["step"] == 11 and stopped["step"] % stopped["steps_per_epoch"] != 0  # mid-epoch
    ganforge.train(resume=run_dir, console=quiet)
    assert_same_state(load_checkpoint(run_dir / "checkpoints" / "latest.pt"), reference)


def test_a_run_saved_by_an_older_version_resumes_bit_identical(tmp_path: Path, reference: dict) -> None:
    """Its recipe has ``train.conv_algorithm`` (the key before ``[train.backend]``): it resumes as auto.
    Its RNG states have no ``loader`` entry (the data loader's own generator came later)."""
    run_dir = tmp_path / "run"
    assert run_cli("run", QUICKSTART, *sets(TINY), "--run-dir", str(run_dir)).returncode == 0
    state = load_checkpoint(run_dir / "checkpoints" / "epoch_0001.pt")
    assert state["rng"].pop("loader", None) is not None
    train = {k: v for k, v in state["recipe"]["train"].items() if k != "backend"}
    state["recipe"] = {**state["recipe"], "train": {**train, "conv_algorithm": "winograd"}}
    torch.save(state, run_dir / "checkpoints" / "latest.pt")
    result = run_cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout and "(auto" in result.stdout
    assert_same_state(load_checkpoint(run_dir / "checkpoints" / "latest.pt"), reference)
    # the backend may change when a run resumes: it does not change what is trained
    more = ["--set", "train.epochs=4", "--set", "train.backend.type=direct"]
    result = run_cli("run", "--resume", str(run_dir), *more)
    assert result.returncode == 0, result.stderr
    assert "backend direct" in result.stdout


def test_kill_during_a_checkpoint_write_leaves_the_previous_file(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from ganforge.engine.rundir import RunDir
        out = RunDir(Path({str(tmp_path)!r}))
        out.create()
        out.atomic_write("checkpoints/latest.pt", b"previous")
        print("ready", flush=True)
        out.atomic_write("checkpoints/latest.pt", bytes(300 * 2**20))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    folder = tmp_path / "checkpoints"
    deadline = time.monotonic() + 30
    while not list(folder.glob(".latest.pt.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.001)
    process.kill()
    process.wait()
    assert (folder / "latest.pt").read_bytes() == b"previous"
    stale = RunDir(tmp_path).remove_temporaries()
    assert len(stale) == 1 and not list(folder.glob(".*.tmp"))


def write_plugin(folder: Path) -> Path:
    path = folder / "explode.py"
    path.write_text(
        textwrap.dedent(
            '''
            import torch
            from pydantic import Field
            from ganforge import Params, hookimpl

            class ExplodeParams(Params):
                after: int = Field(10, ge=0, description="Calls before the loss turns NaN.")

            class Explode(torch.nn.Module):
                def __init__(self, after):
                    super().__init__()
                    self.after, self.calls = after, 0

                def forward(self, prediction, target):
                    self.calls += 1
                    loss = (prediction - target).abs().mean()
                    return loss * float("nan") if self.calls > self.after else loss

            def build(params):
                """L1 that becomes NaN after a number of calls."""
                return Explode(params.after)

            @hookimpl
            def register_losses(register):
                register("explode", build, params=ExplodeParams)
            '''
        )
    )
    return path


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path)
    run_dir = tmp_path / "run"
    overrides = [*TINY, f'plugins=["{plugin}"]', 'model.cycle_loss={type = "explode", after = 20}', "train.log_every=100"]
    result = run_cli("run", QUICKSTART, *sets(overrides), "--run-dir", str(run_dir))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    # 4 calls per step (2 cycle + 2 identity terms): the 21st call is in step 6
    assert line.startswith("error: loss cycle_A became nan by step 6 (epoch 1)"), line
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if torch.is_tensor(v))


def test_checkpoint_from_another_recipe_model_or_version_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small = [*TINY, "train.epochs=1", "data.length=2"]
    assert run_cli("run", QUICKSTART, *sets(small), "--run-dir", str(run_dir)).returncode == 0
    checkpoint = run_dir / "checkpoints" / "latest.pt"

    other = run_cli("run", QUICKSTART, *sets([*small, "model.generator.n_blocks=2", "train.epochs=2"]), "--resume", str(run_dir))
    assert other.returncode == 1
    (line,) = other.stderr.strip().splitlines()
    assert "model.generator.n_blocks: checkpoint 1, recipe 2" in line and "--init-from" in line

    state = load_checkpoint(checkpoint)
    for change, message in [
        (lambda s: s["recipe"]["model"].update(type="pix2pix"), "holds a 'pix2pix' model, the recipe asks for 'cyclegan'"),
        (lambda s: s.update(ganforge_version="0.0.1"), "written by ganforge 0.0.1, this is ganforge"),
        (lambda s: s.pop("optimizers"), "incomplete checkpoint, missing optimizers"),
    ]:
        edited = {**state, "recipe": {**state["recipe"], "model": dict(state["recipe"]["model"])}}
        change(edited)
        path = tmp_path / "edited.pt"
        torch.save(edited, path)
        result = run_cli("run", QUICKSTART, *sets(small), "--resume", str(path))
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    # Fine-tuning from part of it: a fresh run that takes G_A's weights only.
    fresh = run_cli(
        "run", QUICKSTART, *sets(small), "--init-from", str(checkpoint), "--init-only", "G_A", "--run-dir", str(tmp_path / "ft")
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "initialised 16 tensors (G_A) from" in fresh.stdout  # 8 convs of a 1-block G, weight + bias


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "ganforge.checkpoint", "payload": Payload()}, path)
    result = run_cli("run", "--resume", str(path))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: refused: the file holds objects that loading would have to execute")
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    result = run_cli("run", "--resume", str(junk))
    assert result.returncode == 1 and "not a readable checkpoint" in result.stderr


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and mount rights; skipped where there are none)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_is_detected_before_training(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    result = run_cli("run", QUICKSTART, "--run-dir", str(run_dir))  # quickstart checkpoints need ~2 MiB each
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: not enough free space for two checkpoints in {run_dir}: needs ")
    assert not run_dir.exists()


def test_full_or_read_only_disk_during_a_write_keeps_the_previous_file(small_disk: Path) -> None:
    out = RunDir(small_disk / "run")
    out.create()
    out.atomic_write("checkpoints/latest.pt", b"a" * 600_000)
    with pytest.raises(GanforgeError, match=r"not enough free space for latest.pt .* needs 0.6 MiB"):
        out.atomic_write("checkpoints/latest.pt", b"b" * 600_000)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(GanforgeError, match="cannot write .*latest.pt: Read-only file system; the previous"):
        out.atomic_write("checkpoints/latest.pt", b"c" * 1000)
    assert (small_disk / "run" / "checkpoints" / "latest.pt").read_bytes() == b"a" * 600_000
