"""``[train.ema]``: an exponential moving average of the generators, used for samples, evaluation,
translate and export; stored in checkpoints; off in the paper recipes.

The defining fact, pinned with hand-computed numbers and against a manual loop over the optimizer's
real updates: after each step, ``average = decay * average + (1 - decay) * weights``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge import api
from ganforge.engine.callbacks import Callback
from ganforge.engine.checkpoint import load_checkpoint
from ganforge.engine.ema import ModelAverage
from ganforge.engine.trainer import Stopped, describe_run
from ganforge.errors import CheckpointError, RecipeError
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

QUICKSTART = RECIPES / "quickstart.toml"
DECAY = 0.75
TINY = [
    "data.size=32",
    "data.length=4",
    "train.batch_size=1",
    "data.test_length=2",
    "output.n_samples=2",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=4",
    "train.epochs=2",
    "train.log_every=2",
    f"train.ema.decay={DECAY}",
    "train.ema.start_step=2",
    'eval.metrics=["l1"]',
    "eval.every_epochs=2",
]


class Scalars(nn.Module):
    """A "model" with one generator holding one scalar weight, and a discriminator that is not averaged."""

    def __init__(self) -> None:
        super().__init__()
        self.G = nn.Linear(1, 1, bias=False)
        self.D = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(self.G.weight)
        nn.init.zeros_(self.D.weight)

    def exported_nets(self) -> list[str]:
        return ["G"]


def averages(decay: float, start_step: int, every: int, weights: list[float]) -> list[float]:
    model = Scalars()
    ema = ModelAverage(model, decay, start_step, every)
    assert list(ema.params) == ["G.weight"]  # the discriminator is not averaged
    seen = []
    for step, w in enumerate(weights, start=1):
        with torch.no_grad():
            model.G.weight.fill_(w)
        ema.update(step)
        seen.append(float(ema.average["G.weight"]))
    return seen


def test_average_by_hand() -> None:
    # weight 0 at the start, then 1, 3, 5 after steps 1, 2, 3
    assert averages(0.5, 0, 1, [1, 3, 5]) == [0.5, 1.75, 3.375]  # 0.5*0+0.5*1; 0.5*0.5+0.5*3; 0.5*1.75+0.5*5
    assert averages(0.5, 2, 1, [1, 3, 5]) == [1.0, 3.0, 4.0]  # copies until step 2, then 0.5*3+0.5*5
    assert averages(0.5, 0, 2, [1, 3, 5]) == [0.0, 1.5, 1.5]  # every second step: 0.5*0+0.5*3
    assert averages(0.0, 0, 1, [1, 3, 5]) == [1.0, 3.0, 5.0]  # decay 0: the weights themselves


def test_applied_swaps_in_the_average_and_restores_the_weights_exactly() -> None:
    model = Scalars()
    ema = ModelAverage(model, 0.5)
    with torch.no_grad():
        model.G.weight.fill_(0.3)
    ema.update(1)
    with ema.applied():
        assert float(model.G.weight.detach()) == pytest.approx(0.15)
    assert torch.equal(model.G.weight, torch.full((1, 1), 0.3))


class Recorder(Callback):
    """The generators' trained weights before the first step and after every step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        self.stop_at = stop_at

    def _take(self, trainer) -> None:
        nets = trainer.model.exported_nets()
        self.weights.append(
            {k: v.detach().clone() for k, v in trainer.model.named_parameters() if k.split(".")[0] in nets}
        )

    def on_train_start(self, trainer) -> None:
        self._take(trainer)

    def on_step_end(self, trainer, losses) -> None:
        self._take(trainer)
        if trainer.step == self.stop_at:
            trainer.request_stop("SIGTERM")


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory):
    recorder = Recorder()
    run = api.train(
        QUICKSTART, overrides=TINY, run_dir=tmp_path_factory.mktemp("ema") / "run", callbacks=[recorder]
    )
    return run, recorder


def test_average_follows_the_optimizer_updates(ema_run) -> None:
    run, recorder = ema_run
    trainer = run.trainer
    assert trainer.step == 8 and len(recorder.weights) == 9
    assert set(trainer.ema.nets) == {"G_A", "G_B"} and not any(
        k.startswith("D_") for k in trainer.ema.average
    )
    # the manual loop, in float64: copies up to step 2 (start_step), then the decay
    manual = {k: v.double() for k, v in recorder.weights[0].items()}
    for step, weights in enumerate(recorder.weights[1:], start=1):
        for k, w in weights.items():
            manual[k] = w.double() if step <= 2 else DECAY * manual[k] + (1 - DECAY) * w.double()
    assert manual.keys() == trainer.ema.average.keys()
    for k, value in manual.items():
        torch.testing.assert_close(trainer.ema.average[k].double(), value, rtol=0, atol=1e-6)
    # the average is not the trained weights, which the model keeps
    final = recorder.weights[-1]
    assert all(torch.equal(final[k], p) for k, p in run.model.named_parameters() if k in final)
    assert any(not torch.allclose(final[k], trainer.ema.average[k]) for k in final)


def test_checkpoint_holds_the_average(ema_run) -> None:
    run, _ = ema_run
    assert "averaged generators (EMA, decay 0.75)" in describe_run(run.trainer)
    state = load_checkpoint(run.path / "checkpoints" / "latest.pt")
    assert state["recipe"]["train"]["ema"] == {"enabled": True, "decay": DECAY, "start_step": 2, "every": 1}
    assert state["ema"]["nets"] == ["G_A", "G_B"]
    assert state["ema"]["weights"].keys() == run.trainer.ema.average.keys()
    for k, v in state["ema"]["weights"].items():
        assert torch.equal(v, run.trainer.ema.average[k])
        assert torch.equal(state["model"][k], dict(run.model.named_parameters())[k].detach())  # raw kept


