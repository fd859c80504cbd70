"""Where a run executes: device, precision and (later) the distributed process group.

Every place that depends on *where* code runs asks the :class:`Runtime`; files are written only
through :class:`~ganforge.engine.rundir.RunDir`, which does nothing on ranks other than 0.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ganforge.errors import GanforgeError, GanforgeWarning


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    conv_algorithm: str = "direct"
    cuda_graphs: bool = False  # with compile, on CUDA: torch.compile's 'reduce-overhead' mode
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for the forward passes, as the recipe's ``train.precision`` asks."""
        if self.precision == "fp32":
            yield
            return
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def prepare_model(self, model: torch.nn.Module, networks: dict[str, torch.nn.Module]) -> torch.nn.Module:
        """Move ``model`` to the device and memory format; switch convolution algorithm and compile
        ``networks`` in place if asked (parameters and state-dict keys stay as they are)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.conv_algorithm == "winograd":
            from ganforge_cpu_kernels import use_cpu_algorithms

            per_net = [use_cpu_algorithms(net) for net in networks.values()]
            switched = [name for s in per_net for name in s.winograd]
            narrow = [name for s in per_net for name in s.narrow]
            if not switched:
                also = f" ({len(narrow)} layer(s) with few channels on one side take compiled loops)" if narrow else ""
                warnings.warn(
                    "train.conv_algorithm = 'winograd': no convolution of this model is a 3x3 or 4x4, stride-1 "
                    f"one with 128 or more channels; those stay direct{also}",
                    GanforgeWarning,
                    stacklevel=2,
                )
        if self.compile:
            graphs = self.cuda_graphs and self.device.type == "cuda"
            if self.cuda_graphs and not graphs:
                warnings.warn(
                    f"train.cuda_graphs: CUDA graphs need a CUDA device (this run is on {self.device}); "
                    "the networks are compiled without them",
                    GanforgeWarning,
                    stacklevel=2,
                )
            for net in networks.values():
                # in place: state_dict keys stay as they are
                net.compile(mode="reduce-overhead" if graphs else None)
        return model

    def step_begin(self) -> None:
        """Call before each training step: with CUDA graphs, it tells torch that the previous step's
        graph outputs are no longer read, so their memory is reused instead of kept."""
        if self.compile and self.cuda_graphs and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()

    def prepare_batch(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            batch = batch.to(self.device, non_blocking=True)
            if self.channels_last and batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch
        if isinstance(batch, dict):
            return {k: self.prepare_batch(v) for k, v in batch.items()}
        return batch


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanforgeError(f"train.device: '{name}' asked for, but this torch sees no CUDA device; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GanforgeError(f"train.device: '{name}' asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanforgeError("train.device: 'mps' asked for, but MPS is not available; use 'cpu' or 'auto'")
    return device


def make_runtime(train: Any) -> Runtime:
    """The runtime for a recipe's ``[train]`` section."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise GanforgeError(
            f"WORLD_SIZE={world_size}: distributed training is not supported yet; run one process"
        )
    device = select_device(train.device)
    if train.precision == "fp16" and device.type != "cuda":
        raise GanforgeError(f"train.precision: 'fp16' needs a CUDA device (this run is on {device}); use 'bf16' or 'fp32'")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
    return Runtime(
        device,
        train.precision,
        channels_last=train.channels_last,
        compile=train.compile,
        conv_algorithm=train.conv_algorithm,
        cuda_graphs=train.cuda_graphs,
    )
