"""ResNet generators saved by any CycleGAN-family implementation, read from tensor shapes and order.

Re-implementations of the CycleGAN generator name their layers as they like (``blocks.0.conv1``,
``res.3.block.1``, ``up.0``, no ``model.`` container, a ``module.`` prefix from ``DataParallel``),
but they all save the same sequence of tensors: the 7x7 stem convolution, two 3x3 stride-2
down-sampling convolutions, pairs of 3x3 convolutions that keep the channels (the residual blocks),
two up-sampling layers that halve the channels, and the final 7x7 convolution, each but the last
followed by the 1-d tensors of its norm layer. This module walks a state dict in that order and
classifies each layer by its shapes alone:

- a 4-d ``(out, in, 7, 7)`` weight first: the stem (``ngf = out``, ``in_channels = in``);
- ``(2c, c, 3, 3)`` after the stem: a down-sampling convolution (two of them);
- ``(c, c, 3, 3)`` in pairs: a residual block;
- ``(c, c/2, 3, 3)``: a transposed convolution (PyTorch stores those as ``(in, out, k, k)``);
  ``(c/2, c, 3, 3)``: a resize-convolution (nearest-neighbour 2x, then a convolution);
- ``(out, ngf, 7, 7)``: the final convolution;
- 1-d tensors of a layer's output channels after it: its norm (``weight``/``bias``: a learned scale
  and shift; ``running_mean``/``running_var``/``num_batches_tracked``: batch norm, or instance norm
  that tracked statistics, which CycleGAN-family code never used at inference and which are dropped).

Only PyTorch's own parameter names (``weight``, ``bias``, ``running_mean``, ...) are read from the
keys; the module path before them only groups a layer's tensors. The result is the core ``resnet``
generator spec and a state dict in its key names, checked shape by shape. A file that does not fit
gets one line saying what was recognised and where recognition stopped.

The norm is not always visible in the tensors. No norm tensors at all: plain instance norm (the
paper's), unless the user names ``--format resnet-none``. Running statistics together with a scale
and shift: batch norm when the convolutions before them have no bias (the usual pairing), otherwise
ambiguous, and the user names ``--format resnet-batch`` or ``--format resnet-instance``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganforge.builtins.networks import ResnetGenerator
from ganforge.errors import CheckpointError

#: ``--format`` names: the norm each one fixes (``None``: inferred).
FORMATS: dict[str, str | None] = {
    "resnet": None,
    "resnet-instance": "instance",
    "resnet-batch": "batch",
    "resnet-none": "none",
}

_STATS = ("running_mean", "running_var", "num_batches_tracked")
_NORM_ROLES = ("weight", "bias", *_STATS)


@dataclass
class _Layer:
    """The tensors of one module, in file order: ``role`` (``weight``, ``bias``, ...) -> (key, tensor)."""

    prefix: str
    tensors: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def weight(self) -> torch.Tensor | None:
        return self.tensors.get("weight", ("", None))[1]

    def key(self, role: str = "weight") -> str:
        return self.tensors[role][0] if role in self.tensors else f"{self.prefix}.{role}"

    def shown(self) -> str:
        role = "weight" if "weight" in self.tensors else next(iter(self.tensors))
        key, tensor = self.tensors[role]
        return f"'{key}' {tuple(tensor.shape)}"

    def is_conv(self) -> bool:
        w = self.weight
        return w is not None and w.dim() == 4 and set(self.tensors) <= {"weight", "bias"}

    def is_norm(self, channels: int) -> bool:
        if not self.tensors or not set(self.tensors) <= set(_NORM_ROLES):
            return False
        return all(
            (t.dim() == 1 and t.shape[0] == channels) or (role == "num_batches_tracked" and t.dim() == 0)
            for role, (_, t) in self.tensors.items()
        )


@dataclass
class _Site:
    """A convolution and the norm layer after it (``None``: no norm tensors)."""

    conv: _Layer
    norm: _Layer | None
    transposed: bool = False

    @property
    def out_channels(self) -> int:
        w = self.conv.weight
        return int(w.shape[1] if self.transposed else w.shape[0])


class _Stop(Exception):
    """Recognition stopped: ``what`` is the rest of the one-line error."""

    def __init__(self, what: str, recognised: list[str], strong: bool) -> None:
        super().__init__(what)
        self.what = what
        self.recognised = list(recognised)
        self.strong = strong  # stem and both down-samplings were recognised: surely a ResNet generator


def _layers(state: Mapping[str, Any]) -> list[_Layer]:
    """Tensors grouped by module, in order; a common ``module.`` prefix (DataParallel) removed."""
    items = [(k, v) for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)]
    if items and all(k.startswith("module.") for k, _ in items):
        items = [(k.removeprefix("module."), v) for k, v in items]
    layers: list[_Layer] = []
    for key, tensor in items:
        prefix, _, role = key.rpartition(".")
        if not layers or layers[-1].prefix != prefix or role in layers[-1].tensors:
            layers.append(_Layer(prefix))
        layers[-1].tensors[role] = (key, tensor)
    return layers


def _natural(key: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in key.split(".")]


class _Walk:
    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self.i = 0
        self.recognised: list[str] = []
        self.strong = False

    def peek(self) -> _Layer | None:
        return self.layers[self.i] if self.i < len(self.layers) else None

    def stop(self, expected: str) -> _Stop:
        layer = self.peek()
        then = f"{layer.shown()} not recognised" if layer else "the file ends"
        return _Stop(f"{then} (expected {expected})", self.recognised, self.strong)

    def conv(self, shape: tuple[int, int, int, int] | None, expected: str) -> _Layer:
        layer = self.peek()
        if layer is None or not layer.is_conv() or (shape and tuple(layer.weight.shape) != shape):
            raise self.stop(expected)
        self.i += 1
        return layer

    def norm(self, channels: int) -> _Layer | None:
        layer = self.peek()
        if layer is not None and layer.is_norm(channels):
            self.i += 1
            return layer
        return None


@dataclass
class _Parsed:
    in_channels: int
    out_channels: int
    ngf: int
    n_blocks: int
    upsample: str
    sites: list[_Site]  # every convolution before the final one, in order
    final: _Layer


def _walk(layers: list[_Layer]) -> _Parsed:
    walk = _Walk(layers)
    first = walk.peek()
    if first is None or not first.is_conv() or tuple(first.weight.shape[2:]) != (7, 7):
        raise walk.stop("a 7x7 stem convolution")
    stem = walk.conv(None, "a 7x7 stem convolution")
    ngf, in_channels = int(stem.weight.shape[0]), int(stem.weight.shape[1])
    sites = [_Site(stem, walk.norm(ngf))]
    walk.recognised.append(f"stem 7x7 {in_channels}->{ngf}")
    c = ngf
    for n in (1, 2):
        conv = walk.conv((2 * c, c, 3, 3), f"down-sampling convolution {n} of 2, shape {(2 * c, c, 3, 3)}")
        c *= 2
        sites.append(_Site(conv, walk.norm(c)))
        walk.recognised[1:] = [f"{n} down"]
    walk.strong = True
    blocks = 0
    block_shape = (c, c, 3, 3)
    while (layer := walk.peek()) is not None and layer.is_conv() and tuple(layer.weight.shape) == block_shape:
        first_conv = walk.conv(block_shape, "")
        sites.append(_Site(first_conv, walk.norm(c)))
        second = walk.conv(block_shape, f"the second 3x3 convolution of residual block {blocks + 1}")
        sites.append(_Site(second, walk.norm(c)))
        blocks += 1
        walk.recognised[2:] = [f"{blocks} residual block{'s' if blocks != 1 else ''}"]
    if blocks == 0:
        walk.recognised.append("0 residual blocks")
    kinds = []
    for n in (1, 2):
        layer = walk.peek()
        half = c // 2
        expected = (
            f"up-sampling layer {n} of 2: transposed {(c, half, 3, 3)} or resize-conv {(half, c, 3, 3)}"
        )
        if layer is None or not layer.is_conv() or c % 2:
            raise walk.stop(expected)
        shape = tuple(layer.weight.shape)
        if shape == (c, half, 3, 3) and (not kinds or kinds[0] == "transpose"):
            kinds.append("transpose")
        elif shape == (half, c, 3, 3) and (not kinds or kinds[0] == "resize_conv"):
            kinds.append("resize_conv")
        else:
            raise walk.stop(expected if not kinds else f"a second {_UP_NAMES[kinds[0]]} up-sampling layer")
        walk.i += 1
        c = half
        sites.append(_Site(layer, walk.norm(c), transposed=kinds[-1] == "transpose"))
        walk.recognised[3:] = [f"{n} {_UP_NAMES[kinds[0]]} up"]
    layer = walk.peek()
    if layer is None or not layer.is_conv() or tuple(layer.weight.shape[1:]) != (c, 7, 7):
        raise walk.stop(f"the final 7x7 convolution from {c} channels")
    final = walk.conv(None, "")
    out_channels = int(final.weight.shape[0])
    walk.recognised.append(f"final 7x7 {c}->{out_channels}")
    if walk.peek() is not None:
        raise walk.stop("nothing after the final convolution")
    return _Parsed(in_channels, out_channels, ngf, blocks, kinds[0], sites, final)


_UP_NAMES = {"transpose": "transposed", "resize_conv": "resize-conv"}


def _norm_of(parsed: _Parsed, named: str | None, source: str) -> tuple[str, bool]:
    """``(norm, norm_affine)`` the norm layers' tensors show, or that ``named`` fixes."""
    kinds = set()
    for site in parsed.sites:
        roles = set(site.norm.tensors) if site.norm else set()
        affine = {"weight", "bias"} <= roles
        if roles & {"weight", "bias"} and not affine:
            raise CheckpointError(
                f"{source}: norm layer {site.norm.prefix!r} has {', '.join(sorted(roles))}: "
                "a scale without a shift (or the reverse), which no norm of the resnet generator has"
            )
        kinds.add((affine, "running_mean" in roles and "running_var" in roles))
    if len(kinds) > 1:
        raise CheckpointError(
            f"{source}: the norm layers differ (some with a learned scale and shift or running "
            "statistics, some without); the resnet generator has one norm throughout"
        )
    affine, stats = kinds.pop()
    biased = any("bias" in site.conv.tensors for site in parsed.sites)
    if named == "none":
        if affine or stats:
            raise CheckpointError(f"{source}: --format resnet-none, but the file holds norm layers")
        return "none", False
    if named == "batch":
        if not stats:
            raise CheckpointError(
                f"{source}: --format resnet-batch, but the norm layers hold no running_mean/running_var"
            )
        return "batch", affine
    if named == "instance" or not stats or not affine:
        return "instance", affine  # running statistics without a scale and shift: legacy instance norm
    if not biased:
        return "batch", affine
    raise CheckpointError(
        f"{source}: {_summary(parsed)}; its norm layers hold running statistics and a learned scale and "
        "shift after convolutions with a bias: batch norm, or instance norm that tracked statistics? "
        "name it with --format resnet-batch or --format resnet-instance"
    )