def test_stop_and_resume_with_ema_is_bit_identical(ema_run, tmp_path: Path) -> None:
    reference, _ = ema_run
    run_dir = tmp_path / "run"
    with pytest.raises(Stopped):
        api.train(QUICKSTART, overrides=TINY, run_dir=run_dir, callbacks=[Recorder(stop_at=3)])
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["step"] == 3
    api.train(resume=run_dir)
    a = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    b = load_checkpoint(reference.path / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 8
    for key in ("model", "ema"):
        flat_a = a[key] if key == "model" else a[key]["weights"]
        flat_b = b[key] if key == "model" else b[key]["weights"]
        assert flat_a.keys() == flat_b.keys()
        for k, v in flat_a.items():
            if torch.is_tensor(v):
                assert torch.equal(v, flat_b[k]), (key, k)


def image_folder(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


def test_translate_uses_the_average_by_default_and_raw_on_request(ema_run, tmp_path: Path) -> None:
    run, _ = ema_run
    inputs = image_folder(tmp_path / "in")
    ema = api.load(run.path, backend="direct")
    raw = api.load(run.path, backend="direct", weights="raw")
    assert ema.weights == "ema" and raw.weights == "raw" and "EMA" in ema.label
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad(), run.trainer.averaged_weights():
        expected = run.model.G_A.eval()(x)
    with torch.no_grad():
        expected_raw = run.model.G_A(x)
        torch.testing.assert_close(ema(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(raw(x), expected_raw, rtol=0, atol=1e-5)
        assert not torch.allclose(ema(x), raw(x), atol=1e-3)
    outputs = {}
    for name, extra in (("default", []), ("ema", ["--weights", "ema"]), ("raw", ["--weights", "raw"])):
        result = run_cli("translate", str(run.path), str(inputs), "-o", str(tmp_path / name), *extra)
        assert result.returncode == 0, result.stderr
        outputs[name] = np.asarray(Image.open(tmp_path / name / "a.png"))
    assert (
        "averaged (EMA) weights"
        in run_cli("translate", str(run.path), str(inputs), "-o", str(tmp_path / "again")).stdout
    )
    assert np.array_equal(outputs["default"], outputs["ema"])
    assert not np.array_equal(outputs["default"], outputs["raw"])


def test_export_and_eval_use_the_average(ema_run, tmp_path: Path) -> None:
    run, _ = ema_run
    exported = api.export(run.path, tmp_path, to=["safetensors"])
    reloaded = api.load(exported[0].path, backend="direct")
    ema = api.load(run.path, backend="direct")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), ema(x), rtol=0, atol=1e-5)
    scores = {w: api.evaluate(run.path, metrics=["l1"], device="cpu", weights=w) for w in ("auto", "raw")}
    assert scores["auto"].info["weights"] == "ema" and scores["raw"].info["weights"] == "raw"
    assert scores["auto"].scores["A2B"]["l1"] != scores["raw"].scores["A2B"]["l1"]
    # evaluations during training scored the averaged generators too
    assert '"weights": "ema"' in (run.path / "eval.jsonl").read_text()


def test_a_run_without_ema_has_none_to_load(tmp_path: Path) -> None:
    plain = [item for item in TINY if not item.startswith("train.ema")] + [
        "train.epochs=1",
        "train.ema.enabled=false",
    ]
    run = api.train(QUICKSTART, overrides=plain, run_dir=tmp_path / "run")
    assert run.trainer.ema is None and "ema" not in load_checkpoint(run.path / "checkpoints" / "latest.pt")
    assert api.load(run.path, backend="direct").weights == "raw"
    with pytest.raises(CheckpointError, match=r"holds no averaged \(EMA\) weights .*use --weights raw"):
        api.load(run.path, weights="ema")
    result = run_cli(
        "translate",
        str(run.path),
        str(image_folder(tmp_path / "in")),
        "-o",
        str(tmp_path / "o"),
        "--weights",
        "ema",
    )
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    # turned on when the run resumes: the average starts from the checkpoint's weights
    resumed = api.train(resume=run.path, overrides=["train.epochs=2", "train.ema.enabled=true", "train.ema.decay=0.5"])
    state = load_checkpoint(run.path / "checkpoints" / "latest.pt")
    assert resumed.trainer.ema is not None and state["step"] == 8 and state["ema"]["weights"]


def test_enabled_false_keeps_no_average(tmp_path: Path) -> None:
    run = api.train(
        QUICKSTART, overrides=[*TINY, "train.epochs=1", "train.ema.enabled=false"], run_dir=tmp_path / "r"
    )
    assert run.trainer.ema is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.ema.decay=1.0", "train.ema.decay: Input should be less than 1"),
        ("train.ema.every=0", "train.ema.every: Input should be greater than or equal to 1"),
        ("train.ema.decay=true", "train.ema.decay: Input should be a valid number"),
        ("train.ema.rate=0.9", "train.ema.rate: unknown key; valid keys: decay, enabled, every, start_step"),
    ],
)
def test_bad_ema_settings_name_the_field(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        load_recipe(QUICKSTART, [override])


@pytest.mark.parametrize(
    "path",
    sorted(p for p in RECIPES.glob("*.toml") if p.stem not in ("quickstart", "cyclegan_fast")),
    ids=lambda p: p.stem,
)
def test_off_in_the_paper_recipes(path: Path) -> None:
    recipe = load_recipe(path).recipe
    assert recipe.train.ema is None and "ema" not in recipe.to_dict()["train"]


def test_the_quickstart_keeps_an_average_of_decay_0_99() -> None:
    assert load_recipe(RECIPES / "quickstart.toml").recipe.train.ema.decay == 0.99
