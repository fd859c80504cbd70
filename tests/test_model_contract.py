"""The model contract: the core translates, evaluates and exports through what a model *declares*
(:meth:`ganforge.TrainingModel.directions`), never through net names of its own.

The throwaway plugin below names its net ``painter`` and its one direction ``paint``; nothing in the
core knows either name, so a run, ``translate``, ``eval`` and ``export`` that work with it show the core
reads the declaration.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from PIL import Image

from ganforge import Direction
from tests.conftest import run_cli

PLUGIN = textwrap.dedent(
    '''
    import torch
    from torch import nn

    import ganforge
    from ganforge import Direction, Params, TrainingModel, component_field


    class TintParams(Params):
        channels: int = 3


    def build_tint(params: TintParams) -> nn.Module:
        """A 1x1 convolution and tanh: the smallest generator there is."""
        return nn.Sequential(nn.Conv2d(params.channels, params.channels, 1), nn.Tanh())


    class PainterParams(Params):
        generator: ganforge.ComponentSpec = component_field("generator", "tint", "The painter.")


    class Painter(TrainingModel):
        def __init__(self, params: PainterParams, seed: int) -> None:
            super().__init__()
            self.p = params
            self.painter = params.generator.build()

        def directions(self):
            return [Direction("paint", "A", "B", "painter", self.p.generator)]

        def optimizer_groups(self):
            return {"painter": list(self.painter.parameters())}

        def train_step(self, batch, optimizers):
            loss = (self.painter(batch["A"]) - batch["B"]).abs().mean()
            optimizers.step("painter", loss)
            return {"l1": loss.detach()}

        @torch.no_grad()
        def sample_rows(self, batch):
            return [[("A", batch["A"]), ("painted", self.painter(batch["A"])), ("B", batch["B"])]]


    @ganforge.hookimpl
    def register_generators(register):
        register("tint", build_tint, params=TintParams)


    @ganforge.hookimpl
    def register_models(register):
        register("painter", lambda params, seed: Painter(params, seed), params=PainterParams)
    '''
)

RECIPE = textwrap.dedent(
    """
    name = "painter"
    plugins = ["painter_plugin.py"]

    [data]
    type = "synthetic_scenes"
    size = 16
    length = 2
    test_length = 2

    [model]
    type = "painter"

    [train]
    epochs = 1
    device = "cpu"

    [output]
    n_samples = 2

    [eval]
    metrics = ["l1", "psnr"]
    """
)


@pytest.fixture(scope="module")
def painter_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("painter")
    (folder / "painter_plugin.py").write_text(PLUGIN)
    (folder / "painter.toml").write_text(RECIPE)
    result = run_cli("run", "painter.toml", "--run-dir", "run", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_direction_is_named_in_the_models_own_spellings():
    d = Direction("AtoB", "A", "B", "G_A")
    assert d.key == "A2B"
    assert all(d.matches(text) for text in ("AtoB", "atob", "A2B", "a2b", "a-to-b", "A_to_B"))
    assert not any(d.matches(text) for text in ("BtoA", "b2a", "G_A", ""))


def test_translate_uses_the_declared_direction_and_net(painter_run):
    images = painter_run / "in"
    images.mkdir()
    Image.new("RGB", (20, 12), (200, 40, 40)).save(images / "red.png")
    default = run_cli("translate", "run", "in", "--out", "out", cwd=painter_run)
    assert default.returncode == 0, default.stderr
    assert "painter of latest.pt" in default.stdout
    assert Image.open(painter_run / "out" / "red.png").size == (20, 12)
    named = run_cli("translate", "run", "in", "--out", "out2", "--direction", "A2B", cwd=painter_run)
    assert named.returncode == 0, named.stderr
    assert (painter_run / "out2" / "red.png").read_bytes() == (painter_run / "out" / "red.png").read_bytes()
    wrong = run_cli("translate", "run", "in", "--out", "out3", "--direction", "BtoA", cwd=painter_run)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "error: --direction 'BtoA'; this model's directions: paint (A -> B)"
    assert not (painter_run / "out3").exists()


def test_eval_scores_under_the_directions_key(painter_run):
    result = run_cli("eval", "run", "--json", "eval.json", cwd=painter_run)
    assert result.returncode == 0, result.stderr
    report = json.loads((painter_run / "eval.json").read_text())
    assert set(report["scores"]) == {"A2B"} and set(report["scores"]["A2B"]) == {"l1", "psnr"}


def test_export_names_the_file_after_the_declared_net(painter_run):
    result = run_cli("export", "run", "--out", "exported", "--to", "safetensors", cwd=painter_run)
    assert result.returncode == 0, result.stderr
    path = painter_run / "exported" / "run_painter.safetensors"
    assert path.is_file()
    # the export carries the net's component spec, so it is rebuilt without the recipe
    again = run_cli(
        "translate", str(path), "in", "--out", "from_export", "--plugin", "painter_plugin.py", cwd=painter_run
    )
    assert again.returncode == 0, again.stderr
