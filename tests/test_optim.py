"""The built-in optimizers (each builds the torch class with the recipe's hyperparameters), and settings
per optimizer group ([train.optimizers.GROUP], [train.schedulers.GROUP]) in real runs."""

from __future__ import annotations

import copy
import io
import json
import tomllib
from pathlib import Path

import pytest
import torch
from rich.console import Console

import ganforge
from ganforge.errors import CheckpointError, RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, TINY_RUN

REGISTRIES = collect_registries(make_plugin_manager())


def build(spec: dict) -> torch.optim.Optimizer:
    return REGISTRIES.resolve("optimizer", spec, "train.optimizer").build([torch.nn.Parameter(torch.ones(2))])


def test_adamw_defaults_and_given_values() -> None:
    optimizer = build({"type": "adamw"})
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        1e-3,
        (0.9, 0.999),
        1e-8,
        0.01,
    )
    group = build({"type": "adamw", "lr": 2e-4, "betas": [0.5, 0.99], "weight_decay": 0.1}).param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-4, (0.5, 0.99), 0.1)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_auto_implementation_is_fused_on_the_cpu(kind: str) -> None:
    """auto takes the fused kernel for CPU parameters (torch's own default there is the per-parameter
    loop); a named implementation is taken as given, and the fused step computes what the loop does."""
    assert build({"type": kind}).defaults["fused"] is True
    loop = build({"type": kind, "implementation": "for_loop"}).defaults
    assert (loop["fused"], loop["foreach"]) == (None, False)
    assert build({"type": kind, "implementation": "foreach"}).defaults["foreach"] is True
    weights = []
    for implementation in ("auto", "for_loop"):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(64))
        spec = {"type": kind, "lr": 0.1, "implementation": implementation}
        optimizer = REGISTRIES.resolve("optimizer", spec, "o").build([weight])
        for step in range(3):
            weight.grad = torch.sin(weight.detach() * (step + 1))
            optimizer.step()
        weights.append(weight.detach())
    assert torch.allclose(weights[0], weights[1], rtol=1e-6, atol=1e-7)
    assert not torch.equal(weights[0], torch.randn(64, generator=torch.Generator().manual_seed(0)))


def test_adamw_decay_is_decoupled() -> None:
    """With a zero gradient Adam's update is zero, so one AdamW step only shrinks w by lr * wd."""
    weight = torch.nn.Parameter(torch.tensor([2.0]))
    spec = REGISTRIES.resolve("optimizer", {"type": "adamw", "lr": 0.1, "weight_decay": 0.5}, "o")
    optimizer = spec.build([weight])
    weight.grad = torch.zeros(1)
    optimizer.step()
    assert weight.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-6)


def test_sgd_hyperparameters_land() -> None:
    optimizer = build({"type": "sgd"})
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["dampening"], group["nesterov"], group["weight_decay"]) == (
        1e-2,
        0.0,
        0.0,
        False,
        0.0,
    )
    spec = {"type": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    group = build(spec).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.5,
        0.9,
        True,
        1e-4,
    )


def test_sgd_momentum_by_hand() -> None:
    """Two steps on f(w) = w with lr 0.1, momentum 0.9: buffers 1 then 1.9, w = 1 - 0.1 - 0.19."""
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = REGISTRIES.resolve("optimizer", {"type": "sgd", "lr": 0.1, "momentum": 0.9}, "o").build(
        [weight]
    )
    for _ in range(2):
        optimizer.zero_grad()
        weight.sum().backward()
        optimizer.step()
    assert weight.item() == pytest.approx(1 - 0.1 - 0.19, rel=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "sgd", "nesterov": True}, "nesterov = true needs momentum > 0"),
        ({"type": "sgd", "momentum": 1.0}, "train.optimizer.momentum"),
        ({"type": "adamw", "weight_decay": -1.0}, "train.optimizer.weight_decay"),
    ],
)
def test_bad_values_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        build(spec)


# ------------------------------------------------------------------ per-group optimizers and schedules

QUICK = [*TINY_RUN, "model.generator.n_blocks=1", "model.generator.ngf=4", "output.report=false"]
TTUR = ["train.optimizer.lr=1e-4", "train.optimizers.D.lr=4e-4"]


def test_ttur_recipe_gives_each_group_its_learning_rate(tmp_path: Path, one_thread) -> None:
    run = ganforge.train(
        RECIPES / "quickstart.toml",
        overrides=[*QUICK, *TTUR, 'train.schedulers.D={type = "step", step_size = 1, gamma = 0.5}'],
        run_dir=tmp_path / "run",
        console=Console(file=io.StringIO()),
    )
    G, D = (run.trainer.optimizers[group].param_groups[0] for group in ("G", "D"))
    assert type(run.trainer.optimizers["D"]) is torch.optim.Adam  # type and betas kept from train.optimizer
    assert G["betas"] == D["betas"] == (0.5, 0.999)
    assert G["lr"] == 1e-4  # linear_decay holds it for 4 epochs
    assert D["lr"] == pytest.approx(4e-4 * 0.5, rel=1e-12)  # D's own schedule: halved after epoch 1
    assert D["initial_lr"] == 4e-4
    saved = tomllib.loads((run.path / "recipe.toml").read_text())["train"]
    assert saved["optimizers"] == {"D": {"lr": 4e-4}}  # the run's recipe keeps the override as written


