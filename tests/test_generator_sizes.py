"""A generator that needs sides of a multiple of N (``size_multiple``, as a U-Net has) runs on any size:
translate, tiled translation and evaluation pad its input by reflection and crop the output back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ganforge.evaluation import translators_of
from ganforge.inference import Generator, Tiling, input_multiple, translate_batch, translate_tiled
from ganforge.model import Direction, TrainingModel, pad_to_multiple, run_padded, size_multiple


class Strict(nn.Module):
    """Refuses any input whose sides are not multiples of ``size_multiple``; shifts values by 0.5 and
    records the shapes it saw."""

    def __init__(self, multiple: int) -> None:
        super().__init__()
        self.size_multiple = multiple
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"{h}x{w} is not a multiple of {self.size_multiple}")
        self.seen.append((h, w))
        return x * 0.5


def test_size_multiple_is_read_from_the_attribute_and_defaults_to_one():
    assert size_multiple(Strict(32)) == 32
    assert size_multiple(nn.Identity()) == 1
    assert size_multiple(None) == 1
    assert input_multiple(Strict(32)) == 32 and input_multiple(Strict(6)) == 12  # also a multiple of 4
    assert input_multiple(nn.Identity()) == 4


def test_run_padded_reflects_to_the_multiple_and_crops_back():
    net = Strict(16)
    x = torch.arange(2 * 3 * 20 * 9, dtype=torch.float32).reshape(2, 3, 20, 9)
    out = run_padded(net, x)
    assert net.seen == [(32, 16)]
    assert out.shape == x.shape and torch.equal(out, x * 0.5)
    padded = pad_to_multiple(x, 16)  # reflection: row 20 mirrors row 18, column 9 mirrors column 7
    assert torch.equal(padded[..., 20, :9], x[..., 18, :]) and torch.equal(padded[..., :20, 9], x[..., :, 7])
    net.seen.clear()
    assert run_padded(net, torch.zeros(1, 3, 32, 16)).shape == (1, 3, 32, 16)
    assert net.seen == [(32, 16)]  # already a multiple: no padding


def test_translate_batch_pads_a_loaded_generator_to_its_module_multiple():
    module = Strict(32)
    generator = Generator(module, "checkpoint", Path("g.pt"), torch.device("cpu"), module)
    assert generator.size_multiple == 32
    x = torch.rand(1, 3, 50, 70) * 2 - 1
    out = translate_batch(generator, x)
    assert module.seen == [(64, 96)]
    assert torch.equal(out, x * 0.5)


def test_tiled_translation_pads_each_tile_and_the_statistics_view():
    module = Strict(32)
    generator = Generator(module, "checkpoint", Path("g.pt"), torch.device("cpu"), module)
    image = torch.randint(0, 256, (3, 90, 130), dtype=torch.uint8)
    out = translate_tiled(generator, image, Tiling(tile=48, overlap=8, above=64))
    assert out.shape == image.shape
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in module.seen)


class OneWay(TrainingModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = Strict(16)

    def directions(self) -> list[Direction]:
        return [Direction("forward", "A", "B", "net")]


def test_evaluation_runs_the_declared_net_padded():
    (translator,) = translators_of(OneWay())
    x = torch.rand(3, 3, 24, 40)
    assert torch.equal(translator.net(x), x * 0.5)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        OneWay().net(x)  # what evaluation would have hit without the padding
