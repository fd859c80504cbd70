"""ganforge against the authors' CycleGAN implementation (pytorch-CycleGAN-and-pix2pix), side by side.

    python benchmarks/vs_reference.py step --reference PATH       # one training step, 64/128/256 px
    python benchmarks/vs_reference.py run --reference PATH        # `ganforge run` vs its train.py
    python benchmarks/vs_reference.py translate --reference PATH  # `ganforge translate` vs its test.py
    python benchmarks/vs_reference.py all --out results.json      # all three, one table (GANFORGE_REFERENCE)

The reference is a separate checkout (git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix),
named by --reference or the environment variable GANFORGE_REFERENCE; nothing of it lives in this
project. Its modules are imported (step mode) or its scripts run (run and translate modes) from that
checkout only when a mode needs them. It needs `dominate` importable (and `wandb`, which it imports but
only calls with its --use_wandb flag, never given here).

step: both models in this process, on the same random batch. The reference's CycleGANModel is built
by its own option parser (cycle_gan, resnet_6blocks below 256 px and resnet_9blocks at 256 px, ngf and
ndf 64, batch 1, lsgan, pool 50, instance norm, no dropout, gpu_ids -1) and steps with
set_input() + optimize_parameters(); ganforge's model is built from recipes/cyclegan_monet.toml (the
paper's settings) with only the sizes, blocks and device cpu overridden, so everything else is what a
plain `ganforge run` of that recipe takes (backend auto: cpu_kernels on a CPU with a C++ compiler),
and steps as the trainer does. After the warm-up steps the two take their timed steps in turns,
alternating which goes first, so a slow spell of a shared machine lands on both.

run: trainA/ trainB/ of generated images in a temporary folder; the reference's train.py and
`ganforge run recipes/cyclegan_monet.toml` train on them for the same number of iterations (images x
epochs, half at the constant rate, half decaying), each as its own process, wall-clock from start to
exit (imports, data loading, samples and the final checkpoint included).

translate: the same generated 256 px images through the reference's test.py (--model test, the
9-block generator saved in its format) and `ganforge translate` of that same .pth file (with its
default batch, 1 on a CPU, and with --batch-size 4), each as its own process; images/s of the whole command,
and beyond the first image (the difference to a one-image run, which takes the start-up away).

Printed: the machine's fp32 matmul peak (before and after the timings), then one table (ratio = reference time / ganforge time, so
above 1 means ganforge is faster). --out writes every raw time as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAPER_RECIPE = REPO / "recipes" / "cyclegan_monet.toml"
ENV_VAR = "GANFORGE_REFERENCE"
CLONE = "git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
#: What a checkout of the reference holds (checked before anything runs).
REFERENCE_FILES = ("train.py", "test.py", "models/cycle_gan_model.py", "options/train_options.py")

DEFAULT_SIZES = {"step": [64, 128, 256], "run": [128], "translate": [256]}
DEFAULT_ITERS = {"step": 10, "run": 40, "translate": 20}


class Usage(Exception):
    """A bad option: printed as one line, exit code 2."""


# -------------------------------------------------------------------------------------------------
# Settings shared by both sides
# -------------------------------------------------------------------------------------------------


def blocks_for(size: int, blocks: str) -> int:
    """The paper's choice (6 residual blocks below 256 px, 9 from 256 px), or the one given."""
    return (9 if size >= 256 else 6) if blocks == "auto" else int(blocks)


def load_size_for(size: int) -> int:
    """The paper's 286 -> 256 resize-and-crop, scaled to the size."""
    return size * 286 // 256


def ganforge_overrides(args: argparse.Namespace, size: int, data: Path, epochs: int = 2) -> list[str]:
    """--set values turning the paper recipe into this benchmark's: sizes, widths, data, CPU, epochs."""
    constant = math.ceil(epochs / 2)
    return [
        f"data.root={json.dumps(str(data))}",
        f"data.crop_size={size}",
        f"data.load_size={load_size_for(size)}",
        f"model.generator.n_blocks={blocks_for(size, args.blocks)}",
        f"model.generator.ngf={args.ngf}",
        f"model.discriminator.ndf={args.ndf}",
        'train.device="cpu"',
        f"train.num_workers={args.workers}",
        f"train.epochs={epochs}",
        f"train.scheduler.constant_epochs={constant}",
        f"train.scheduler.decay_epochs={epochs - constant}",
    ]


