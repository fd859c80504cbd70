"""How fast is one CycleGAN training step and one translation, against this machine's own limits?

    python benchmarks/train_step.py              # 64/128/256 px x 6/9 blocks: plain eager fp32 vs fastest
    python benchmarks/train_step.py --compare    # every speed option side by side, 128 px / 6 blocks
    python benchmarks/train_step.py --inference  # translation images/s, 256 px / 9 blocks
    python benchmarks/train_step.py --compare --device cuda --size 256 --blocks 9   # the GPU check (benchmarks/gpu_check.sh)

Every configuration lives in its own worker process (so its memory is its own). After each worker has
built its model and taken its warm-up step (where torch.compile compiles), the workers take their timed
steps in turns, round after round, so a slow spell of a shared machine lands on every configuration
alike and the ratios stay fair. Printed, all measured in this run: the machine's fp32 and bf16 matmul
peaks, ms per step (median), FLOPs per step (torch's FlopCounterMode: what the configuration really
executes, so the kernels' Winograd layers count fewer), achieved GFLOP/s and its fraction of the fp32 peak,
peak resident memory while stepping (the warm-up's, which holds compilation, is shown apart), and
each configuration's losses against the plain path's (relative difference, first step and all steps).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

#: Speed options compared with --compare: (name, model params, train settings).
OPTIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain eager fp32 (reference order)", {"batch_calls": False}, {"adam": "for_loop"}),
    ("batched calls", {"batch_calls": True}, {"adam": "for_loop"}),
    ("batched + foreach Adam", {"batch_calls": True}, {"adam": "foreach"}),
    ("batched + fused Adam", {"batch_calls": True}, {"adam": "fused"}),
    ("batched + foreach + channels_last", {"batch_calls": True}, {"adam": "foreach", "channels_last": True}),
    ("batched + foreach + bf16 autocast", {"batch_calls": True}, {"adam": "foreach", "precision": "bf16"}),
    ("foreach + compile (calls not batched)", {"batch_calls": False}, {"adam": "foreach", "compile": True}),
    ("batched + foreach + compile", {"batch_calls": True}, {"adam": "foreach", "compile": True}),
    (
        "batched + foreach + cpu_kernels, torch-op transforms",
        {"batch_calls": True},
        {"adam": "foreach", "backend": "cpu_kernels", "env": {"GANFORGE_WINOGRAD_KERNELS": "torch"}},
    ),
    ("batched + foreach + cpu_kernels", {"batch_calls": True}, {"adam": "foreach", "backend": "cpu_kernels"}),
    (
        "batched + fused Adam + cpu_kernels",
        {"batch_calls": True},
        {"adam": "fused", "backend": "cpu_kernels"},
    ),
    (
        "batched + foreach + cpu_kernels + compile",
        {"batch_calls": True},
        {"adam": "foreach", "backend": "cpu_kernels", "compile": True},
    ),
]

#: Speed options compared with --compare on a CUDA device.
CUDA_OPTIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain eager fp32 (reference order)", {"batch_calls": False}, {"adam": "for_loop", "cudnn_benchmark": False}),
    ("batched + fused Adam + cudnn.benchmark", {"batch_calls": True}, {"adam": "fused"}),
    ("+ channels_last", {"batch_calls": True}, {"adam": "fused", "channels_last": True}),
    ("+ bf16 autocast", {"batch_calls": True}, {"adam": "fused", "precision": "bf16"}),
    ("+ fp16 autocast + grad scaler", {"batch_calls": True}, {"adam": "fused", "precision": "fp16"}),
    ("+ bf16 + channels_last", {"batch_calls": True}, {"adam": "fused", "precision": "bf16", "channels_last": True}),
    (
        "+ bf16 + channels_last + compile",
        {"batch_calls": True},
        {"adam": "fused", "precision": "bf16", "channels_last": True, "compile": True},
    ),
    (
        "+ bf16 + channels_last + compile + CUDA graphs",
        {"batch_calls": True},
        {"adam": "fused", "precision": "bf16", "channels_last": True, "compile": True, "cuda_graphs": True},
    ),
]

#: The fastest options validated on a CPU without fast bf16, used for the per-size table.
FASTEST = ({"batch_calls": True}, {"adam": "foreach", "backend": "cpu_kernels"})

#: Translation modes compared with --inference: (name, settings).
INFERENCE_MODES: list[tuple[str, dict[str, Any]]] = [
    ("plain eager fp32 (no_grad)", {}),
    ("inference_mode", {"inference_mode": True}),
    ("inference_mode + channels_last", {"inference_mode": True, "channels_last": True}),
    ("inference_mode + bf16 autocast", {"inference_mode": True, "bf16": True}),
    ("compile", {"inference_mode": True, "compile": True}),
    ("compile + freezing + channels_last", {"inference_mode": True, "compile": True, "freezing": True, "channels_last": True}),
    (
        "cpu_kernels, torch-op transforms",
        {"inference_mode": True, "backend": "cpu_kernels", "env": {"GANFORGE_WINOGRAD_KERNELS": "torch"}},
    ),
    ("cpu_kernels", {"inference_mode": True, "backend": "cpu_kernels"}),
    ("cpu_kernels, batch 4", {"inference_mode": True, "backend": "cpu_kernels", "batch": 4}),
    ("cpu_kernels + compile", {"inference_mode": True, "backend": "cpu_kernels", "compile": True}),
    (
        "cpu_kernels + compile + freezing",
        {"inference_mode": True, "backend": "cpu_kernels", "compile": True, "freezing": True},
    ),
]


def matmul_peak(dtype_name: str, seconds: float = 2.0, device: str = "cpu") -> float:
    """GFLOP/s of a square matmul, best of repeated timings (this machine's practical peak).

    The size grows from 128 until one product takes 20 ms (at most 2048), so a dtype without
    hardware support (bf16 on a CPU without AVX512-BF16) is measured in seconds, not minutes.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    cuda = device.startswith("cuda")
    largest = 8192 if cuda else 2048

    def timed(a: torch.Tensor, b: torch.Tensor) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(*(torch.ones(64, 64, dtype=dtype, device=device) for _ in range(2)))  # library start-up, not arithmetic
    n = 128
    while True:
        a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
        if timed(a, b) > 0.02 or n >= largest:
            break
        n *= 2
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = min(best, timed(a, b))
    return 2 * n**3 / best / 1e9


# -------------------------------------------------------------------------------------------------
# Workers: one configuration each, stepping when told to
# -------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Resident-memory high-water mark since the last :func:`reset_peak_rss` (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def build_training(size: int, blocks: int, model_params: dict[str, Any], settings: dict[str, Any]):
    import torch

    from ganforge.model import Optimizers
    from ganforge.engine.runtime import Runtime, choose_backend
    from ganforge.plugins import collect_registries, make_plugin_manager

    torch.manual_seed(0)
    registries = collect_registries(make_plugin_manager())
    spec = {"type": "cyclegan", "generator": {"type": "resnet", "n_blocks": blocks}, **model_params}
    model = registries.resolve("model", spec, "model").build(0)
    device = torch.device(settings.get("device", "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.get("cudnn_benchmark", True)
    precision = settings.get("precision", "fp32")
    # the plain rows name torch's own layers outright (direct), not auto, which takes the kernels on a CPU
    backend_spec = registries.resolve("backend", {"type": settings.get("backend", "direct")}, "backend")
    backend, _ = choose_backend(backend_spec, registries, device, precision)
    runtime = Runtime(
        device,
        precision,
        channels_last=settings.get("channels_last", False),
        compile=settings.get("compile", False),
        backend=backend,
        cuda_graphs=settings.get("cuda_graphs", False),
    )
    model = runtime.prepare_model(model, model.networks())
    adam_spec = {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": settings.get("adam", "auto")}
    adam = registries.resolve("optimizer", adam_spec, "o")
    optimizers = Optimizers(
        {g: adam.build(list(p)) for g, p in model.optimizer_groups().items()}, runtime.grad_scaler()
    )
    generator = torch.Generator().manual_seed(1)
    batches = [
        runtime.prepare_batch({"A": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
                               "B": torch.rand(1, 3, size, size, generator=generator) * 2 - 1})
        for _ in range(4)
    ]
    return model, optimizers, runtime, batches


def training_worker(config: dict[str, Any]) -> None:
    """Build, warm up, then take one training step per 'step' line on stdin; 'done' ends with totals."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    settings = config["settings"]
    model, optimizers, runtime, batches = build_training(config["size"], config["blocks"], config["model_params"], settings)
    count = 0

    def step(counter: FlopCounterMode | None = None) -> dict[str, float]:
        nonlocal count
        runtime.step_begin()
        with runtime.autocast():
            if counter is None:
                out = model.train_step(batches[count % len(batches)], optimizers)
            else:
                with counter:
                    out = model.train_step(batches[count % len(batches)], optimizers)
        optimizers.end_step()
        count += 1
        return {k: float(v) for k, v in out.items()}

    start = time.perf_counter()
    losses = [step()]
    reply({"warmup_s": time.perf_counter() - start, "warmup_rss_mb": peak_rss_mb()})
    reset_peak_rss()
    cuda = runtime.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for line in sys.stdin:
        if line.strip() == "step":
            start = time.perf_counter()
            losses.append(step())  # the losses' float() waits for the device, so the time is complete
            reply({"ms": 1000 * (time.perf_counter() - start)})
        else:
            break
    flops = None
    # on a GPU the memory that matters is the device's: its allocator's peak while stepping
    rss = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    if not settings.get("compile"):  # compiled kernels hide their FLOPs from the counter
        counter = FlopCounterMode(display=False)
        step(counter)
        flops = counter.get_total_flops()
    reply({"losses": losses, "flops": flops, "rss_mb": rss, "threads": torch.get_num_threads()})


def inference_worker(config: dict[str, Any]) -> None:
    """Build one generator, translate once (warm-up), then once per 'step' line; 'done' saves the output."""
    import torch

    from ganforge.plugins import collect_registries, make_plugin_manager

    mode = config["mode"]
    torch.manual_seed(0)
    registries = collect_registries(make_plugin_manager())
    net = registries.resolve("generator", {"type": "resnet", "n_blocks": config["blocks"]}, "g").build().eval()
    batch = mode.get("batch", 1)
    x = torch.rand(batch, 3, config["size"], config["size"], generator=torch.Generator().manual_seed(1)) * 2 - 1
    if mode.get("backend"):  # as `ganforge translate --backend NAME` does
        backend = registries.resolve("backend", {"type": mode["backend"]}, "backend").build()
        backend.prepare(net, torch.device("cpu"), training=False)
    if mode.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode.get("compile"):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = mode.get("freezing", False)
        net = torch.compile(net)
    context = torch.inference_mode if mode.get("inference_mode") else torch.no_grad
    bf16 = mode.get("bf16", False)
    with context(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        start = time.perf_counter()
        output = net(x)
        reply({"warmup_s": time.perf_counter() - start, "warmup_rss_mb": peak_rss_mb()})
        reset_peak_rss()
        for line in sys.stdin:
            if line.strip() != "step":
                break
            start = time.perf_counter()
            net(x)
            reply({"ms": 1000 * (time.perf_counter() - start) / batch})
    torch.save(output[:1].float().contiguous(), config["output"])
    reply({"rss_mb": peak_rss_mb()})


def reply(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


# -------------------------------------------------------------------------------------------------
# The conductor
# -------------------------------------------------------------------------------------------------


class Worker:
    alive: ClassVar[list[subprocess.Popen]] = []

    def __init__(self, kind: str, config: dict[str, Any], wait: bool = True) -> None:
        extra_env = config.get("settings", config.get("mode", {})).get("env", {})
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **extra_env},
        )
        Worker.alive.append(self.process)
        self.times: list[float] = []
        self.warmup = self.read() if wait else {}

    def wait_warmup(self) -> None:
        if not self.warmup:
            self.warmup = self.read()

    def read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.process.wait()
            for process in Worker.alive:  # the others would only wait for a 'step' that never comes
                process.kill()
            raise SystemExit(f"a benchmark worker exited with {self.process.returncode}; its error is above")
        return json.loads(line)

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def step(self) -> None:
        self.send("step")
        self.times.append(self.read()["ms"])

    def finish(self) -> dict[str, Any]:
        self.send("done")
        result = {**self.warmup, **self.read()}
        self.process.wait()
        result["ms"] = median(self.times)
        result["times"] = self.times
        return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def per_round(base: list[float], times: list[float]) -> str:
    """The speed-up round by round: within a round the configurations step seconds apart, so a slow spell
    of the machine lands on both sides of each ratio. Median, and the middle half of the rounds."""
    ratios = [b / t for b, t in zip(base, times)]
    if len(ratios) < 4:
        return f"{median(ratios):.2f}x"
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return f"{q2:.2f}x ({q1:.2f}-{q3:.2f})"


def in_turns(workers: list[Worker], rounds: int) -> None:
    """Step every worker once per round, starting each round one worker later."""
    for r in range(rounds):
        for i in range(len(workers)):
            workers[(i + r) % len(workers)].step()


def loss_diffs(losses: list[dict[str, float]], base: list[dict[str, float]]) -> tuple[float, float]:
    """Largest relative loss difference to the plain path: at the first step, and over all steps."""

    def rel(a: dict[str, float], b: dict[str, float]) -> float:
        return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b)

    return rel(losses[0], base[0]), max(rel(a, b) for a, b in zip(losses, base))


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(flush=True)


def chosen_by(args: argparse.Namespace, name: str, first: bool) -> bool:
    """--only: the reference (first) row always, the others when their name holds one of the words."""
    return first or not args.only or any(word.strip() in name for word in args.only.split(","))


def compare(args: argparse.Namespace, fp32_peak: float, bf16_peak: float) -> None:
    import torch

    workers: list[tuple[str, Worker]] = []
    chosen = []
    skipped = []
    cuda = args.device.startswith("cuda")
    for name, model_params, settings in CUDA_OPTIONS if cuda else OPTIONS:
        settings = {**settings, "device": args.device}
        if settings.get("precision") == "bf16" and bf16_peak < fp32_peak / 2 and not cuda:
            skipped.append(f"{name}: skipped, bf16 matmul runs at {bf16_peak / fp32_peak:.0%} of fp32 here")
            continue
        if settings.get("compile") and args.skip_compile or not chosen_by(args, name, first=not workers):
            continue
        print(f"warming up: {name}", flush=True)
        config = {"size": args.size, "blocks": args.blocks, "model_params": model_params, "settings": settings}
        # on a GPU the warm-ups (compilation, cudnn's search) run side by side on the host's cores
        workers.append((name, Worker("train", config, wait=not cuda)))
        chosen.append((name, model_params, settings))
    for _, worker in workers:
        worker.wait_warmup()
    print(f"timing {args.steps} rounds ...", flush=True)
    in_turns([w for _, w in workers], args.steps)
    results = [(name, w.finish()) for name, w in workers]
    fp32_peak = max(fp32_peak, matmul_peak("float32", device=args.device))
    bf16_peak = max(bf16_peak, matmul_peak("bfloat16", device=args.device))
    base = results[0][1]
    by_algorithm = {
        s.get("backend", "direct"): r["flops"] for (_, _, s), (_, r) in zip(chosen, results) if r["flops"]
    }
    rows = []
    for (_, _, settings), (name, r) in zip(chosen, results):
        first, overall = loss_diffs(r["losses"], base["losses"])
        # compiled: the arithmetic of the same configuration in eager mode
        flops = r["flops"] or by_algorithm.get(settings.get("backend", "direct"), base["flops"])
        gflops = flops / 1e9 / (r["ms"] / 1000)
        peak = fp32_peak if settings.get("precision", "fp32") == "fp32" else bf16_peak  # fp16 runs at bf16's rate
        rows.append([
            name, f"{r['ms']:.0f}", f"{base['ms'] / r['ms']:.2f}x", per_round(base["times"], r["times"]),
            f"{r['flops'] / 1e9:.0f}" if r["flops"] else "(eager's)", f"{gflops:.0f}", f"{gflops / peak:.0%}",
            f"{r['rss_mb']:.0f}", f"{r['rss_mb'] / base['rss_mb']:.2f}x", f"{r['warmup_s']:.1f}", f"{r['warmup_rss_mb']:.0f}",
            f"{first:.1e}", f"{overall:.1e}",
        ])
    memory = "device memory peak MB" if cuda else "step RSS MB"
    print(f"training step on {args.device}, {args.size} px, {args.blocks} blocks, batch 1, {base['threads']} threads; "
          f"median of {args.steps} steps taken in turns; matmul peak fp32 {fp32_peak:.1f}, bf16 {bf16_peak:.1f} GFLOP/s "
          "(best of before and after)")
    if cuda and torch.backends.cudnn.allow_tf32:
        print("fp32 convolutions run as TF32 on tensor cores (torch.backends.cudnn.allow_tf32, torch's default), "
              "so the fp32 rows can pass the fp32 matmul peak")
    table(rows, ["option", "ms/step", "speed-up", "per round", "GFLOP/step", "GFLOP/s", "of its peak", memory,
                 "RSS ratio", "warm-up s", "warm-up RSS MB", "loss rel diff step 1", f"over {args.steps + 1} steps"])
    if cuda:
        print("warm-up s: the workers warmed up side by side on the host's cores, so each figure holds the others' load")
    for line in skipped:
        print(line)


def inference(args: argparse.Namespace, fp32_peak: float, bf16_peak: float) -> None:
    import tempfile

    import torch

    from ganforge.plugins import collect_registries, make_plugin_manager

    registries = collect_registries(make_plugin_manager())
    net = registries.resolve("generator", {"type": "resnet", "n_blocks": args.blocks}, "g").build()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, 3, args.size, args.size))
    direct_flops = counter.get_total_flops()

    workers: list[tuple[str, Worker, Path]] = []
    skipped = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, mode) in enumerate(INFERENCE_MODES):
            if mode.get("bf16") and bf16_peak < fp32_peak / 2:
                skipped.append(f"{name}: skipped, bf16 matmul runs at {bf16_peak / fp32_peak:.0%} of fp32 here")
                continue
            if mode.get("compile") and args.skip_compile or not chosen_by(args, name, first=not workers):
                continue
            print(f"warming up: {name}", flush=True)
            output = Path(tmp) / f"{i}.pt"
            config = {"size": args.size, "blocks": args.blocks, "mode": mode, "output": str(output)}
            workers.append((name, Worker("infer", config), output))
        print(f"timing {args.steps} rounds ...", flush=True)
        in_turns([w for _, w, _ in workers], args.steps)
        results = [(name, w.finish(), torch.load(out)) for name, w, out in workers]
    fp32_peak = max(fp32_peak, matmul_peak("float32"))
    base, base_out = results[0][1], results[0][2]
    rows = []
    for name, r, out in results:
        images_per_s = 1000 / r["ms"]
        gflops = direct_flops / 1e9 * images_per_s
        rows.append([
            name, f"{images_per_s:.2f}", f"{base['ms'] / r['ms']:.2f}x", per_round(base["times"], r["times"]),
            f"{gflops:.0f}", f"{gflops / fp32_peak:.0%}",
            f"{r['rss_mb']:.0f}", f"{r['rss_mb'] / base['rss_mb']:.2f}x", f"{r['warmup_s']:.1f}",
            f"{(out - base_out).abs().max().item():.1e}",
        ])
    print(f"translation, {args.size} px, {args.blocks} blocks ({direct_flops / 1e9:.1f} GFLOP per image by direct "
          f"convolution); median of {args.steps} calls taken in turns; fp32 peak {fp32_peak:.1f} GFLOP/s")
    table(rows, ["mode", "images/s", "vs plain", "per round", "direct-equiv GFLOP/s", "of fp32 peak", "RSS MB", "RSS ratio",
                 "first call s", "max |diff| vs plain"])
    for line in skipped:
        print(line)


def sizes(args: argparse.Namespace, fp32_peak: float) -> None:
    measured = []
    for size, blocks in [(64, 6), (64, 9), (128, 6), (128, 9), (256, 6), (256, 9)]:
        steps = args.steps if size < 256 else max(2, args.steps // 2)
        print(f"{size} px, {blocks} blocks ...", flush=True)
        plain = Worker("train", {"size": size, "blocks": blocks, "model_params": {"batch_calls": False}, "settings": {"adam": "for_loop"}})
        fast = Worker("train", {"size": size, "blocks": blocks, "model_params": FASTEST[0], "settings": FASTEST[1]})
        in_turns([plain, fast], steps)
        measured.append((size, blocks, plain.finish(), fast.finish()))
    fp32_peak = max(fp32_peak, matmul_peak("float32"))
    rows = []
    for size, blocks, p, f in measured:
        achieved = p["flops"] / 1e9 / (p["ms"] / 1000)
        rows.append([
            f"{size} px, {blocks} blocks", f"{p['ms']:.0f}", f"{p['flops'] / 1e9:.0f}", f"{achieved:.0f}",
            f"{achieved / fp32_peak:.0%}", f"{p['rss_mb']:.0f}", f"{f['ms']:.0f}", f"{p['ms'] / f['ms']:.2f}x",
            per_round(p["times"], f["times"]),
            f"{f['flops'] / 1e9:.0f}", f"{f['rss_mb']:.0f}", f"{f['rss_mb'] / p['rss_mb']:.2f}x",
            f"{loss_diffs(f['losses'], p['losses'])[0]:.1e}",
        ])
    print("training step, batch 1: plain eager fp32 (reference order) vs batched + foreach + cpu_kernels; "
          f"fp32 peak {fp32_peak:.1f} GFLOP/s (best of before and after)")
    table(rows, ["config", "plain ms", "GFLOP/step", "GFLOP/s", "of fp32 peak", "RSS MB", "fastest ms", "speed-up", "per round",
                 "GFLOP/step", "RSS MB", "RSS ratio", "loss rel diff step 1"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        {"train": training_worker, "infer": inference_worker}[sys.argv[2]](json.loads(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="speed options side by side")
    parser.add_argument("--inference", action="store_true", help="translation images/s")
    parser.add_argument("--size", type=int, help="image side (default 128 for --compare, 256 for --inference)")
    parser.add_argument("--blocks", type=int, help="residual blocks (default 6 for --compare, 9 for --inference)")
    parser.add_argument("--steps", type=int, default=6, help="timed rounds (steps or calls per configuration)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile options")
    parser.add_argument("--only", help="comma-separated parts of option names to run (besides the plain reference)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N for --compare (the GPU options)")
    args = parser.parse_args()
    args.size = args.size or (256 if args.inference else 128)
    args.blocks = args.blocks or (9 if args.inference else 6)

    import torch

    if args.device != "cpu" and not args.compare:
        parser.error("--device is for --compare; the size table and --inference run on the CPU")
    # measured again at the end
    fp32_peak, bf16_peak = matmul_peak("float32", device=args.device), matmul_peak("bfloat16", device=args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"matmul peak measured here: fp32 {fp32_peak:.1f} GFLOP/s, bf16 {bf16_peak:.1f} GFLOP/s\n", flush=True)
    if args.inference:
        inference(args, fp32_peak, bf16_peak)
    elif args.compare:
        compare(args, fp32_peak, bf16_peak)
    else:
        sizes(args, fp32_peak)


if __name__ == "__main__":
    main()