def test_a_type_replaces_the_default(tmp_path: Path) -> None:
    loaded = load_recipe(RECIPES / "quickstart.toml", ['train.optimizers.D={type = "sgd", momentum = 0.9}'])
    train = loaded.recipe.train
    D = train.optimizer_for("D").build([torch.nn.Parameter(torch.ones(1))])
    assert type(D) is torch.optim.SGD and D.param_groups[0]["lr"] == 1e-2  # sgd's default, not adam's 2e-4
    assert train.optimizer_for("G").type == "adam" and train.group_fields("D") == (
        "train.optimizers.D",
        "train.scheduler",
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.optimizers.D.lr=-1.0", "train.optimizers.D.lr: "),
        ("train.optimizers.D.momentum=0.9", "train.optimizers.D.momentum: "),  # adam has no momentum
        ('train.schedulers.G.type="plateau"', "train.schedulers.G.monitor: missing"),
        ("train.schedulers.G.decay_epochs=1", "train.schedulers.G: the run has 8 epochs"),
    ],
)
def test_bad_group_settings_name_the_field(override: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / "quickstart.toml", [override])
    assert message in str(info.value) and len(info.value.lines) == 1


def test_unknown_group_names_the_models_groups(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        ganforge.train(
            RECIPES / "quickstart.toml",
            overrides=[*QUICK, "train.optimizers.critic.lr=4e-4"],
            run_dir=tmp_path / "run",
            console=Console(file=io.StringIO()),
        )
    assert (
        str(info.value)
        == "train.optimizers.critic: the model has no optimizer group 'critic'; its groups: G, D"
    )


def test_changing_group_settings_on_resume_is_refused(tmp_path: Path, one_thread) -> None:
    quiet = Console(file=io.StringIO())
    ganforge.train(
        RECIPES / "quickstart.toml", overrides=[*QUICK, *TTUR], run_dir=tmp_path / "run", console=quiet
    )
    with pytest.raises(
        CheckpointError, match=r"train\.optimizers\.D\.lr: checkpoint 0\.0004, recipe 0\.0003"
    ):
        ganforge.train(
            resume=tmp_path / "run", overrides=["train.epochs=2", "train.optimizers.D.lr=3e-4"], console=quiet
        )
    with pytest.raises(
        CheckpointError, match=r"train\.schedulers\.G\.type: checkpoint '\(unset\)', recipe 'cosine'"
    ):
        ganforge.train(
            resume=tmp_path / "run",
            overrides=["train.epochs=2", 'train.schedulers.G.type="cosine"'],
            console=quiet,
        )
    run = ganforge.train(resume=tmp_path / "run", overrides=["train.epochs=2"], console=quiet)
    assert run.trainer.optimizers["D"].param_groups[0]["lr"] == 4e-4  # the saved override still applies


def test_plateau_watches_a_logged_loss_in_a_run(tmp_path: Path, one_thread) -> None:
    quiet = Console(file=io.StringIO())
    plateau = (
        'train.schedulers.D={type = "plateau", monitor = "D_A", patience = 0, factor = 0.5, threshold = 0.99}'
    )
    # threshold 0.99: epoch 1 sets the best; epoch 2 would have to cut D_A a hundredfold to count as
    # better, so it is a bad epoch and (patience 0) the rate is cut once
    run = ganforge.train(
        RECIPES / "quickstart.toml",
        overrides=[*QUICK, "train.epochs=2", plateau],
        run_dir=tmp_path / "a",
        console=quiet,
    )
    assert run.trainer.optimizers["D"].param_groups[0]["lr"] == pytest.approx(5e-4)  # half the recipe's 1e-3
    assert run.trainer.optimizers["G"].param_groups[0]["lr"] == 1e-3
    bad = plateau.replace('"D_A"', '"loss_D"')
    with pytest.raises(RecipeError) as info:
        ganforge.train(
            RECIPES / "quickstart.toml", overrides=[*QUICK, bad], run_dir=tmp_path / "b", console=quiet
        )
    assert str(info.value).startswith(
        "train.schedulers.D.monitor: 'loss_D' is not logged this epoch; logged: G_A, G_B,"
    )


def test_plateau_watches_an_evaluation_score(tmp_path: Path, one_thread) -> None:
    quiet = Console(file=io.StringIO())
    plateau = 'train.schedulers.G={type = "plateau", monitor = "eval.l1", patience = 5}'
    evaluation = ["eval.every_epochs=1", 'eval.metrics=["l1"]']
    run = ganforge.train(
        RECIPES / "quickstart.toml",
        overrides=[*QUICK, "train.epochs=2", plateau, *evaluation],
        run_dir=tmp_path / "a",
        console=quiet,
    )
    records = [json.loads(line) for line in (run.path / "eval.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # evaluated once per epoch, for the schedule and the log
    best = min(r["mean"]["l1"] for r in records)
    assert run.trainer.schedulers["G"].best == pytest.approx(best, rel=1e-6)
    with pytest.raises(
        RecipeError, match=r"'eval.l1' is not logged this epoch \(eval.\* needs eval.every_epochs = 1\)"
    ):
        ganforge.train(
            RECIPES / "quickstart.toml", overrides=[*QUICK, plateau], run_dir=tmp_path / "b", console=quiet
        )


def test_resume_takes_the_recipes_implementation(tmp_path: Path, one_thread) -> None:
    """torch keeps foreach/fused in each param group, so a checkpoint carries them; a resumed run computes
    its updates as its own recipe says (the implementation may change on resume: same update)."""
    quiet = Console(file=io.StringIO())
    first = ganforge.train(
        RECIPES / "quickstart.toml",
        overrides=[*QUICK, 'train.optimizer.implementation="for_loop"'],
        run_dir=tmp_path / "run",
        console=quiet,
    )
    assert first.trainer.optimizers["G"].param_groups[0]["fused"] is None
    resumed = ganforge.train(
        resume=tmp_path / "run",
        overrides=["train.epochs=2", 'train.optimizer.implementation="auto"'],
        console=quiet,
    )
    for optimizer in resumed.trainer.optimizers.values():
        group = optimizer.param_groups[0]
        assert (group["fused"], group["foreach"]) == (True, None)  # auto on the CPU
        steps = {int(s["step"]) for s in optimizer.state.values()}
        assert steps == {resumed.trainer.step}  # the moments went on from the checkpoint's
    assert resumed.trainer.step == 2 * first.trainer.step


def test_loaded_state_fits_the_groups_implementation_and_layout() -> None:
    """A checkpoint's moments saved in one memory layout, resumed on weights in another (channels_last
    switched on at resume), and its step counters placed by the saved flags: load_optimizer_state makes
    them fit, and the fused update then equals the per-parameter loop's."""
    from ganforge.engine.trainer import load_optimizer_state

    torch.manual_seed(0)
    start = torch.randn(2, 3, 4, 5)
    grads = [torch.randn(2, 3, 4, 5) for _ in range(3)]

    def trained(implementation: str, channels_last: bool, state: dict | None = None):
        weight = torch.nn.Parameter(start.clone())
        if channels_last:
            weight.data = weight.data.contiguous(memory_format=torch.channels_last)
        spec = {"type": "adam", "lr": 0.1, "implementation": implementation}
        optimizer = REGISTRIES.resolve("optimizer", spec, "o").build([weight])
        if state is not None:
            load_optimizer_state(optimizer, copy.deepcopy(state))  # torch may keep the given tensors
        for grad in grads[:2] if state is None else grads[2:]:
            weight.grad = (
                grad.contiguous(memory_format=torch.channels_last) if channels_last else grad.clone()
            )
            optimizer.step()
        return weight, optimizer

    _, saved = trained("for_loop", channels_last=False)  # two steps, contiguous moments
    checkpoint = saved.state_dict()
    expected, _ = trained("for_loop", channels_last=False, state=checkpoint)
    weight, optimizer = trained("auto", channels_last=True, state=checkpoint)
    moments = optimizer.state[weight]
    assert (
        moments["exp_avg"].stride() == weight.stride() and moments["exp_avg_sq"].stride() == weight.stride()
    )
    assert moments["step"].dtype == torch.float32 and int(moments["step"]) == 3
    assert torch.allclose(weight.detach(), expected.detach(), rtol=1e-6, atol=1e-7)
    assert not torch.allclose(weight.detach(), start, atol=1e-3)  # the steps moved it


def test_the_implementation_of_any_group_may_change_on_resume() -> None:
    from ganforge.engine.resume import recipe_differences

    saved = {"train": {"optimizers": {"D": {"implementation": "for_loop", "lr": 4e-4}}}}
    current = {"train": {"optimizers": {"D": {"implementation": "auto", "lr": 4e-4}}}}
    assert recipe_differences(saved, current) == []
    current["train"]["optimizers"]["D"]["lr"] = 3e-4
    assert recipe_differences(saved, current) == ["train.optimizers.D.lr: checkpoint 0.0004, recipe 0.0003"]
