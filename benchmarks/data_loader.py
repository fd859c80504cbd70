"""Does loading keep up with training? The folder loader's throughput next to the CycleGAN step's.

Writes a folder of JPEGs in the reference layout (256 px, like the official archives), then measures:

- the ``unpaired_folder`` loader with the paper's preprocessing (load 286, random crop 256, flip),
  built and wrapped exactly as the trainer does it (seeded items, epoch sampler, pinned memory on
  CUDA), with 0 and 2 DataLoader workers (persistent), after a warm-up batch;
- one CycleGAN training step (both generators, then both discriminators) at batch 1, for the
  quickstart recipe's model (64 px, ngf 16, 3 blocks, ndf 16) and the paper's (256 px, ngf 64,
  9 blocks, ndf 64), built through the registries like any recipe's model.

Rates are in examples/s: one example is one A image plus one B image, what a training step at batch 1
consumes, so the loader keeps up when its rate is above the step's. Run from the repository root::

    python benchmarks/data_loader.py                 # 1 to 3 minutes on a laptop CPU
    python benchmarks/data_loader.py --device cuda   # the step on a GPU, where the loader matters
    python benchmarks/data_loader.py --threads 1     # a CPU busy with other jobs

Other processes on the machine lower every number; compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from ganforge.data.sampling import EpochSampler, SeededItems
from ganforge.data.synthetic import random_scene, render
from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())

MODELS = {
    "quickstart": (64, {"ngf": 16, "n_blocks": 3}, {"ndf": 16, "n_layers": 3}),
    "paper": (256, {"ngf": 64, "n_blocks": 9}, {"ndf": 64, "n_layers": 3}),
}


def write_jpegs(root: Path, n: int, size: int = 256) -> None:
    """``n`` JPEGs split over trainA/ and trainB/: rendered scenes, so they compress like photos do."""
    rng = random.Random(0)
    for i in range(n):
        domain = "AB"[i % 2]
        folder = root / f"train{domain}"
        folder.mkdir(parents=True, exist_ok=True)
        array = render(random_scene(rng, 3, 6), size, domain)
        Image.fromarray(array).save(folder / f"{i:04d}.jpg", quality=90)


def timed(run_one: Callable[[], object], seconds: float, at_most: int) -> tuple[float, int]:
    """Call ``run_one`` until ``seconds`` have passed (at least once, at most ``at_most`` times)."""
    count, started = 0, time.perf_counter()
    while count < at_most and (count == 0 or time.perf_counter() - started < seconds):
        run_one()
        count += 1
    return count / (time.perf_counter() - started), count


def loader_rate(root: Path, workers: int, device: torch.device, seconds: float) -> tuple[float, int]:
    spec = REGISTRIES.resolve("dataset", {"type": "unpaired_folder", "root": str(root)}, "data")
    dataset = spec.build("train")
    sampler = EpochSampler(len(dataset), seed=0)
    loader = DataLoader(
        SeededItems(dataset, seed=0),
        batch_size=1,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    epoch = 0
    batches = iter(loader)
    next(batches)  # warm-up: workers started, first files read

    def one() -> None:
        nonlocal batches, epoch
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            sampler.set_epoch(epoch)
            batches = iter(loader)
            batch = next(batches)
        assert batch["A"].shape == (1, 3, 256, 256)
        if device.type == "cuda":
            for image in batch.values():
                image.to(device, non_blocking=True)

    rate = timed(one, seconds, at_most=100_000)
    return rate


def step_rate(name: str, device: torch.device, seconds: float) -> tuple[float, int, int]:
    size, generator, discriminator = MODELS[name]
    spec = REGISTRIES.resolve(
        "model",
        {
            "type": "cyclegan",
            "generator": {"type": "resnet", **generator},
            "discriminator": {"type": "patchgan", **discriminator},
        },
        "model",
    )
    model = spec.build(0).to(device)
    model.train()
    adam = REGISTRIES.resolve("optimizer", {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}, "optimizer")
    optimizers = Optimizers({group: adam.build(list(p)) for group, p in model.optimizer_groups().items()})
    torch.manual_seed(0)
    batch = {key: torch.rand(1, 3, size, size, device=device) * 2 - 1 for key in ("A", "B")}

    def one() -> None:
        model.train_step(batch, optimizers)
        if hasattr(optimizers, "end_step"):  # mixed-precision bookkeeping, where the engine has it
            optimizers.end_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    started = time.perf_counter()
    one()  # warm-up (allocations, cuDNN autotuning)
    first = time.perf_counter() - started
    if first > seconds / 2:  # a slow step (the paper's model on a CPU): the warm-up is the measurement
        return 1 / first, 1, size
    rate, count = timed(one, seconds, at_most=200)
    return rate, count, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="JPEGs to generate (half per domain).")
    parser.add_argument("--seconds", type=float, default=12.0, help="Time spent on each measurement.")
    parser.add_argument("--device", default="auto", help="Device of the training step: auto, cpu, cuda.")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice); on a CPU shared with other jobs, 1 avoids "
        "threads spinning on busy cores, which can slow a step 20-fold.",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)

    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        root = Path(tmp) / "bench"
        write_jpegs(root, args.images)
        for workers in args.workers:
            rate, count = loader_rate(root, workers, device, args.seconds)
            rows.append(
                (
                    f"loader, {workers} worker{'s' if workers != 1 else ''}",
                    "256 px crops of 286",
                    rate,
                    f"{count}",
                )
            )
    for name in MODELS:
        rate, count, size = step_rate(name, device, args.seconds)
        rows.append((f"CycleGAN step, {name} model", f"{size} px, batch 1, {device}", rate, f"{count}"))

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} intra-op threads, {args.images} JPEGs of 256 px")
    print(f"{'what':<34} {'input':<24} {'examples/s':>11} {'ms/example':>11} {'measured':>9}")
    print("-" * 93)
    for what, detail, rate, count in rows:
        print(f"{what:<34} {detail:<24} {rate:>11.3g} {1000 / rate:>11.1f} {count:>9}")
    print("(an example is one A and one B image; the loader keeps up while its rate is above the step's)")


if __name__ == "__main__":
    main()