def reference_options(args: argparse.Namespace, size: int) -> list[str]:
    """The reference's command-line options for the same networks and losses."""
    return [
        "--model", "cycle_gan", "--gpu_ids", "-1",
        "--netG", f"resnet_{blocks_for(size, args.blocks)}blocks", "--netD", "basic",
        "--ngf", str(args.ngf), "--ndf", str(args.ndf), "--norm", "instance", "--no_dropout",
        "--batch_size", "1", "--gan_mode", "lsgan", "--pool_size", "50",
        "--load_size", str(load_size_for(size)), "--crop_size", str(size),
        "--display_id", "0",  # no visdom server
    ]  # fmt: skip


def thread_env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    return env


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -------------------------------------------------------------------------------------------------
# The reference checkout
# -------------------------------------------------------------------------------------------------


def find_reference(args: argparse.Namespace) -> Path | None:
    """The checkout named by --reference or GANFORGE_REFERENCE, checked; None with --ganforge-only."""
    if args.ganforge_only:
        return None
    given, origin = (args.reference, "--reference") if args.reference else (os.environ.get(ENV_VAR), ENV_VAR)
    holds = f"a valid checkout ({CLONE}) holds {', '.join(REFERENCE_FILES)}"
    if not given:
        raise Usage(
            f"no reference implementation: give --reference PATH or set {ENV_VAR} to a checkout of "
            f"pytorch-CycleGAN-and-pix2pix, or pass --ganforge-only; {holds}"
        )
    path = Path(given).expanduser().resolve()
    missing = [name for name in REFERENCE_FILES if not (path / name).is_file()]
    if missing:
        raise Usage(
            f"{origin}={given}: not a checkout of pytorch-CycleGAN-and-pix2pix (missing {', '.join(missing)}); {holds}"
        )
    for module in ("dominate",):
        try:
            __import__(module)
        except ImportError:
            raise Usage(
                f"{origin}={given}: the reference needs the package '{module}' (pip install {module})"
            ) from None
    return path


def reference_commit(path: Path) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return done.stdout.strip()
    stamp = path / "REFERENCE_COMMIT"  # a checkout unpacked from an archive may carry its commit here
    return stamp.read_text().strip() if stamp.is_file() else None


@contextlib.contextmanager
def reference_on_path(path: Path):
    """The reference's top-level packages (options, models, data, util) importable, its argv its own."""
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path[:], sys.argv[:] = saved_path, saved_argv


# -------------------------------------------------------------------------------------------------
# Images
# -------------------------------------------------------------------------------------------------


def write_images(folder: Path, count: int, size: int, seed: int) -> None:
    """Picture-like PNGs (smooth colour fields plus grain), as the translate benchmark makes them."""
    sys.path.insert(0, str(HERE))
    try:
        from translate import smooth_image
    finally:
        sys.path.remove(str(HERE))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        smooth_image(size, size, seed * 1000 + i).save(folder / f"{i:04d}.png")


# -------------------------------------------------------------------------------------------------
# step: one training step, in turns, in this process
# -------------------------------------------------------------------------------------------------


def build_reference_step(path: Path, args: argparse.Namespace, size: int, scratch: Path):
    import torch

    with reference_on_path(path):
        sys.argv = [
            "train.py",
            "--dataroot",
            str(scratch),
            "--name",
            "bench",
            "--checkpoints_dir",
            str(scratch / "ref"),
        ]
        sys.argv += reference_options(args, size)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # its option dump
            from models import create_model
            from options.train_options import TrainOptions

            opt = TrainOptions().parse()
            torch.manual_seed(0)
            model = create_model(opt)
            model.setup(opt)

    def step(batch: dict[str, Any]) -> dict[str, float]:
        model.set_input({**batch, "A_paths": ["a"], "B_paths": ["b"]})
        model.optimize_parameters()
        return {name: float(getattr(model, "loss_" + name).detach()) for name in model.loss_names}

    return step


