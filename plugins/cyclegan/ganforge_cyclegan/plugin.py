"""The hooks through which CycleGAN reaches ganforge (entry point ``cyclegan`` in group ``ganforge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganforge import hookimpl
from ganforge.hookspecs import ModelSourceRegister, Register, SourceRegister
from ganforge_cyclegan.model import CycleGANParams, build_cyclegan
from ganforge_cyclegan.pool import HistoryPoolParams, build_history_pool
from ganforge_cyclegan.reference import FORMAT as REFERENCE_FORMAT
from ganforge_cyclegan.reference import load_reference_generator
from ganforge_cyclegan.sources import register_sources
from ganforge_cyclegan.zoo import register_models as register_zoo


@hookimpl
def register_buffers(register: Register) -> None:
    register("history", build_history_pool, params=HistoryPoolParams)


@hookimpl
def register_models(register: Register) -> None:
    register("cyclegan", build_cyclegan, params=CycleGANParams)


@hookimpl
def register_dataset_sources(register: SourceRegister) -> None:
    """The authors' archives (``ganforge fetch --list``)."""
    register_sources(register)


@hookimpl
def register_model_sources(register: ModelSourceRegister) -> None:
    """The authors' pretrained generators (``ganforge models list``)."""
    register_zoo(register)


@hookimpl
def load_generator_weights(
    path: Path, state: dict[str, Any], weights_format: str | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Generators saved by the authors' implementation (``--format reference``, or detected by key)."""
    if weights_format not in (None, REFERENCE_FORMAT):
        return None
    return load_reference_generator(state, str(path), named=weights_format == REFERENCE_FORMAT)
