"""How fast is one CycleGAN training step and one translation, against this machine's own limits?

    python benchmarks/train_step.py                 # table: 64/128/256 px x 6/9 blocks, plain eager fp32
    python benchmarks/train_step.py --compare       # speed options side by side at 128 px / 6 blocks
    python benchmarks/train_step.py --inference     # translation images/s at 256 px / 9 blocks

Each configuration runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own.
Every figure is measured in this run: the fp32 and bf16 matmul peaks of this machine, FLOPs per step
(torch's FlopCounterMode), ms per step, and from them GFLOP/s and the fraction of the fp32 peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

#: Speed options compared with --compare: (name, model params, train settings).
OPTIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain eager fp32 (reference order)", {"batch_calls": False}, {"adam": "for_loop"}),
    ("batched calls", {"batch_calls": True}, {"adam": "for_loop"}),
    ("batched + foreach Adam", {"batch_calls": True}, {"adam": "foreach"}),
    ("batched + foreach + channels_last", {"batch_calls": True}, {"adam": "foreach", "channels_last": True}),
    ("batched + foreach + bf16 autocast", {"batch_calls": True}, {"adam": "foreach", "precision": "bf16"}),
    ("batched + foreach + compile", {"batch_calls": True}, {"adam": "foreach", "compile": True}),
    (
        "batched + foreach + compile + channels_last",
        {"batch_calls": True},
        {"adam": "foreach", "compile": True, "channels_last": True},
    ),
]


def matmul_peak(dtype_name: str, seconds: float = 2.0) -> float:
    """GFLOP/s of a square matmul, best of repeated timings (this machine's practical peak).

    The size grows from 128 until one product takes 20 ms (at most 2048), so a dtype without
    hardware support (bf16 on a CPU without AVX512-BF16) is measured in seconds, not minutes.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    n = 128
    while True:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        start = time.perf_counter()
        torch.mm(a, b)
        if time.perf_counter() - start > 0.02 or n >= 2048:
            break
        n *= 2
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def build(size: int, blocks: int, model_params: dict[str, Any], settings: dict[str, Any]):
    import torch

    from ganforge.engine.model import Optimizers
    from ganforge.engine.runtime import Runtime
    from ganforge.plugins import collect_registries, make_plugin_manager

    torch.manual_seed(0)
    registries = collect_registries(make_plugin_manager())
    spec = {"type": "cyclegan", "generator": {"type": "resnet", "n_blocks": blocks}, **model_params}
    model = registries.resolve("model", spec, "model").build(0)
    runtime = Runtime(
        torch.device("cpu"),
        settings.get("precision", "fp32"),
        channels_last=settings.get("channels_last", False),
        compile=settings.get("compile", False),
    )
    model = runtime.prepare_model(model, model.networks())
    adam = registries.resolve("optimizer", {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": settings.get("adam", "auto")}, "o")
    optimizers = Optimizers({g: adam.build(list(p)) for g, p in model.optimizer_groups().items()})
    generator = torch.Generator().manual_seed(1)
    batches = [
        runtime.prepare_batch({"A": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
                               "B": torch.rand(1, 3, size, size, generator=generator) * 2 - 1})
        for _ in range(4)
    ]
    return model, optimizers, runtime, batches


def run_training(size: int, blocks: int, steps: int, model_params: dict, settings: dict) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, optimizers, runtime, batches = build(size, blocks, model_params, settings)
    losses = []

    def step(i: int) -> None:
        with runtime.autocast():
            out = model.train_step(batches[i % len(batches)], optimizers)
        optimizers.end_step()
        losses.append({k: float(v) for k, v in out.items()})

    start = time.perf_counter()
    step(0)  # warm-up (and compilation, when asked)
    first = time.perf_counter() - start
    times = []
    for i in range(1, steps + 1):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    flops = None
    if not settings.get("compile"):
        counter = FlopCounterMode(display=False)
        with counter:
            step(steps + 1)
        flops = counter.get_total_flops()
    return {
        "ms": 1000 * sorted(times)[len(times) // 2],
        "first_s": first,
        "flops": flops,
        "losses": losses[: steps + 1],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def run_inference(size: int, blocks: int, images: int, mode: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ganforge.plugins import collect_registries, make_plugin_manager

    torch.manual_seed(0)
    registries = collect_registries(make_plugin_manager())
    net = registries.resolve("generator", {"type": "resnet", "n_blocks": blocks}, "g").build().eval()
    batch = mode.get("batch", 1)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    if mode.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    context = torch.inference_mode if mode.get("inference_mode") else torch.no_grad
    dtype = torch.bfloat16 if mode.get("bf16") else None
    if mode.get("compile"):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = mode.get("freezing", False)
        net = torch.compile(net)
    with context(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        start = time.perf_counter()
        reference = net(x)
        first = time.perf_counter() - start
        times = []
        for _ in range(max(1, images // batch)):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    per_image = sorted(times)[len(times) // 2] / batch
    return {
        "images_per_s": 1 / per_image,
        "first_s": first,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checksum": float(reference.float().abs().mean()),
    }


def in_subprocess(kind: str, **kwargs: Any) -> dict[str, Any]:
    code = f"import json, sys; sys.path.insert(0, 'benchmarks'); import train_step as b; print(json.dumps(b.{kind}(**json.loads(sys.argv[1]))))"
    result = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="speed options side by side")
    parser.add_argument("--inference", action="store_true", help="translation images/s")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile options")
    args = parser.parse_args()

    import torch

    fp32_peak, bf16_peak = matmul_peak("float32"), matmul_peak("bfloat16")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"matmul peak measured here: fp32 {fp32_peak:.1f} GFLOP/s, bf16 {bf16_peak:.1f} GFLOP/s\n")

    if args.inference:
        modes = [
            ("plain eager fp32 (no_grad, batch 1)", {}),
            ("inference_mode", {"inference_mode": True}),
            ("inference_mode + channels_last", {"inference_mode": True, "channels_last": True}),
            ("inference_mode + bf16 autocast", {"inference_mode": True, "bf16": True}),
            ("compile", {"inference_mode": True, "compile": True}),
            ("compile + freezing", {"inference_mode": True, "compile": True, "freezing": True}),
            ("compile + freezing + channels_last", {"inference_mode": True, "compile": True, "freezing": True, "channels_last": True}),
            ("compile + freezing, batch 4", {"inference_mode": True, "compile": True, "freezing": True, "batch": 4}),
        ]
        rows, base = [], None
        for name, mode in modes:
            if mode.get("bf16") and bf16_peak < fp32_peak / 2:
                rows.append([name, "skipped: no fast bf16 on this CPU", "", "", "", "", ""])
                continue
            r = in_subprocess("run_inference", size=args.size, blocks=args.blocks, images=6, mode=mode)
            base = base or r
            rows.append([name, f"{r['images_per_s']:.2f}", f"{r['images_per_s'] / base['images_per_s']:.2f}x",
                         f"{r['first_s']:.1f}", f"{r['rss_mb']:.0f}", f"{r['rss_mb'] / base['rss_mb']:.2f}x",
                         f"{abs(r['checksum'] - base['checksum']):.1e}"])
        print(f"translation, {args.size} px, {args.blocks} blocks")
        table(rows, ["mode", "images/s", "vs plain", "first call s", "peak RSS MB", "RSS vs plain", "|mean| diff"])
        return

    if args.compare:
        rows, base = [], None
        for name, model_params, settings in OPTIONS:
            if settings.get("precision") == "bf16" and bf16_peak < fp32_peak / 2:
                rows.append([name, "skipped: no fast bf16 on this CPU", "", "", "", "", "", ""])
                continue
            if settings.get("compile") and args.skip_compile:
                continue
            r = in_subprocess("run_training", size=args.size, blocks=args.blocks, steps=args.steps, model_params=model_params, settings=settings)
            base = base or r
            diff = max(abs(a[k] - b[k]) for a, b in zip(r["losses"], base["losses"]) for k in a)
            step0 = max(abs(r["losses"][0][k] - base["losses"][0][k]) for k in r["losses"][0])
            rows.append([name, f"{r['ms']:.0f}", f"{base['ms'] / r['ms']:.2f}x", f"{r['first_s']:.1f}",
                         f"{r['rss_mb']:.0f}", f"{r['rss_mb'] / base['rss_mb']:.2f}x", f"{step0:.1e}", f"{diff:.1e}"])
            print("  ".join(rows[-1]), flush=True)  # a row as soon as it is measured
        print(f"training step, {args.size} px, {args.blocks} blocks, batch 1; median of {args.steps} steps after one warm-up")
        table(rows, ["option", "ms/step", "speed-up", "first step s", "peak RSS MB", "RSS ratio", "step-0 loss diff", f"max loss diff ({args.steps + 1} steps)"])
        return

    rows = []
    for size, blocks in [(64, 6), (64, 9), (128, 6), (128, 9), (256, 6), (256, 9)]:
        steps = args.steps if size < 256 else 2
        r = in_subprocess("run_training", size=size, blocks=blocks, steps=steps, model_params={"batch_calls": False}, settings={"adam": "for_loop"})
        gflops = r["flops"] / 1e9
        achieved = gflops / (r["ms"] / 1000)
        rows.append([f"{size} px, {blocks} blocks", f"{r['ms']:.0f}", f"{1000 / r['ms']:.2f}", f"{gflops:.1f}",
                     f"{achieved:.1f}", f"{achieved / fp32_peak:.0%}", f"{r['rss_mb']:.0f}"])
    print("plain eager fp32 training step, batch 1 (reference order)")
    table(rows, ["config", "ms/step", "steps/s", "GFLOP/step", "GFLOP/s", "of fp32 peak", "peak RSS MB"])


if __name__ == "__main__":
    main()
