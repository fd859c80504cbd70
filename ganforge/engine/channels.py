"""Channel counts and sides: does the data have as many channels as the networks take, and sides
they can take?

A recipe can ask for 1-channel (greyscale) or 3-channel images (the built-in datasets'
``a_channels``/``b_channels``/``channels``) and build networks for either (their ``in_channels``/
``out_channels``). When the two disagree, :func:`check_channels` says so before training starts, for
every translation direction the model declares, and :func:`channel_error` turns the convolution's
error of any other net (a discriminator, say) into one line naming the recipe fields. Nothing here
knows a model: the fields are found by walking the recipe's model params.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ganforge.errors import RecipeError

_CONVOLUTIONS = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")

#: torch's message for a convolution given the wrong number of input channels.
_CONV_ERROR = re.compile(
    r"weight of size \[([\d, ]+)\], expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels"
)


def input_channels(module: nn.Module) -> int | None:
    """The channels ``module`` takes: those of its first convolution's weight, or None without one.

    Works on plain and TorchScript modules (whose submodules keep their class name as
    ``original_name``). A convolution's weight is ``(out, in / groups, ...)``, a transposed one's
    ``(in, out / groups, ...)``.
    """
    for sub in module.modules():
        kind = getattr(sub, "original_name", None) or type(sub).__name__
        weight = getattr(sub, "weight", None)
        if kind in _CONVOLUTIONS and isinstance(weight, torch.Tensor) and weight.dim() >= 3:
            if kind.startswith("ConvTranspose"):
                return int(weight.shape[0])
            return int(weight.shape[1]) * int(getattr(sub, "groups", 1))
    return None


def _params(spec: Any) -> Any:
    try:
        return spec.params
    except (AttributeError, RuntimeError):
        return None


def _channel_fields(recipe: Any) -> Iterator[tuple[str, int]]:
    """``("data.a_channels", 1)``, ``("model.generator.in_channels", 3)``, ...: every channel field."""
    data = _params(recipe.data)
    for name in type(data).model_fields if data is not None else ():
        if name.endswith("channels"):
            yield f"data.{name}", getattr(data, name)
    model = _params(recipe.model)
    for name in type(model).model_fields if model is not None else ():
        params = _params(getattr(model, name))
        for field in ("in_channels", "out_channels"):
            if params is not None and isinstance(getattr(params, field, None), int):
                yield f"model.{name}.{field}", getattr(params, field)


def _data_field(recipe: Any, domain: str) -> str:
    """The recipe field giving the channels of ``domain``'s images (``data.a_channels``)."""
    data = _params(recipe.data)
    for name in (f"{domain.lower()}_channels", "channels"):
        if data is not None and name in type(data).model_fields:
            return f"data.{name}"
    return f"the data's {domain} images"


def _spec_field(recipe: Any, spec: Any) -> str | None:
    """The recipe field (``model.generator``) holding the component ``spec``, if one does."""
    model = _params(recipe.model)
    if model is None or spec is None:
        return None
    for name in type(model).model_fields:
        if getattr(model, name) is spec:
            return f"model.{name}"
    for name in type(model).model_fields:
        if getattr(model, name) == spec:
            return f"model.{name}"
    return None


def check_channels(model: Any, recipe: Any, batch: Mapping[str, torch.Tensor]) -> None:
    """Each translation direction's net takes as many channels as its source images have and (if its
    spec says, by ``out_channels``) makes as many as its target images have; else a :class:`RecipeError`."""
    for direction in model.directions():
        net = getattr(model, direction.net, None)
        source, target = batch.get(direction.source), batch.get(direction.target)
        field = _spec_field(recipe, direction.generator)
        where = f"net '{direction.net}', direction {direction.name}: {direction.source} -> {direction.target}"
        if isinstance(net, nn.Module) and isinstance(source, torch.Tensor):
            takes, have = input_channels(net), int(source.shape[1])
            if takes is not None and takes != have:
                named = f"{field}.in_channels" if field else f"the input of {where}"
                raise RecipeError(
                    f"{_data_field(recipe, direction.source)} is {have} but {named} is {takes} "
                    f"({where}): set them to the same number of channels"
                )
        makes = getattr(_params(direction.generator), "out_channels", None)
        if isinstance(makes, int) and isinstance(target, torch.Tensor) and makes != int(target.shape[1]):
            have = int(target.shape[1])
            named = f"{field}.out_channels" if field else f"the output of {where}"
            raise RecipeError(
                f"{_data_field(recipe, direction.target)} is {have} but {named} is {makes} "
                f"({where}): set them to the same number of channels"
            )


def _size_fields(recipe: Any) -> str:
    """``data.crop_size = 256, data.size = 286``: the data fields that set the training images' sides."""
    data = _params(recipe.data)
    names = (
        [n for n in type(data).model_fields if n.endswith("size") and n != "batch_size"]
        if data is not None
        else []
    )
    return ", ".join(f"data.{n} = {getattr(data, n)}" for n in names) or "the data's image size"


def check_sizes(model: Any, recipe: Any, batch: Mapping[str, torch.Tensor]) -> None:
    """Each translation direction's net that declares a ``size_multiple`` (a U-Net's ``2**num_downs``)
    gets source images whose sides are multiples of it; else a :class:`RecipeError` naming the data's size
    fields. Inference pads to the multiple, but training uses the images as they come."""
    for direction in model.directions():
        net = getattr(model, direction.net, None)
        source = batch.get(direction.source)
        multiple = getattr(net, "size_multiple", None)
        if not isinstance(multiple, int) or multiple <= 1 or not isinstance(source, torch.Tensor):
            continue
        height, width = int(source.shape[-2]), int(source.shape[-1])
        if height % multiple or width % multiple:
            field = _spec_field(recipe, direction.generator) or f"net '{direction.net}'"
            raise RecipeError(
                f"{field} needs image sides that are multiples of {multiple} but the data gives "
                f"{height}x{width} ({_size_fields(recipe)}): make the (crop) size a multiple of {multiple}, "
                "or use a generator with fewer down-sampling levels"
            )


def channel_error(exc: BaseException, model: Any, recipe: Any) -> RecipeError | None:
    """A convolution given the wrong number of channels, as one line naming the recipe's channel
    fields and the net that failed; None for any other error."""
    match = _CONV_ERROR.search(str(exc))
    if match is None:
        return None
    shape = [int(v) for v in match.group(1).split(",")]
    expected, got = match.group(2), match.group(3)
    nets = [
        name
        for name, net in model.networks().items()
        if any(list(p.shape) == shape for p in net.parameters())
    ]
    where = f"net {', '.join(nets)}" if nets else "a net"
    fields = ", ".join(f"{name} = {value}" for name, value in _channel_fields(recipe))
    return RecipeError(
        f"{where} (a layer of weight {shape}) takes {expected} channels but was given {got}: the data's and "
        f"the networks' channel counts disagree ({fields or 'no channel fields found'}); set them to match"
    )
