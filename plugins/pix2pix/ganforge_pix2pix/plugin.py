"""The hooks through which pix2pix reaches ganforge (entry point ``pix2pix`` in group ``ganforge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ganforge import Params, hookimpl
from ganforge.hookspecs import ModelSourceRegister, Register, SourceRegister
from ganforge_pix2pix.facades import SyntheticFacades
from ganforge_pix2pix.model import Pix2PixParams, build_pix2pix
from ganforge_pix2pix.reference import FORMAT as REFERENCE_FORMAT
from ganforge_pix2pix.reference import load_reference_unet
from ganforge_pix2pix.sources import register_sources
from ganforge_pix2pix.zoo import register_models as register_zoo


class SyntheticFacadesParams(Params):
    size: int = Field(64, ge=16, le=1024, description="Image side in pixels.")
    length: int = Field(400, ge=1, le=10_000_000, description="Training pairs (one epoch).")
    test_length: int = Field(16, ge=1, le=10_000_000, description="Test pairs.")
    seed: int = Field(0, ge=0, description="Seed of the facades (independent of the run's seed).")


def build_synthetic_facades(params: SyntheticFacadesParams, split: str) -> SyntheticFacades:
    """Random building fronts: flat-coloured label map (A) and a lit rendering of it (B), paired."""
    return SyntheticFacades(
        size=params.size,
        length=params.length if split == "train" else params.test_length,
        seed=params.seed,
        split=split,
    )


@hookimpl
def register_models(register: Register) -> None:
    register("pix2pix", build_pix2pix, params=Pix2PixParams)


@hookimpl
def register_datasets(register: Register) -> None:
    register("synthetic_facades", build_synthetic_facades, params=SyntheticFacadesParams)


@hookimpl
def register_dataset_sources(register: SourceRegister) -> None:
    """The authors' paired archives (``ganforge fetch --list``)."""
    register_sources(register)


@hookimpl
def register_model_sources(register: ModelSourceRegister) -> None:
    """The authors' pretrained U-Nets, as ``pix2pix_<name>`` (``ganforge models list``)."""
    register_zoo(register)


@hookimpl
def load_generator_weights(
    path: Path, state: dict[str, Any], weights_format: str | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """U-Nets saved by the authors' implementation (``--format reference_unet``, or detected by key)."""
    if weights_format not in (None, REFERENCE_FORMAT):
        return None
    return load_reference_unet(state, str(path), named=weights_format == REFERENCE_FORMAT)