def _summary(parsed: _Parsed) -> str:
    return (
        f"stem 7x7 {parsed.in_channels}->{parsed.ngf}, 2 down, {parsed.n_blocks} residual blocks, "
        f"2 {_UP_NAMES[parsed.upsample]} up, final 7x7 {parsed.ngf}->{parsed.out_channels}"
    )


def _map(parsed: _Parsed, spec: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The file's tensors under the core network's keys, shape by shape; loaded strictly to check."""
    with torch.device("meta"):  # shapes only, no memory, no initialisation cost
        net = ResnetGenerator(
            spec["in_channels"],
            spec["out_channels"],
            spec["ngf"],
            spec["n_blocks"],
            spec["upsample"],
            spec["norm_affine"],
            spec["norm"],
        )
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    norms = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    sites = [*parsed.sites, _Site(parsed.final, None)]
    if len(convs) != len(sites) or (norms and len(norms) != len(parsed.sites)):
        raise CheckpointError(f"{source}: {_summary(parsed)}, but the resnet generator's layers differ")
    out: dict[str, torch.Tensor] = {}
    for index, ((name, conv), site) in enumerate(zip(convs, sites, strict=True)):
        weight = site.conv.weight
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise CheckpointError(
                f"{source}: {site.conv.key()} {tuple(weight.shape)} does not fit {name}.weight "
                f"{tuple(conv.weight.shape)}"
            )
        out[f"{name}.weight"] = weight
        bias = site.conv.tensors.get("bias", ("", None))[1]
        if conv.bias is not None:
            out[f"{name}.bias"] = (
                bias if bias is not None else torch.zeros(conv.bias.shape, dtype=weight.dtype)
            )
        if index < len(norms):
            norm_name, norm = norms[index]
            roles = {role: t for role, (_, t) in (site.norm.tensors.items() if site.norm else ())}
            if norm.affine:
                out[f"{norm_name}.weight"] = roles["weight"]
                out[f"{norm_name}.bias"] = roles["bias"]
            if norm.track_running_stats:
                mean = roles["running_mean"]
                if conv.bias is None and bias is not None:
                    mean = mean - bias  # batch norm removes a constant: fold the bias into its mean
                out[f"{norm_name}.running_mean"] = mean
                out[f"{norm_name}.running_var"] = roles["running_var"]
                out[f"{norm_name}.num_batches_tracked"] = roles.get(
                    "num_batches_tracked", torch.tensor(0, dtype=torch.long)
                )
    try:
        net.load_state_dict(out, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{source}: {_summary(parsed)}, but: {' '.join(first[1:2] or first)}") from None
    return out


def _parse(state: Mapping[str, Any]) -> _Parsed:
    """The walk in file order; if that fails, in natural key order (safetensors files sort their keys)."""
    layers = _layers(state)
    try:
        return _walk(layers)
    except _Stop as first:
        keys = sorted((k for k in state if isinstance(k, str) and torch.is_tensor(state[k])), key=_natural)
        if keys == [k for k in state if isinstance(k, str) and torch.is_tensor(state[k])]:
            raise
        try:
            return _walk(_layers({k: state[k] for k in keys}))
        except _Stop:
            raise first from None


def load_any_resnet(
    state: Mapping[str, Any], source: str, weights_format: str | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(spec, state_dict)`` for a ResNet generator in any layout; ``None`` if it is not one (and
    ``weights_format`` is ``None``, detection). ``weights_format``: one of :data:`FORMATS`."""
    try:
        parsed = _parse(state)
    except _Stop as stop:
        if weights_format is None and not stop.strong:
            return None
        seen = ", ".join(stop.recognised)
        recognised = f"recognised {seen}, then {stop.what}" if seen else f"nothing recognised: {stop.what}"
        raise CheckpointError(f"{source}: not a ResNet generator: {recognised}") from None
    norm, affine = _norm_of(parsed, FORMATS.get(weights_format or "resnet"), source)
    spec = {
        "type": "resnet",
        "in_channels": parsed.in_channels,
        "out_channels": parsed.out_channels,
        "ngf": parsed.ngf,
        "n_blocks": parsed.n_blocks,
        "upsample": parsed.upsample,
        "norm": norm,
        "norm_affine": affine,
    }
    return spec, _map(parsed, spec, source)
