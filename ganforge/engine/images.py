"""Turning image tensors into pictures people look at (sample grids)."""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageDraw

MIN_TILE = 128  # small training images are scaled up (nearest) so a grid is readable
PAD = 4
HEADER = 18


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``(C, H, W)`` tensor in [-1, 1] -> an RGB PIL image."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")


def sample_grid(rows: list[list[tuple[str, torch.Tensor]]]) -> Image.Image:
    """Lay out rows of labelled image batches: each row type is a block, one line per image.

    ``rows[r][c] = (label, images)`` with ``images`` of shape ``(N, C, H, W)``; block ``r`` shows
    its labels as a header and its N images as N lines of ``len(rows[r])`` tiles.
    """
    n, _, h, w = rows[0][0][1].shape
    scale = max(1, -(-MIN_TILE // max(h, w)))
    tile_w, tile_h = w * scale, h * scale
    n_cols = max(len(row) for row in rows)
    width = PAD + n_cols * (tile_w + PAD)
    block_h = HEADER + n * (tile_h + PAD)
    canvas = Image.new("RGB", (width, PAD + len(rows) * block_h), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = PAD + r * block_h
        for c, (label, images) in enumerate(row):
            left = PAD + c * (tile_w + PAD)
            draw.text((left + 2, top + 3), label, fill=(20, 20, 20))
            for i in range(images.shape[0]):
                tile = to_pil(images[i]).resize((tile_w, tile_h), Image.Resampling.NEAREST)
                canvas.paste(tile, (left, top + HEADER + i * (tile_h + PAD)))
    return canvas


def encode_png(image: Image.Image) -> bytes:
    """The image as the bytes of a PNG file."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
