"""The Python API (``ganforge.train / load / translate / evaluate / export``) and callbacks that
come from plugins, as a user calls them: real training, real files."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from PIL import Image

import ganforge
from ganforge.engine.callbacks import Callback
from tests.conftest import RECIPES, ROOT, TINY_RUN, run_cli

TINY = [*TINY_RUN, "model.generator.n_blocks=1", "model.generator.ngf=4"]


class OnlyEpochs:  # a callback need not subclass Callback, nor define all four methods
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self, trainer, losses) -> None:
        self.epochs.append(trainer.epoch)


class Counting(Callback):
    def __init__(self) -> None:
        self.steps = 0
        self.epochs: list[int] = []

    def on_step_end(self, trainer, losses) -> None:
        self.steps += 1

    def on_epoch_end(self, trainer, losses) -> None:
        self.epochs.append(trainer.epoch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    counting, only = Counting(), OnlyEpochs()
    run = ganforge.train(
        RECIPES / "quickstart.toml", overrides=TINY, run_dir=folder / "run", callbacks=[counting, only]
    )
    assert only.epochs == [1]
    return folder, run, counting


def test_train_returns_the_run_and_calls_the_callbacks(trained):
    folder, run, counting = trained
    assert run.path == folder / "run" and (run.path / "checkpoints" / "latest.pt").is_file()
    assert counting.steps == 2 and counting.epochs == [1]
    assert set(run.losses) >= {"D_A", "D_B"} and run.recipe.train.epochs == 1


def test_load_translate_evaluate_export(trained):
    folder, run, _ = trained
    images = folder / "in"
    images.mkdir()
    Image.new("RGB", (36, 28), (30, 120, 200)).save(images / "blue.png")
    generator = ganforge.load(run.path, direction="BtoA")
    assert generator.net == "G_B"
    report = ganforge.translate(generator, images, folder / "out")
    assert report.translated == 1 and Image.open(folder / "out" / "blue.png").size == (36, 28)
    with pytest.raises(ganforge.GanforgeError, match="exists"):
        ganforge.translate(generator, images, folder / "out")
    scores = ganforge.evaluate(run.path, metrics=["l1"], device="cpu")
    assert set(scores.scores) == {"A2B", "B2A"}
    (exported,) = ganforge.export(generator, folder / "exported", to=["safetensors"], name="g")
    (named,) = ganforge.export(generator, folder / "exported", to=["torchscript"])
    assert named.path.name == "run_G_B.torchscript.pt"  # the run directory's name and the net, as the CLI
    assert exported.path.name == "g.safetensors" and exported.max_abs_diff < 1e-5  # auto backend: fp32 rounding


def test_a_plugin_callback_is_built_from_the_recipe(tmp_path):
    (tmp_path / "tracker.py").write_text(
        textwrap.dedent(
            '''
            import json
            import ganforge
            from pydantic import Field


            class TrackerParams(ganforge.Params):
                file: str = Field("tracked.jsonl", description="Where to append one line per epoch.")


            class Tracker:  # only the methods it needs
                def __init__(self, params):
                    self.params = params

                def on_epoch_end(self, trainer, losses):
                    with open(self.params.file, "a") as f:
                        f.write(json.dumps({"epoch": trainer.epoch, "losses": sorted(losses)}) + "\\n")


            @ganforge.hookimpl
            def register_callbacks(register):
                register("tracker", Tracker, params=TrackerParams)
            '''
        )
    )
    args = ["run", str(RECIPES / "quickstart.toml"), "--run-dir", "run"]
    for item in [*TINY, 'plugins=["tracker.py"]', "train.epochs=2", 'callbacks=[{type = "tracker"}, {type = "epoch_table"}]']:
        args += ["--set", item]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "tracked.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and "D_A" in lines[0]["losses"]
    table = (tmp_path / "run" / "epochs.csv").read_text().splitlines()
    assert table[0].startswith("epoch,step,time,lr_G,lr_D,") and [r.split(",")[0] for r in table[1:]] == ["1", "2"]
    wrong = run_cli(*args[:4], "--set", 'plugins=["tracker.py"]', "--set", 'callbacks=[{type = "trackr"}]', cwd=tmp_path)
    assert wrong.returncode == 2
    assert "callbacks[0].type: unknown callback 'trackr' (did you mean 'tracker'?)" in wrong.stderr


def test_the_readmes_first_python_snippet_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)\n```", readme, re.DOTALL)
    assert snippet is not None, "the README has no Python example"
    code = snippet.group(1).replace("recipes/quickstart.toml", str(RECIPES / "quickstart.toml"))
    result = run_cli("-c", code, cwd=tmp_path, module=False)
    assert result.returncode == 0, result.stderr
