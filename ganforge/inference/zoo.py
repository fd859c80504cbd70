"""Generators by name: a registered pretrained model stands for its file in the model cache.

Where a command takes a generator source (``ganforge translate SOURCE``, ``ganforge export SOURCE``,
:func:`ganforge.api.translate`), :func:`resolve_source` turns a bare name that a plugin registers with
``register_model_sources`` (and that is not an existing path) into the cached file, downloading it
first when it is not cached (:func:`ganforge.data.fetch.fetch_model`). An existing file or folder of
that name always wins. An ``hf://owner/repo[@revision][/path]`` string is a file or repository on the
Hugging Face Hub, resolved through huggingface_hub's cache (:mod:`ganforge.inference.hub`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ganforge.data.fetch import FetchedModel, fetch_model, resolve_model
from ganforge.data.sources import ModelSource, ModelSources
from ganforge.inference.hub import HfSource, download, is_hf_source, parse_hf
from ganforge.plugins import collect_model_sources, make_plugin_manager


@dataclass(frozen=True)
class Resolved:
    """A generator source after name resolution."""

    path: Path
    model: ModelSource | None = None  # the registered model the name stood for
    fetched: FetchedModel | None = None
    hub: HfSource | None = None  # the hf:// source it came from

    @property
    def weights_format(self) -> str | None:
        """The ``--format`` the model's plugin registered for it (None: detect)."""
        return self.model.weights_format if self.model is not None else None


def is_bare_name(source: str | Path) -> bool:
    """A name without a folder part or a file suffix: what a registered model name looks like."""
    text = str(source)
    return bool(text) and "/" not in text and "\\" not in text and not Path(text).suffix


def model_sources(plugins: Sequence[str] = ()) -> ModelSources:
    """Every plugin's model sources (``plugins``: extra plugin modules or files)."""
    return collect_model_sources(make_plugin_manager(list(plugins), source="--plugin"))


def resolve_source(
    source: str | Path, plugins: Sequence[str] = (), console: Console | None = None
) -> Resolved:
    """``source`` as a path, the cached file of the registered model it names (fetched if need be), or
    the cached file or snapshot folder of an ``hf://`` source (downloaded if need be)."""
    if is_hf_source(source):
        hub = parse_hf(str(source))
        return Resolved(download(hub), hub=hub)
    path = Path(source)
    if path.exists() or not is_bare_name(source):
        return Resolved(path)
    sources = model_sources(plugins)
    if str(source) not in sources:
        return Resolved(path)
    model = resolve_model(str(source), sources)
    fetched = fetch_model(model, console=console or Console(stderr=True))
    return Resolved(fetched.path, model, fetched)
