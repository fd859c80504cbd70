"""benchmarks/vs_reference.py: its one-line errors, and the JSON of a tiny run (plumbing, not speed).

The side-by-side test needs a checkout of the authors' implementation, named by GANFORGE_REFERENCE
(git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix); without one it is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

SCRIPT = str(ROOT / "benchmarks" / "vs_reference.py")
REFERENCE = os.environ.get("GANFORGE_REFERENCE")


def test_missing_reference_is_one_line_naming_the_option_and_the_variable() -> None:
    done = run_cli(SCRIPT, "step", module=False, timeout=60)  # run_cli drops GANFORGE_* variables
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for part in (
        "--reference",
        "GANFORGE_REFERENCE",
        "--ganforge-only",
        "train.py",
        "models/cycle_gan_model.py",
    ):
        assert part in lines[0]
    assert "Traceback" not in done.stderr


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("")
    done = run_cli(SCRIPT, "translate", module=False, timeout=60, env={"GANFORGE_REFERENCE": str(tmp_path)})
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line
    assert f"GANFORGE_REFERENCE={tmp_path}" in line
    assert "missing test.py, models/cycle_gan_model.py, options/train_options.py" in line
    done = run_cli(SCRIPT, "step", "--reference", str(tmp_path / "nowhere"), module=False, timeout=60)
    assert done.returncode == 2 and "--reference=" in done.stderr


def test_bad_sizes_are_refused() -> None:
    done = run_cli(SCRIPT, "step", "--ganforge-only", "--sizes", "64,abc", module=False, timeout=60)
    assert done.returncode == 2 and "--sizes" in done.stderr and "multiples of 4" in done.stderr


def check_common(results: dict) -> None:
    assert results["machine"]["fp32_matmul_gflops"] > 0
    assert results["settings"]["smoke"] is True
    assert results["settings"]["recipe"] == "recipes/cyclegan_monet.toml"
    assert results["settings"]["ganforge_backend"]


def test_ganforge_only_step_writes_its_times(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = run_cli(
        SCRIPT,
        "step",
        "--ganforge-only",
        "--smoke",
        "--threads",
        "1",
        "--out",
        str(out),
        module=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    check_common(results)
    assert results["reference"] is None and results["settings"]["threads"] == 1
    [row] = results["step"]
    assert (row["size"], row["blocks"]) == (32, 6)
    assert row["reference_ms"] is None and "ratio" not in row
    assert len(row["ganforge_ms"]) == 2 and all(t > 0 for t in row["ganforge_ms"])
    assert row["ganforge_median_ms"] > 0
    assert row["ganforge_backend"].startswith("backend ")
    assert set(row["warmup_losses"]["ganforge"]) >= {"G_A", "G_B", "D_A", "D_B", "cycle_A", "cycle_B"}
    assert "training step, 32 px, 6 blocks" in done.stdout and "fp32 matmul peak" in done.stdout


@pytest.mark.skipif(
    not REFERENCE,
    reason="no reference checkout: set GANFORGE_REFERENCE to a clone of junyanz/pytorch-CycleGAN-and-pix2pix",
)
def test_step_side_by_side_with_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = run_cli(
        SCRIPT, "step", "--smoke", "--reference", str(REFERENCE), "--out", str(out), module=False, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    check_common(results)
    assert results["reference"]["path"] == str(Path(REFERENCE).resolve())
    [row] = results["step"]
    assert len(row["reference_ms"]) == len(row["ganforge_ms"]) == 2
    assert row["ratio"] == pytest.approx(row["reference_median_ms"] / row["ganforge_median_ms"])
    # the same losses by name, from the same kind of networks on the same batch
    reference, ganforge = row["warmup_losses"]["reference"], row["warmup_losses"]["ganforge"]
    assert set(reference) == set(ganforge)
    assert all(value > 0 for value in reference.values())
