"""Translate benchmarks: images/s at 256 px, and peak memory of a 4000x3000 image in tiles.

Usage::

    python benchmarks/translate.py                      # all three measurements
    python benchmarks/translate.py --only throughput    # or: tiled, untiled
    python benchmarks/translate.py --width 2000 --height 1500 --tile 256

The generator is CycleGAN's paper network (ResNet, ngf 64, 9 residual blocks, 11.4 M parameters)
with random weights, saved as a safetensors export and loaded the way ``ganforge translate`` loads
it; images go through :func:`ganforge.inference.translate_files`, the code behind the command, so
decoding and encoding are counted. Each measurement runs in its own subprocess, so the peak
resident memory (``VmHWM`` of ``/proc/self/status``) of one does not leak into another; the
"before" column is that same peak measured after torch, the generator and the input file are
ready, just before translating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_peak_mib() -> float:
    """Peak resident memory of this process: ``VmHWM`` (Linux), else ``getrusage``'s ``ru_maxrss``.

    ``VmHWM`` starts afresh with the program; ``ru_maxrss`` survives ``exec`` on Linux, so a child
    would inherit its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB (macOS: bytes)


def smooth_image(width: int, height: int, seed: int):  # -> PIL.Image
    """A picture-like test image (smooth colour fields plus grain), cheap to make at any size."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 64), max(2, width // 64), generator=g)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    image = (
        (image * 230 + torch.randint(0, 25, (3, height, width), generator=g)).clamp(0, 255).to(torch.uint8)
    )
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def make_generator(folder: Path, ngf: int, n_blocks: int) -> Path:
    import torch

    from ganforge.inference import Generator, save_safetensors
    from ganforge.plugins import collect_registries, make_plugin_manager

    torch.manual_seed(0)
    spec = {"type": "resnet", "ngf": ngf, "n_blocks": n_blocks}
    registries = collect_registries(make_plugin_manager())
    module = registries.resolve("generator", spec, "generator").build().eval()
    generator = Generator(
        module, "benchmark", folder / "random", torch.device("cpu"), module, spec, "cyclegan"
    )
    path = folder / "generator.safetensors"
    save_safetensors(generator, path)
    return path


def child(kind: str, args: argparse.Namespace) -> dict:
    """One measurement; the input images are already in ``args.data`` (made by the parent process)."""
    import torch

    from ganforge.inference import Job, Tiling, load_generator, translate_files

    data = Path(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generator = load_generator(make_generator(folder, args.ngf, args.blocks), device="cpu")
        result: dict = {"kind": kind, "threads": torch.get_num_threads()}
        if kind == "throughput":
            jobs = [Job(path, folder / "out" / path.name) for path in sorted((data / "small").glob("*.png"))]
            translate_files(generator, jobs[:1], batch_size=1)  # warm-up (allocator, oneDNN kernels)
            for batch in (1, 4):
                report = translate_files(generator, jobs, batch_size=batch)
                result[f"batch {batch}"] = report.translated / report.seconds
            return result
        path = data / f"{kind}.jpg"
        tiling = Tiling(tile=args.tile, overlap=args.overlap, above=args.tile if kind == "tiled" else 10**9)
        before = rss_peak_mib()
        started = time.perf_counter()
        report = translate_files(generator, [Job(path, folder / "out.jpg")], batch_size=1, tiling=tiling)
        from PIL import Image

        with Image.open(path) as image:
            size = "x".join(map(str, image.size))
        result.update(
            size=size,
            tiled=report.tiled == 1,
            seconds=time.perf_counter() - started,
            before_mib=before,
            peak_mib=rss_peak_mib(),
        )
        return result


def make_inputs(folder: Path, args: argparse.Namespace, kinds: list[str]) -> None:
    """The test images, written before any measurement (making a 12 MP image takes memory of its own)."""
    if "throughput" in kinds:
        (folder / "small").mkdir()
        for i in range(args.images):
            smooth_image(args.size, args.size, i).save(folder / "small" / f"{i:03d}.png")
    if "tiled" in kinds:
        smooth_image(args.width, args.height, 0).save(folder / "tiled.jpg", quality=92)
    if "untiled" in kinds:
        smooth_image(args.untiled_width, args.untiled_height, 0).save(folder / "untiled.jpg", quality=92)


def run_child(kind: str, argv: list[str], data: Path) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--data", str(data), *argv]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{kind}: the benchmark subprocess failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "tiled", "untiled"], action="append")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--size", type=int, default=256, help="side of the throughput images")
    parser.add_argument("--images", type=int, default=8, help="images per throughput measurement")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--untiled-width", type=int, default=1024)
    parser.add_argument("--untiled-height", type=int, default=768)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    argv = sys.argv[1:]
    kinds = args.only or ["throughput", "tiled", "untiled"]
    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"generator: resnet ngf {args.ngf}, {args.blocks} blocks; torch {torch.__version__}; "
        f"{os.cpu_count()} CPUs, {threads} torch threads"
    )
    memory_rows = []
    data = Path(tempfile.mkdtemp(prefix="ganforge-bench-"))
    try:
        make_inputs(data, args, kinds)
        for kind in kinds:
            r = run_child(kind, argv, data)
            if kind == "throughput":
                print(f"\nthroughput, {args.images} images of {args.size}x{args.size} px (PNG in, PNG out):")
                print(f"  {'batch':>5}  {'images/s':>8}")
                for batch in (1, 4):
                    print(f"  {batch:>5}  {r[f'batch {batch}']:>8.2f}")
            else:
                memory_rows.append(r)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if memory_rows:
        print(
            f"\n{'image':>10}  {'mode':<22}  {'seconds':>7}  {'peak RSS before':>15}  {'peak RSS':>9}  {'added':>9}"
        )
        for r in memory_rows:
            mode = f"tiles {args.tile}, overlap {args.overlap}" if r["tiled"] else "whole image"
            added = r["peak_mib"] - r["before_mib"]
            print(
                f"{r['size']:>10}  {mode:<22}  {r['seconds']:>7.1f}  {r['before_mib']:>11.0f} MiB  "
                f"{r['peak_mib']:>5.0f} MiB  {added:>5.0f} MiB"
            )


if __name__ == "__main__":
    main()
