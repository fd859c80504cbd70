"""Checkpoints: one file holds everything a run needs to go on.

Nets and image pools (the model's ``state_dict``), optimizer and schedule states, the RNG states,
the epoch and step counters, the resolved recipe and the ganforge version. Files are read with
``torch.load(weights_only=True)``, so loading never runs code from the file.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from ganforge._version import __version__
from ganforge.errors import CheckpointError

FORMAT = "ganforge.checkpoint"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """The global random states (the data order needs none: it is a function of seed and position)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a ganforge checkpoint safely; a foreign or damaged file gets a :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        markers = ("unsupported global", "global ")  # a reference to a function or class to call
        lines = [line.strip() for line in text.splitlines() if any(m in line.lower() for m in markers)]
        if not lines:  # no payload, just bytes that are no checkpoint
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?)") from None
        first = lines[0]
        raise CheckpointError(
            f"{path}: refused: the file holds objects that loading would have to execute ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?): {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ganforge checkpoint (no '{FORMAT}' marker)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {data.get('format_version')} written by ganforge "
            f"{data.get('ganforge_version')}; this ganforge ({__version__}) reads format {FORMAT_VERSION}"
        )
    return data
