"""Where a run executes: device, precision, backend and the distributed process group.

Every place that depends on *where* code runs asks the :class:`Runtime`; files are written only
through :class:`~ganforge.engine.rundir.RunDir`, which does nothing on ranks other than 0.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`make_runtime` joins the process group (gloo on the CPU,
NCCL on CUDA) and the runtime's collective helpers average gradients, losses and the stop flag across
ranks. With one process every helper returns at once: the single-process run is the same code path.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganforge.backends import Backend, Selector
from ganforge.errors import GanforgeError, GanforgeWarning, RecipeError, TrainingError
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.registry import ComponentSpec, Registries


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    backend: Backend | None = None  # how the networks execute; None: torch's own layers (as 'direct')
    backend_note: str = ""  # how the backend was chosen ("auto; ..."), for describe_backend()
    cuda_graphs: bool = False  # with compile, on CUDA: torch.compile's 'reduce-overhead' mode
    rank: int = 0
    world_size: int = 1
    _prepared: list[str] = field(default_factory=list, repr=False, compare=False)  # what prepare_model did

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ collectives (no-ops alone)

    def _collective(self, what: str, call: Any) -> Any:
        """Run one collective; a peer that died or timed out becomes one clear line, not a hang."""
        try:
            return call()
        except (RuntimeError, ValueError) as exc:  # torch's DistBackendError is a RuntimeError
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise TrainingError(
                f"rank {self.rank}/{self.world_size}: lost the other processes during {what} ({first[:200]}); "
                "another rank stopped, died or timed out (train.dist_timeout); exiting"
            ) from None

    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its mean over the ranks (one flat all-reduce).

        A parameter without a gradient takes part as zeros and keeps no gradient, so every rank sends
        the same layout; the models' updates give gradients to the same parameters on every rank."""
        if not self.distributed:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._collective("the gradient all-reduce", lambda: dist.all_reduce(flat))
        flat /= self.world_size
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is not None:
                p.grad.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def mean_across_ranks(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` averaged over the ranks (the logged losses, at log steps only)."""
        if not self.distributed:
            return values
        values = values.detach().clone()
        self._collective("the loss all-reduce", lambda: dist.all_reduce(values))
        return values / self.world_size

    def agree_stop(self, code: int) -> int:
        """The largest stop code of all ranks (0: none): one rank's SIGTERM stops every rank."""
        if not self.distributed:
            return code
        flag = torch.tensor([code], dtype=torch.int32, device=self.device)
        self._collective("the stop-flag all-reduce", lambda: dist.all_reduce(flag, op=dist.ReduceOp.MAX))
        return int(flag.item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a run directory's name, evaluation scores)."""
        if not self.distributed:
            return obj
        box = [obj]
        self._collective("a broadcast from rank 0", lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def broadcast_module(self, module: nn.Module, buffers_only: bool = False) -> None:
        """Copy rank 0's parameters (and buffers) of ``module`` to every rank."""
        if not self.distributed:
            return
        tensors = [] if buffers_only else [p.data for p in module.parameters()]
        tensors += [b for b in module.buffers() if b.is_floating_point() or not buffers_only]
        for tensor in tensors:
            self._collective("a broadcast from rank 0", lambda t=tensor: dist.broadcast(t, src=0))

    def barrier(self, what: str = "a barrier") -> None:
        if self.distributed:
            self._collective(what, dist.barrier)

    def finish(self) -> None:
        """Leave the process group (after a last barrier, so no rank exits while rank 0 still writes)."""
        if self.distributed and dist.is_initialized():
            self.barrier("the final barrier")
            dist.destroy_process_group()

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

    def describe_backend(self) -> str:
        """``backend NAME (how it was chosen; what it replaced)``, for the run's first line."""
        name = self.backend.name if self.backend is not None else "direct"
        parts = [part for part in (self.backend_note, *self._prepared) if part]
        return f"backend {name}" + (f" ({'; '.join(parts)})" if parts else "")

    def prepare_model(self, model: torch.nn.Module, networks: dict[str, torch.nn.Module]) -> torch.nn.Module:
        """Move ``model`` to the device and memory format; let the backend prepare ``networks`` and
        compile them in place if asked (parameters and state-dict keys stay as they are).

        The nets the model names in ``double_backward_nets()`` are left to torch's own layers and not
        compiled: a gradient penalty differentiates them twice, which custom kernels and compiled graphs
        may not support."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        hook = getattr(model, "double_backward_nets", None)
        kept = list(hook()) if callable(hook) else []
        unknown = [name for name in kept if name not in networks]
        if unknown:
            raise GanforgeError(
                f"model: double_backward_nets() names {', '.join(unknown)}, not among its networks "
                f"({', '.join(networks)})"
            )
        networks = {name: net for name, net in networks.items() if name not in kept}
        self._prepared.clear()
        if self.backend is not None and networks:
            # One call for all networks: layers are replaced below each of them, in their parents.
            summary = self.backend.prepare(nn.ModuleList(networks.values()), self.device, training=True)
            self._prepared[:] = [summary] if summary else []
        if kept and (self.backend is not None or self.compile):
            self._prepared.append(f"{', '.join(kept)} unchanged for double backward")
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


def _is_selector(obj: Any) -> bool:
    return isinstance(obj, Selector) and not isinstance(obj, Backend)


def choose_backend(
    spec: ComponentSpec,
    registries: Registries,
    device: torch.device,
    precision: str,
    where: str = "train.backend",
) -> tuple[Backend, str]:
    """The backend named by the resolved ``spec`` for ``device`` and ``precision``, and a note on how it
    was chosen ("" when named outright). A selector (``auto``) chooses among the other registered
    backends, each built with its default params; a backend named outright must be available."""
    chosen = spec.build()
    if _is_selector(chosen):
        candidates, broken = [], []
        for component in registries["backend"]:
            try:
                candidate = registries.resolve("backend", {"type": component.name}, where).build()
            except GanforgeError as exc:  # a broken plugin's backend: skipped, and said so
                broken.append(f"{component.name}: {exc.lines[0]}")
                continue
            if not _is_selector(candidate):
                candidates.append(candidate)
        backend, note = chosen.choose(candidates, device, precision)
        return backend, "; ".join(part for part in (note, *broken) if part)
    verdict = chosen.available(device, precision)
    if verdict is not True:
        raise GanforgeError(
            f"{where}: backend '{spec.type}' does not run on {device} in {precision}: "
            f"{verdict or 'not available'}; use auto (the fastest available) or direct"
        )
    return chosen, ""


def apply_backend(
    name: str, generator: Any, *, plugins: Sequence[str] = (), option: str = "--backend"
) -> None:
    """Prepare a loaded generator (:class:`ganforge.inference.Generator`: its ``module``, ``device`` and
    ``notes``) for translation or export with backend ``name`` (default params, fp32), and add a note
    saying which backend it took. A generator that is not a PyTorch module (ONNX, TorchScript) takes
    ``auto`` and ``direct`` as they are (nothing to prepare); other backends are an error for it."""
    registries = collect_registries(make_plugin_manager(plugins, source="--plugin"))
    try:
        spec = registries.resolve("backend", {"type": name}, option)
    except RecipeError as exc:
        lines = [line.replace(f"{option}.type: ", f"{option}: ") for line in exc.lines]
        raise GanforgeError(*lines) from None
    if not generator.has_python_module:
        if name not in ("auto", "direct"):
            raise GanforgeError(
                f"{option} {name}: {generator.label} is not a PyTorch module; use auto or direct"
            )
        return
    backend, note = choose_backend(spec, registries, generator.device, "fp32", where=option)
    summary = backend.prepare(generator.module, generator.device, training=False)
    parts = [part for part in (note, summary) if part]
    generator.notes.append(f"backend {backend.name}" + (f" ({'; '.join(parts)})" if parts else ""))


def make_runtime(train: Any, registries: Registries | None = None) -> Runtime:
    """The runtime for a recipe's ``[train]`` section; ``registries`` are the recipe's (those of the
    built-in and installed plugins if not given), where ``train.backend`` is chosen from."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = select_device(train.device)
    if world_size > 1:
        device = _join_process_group(device, rank, world_size, train.dist_timeout)
    if train.precision == "fp16" and device.type != "cuda":
        raise GanforgeError(f"train.precision: 'fp16' needs a CUDA device (this run is on {device}); use 'bf16' or 'fp32'")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
    if registries is None:
        registries = collect_registries(make_plugin_manager())
    backend, note = choose_backend(train.backend, registries, device, train.precision)
    return Runtime(
        device,
        train.precision,
        channels_last=train.channels_last,
        compile=train.compile,
        backend=backend,
        backend_note=note,
        cuda_graphs=train.cuda_graphs,
        rank=rank,
        world_size=world_size,
    )


def _join_process_group(device: torch.device, rank: int, world_size: int, timeout: float) -> torch.device:
    """Join torchrun's process group: NCCL with one GPU per process (``cuda:LOCAL_RANK``) on CUDA,
    gloo on the CPU. The rendezvous address comes from torchrun's environment (MASTER_ADDR/PORT)."""
    if device.type == "mps":
        raise GanforgeError("train.device: distributed training runs on CUDA or the CPU, not MPS")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise GanforgeError(
                f"LOCAL_RANK={local}: this node has {torch.cuda.device_count()} CUDA device(s); "
                "start at most that many processes per node"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo",
                rank=rank,
                world_size=world_size,
                timeout=datetime.timedelta(seconds=timeout),
                **({"device_id": device} if device.type == "cuda" else {}),
            )
        except (RuntimeError, ValueError) as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise GanforgeError(
                f"rank {rank}/{world_size}: cannot join the process group ({first[:200]}); start the run "
                "with torchrun, which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
            ) from None
    return device
