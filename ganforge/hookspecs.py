"""Every hook a ganforge plugin can implement.

A plugin is a module (or any object) with functions named after these hooks, each marked with
``@ganforge.hookimpl``. Component hooks receive a ``register`` callback:

.. code-block:: python

    register(name, factory, params=ParamsModel, summary=None)

``name`` is what recipes write as ``type = "name"``; ``factory`` is called as ``factory(params, ...)``
with a validated instance of ``params`` (a :class:`ganforge.Params` subclass, ``extra="forbid"``);
``summary`` defaults to the first line of the factory's docstring. What else each kind's factory
receives, and what it returns, is stated on its hook below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pluggy

from ganforge.registry import KIND_TABLE

hookspec = pluggy.HookspecMarker("ganforge")
hookimpl = pluggy.HookimplMarker("ganforge")


class Register(Protocol):
    def __call__(self, name: str, factory: Any, *, params: Any = ..., summary: str | None = None) -> Any: ...


class SourceRegister(Protocol):
    def __call__(
        self,
        name: str,
        url: str,
        *,
        archive: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        summary: str = "",
        layout: str = "unpaired",
    ) -> Any: ...


# -------------------------------------------------------------------------------------------------
# Networks
# -------------------------------------------------------------------------------------------------


@hookspec
def register_generators(register: Register) -> None:
    """Register generator networks.

    Called once per plugin manager. Factory: ``factory(params) -> torch.nn.Module`` mapping an image
    batch ``(N, C_in, H, W)`` in [-1, 1] to ``(N, C_out, H, W)`` in [-1, 1].
    """


@hookspec
def register_discriminators(register: Register) -> None:
    """Register discriminator networks.

    Factory: ``factory(params) -> torch.nn.Module`` mapping ``(N, C, H, W)`` images to real/fake
    logits of any shape (a PatchGAN returns a map).
    """


# -------------------------------------------------------------------------------------------------
# Objectives and training machinery
# -------------------------------------------------------------------------------------------------


@hookspec
def register_losses(register: Register) -> None:
    """Register losses.

    Factory: ``factory(params) -> callable``; the loss is called as ``loss(prediction, target)``
    where ``target`` is a tensor of the prediction's shape or a float label (1.0 real, 0.0 fake
    for adversarial use), and returns a scalar tensor.
    """


@hookspec
def register_buffers(register: Register) -> None:
    """Register image buffers (history pools of generated images).

    Factory: ``factory(params, seed: int) -> torch.nn.Module`` with ``query(images) -> images``;
    anything it must keep across a resume lives in its ``state_dict`` (``get_extra_state``).
    """


@hookspec
def register_augments(register: Register) -> None:
    """Register augmentations applied inside a training step (DiffAugment, say).

    Factory: ``factory(params) -> torch.nn.Module`` mapping an image batch ``(N, C, H, W)`` in
    [-1, 1] to a batch of the same shape; differentiable (gradients reach the input), drawing its
    random numbers from torch's global generators (so the run's seed and a resume's RNG state
    decide them), with an ``enabled`` attribute that is ``False`` when it returns its input. Also
    called as ``augment(images, parts=(c1, c2, ...))`` when the channel axis holds several images of
    these channel counts side by side (a conditional pair): all of them get the same transform.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers.

    Factory: ``factory(params, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer``.
    """


@hookspec
def register_schedulers(register: Register) -> None:
    """Register learning-rate schedules, stepped once at the end of every epoch.

    Factory: ``factory(params, optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler``
    where ``epochs`` is the run's total number of epochs.
    """


class ModelSourceRegister(Protocol):
    def __call__(
        self,
        name: str,
        url: str,
        *,
        summary: str = "",
        translates: str = "",
        weights_format: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> Any: ...


# -------------------------------------------------------------------------------------------------
# Data, models, metrics
# -------------------------------------------------------------------------------------------------


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets.

    Factory: ``factory(params, split: str) -> torch.utils.data.Dataset`` for ``split`` "train" or
    "test"; items are dicts of ``(C, H, W)`` float tensors in [-1, 1] keyed by domain (``"A"``,
    ``"B"``). It raises :class:`ganforge.DatasetError` naming the path when data is missing.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register models: the training step of one kind of GAN.

    Factory: ``factory(params, seed: int) -> ganforge.TrainingModel`` (see
    :class:`ganforge.model.TrainingModel` for what the engine calls).
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    Factory: ``factory(params) -> object`` with ``update(real, fake)`` and ``compute() -> float``.
    """


@hookspec
def register_callbacks(register: Register) -> None:
    """Register callbacks: loggers, experiment trackers, anything that watches a run.

    Factory: ``factory(params) -> object`` with any of ``on_train_start(trainer)``,
    ``on_step_end(trainer, losses)`` (``losses`` is ``None`` between log steps), ``on_epoch_end(trainer,
    losses)`` and ``on_train_end(trainer)`` (see :class:`ganforge.engine.callbacks.Callback`). A recipe
    turns one on with a ``[[callbacks]]`` table (``type`` plus params). Files go through
    ``trainer.run_dir``, which writes nothing on ranks other than 0.
    """


# -------------------------------------------------------------------------------------------------
# Dataset sources (records, not components: recipes do not build them, ``ganforge fetch`` reads them)
# -------------------------------------------------------------------------------------------------


@hookspec
def register_dataset_sources(register: SourceRegister) -> None:
    """Register published dataset archives, so that ``ganforge fetch NAME`` can download them.

    Called whenever a command needs the list (``ganforge fetch``, ``ganforge fetch --list``), once per
    plugin manager, through :func:`ganforge.plugins.collect_dataset_sources`. Callback:
    ``register(name, url, *, archive=None, sha256=None, size=None, summary="", layout="unpaired")``
    where ``name`` is the folder the archive unpacks to (``ROOT/<name>``; letters, digits, ``_-.``),
    ``url`` an http(s) URL of one archive, ``archive`` its format (``"zip"``, ``"tar"``, ``"tar.gz"``,
    ``"tar.bz2"``, ``"tar.xz"``; by default read from the URL's ending), ``sha256`` (hex) and ``size``
    (bytes) what the download is checked against before anything is unpacked, ``summary`` one line for
    ``ganforge fetch --list``, and ``layout`` what the unpacked folder holds: ``"unpaired"``
    (``trainA/ trainB/ testA/ testB/``), ``"paired"`` (``train/ test/`` of A|B images), ``"images"``
    or ``"other"`` (see :mod:`ganforge.data.sources`). A name belongs to one plugin: registering one that
    another plugin registered is an error naming both; so is a bad field, naming the plugin.
    """


@hookspec
def register_model_sources(register: ModelSourceRegister) -> None:
    """Register published generator weight files (a pretrained zoo), so that ``ganforge models fetch
    NAME`` downloads one and ``ganforge translate NAME ...`` and ``ganforge export NAME`` load one by name.

    Called whenever a command needs the list, once per plugin manager, through
    :func:`ganforge.plugins.collect_model_sources`. Callback: ``register(name, url, *, summary="",
    translates="", weights_format=None, sha256=None, size=None)`` where ``name`` is what users type
    (letters, digits, ``_-.``; the cached file is ``<name><suffix>``), ``url`` an http(s) URL of one weight
    file ending in ``.pth``, ``.pt``, ``.safetensors`` or ``.onnx``, ``summary`` one line for ``ganforge
    models list``, ``translates`` what the generator does (``"photo -> Monet painting"``),
    ``weights_format`` the ``--format`` the file loads with (a format a plugin's
    ``load_generator_weights`` reads; ``None``: detected), and ``sha256`` (hex) and ``size`` (bytes)
    what the download is checked against. A name belongs to one plugin: registering one that another
    plugin registered is an error naming both; so is a bad field, naming the plugin.
    """


# -------------------------------------------------------------------------------------------------
# Execution
# -------------------------------------------------------------------------------------------------


@hookspec
def register_backends(register: Register) -> None:
    """Register backends: how built networks execute on a device (see :mod:`ganforge.backends`).

    Factory: ``factory(params) -> backend``, an object with ``name: str``, ``priority: int`` (``auto``
    takes the highest-priority backend that is available; torch's own ``direct`` has 0),
    ``available(device: torch.device, precision: str) -> bool | str`` (``True``, or why not: the
    ``precision`` is the run's ``"fp32"``, ``"bf16"`` or ``"fp16"``) and ``prepare(net: torch.nn.Module,
    device: torch.device, *, training: bool) -> str``, which replaces layers below ``net`` in their
    parents (:func:`ganforge.backends.replace_modules`) by layers holding the same parameters, so
    optimizers, state-dict keys and checkpoints do not change, and returns a one-line summary of what
    it replaced ("" for nothing). The engine calls ``prepare`` once per run, on the model's networks
    after they moved to the device and before ``torch.compile``; ``ganforge translate`` and ``export``
    call it with ``training=False``. Or a selector (``auto``): an object with
    ``choose(backends, device, precision) -> (backend, note)`` that picks one of the other registered
    backends (each built with its default params).
    """


# -------------------------------------------------------------------------------------------------
# Foreign weight files
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_generator_weights(
    path: Path, state: dict[str, Any], weights_format: str | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Recognise a generator weight file that ganforge did not write (another project's checkpoint).

    Called by ``ganforge translate`` and ``ganforge export`` (through
    :func:`ganforge.inference.load_generator`) for a file that holds tensors but no ganforge marker:
    a plain ``.pth`` state dict, or a safetensors file without ganforge metadata. ``state`` is what
    the file holds, already read safely (``torch.load(weights_only=True)`` or safetensors), so a
    plugin never opens ``path`` with anything that can run code; ``path`` is for messages.
    ``weights_format`` is the format the user named (``--format NAME``), or ``None`` for "detect".

    Return ``(generator_spec, state_dict)`` for a file the plugin understands: a generator section as
    a recipe would write it (``{"type": "resnet", "ngf": 64, ...}``, validated against the generator
    registry) and a state dict that loads into that generator with ``strict=True``. Return ``None``
    for a file, or a named format, that is not the plugin's. When the user named the plugin's format
    but the file does not fit it, raise :class:`ganforge.errors.CheckpointError` saying which keys did
    not fit. The first non-``None`` result wins (plugins loaded last are asked first).
    """


# -------------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------------


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the ``ganforge`` command line.

    ``app`` is the root :class:`typer.Typer`; add commands with ``@app.command()`` or groups with
    ``app.add_typer(...)``. Called once when the CLI starts, after plugins are loaded.
    """


#: The component hooks, by kind (the order ``list-components`` shows them in); from the kinds table.
COMPONENT_HOOKS: dict[str, str] = {kind.name: kind.hook for kind in KIND_TABLE}