def build_ganforge_step(args: argparse.Namespace, size: int, scratch: Path):
    from ganforge.engine.rundir import RunDir
    from ganforge.engine.runtime import make_runtime
    from ganforge.engine.trainer import Trainer
    from ganforge.model import Optimizers
    from ganforge.recipe import load_recipe

    data = scratch / "data"
    for domain in ("trainA", "trainB"):
        write_images(data / domain, 1, size, seed=len(domain))
    recipe = load_recipe(PAPER_RECIPE, ganforge_overrides(args, size, data)).recipe
    runtime = make_runtime(recipe.train, None)
    trainer = Trainer(recipe, runtime, RunDir(scratch / "run", is_main=True))  # builds; writes nothing
    optimizers = Optimizers(trainer.optimizers, trainer.scaler)
    model = trainer.model

    def step(batch: dict[str, Any]) -> dict[str, float]:  # Trainer.fit's step, without data loading
        batch = runtime.prepare_batch(batch)
        runtime.step_begin()
        with runtime.autocast():
            losses = model.train_step(batch, optimizers)
        optimizers.end_step()
        return {name: float(value.detach()) for name, value in losses.items()}

    return step, runtime.describe_backend()


def step_mode(args: argparse.Namespace, reference: Path | None) -> list[dict[str, Any]]:
    import torch

    rows = []
    for size in args.sizes or DEFAULT_SIZES["step"]:
        blocks = blocks_for(size, args.blocks)
        print(f"step: {size} px, {blocks} blocks: building and warming up ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="ganforge-vs-ref-") as tmp:
            scratch = Path(tmp)
            sides: dict[str, Any] = {}
            backend = None
            if reference is not None:
                sides["reference"] = build_reference_step(reference, args, size, scratch)
            sides["ganforge"], backend = build_ganforge_step(args, size, scratch)
            generator = torch.Generator().manual_seed(1)
            batch = {d: torch.rand(1, 3, size, size, generator=generator) * 2 - 1 for d in ("A", "B")}
            times: dict[str, list[float]] = {name: [] for name in sides}
            losses: dict[str, dict[str, float]] = {}
            for name, step in sides.items():
                for _ in range(args.warmup):
                    losses[name] = step(batch)
            for r in range(args.iters):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for name in order:
                    start = time.perf_counter()
                    sides[name](batch)
                    times[name].append(1000 * (time.perf_counter() - start))
        row: dict[str, Any] = {
            "size": size,
            "blocks": blocks,
            "ganforge_backend": backend,
            "warmup_steps": args.warmup,
            "reference_ms": times.get("reference"),
            "ganforge_ms": times["ganforge"],
            "reference_median_ms": median(times["reference"]) if "reference" in times else None,
            "ganforge_median_ms": median(times["ganforge"]),
            "warmup_losses": losses,
        }
        if "reference" in times:
            row["ratio"] = row["reference_median_ms"] / row["ganforge_median_ms"]
            row["ratio_per_round_median"] = median(
                [a / b for a, b in zip(times["reference"], times["ganforge"])]
            )
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------------
# run: whole trainings as processes
# -------------------------------------------------------------------------------------------------


def own_extensions_dir() -> str:
    """Where torch builds the compiled kernels for this benchmark and the commands it starts: the
    user's TORCH_EXTENSIONS_DIR if set, else a folder of this checkout's own under torch's cache, so
    another checkout (other kernel sources, same extension name) rebuilding them meanwhile cannot
    make one of the timed commands rebuild them too."""
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        key = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
        folder = Path.home() / ".cache" / "torch_extensions" / f"ganforge-vs-reference-{key}"
        os.environ["TORCH_EXTENSIONS_DIR"] = str(folder)
    return os.environ["TORCH_EXTENSIONS_DIR"]


def prepare_backend() -> str:
    """Let the default backend get ready once, untimed: ``auto`` on a CPU builds the compiled kernels the
    first time (minutes), which every process after this one finds built. Returns what it chose."""
    import torch

    from ganforge.engine.runtime import choose_backend
    from ganforge.plugins import collect_registries, make_plugin_manager

    registries = collect_registries(make_plugin_manager())
    backend, note = choose_backend(
        registries.resolve("backend", {"type": "auto"}, "backend"), registries, torch.device("cpu"), "fp32"
    )
    net = registries.resolve("generator", {"type": "resnet", "ngf": 8, "n_blocks": 1}, "generator").build()
    backend.prepare(net, torch.device("cpu"), training=True)
    return f"{getattr(backend, 'name', type(backend).__name__)} ({note})" if note else str(backend.name)


def timed_process(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise SystemExit(
            f"{' '.join(command[:3])} ... exited with {done.returncode} (its output's end is above)"
        )
    return seconds


def run_mode(args: argparse.Namespace, reference: Path | None) -> list[dict[str, Any]]:
    rows = []
    epochs = args.epochs
    for size in args.sizes or DEFAULT_SIZES["run"]:
        iters = args.iters or DEFAULT_ITERS["run"]
        images = max(1, math.ceil(iters / epochs))
        constant = math.ceil(epochs / 2)
        print(
            f"run: {size} px, {images} images per domain x {epochs} epochs = {images * epochs} iterations ...",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="ganforge-vs-ref-") as tmp:
            work = Path(tmp)
            data = work / "data"
            write_images(data / "trainA", images, size, seed=1)
            write_images(data / "trainB", images, size, seed=2)
            env = thread_env(args)
            commands: dict[str, list[str]] = {}
            if reference is not None:
                commands["reference"] = [
                    sys.executable, str(reference / "train.py"), "--dataroot", str(data), "--name", "bench",
                    "--checkpoints_dir", str(work / "ref"), *reference_options(args, size),
                    "--num_threads", str(args.workers), "--n_epochs", str(constant),
                    "--n_epochs_decay", str(epochs - constant), "--save_epoch_freq", str(epochs),
                ]  # fmt: skip
            commands["ganforge"] = [
                sys.executable, "-m", "ganforge", "run", str(PAPER_RECIPE), "--run-dir", str(work / "gf"),
                *(item for value in ganforge_overrides(args, size, data, epochs) for item in ("--set", value)),
            ]  # fmt: skip
            seconds: dict[str, list[float]] = {name: [] for name in commands}
            for r in range(args.repeats):
                order = list(commands) if r % 2 == 0 else list(reversed(commands))
                for name in order:
                    shutil.rmtree(work / ("ref" if name == "reference" else "gf"), ignore_errors=True)
                    seconds[name].append(timed_process(commands[name], work, env, work / f"{name}.log"))
        row: dict[str, Any] = {
            "size": size,
            "blocks": blocks_for(size, args.blocks),
            "images_per_domain": images,
            "epochs": epochs,
            "iterations": images * epochs,
            "workers": args.workers,
            "reference_s": seconds.get("reference"),
            "ganforge_s": seconds["ganforge"],
            "reference_median_s": median(seconds["reference"]) if "reference" in seconds else None,
            "ganforge_median_s": median(seconds["ganforge"]),
        }
        if "reference" in seconds:
            row["ratio"] = row["reference_median_s"] / row["ganforge_median_s"]
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------------
# translate: whole commands as processes
# -------------------------------------------------------------------------------------------------


def save_reference_generator(args: argparse.Namespace, size: int, target: Path) -> None:
    """Random 9-block (or --blocks) generator weights in the reference's own layout and file name.

    With the reference: built by its define_G; without: ganforge's ResNet generator, whose layer list
    and state-dict keys are the same (the CycleGAN plugin reads such files with --format reference).
    """
    import torch

    torch.manual_seed(0)
    blocks = blocks_for(size, args.blocks)
    if args.reference_path is not None:
        with reference_on_path(args.reference_path):
            from models import networks

            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # "initialize network"
                net = networks.define_G(
                    3, 3, args.ngf, f"resnet_{blocks}blocks", "instance", False, "normal", 0.02, []
                )
    else:
        from ganforge.plugins import collect_registries, make_plugin_manager

        registries = collect_registries(make_plugin_manager())
        spec = {"type": "resnet", "ngf": args.ngf, "n_blocks": blocks}
        net = registries.resolve("generator", spec, "generator").build()
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), target)


