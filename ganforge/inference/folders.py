"""Translating files: reading images, walking folders, writing results."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.errors import DatasetError, GanforgeError
from ganforge.inference.loading import Generator
from ganforge.inference.tensors import (
    Tiling,
    image_to_tensor,
    to_uint8,
    to_unit,
    translate_batch,
    translate_tiled,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# -------------------------------------------------------------------------------------------------
# Translating files
# -------------------------------------------------------------------------------------------------


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """``"256"`` (shorter side) -> 256; ``"320x240"`` (width x height) -> (320, 240); None -> None."""
    if text is None or text.strip().lower() in ("", "native", "own"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text.lower())
    if not match or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
        raise GanforgeError(
            f"--size '{text}': give N (the shorter side, in pixels) or WIDTHxHEIGHT, e.g. 256 or 320x240"
        )
    if match.group(2) is None:
        return int(match.group(1))
    return int(match.group(1)), int(match.group(2))


def output_size(width: int, height: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    """The (width, height) an image is translated at."""
    if size is None:
        return width, height
    if isinstance(size, tuple):
        return size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), read from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_image(path: Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image file as a ``(C, H, W)`` uint8 tensor: EXIF orientation applied, RGB (or L), resized if asked."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image_to_tensor(image)


def write_image(image: torch.Tensor, path: Path, quality: int = 95) -> None:
    """Save a ``(C, H, W)`` uint8 tensor; the suffix picks PNG or JPEG. Written to a temp file, then renamed."""
    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3])
    path.parent.mkdir(parents=True, exist_ok=True)
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG" if is_jpeg else "PNG", **({"quality": quality} if is_jpeg else {}))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def find_images(source: Path, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(file, path relative to source)`` for an image file, or every image under a folder, sorted."""
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise DatasetError(f"{source}: no such file or folder")
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            found.append((path, relative))
    return found


def output_suffix(source: Path, image_format: str) -> str:
    """Keep a PNG/JPEG input's suffix; other inputs become PNG, unless a format is asked for."""
    suffix = source.suffix.lower()
    if image_format == "png":
        return ".png"
    if image_format == "jpeg":
        return suffix if suffix in (".jpg", ".jpeg") else ".jpg"
    return source.suffix if suffix in (".png", ".jpg", ".jpeg") else ".png"


@dataclass
class Job:
    source: Path
    target: Path
    size: tuple[int, int] = (0, 0)  # (width, height) it is translated at


@dataclass
class TranslateReport:
    translated: int = 0
    tiled: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def translate_image(
    generator: Generator,
    path: Path,
    *,
    size: tuple[int, int] | int | None = None,
    batch_size: int = 4,
    tiling: Tiling | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """One image file translated as :func:`translate_files` translates it (read, resized if asked,
    padded and cropped back, or tiled when large): a ``(C, H, W)`` uint8 tensor on the CPU."""
    tiling = tiling or Tiling()
    width, height = output_size(*image_size(path), size)
    image = read_image(path, generator.in_channels, (width, height))
    if tiling.applies(height, width):
        return translate_tiled(generator, image, tiling, batch_size, on_tile)
    return to_uint8(translate_batch(generator, to_unit(image[None])))[0].cpu()


def translate_files(
    generator: Generator,
    jobs: list[Job],
    *,
    size: tuple[int, int] | int | None = None,
    batch_size: int = 4,
    tiling: Tiling = Tiling(),
    quality: int = 95,
    on_image: Callable[[Job], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> TranslateReport:
    """Translate every job's file into its target. Images of one size are batched together; large ones are tiled.

    An unreadable image is recorded in the report (and skipped); every other error stops.
    """

    started = time.perf_counter()
    report = TranslateReport()
    groups: dict[tuple[int, int], list[Job]] = {}
    tiled: list[Job] = []
    for job in jobs:
        try:
            job.size = output_size(*image_size(job.source), size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.failed.append(f"{job.source}: cannot read: {exc}")
            continue
        (tiled if tiling.applies(job.size[1], job.size[0]) else groups.setdefault(job.size, [])).append(job)
    for same_size in groups.values():
        for first in range(0, len(same_size), batch_size):
            batch_jobs, images = [], []
            for job in same_size[first : first + batch_size]:
                try:
                    images.append(read_image(job.source, generator.in_channels, job.size))
                    batch_jobs.append(job)
                except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                    report.failed.append(f"{job.source}: cannot read: {exc}")
            if not images:
                continue
            results = to_uint8(translate_batch(generator, to_unit(torch.stack(images)))).cpu()
            for job, result in zip(batch_jobs, results, strict=True):
                write_image(result, job.target, quality)
                report.translated += 1
                if on_image is not None:
                    on_image(job)
    for job in tiled:
        try:
            image = read_image(job.source, generator.in_channels, job.size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.failed.append(f"{job.source}: cannot read: {exc}")
            continue
        result = translate_tiled(generator, image, tiling, batch_size, on_tile)
        del image
        write_image(result, job.target, quality)
        report.translated += 1
        report.tiled += 1
        if on_image is not None:
            on_image(job)
    report.seconds = time.perf_counter() - started
    return report
