"""The training engine: builds a run from a validated recipe and loops over epochs and steps.

The position of a run is two counters, ``epoch`` (epochs completed) and ``step`` (steps completed);
the data order is a function of the seed, the epoch and the position in it
(:mod:`ganforge.data.sampling`), so a checkpoint taken at any step continues exactly.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ganforge._version import __version__
from ganforge.data.sampling import EpochSampler, SeededItems, mix_seed
from ganforge.engine.callbacks import Callback
from ganforge.engine.channels import channel_error, check_channels, check_sizes
from ganforge.engine.checkpoint import FORMAT, FORMAT_VERSION, rng_state, set_rng_state
from ganforge.engine.ema import ModelAverage
from ganforge.engine.rundir import RunDir
from ganforge.engine.runtime import Runtime
from ganforge.errors import CheckpointError, DatasetError, GanforgeError, RecipeError, TrainingError
from ganforge.evaluation import is_paired
from ganforge.model import Optimizers
from ganforge.recipe import Recipe

#: Exit codes of a run stopped by a signal (128 + signal number, as shells report them).
SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}

#: Optimizer settings that say how an update is computed, not what it computes (torch keeps them in each
#: param group, so a checkpoint would carry them over): on resume, this recipe's choice stands.
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")

#: Stop requests as the numbers the ranks agree on (the largest wins); 0 is none.
STOP_CODES = {"stop": 1, "SIGINT": 2, "SIGTERM": 3}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping how this run computes its updates: torch saves
    foreach/fused (:data:`IMPLEMENTATION_KEYS`) in each param group and would take the checkpoint's."""
    built = [{k: g[k] for k in IMPLEMENTATION_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, built, strict=True):
        group.update(kept)
        _fit_state_to_group(optimizer, group)


def _fit_state_to_group(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> None:
    """Make loaded optimizer state fit the group's implementation and its parameters' layouts.

    torch places a loaded step counter by the *checkpoint's* flags (on the parameter's device for a
    fused or capturable update, else on the CPU), and keeps each moment's memory layout as saved; the
    fused CPU kernel reads parameter, gradient and moments as flat memory, so a moment saved
    channels_last and resumed without it (or the other way round) would be updated element by the
    wrong element. Both are put right here."""
    on_device = bool(group.get("fused") or group.get("capturable"))
    for param in group["params"]:
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            if not torch.is_tensor(value):
                continue
            if key == "step" and ("fused" in group or "capturable" in group):  # torch's Adam family
                state[key] = value.to(device=param.device if on_device else "cpu")
            elif value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random draws (dropout, image pools): the recipe's on rank 0."""
    return seed if rank == 0 else mix_seed(seed, 0x5EED, rank) % 2**31


class Stopped(GanforgeError):
    """The run was asked to stop (SIGINT, SIGTERM) and saved a checkpoint first."""

    label = "stopped"

    def __init__(self, signal_name: str, line: str) -> None:
        super().__init__(line)
        self.exit_code = SIGNAL_EXIT_CODES.get(signal_name, 1)


def _fixed_batch(dataset: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` items of ``dataset`` stacked (the images every sample grid shows)."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]  # type: ignore[arg-type]
    keys = [k for k, v in items[0].items() if isinstance(v, torch.Tensor)]
    return {k: torch.stack([item[k] for item in items]) for k in keys}


def _unwrap_worker_error(exc: GanforgeError) -> GanforgeError:
    """An error raised in a DataLoader worker arrives with the worker's traceback as its message;
    keep the original one-line message (the last line)."""
    if "DataLoader worker" not in str(exc):
        return exc
    last = [line for line in str(exc).splitlines() if line.strip()][-1]
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    for p in (prefix, f"{type(exc).__name__}: "):
        last = last.removeprefix(p)
    return type(exc)(last)


class Trainer:
    """One run: model, optimizers, schedules, data, and the loop that ties them together."""

    def __init__(
        self,
        recipe: Recipe,
        runtime: Runtime,
        run_dir: RunDir,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.recipe = recipe
        self.runtime = runtime
        self.run_dir = run_dir
        # Callbacks watch and write (progress, logs, samples, checkpoints, evaluation): rank 0 only.
        self.callbacks = list(callbacks) if runtime.is_main else []
        train = recipe.train
        self.epochs = train.epochs
        self.epoch = 0  # epochs completed
        self.step = 0  # steps completed
        self.stop_requested: str | None = None
        self._window: dict[str, torch.Tensor] = {}  # loss sums since the last log entry
        self._window_steps = 0
        self._totals: dict[str, torch.Tensor] = {}  # loss sums since the epoch began

        random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        if train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        dataset = recipe.data.build("train")
        self.global_batch = train.batch_size * runtime.world_size  # images per domain per step, all ranks
        if len(dataset) < self.global_batch:
            across = f" x {runtime.world_size} processes" if runtime.distributed else ""
            raise DatasetError(
                f"data: the {recipe.data.type} training set has {len(dataset)} items, fewer than "
                f"train.batch_size ({train.batch_size}){across}"
            )
        try:
            sample_set = recipe.data.build("test")
            if len(sample_set) == 0:
                raise DatasetError("empty test split")
        except DatasetError:
            sample_set = dataset  # no test split: show training images
        self.sample_batch = runtime.prepare_batch(_fixed_batch(sample_set, recipe.output.n_samples))
        # the sample images are true test pairs: grids can show the right answer beside a translation
        self.sample_paired = sample_set is not dataset and is_paired(sample_set)

        self.sampler = EpochSampler(
            len(dataset),
            recipe.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
            batch_size=train.batch_size,
        )
        # iter(loader) draws a seed for its workers; from torch's global generator that draw would shift
        # the random numbers a step takes (augmentation, dropout) after a mid-epoch resume
        self.loader_generator = torch.Generator().manual_seed(mix_seed(recipe.seed, runtime.rank))
        self.loader = DataLoader(
            SeededItems(dataset, recipe.seed),
            generator=self.loader_generator,
            batch_size=train.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=train.num_workers,
            persistent_workers=train.num_workers > 0,  # the sampler runs in this process
            pin_memory=runtime.device.type == "cuda",
        )
        self.steps_per_epoch = len(dataset) // self.global_batch
        if train.max_iters_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, train.max_iters_per_epoch)

        own_seed = rank_seed(recipe.seed, runtime.rank)
        model = recipe.model.build(own_seed)  # the seed feeds the model's own draws (its pools)
        check_channels(model, recipe, self.sample_batch)
        check_sizes(model, recipe, self.sample_batch)
        self.model = runtime.prepare_model(model, model.networks())
        self.model.train()
        self.networks = dict(model.networks())
        for net in self.networks.values():
            runtime.broadcast_module(net)  # every rank starts from rank 0's weights
        # nets with floating buffers (batch-norm statistics) get rank 0's at every step, as DDP does
        self._buffered = [n for n in self.networks.values() if any(b.is_floating_point() for b in n.buffers())]
        if runtime.rank != 0:
            random.seed(own_seed)
            torch.manual_seed(own_seed)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        groups = self.model.optimizer_groups()
        train.check_groups(list(groups))
        for name, params in groups.items():
            optimizer = train.optimizer_for(name).build(list(params))
            if train.lr_scaling == "linear" and runtime.distributed:
                for param_group in optimizer.param_groups:
                    param_group["lr"] *= runtime.world_size
                    if "initial_lr" in param_group:
                        param_group["initial_lr"] *= runtime.world_size
            self.optimizers[name] = optimizer
            self.schedulers[name] = train.scheduler_for(name).build(optimizer, self.epochs)
        self.scaler = runtime.grad_scaler()
        ema = train.ema
        # every rank takes the same steps from the same weights, so every rank's average is the same
        self.ema = (
            ModelAverage(self.model, ema.decay, ema.start_step, ema.every)
            if ema is not None and ema.enabled
            else None
        )
        if self.ema is not None and not self.ema.params:
            raise RecipeError(
                f"train.ema: the {recipe.model.type} model exports no nets with parameters to average"
            )

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def position(self) -> int:
        """Steps completed in the current epoch."""
        return self.step - self.epoch * self.steps_per_epoch

    def averaged_weights(self) -> AbstractContextManager[None]:
        """While inside, the generators hold their averaged (EMA) weights, if the run keeps any."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def request_stop(self, signal_name: str) -> None:
        """Ask the loop to save a checkpoint and stop at the next step boundary (signal-safe)."""
        self.stop_requested = signal_name

    # ---------------------------------------------------------------------------------- the loop

    def fit(self) -> dict[str, float]:
        """Train until ``train.epochs`` are done; return the last epoch's mean losses."""
        runtime = self.runtime
        reduce = runtime.average_gradients if runtime.distributed else None
        optimizers = Optimizers(self.optimizers, self.scaler, reduce_gradients=reduce)
        log_every = self.recipe.train.log_every
        epoch_losses: dict[str, float] = {}
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            while self.epoch < self.epochs:
                self.sampler.set_epoch(self.epoch, self.position * self.global_batch)
                batches = iter(self.loader)
                while self.position < self.steps_per_epoch:
                    try:
                        batch = next(batches)
                    except GanforgeError as exc:
                        raise _unwrap_worker_error(exc) from None
                    batch = self.runtime.prepare_batch(batch)
                    self.runtime.step_begin()
                    for net in self._buffered:
                        runtime.broadcast_module(net, buffers_only=True)
                    try:
                        with self.runtime.autocast():
                            losses = self.model.train_step(batch, optimizers)
                    except RuntimeError as exc:
                        error = channel_error(exc, self.model, self.recipe)
                        if error is None:
                            raise
                        raise error from None
                    optimizers.end_step()
                    for name, value in losses.items():
                        value = value.detach().float()
                        self._window[name] = self._window[name] + value if name in self._window else value
                        self._totals[name] = self._totals[name] + value if name in self._totals else value
                    self._window_steps += 1
                    self.step += 1
                    if self.ema is not None:
                        self.ema.update(self.step)
                    report = None
                    if self.step % log_every == 0 or self.position == self.steps_per_epoch:
                        report = self._mean_losses(self._window, self._window_steps)
                        self._window, self._window_steps = {}, 0
                    for cb in self.callbacks:
                        cb.on_step_end(self, report)
                    self._agree_stop()
                    if self.stop_requested is not None and self.position < self.steps_per_epoch:
                        self._stop()
                del batches
                self.epoch += 1
                epoch_losses = self._mean_losses(self._totals, self.steps_per_epoch)
                self._step_schedules(epoch_losses)
                self._totals = {}
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch_losses)
                self._agree_stop()  # other ranks wait here while rank 0 evaluates and saves
                if self.stop_requested is not None and self.epoch < self.epochs:
                    self._stop()
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return epoch_losses

    def _agree_stop(self) -> None:
        """Under several processes, a stop asked on any rank (its SIGTERM) is taken by every rank."""
        if not self.runtime.distributed:
            return
        code = self.runtime.agree_stop(STOP_CODES.get(self.stop_requested or "", 0) if self.stop_requested else 0)
        if code and self.stop_requested is None:
            self.stop_requested = {v: k for k, v in STOP_CODES.items()}[code]

    def _step_schedules(self, epoch_losses: dict[str, float]) -> None:
        """Step every schedule once. One that watches a value (its ``monitor``) gets the epoch's mean of
        that logged loss, or an evaluation score (``eval.NAME``) from a callback's ``epoch_values``."""
        watching = {name: getattr(s, "monitor", None) for name, s in self.schedulers.items()}
        values = dict(epoch_losses)
        if any(isinstance(m, str) and m.startswith("eval.") for m in watching.values()):
            for cb in self.callbacks:
                provide = getattr(cb, "epoch_values", None)
                values.update(provide(self) if callable(provide) else {})
            values = self.runtime.broadcast_object(values)  # evaluation runs on rank 0 only
        for name, scheduler in self.schedulers.items():
            monitor = watching[name]
            if not isinstance(monitor, str):
                scheduler.step()
                continue
            if monitor not in values:
                field = self.recipe.train.group_fields(name)[1]
                inner = getattr(scheduler, "monitor_field", "monitor")
                logged = ", ".join(values) or "none"
                hint = " (eval.* needs eval.every_epochs = 1)" if monitor.startswith("eval.") else ""
                raise RecipeError(
                    f"{field}.{inner}: '{monitor}' is not logged this epoch{hint}; logged: {logged}"
                )
            scheduler.step(values[monitor])

    def _stop(self) -> None:
        signal_name = self.stop_requested or "stop"
        self.save_checkpoint(f"{self.run_dir.CHECKPOINTS}/latest.pt")
        self.runtime.barrier("the barrier after the stop checkpoint")  # no rank exits before it is written
        if not self.runtime.is_main:  # rank 0 says where the checkpoint is
            raise Stopped(signal_name, f"{signal_name}: rank {self.runtime.rank} stopped with rank 0 at step {self.step}")
        raise Stopped(
            signal_name,
            f"{signal_name} at step {self.step} (epoch {self.epoch + 1}/{self.epochs}); "
            f"checkpoint saved; resume with: ganforge run --resume {self.run_dir.path}",
        )

    def _mean_losses(self, sums: dict[str, torch.Tensor], count: int, reduce: bool = True) -> dict[str, float]:
        """Mean losses as floats (one device synchronisation; under several processes the mean over
        the ranks, which every rank gets); a NaN or Inf stops the run."""
        if not sums:
            return {}
        stacked = torch.stack(list(sums.values())) / max(count, 1)
        values = (self.runtime.mean_across_ranks(stacked) if reduce else stacked).tolist()
        losses = dict(zip(sums, values))
        for name, value in losses.items():
            if not math.isfinite(value):
                raise TrainingError(
                    f"loss {name} became {value} by step {self.step} (epoch {self.epoch + 1}); stopped "
                    "without saving, so the last checkpoint holds the last good weights"
                )
        return losses

    # ---------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ganforge_version": __version__,
            "recipe": self.recipe.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "model": self.model.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "epoch_loss_sums": {k: v.cpu() for k, v in self._totals.items()},
            "world_size": self.runtime.world_size,  # model state (pools) and RNG are rank 0's
            "global_batch": self.global_batch,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {**rng_state(), "loader": self.loader_generator.get_state()},
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def checkpoint_bytes(self) -> bytes:
        """The serialised checkpoint, after checking that nothing in it is NaN or Inf."""
        self._mean_losses(self._totals, 1, reduce=False)
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise TrainingError(
                    f"parameter {name} holds NaN or Inf at step {self.step}; not saved, so the last "
                    "checkpoint still holds the last good weights"
                )
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def save_checkpoint(self, relative: str) -> Path | None:
        if not self.run_dir.is_main:
            return None
        return self.run_dir.atomic_write(relative, self.checkpoint_bytes())

    def estimated_checkpoint_bytes(self) -> int:
        """Model state plus two optimizer moments per parameter (Adam's), before any step was taken."""
        state = sum(
            t.numel() * t.element_size() for t in self.model.state_dict().values() if torch.is_tensor(t)
        )
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return state + 2 * params + (self.ema.nbytes() if self.ema is not None else 0)

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from ``state`` (read by :func:`ganforge.engine.checkpoint.load_checkpoint`)."""
        saved_world = int(state.get("world_size", 1))
        saved_batch = int(state.get("global_batch", state["recipe"].get("train", {}).get("batch_size", 1)))
        changed = saved_world != self.runtime.world_size
        if not changed and state.get("steps_per_epoch") != self.steps_per_epoch:
            raise CheckpointError(
                f"{source}: the checkpoint's run had {state.get('steps_per_epoch')} steps per epoch, "
                f"this one has {self.steps_per_epoch}; data or batch size changed"
            )
        if set(state["optimizers"]) != set(self.optimizers):
            raise CheckpointError(
                f"{source}: optimizer groups {sorted(state['optimizers'])} do not match this "
                f"model's {sorted(self.optimizers)}"
            )
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, GanforgeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{source}: weights do not fit this recipe's model: {first}") from None
        for name, optimizer in self.optimizers.items():
            load_optimizer_state(optimizer, state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        if self.ema is not None:
            if isinstance(state.get("ema"), dict):
                self.ema.load_state_dict(state["ema"], source)
            else:  # [train.ema] turned on when resuming: the average starts from the weights
                self.ema.reset()
        set_rng_state(state["rng"])
        if "loader" in state["rng"] and self.runtime.rank == 0:  # the saved state is rank 0's
            self.loader_generator.set_state(state["rng"]["loader"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        if changed:
            # Another number of processes: continue at the same place in the epoch's data order, rounded
            # down to a whole global batch of this run (those few items are seen again).
            done = (self.step - self.epoch * int(state["steps_per_epoch"])) * saved_batch
            self.step = self.epoch * self.steps_per_epoch + min(done // self.global_batch, self.steps_per_epoch)
        if self.runtime.rank != 0:
            # the checkpoint holds rank 0's RNG; the others draw afresh from their seed and the step
            own = mix_seed(rank_seed(self.recipe.seed, self.runtime.rank), self.step) % 2**31
            random.seed(own)
            torch.manual_seed(own)
        device = self.runtime.device
        self._totals = {k: v.to(device) for k, v in state["epoch_loss_sums"].items()}


def describe_run(trainer: Trainer) -> str:
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return (
        f"{trainer.recipe.model.type} model, {n_params / 1e6:.2f} M parameters, "
        f"{trainer.steps_per_epoch} steps/epoch x {trainer.epochs} epochs on {trainer.runtime.device}, "
        f"{trainer.runtime.describe_backend()}"
        + (f"; averaged generators (EMA, decay {trainer.ema.decay:g})" if trainer.ema is not None else "")
    )