def translate_commands(
    args: argparse.Namespace,
    reference: Path | None,
    size: int,
    weights: Path,
    inputs: Path,
    n: int,
    out: Path,
) -> dict[str, list[str]]:
    """The reference's test.py, ganforge translate (its default batch) and ganforge translate --batch-size 4."""
    found: dict[str, list[str]] = {}
    if reference is not None:
        found["reference test.py"] = [
            sys.executable, str(reference / "test.py"), "--dataroot", str(inputs), "--name", "bench",
            "--model", "test", "--netG", f"resnet_{blocks_for(size, args.blocks)}blocks",
            "--ngf", str(args.ngf), "--norm", "instance", "--no_dropout", "--gpu_ids", "-1",
            "--checkpoints_dir", str(weights.parent.parent), "--results_dir", str(out / "reference"),
            "--preprocess", "none", "--num_test", str(n),
        ]  # fmt: skip
    for batch in (None, 4):
        name = "ganforge translate" + (f" --batch-size {batch}" if batch else "")
        found[name] = [
            sys.executable, "-m", "ganforge", "translate", str(weights), str(inputs),
            "--out", str(out / name.replace(" ", "_")), "--format", "reference", "--device", "cpu",
            *(["--batch-size", str(batch)] if batch else []),
        ]  # fmt: skip
    return found


