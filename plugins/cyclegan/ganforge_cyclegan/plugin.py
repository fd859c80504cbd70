"""The hooks through which CycleGAN reaches ganforge (entry point ``cyclegan`` in group ``ganforge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganforge import hookimpl
from ganforge.errors import CheckpointError
from ganforge.hookspecs import ModelSourceRegister, Register, SourceRegister
from ganforge_cyclegan.any_resnet import FORMATS as RESNET_FORMATS
from ganforge_cyclegan.any_resnet import load_any_resnet
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
    """ResNet generators: the authors' files (``--format reference``, or detected by key) and any other
    CycleGAN-family layout, read from tensor shapes and order (``--format resnet``, or detected)."""
    if weights_format == REFERENCE_FORMAT:
        return load_reference_generator(state, str(path), named=True)
    if weights_format in RESNET_FORMATS:
        return load_any_resnet(state, str(path), weights_format)
    if weights_format is not None:
        return None
    try:  # the authors' keys first, exactly as before; a file that only looks like theirs gets a second try
        found = load_reference_generator(state, str(path), named=False)
    except CheckpointError as reference_error:
        try:
            found = load_any_resnet(state, str(path), None)
        except CheckpointError:
            found = None
        if found is None:
            raise reference_error from None
    return found if found is not None else load_any_resnet(state, str(path), None)
