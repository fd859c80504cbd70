"""A model's double_backward_nets(): the runtime leaves those nets to torch's own layers, uncompiled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.engine.runtime import Runtime
from ganforge.errors import GanforgeError
from ganforge.model import TrainingModel


class Recording:
    """A backend that notes the modules it was asked to prepare."""

    name = "recording"
    priority = 1

    def __init__(self) -> None:
        self.seen: list[nn.Module] = []

    def available(self, device: torch.device, precision: str) -> bool:
        return True

    def prepare(self, net: nn.Module, device: torch.device, *, training: bool) -> str:
        self.seen.extend(net.modules())
        return "prepared"


class Painter(TrainingModel):
    def __init__(self, penalised: list[str]) -> None:
        super().__init__()
        self.painter = nn.Conv2d(3, 3, 1)
        self.critic = nn.Conv2d(3, 1, 1)
        self.penalised = penalised

    def double_backward_nets(self) -> list[str]:
        return self.penalised


def test_the_base_class_names_none() -> None:
    assert TrainingModel().double_backward_nets() == []


@pytest.mark.parametrize("penalised", [[], ["critic"]])
def test_backend_and_compile_skip_the_named_nets(penalised: list[str]) -> None:
    model = Painter(penalised)
    backend = Recording()
    runtime = Runtime(torch.device("cpu"), backend=backend, compile=True)
    runtime.prepare_model(model, model.networks())
    assert (model.critic in backend.seen) == (not penalised)
    assert model.painter in backend.seen
    assert (model.critic._compiled_call_impl is None) == bool(penalised)  # nn.Module.compile sets it
    assert model.painter._compiled_call_impl is not None
    described = runtime.describe_backend()
    assert ("critic unchanged for double backward" in described) == bool(penalised), described


def test_a_name_that_is_no_network_is_an_error() -> None:
    model = Painter(["judge"])
    with pytest.raises(
        GanforgeError,
        match=r"double_backward_nets\(\) names judge, not among its networks \(painter, critic\)",
    ):
        Runtime(torch.device("cpu")).prepare_model(model, model.networks())