def translate_mode(args: argparse.Namespace, reference: Path | None) -> list[dict[str, Any]]:
    rows = []
    for size in args.sizes or DEFAULT_SIZES["translate"]:
        count = max(2, args.iters or DEFAULT_ITERS["translate"])
        print(f"translate: {count} images of {size} px ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="ganforge-vs-ref-") as tmp:
            work = Path(tmp)
            write_images(work / "images", count, size, seed=3)
            write_images(work / "one", 1, size, seed=3)
            weights = work / "checkpoints" / "bench" / "latest_net_G.pth"
            save_reference_generator(args, size, weights)
            env = thread_env(args)

            many = translate_commands(args, reference, size, weights, work / "images", count, work / "many")
            one = translate_commands(args, reference, size, weights, work / "one", 1, work / "one_out")
            for name in one:  # untimed: each command's first start (file caches, compiled kernels)
                timed_process(one[name], work, env, work / "command.log")
                shutil.rmtree(work / "one_out", ignore_errors=True)
            seconds: dict[str, list[float]] = {name: [] for name in many}
            single: dict[str, list[float]] = {name: [] for name in many}
            for r in range(args.repeats):
                order = list(many) if r % 2 == 0 else list(reversed(many))
                for name in order:
                    for table, chosen in ((seconds, many), (single, one)):
                        shutil.rmtree(work / ("many" if chosen is many else "one_out"), ignore_errors=True)
                        table[name].append(timed_process(chosen[name], work, env, work / "command.log"))
        for name in many:
            whole, first = median(seconds[name]), median(single[name])
            rows.append({
                "size": size,
                "command": name,
                "images": count,
                "seconds": seconds[name],
                "one_image_seconds": single[name],
                "images_per_s": count / whole,
                "images_per_s_beyond_first": (count - 1) / (whole - first) if whole > first else None,
            })  # fmt: skip
    return rows


# -------------------------------------------------------------------------------------------------
# Output
# -------------------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: dict[str, Any]) -> None:
    rows = [["what", "reference", "ganforge", "unit", "ratio (ref/ganforge time)"]]
    for r in results.get("step", []):
        rows.append([
            f"training step, {r['size']} px, {r['blocks']} blocks (median of {len(r['ganforge_ms'])})",
            fmt(r["reference_median_ms"], ".0f"), fmt(r["ganforge_median_ms"], ".0f"), "ms/step",
            fmt(r.get("ratio"), ".2f") + ("x" if r.get("ratio") else ""),
        ])  # fmt: skip
    for r in results.get("run", []):
        rows.append([
            f"whole training, {r['size']} px, {r['iterations']} iterations",
            fmt(r["reference_median_s"], ".1f"), fmt(r["ganforge_median_s"], ".1f"), "s",
            fmt(r.get("ratio"), ".2f") + ("x" if r.get("ratio") else ""),
        ])  # fmt: skip
    translations = results.get("translate", [])
    for size in sorted({r["size"] for r in translations}):
        same = [r for r in translations if r["size"] == size]
        ref = next((r for r in same if r["command"].startswith("reference")), None)
        for r in same:
            if r is ref:
                continue
            ratio = r["images_per_s"] / ref["images_per_s"] if ref else None
            steady = r["images_per_s_beyond_first"]
            ref_steady = ref["images_per_s_beyond_first"] if ref else None
            rows.append([
                f"translation, {size} px, {r['images']} images, {r['command']} vs test.py",
                fmt(ref["images_per_s"] if ref else None, ".2f"), fmt(r["images_per_s"], ".2f"), "images/s",
                fmt(ratio, ".2f") + ("x" if ratio else ""),
            ])  # fmt: skip
            if steady and (ref_steady or ref is None):
                ratio = steady / ref_steady if ref_steady else None
                rows.append([
                    "  beyond the first image (start-up taken away)",
                    fmt(ref_steady, ".2f"), fmt(steady, ".2f"), "images/s", fmt(ratio, ".2f") + ("x" if ratio else ""),
                ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for k, row in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print(flush=True)


def smoke(args: argparse.Namespace) -> None:
    """Tiny everything, for tests: correctness of the plumbing, not timing."""
    args.sizes = args.sizes or [32]
    args.iters = args.iters or 2
    args.warmup = 1
    args.ngf = args.ndf = 8
    args.workers = 0
    args.repeats = 1
    args.epochs = 2


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 16 or s % 4 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"'{text}': give comma-separated sides in pixels, multiples of 4, >= 16"
        )
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["step", "run", "translate", "all"])
    parser.add_argument("--reference", help=f"checkout of pytorch-CycleGAN-and-pix2pix (default: ${ENV_VAR})")
    parser.add_argument(
        "--ganforge-only", action="store_true", help="time ganforge's side alone (no reference)"
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        help="image sides, e.g. 64,128,256 (defaults: step 64,128,256; run 128; translate 256)",
    )
    parser.add_argument(
        "--iters",
        type=int,
        help="step: timed steps per side (10); run: training iterations (40); translate: images (20)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="step: untimed steps per side first (2)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run/translate: times each command runs, in turns (1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=2, help="run: epochs the iterations are spread over, half decaying (2)"
    )
    parser.add_argument(
        "--blocks",
        choices=["auto", "6", "9"],
        default="auto",
        help="residual blocks (auto: 6 below 256 px, 9 at 256)",
    )
    parser.add_argument("--ngf", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--ndf", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="run: data-loading processes on both sides (4, the reference's default)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads on both sides (this process; OMP_NUM_THREADS for the commands)",
    )
    parser.add_argument("--out", type=Path, help="write the raw numbers to this JSON file")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, widths and counts (tests the plumbing, not speed)"
    )
    args = parser.parse_args(argv)
    try:
        reference = find_reference(args)
    except Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.smoke:
        smoke(args)
    for option in ("iters", "epochs", "repeats"):
        if getattr(args, option, None) is not None and getattr(args, option) < 1:
            parser.error(f"--{option} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    args.reference_path = reference

    import torch

    sys.path.insert(0, str(HERE))
    from train_step import matmul_peak

    sys.path.remove(str(HERE))
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak("float32", seconds=0.2 if args.smoke else 2.0)
    commit = reference_commit(reference) if reference else None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; fp32 matmul peak {peak:.1f} GFLOP/s"
    )
    print(
        f"reference: {reference} (commit {commit or 'unknown'})"
        if reference
        else "reference: none (--ganforge-only)"
    )
    results: dict[str, Any] = {
        "machine": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fp32_matmul_gflops": peak,
        },
        "reference": {"path": str(reference), "commit": commit} if reference else None,
        "settings": {
            "mode": args.mode,
            "blocks": args.blocks,
            "ngf": args.ngf,
            "ndf": args.ndf,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "epochs": args.epochs,
            "workers": args.workers,
            "threads": args.threads,
            "smoke": args.smoke,
            "recipe": str(PAPER_RECIPE.relative_to(REPO)),
        },
    }
    results["settings"]["torch_extensions_dir"] = own_extensions_dir()
    results["settings"]["ganforge_backend"] = prepare_backend()
    modes = ["step", "run", "translate"] if args.mode == "all" else [args.mode]
    for mode in modes:
        if mode == "step":
            iters = args.iters
            args.iters = iters or DEFAULT_ITERS["step"]
            results["step"] = step_mode(args, reference)
            args.iters = iters
        elif mode == "run":
            results["run"] = run_mode(args, reference)
        else:
            results["translate"] = translate_mode(args, reference)
    after = matmul_peak("float32", seconds=0.2 if args.smoke else 2.0)
    results["machine"]["fp32_matmul_gflops_after"] = after
    print_table(results)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s before the timings, {after:.1f} after")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"raw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
