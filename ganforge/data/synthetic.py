"""Synthetic scenes: one random layout of shapes, rendered in two appearances.

Domain A is a daylight scene (light sky-to-sand background, primary colours); domain B renders the
same kind of layout at dusk (dark background, its own palette, light outlines), so the geometry is kept
and colours, lighting and edges change. Training scenes are drawn separately for A and B (unpaired);
the test split renders the *same* scene in both appearances, so every test image has its true pair.
Everything is a pure function of ``(seed, split, index)``: no files, no download.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SUPERSAMPLE = 2

#: Material i is drawn in PALETTE_A[i] in domain A and PALETTE_B[i] in domain B.
PALETTE_A = [(220, 40, 40), (40, 90, 220), (245, 200, 30), (40, 160, 70)]
PALETTE_B = [(250, 140, 20), (40, 220, 220), (230, 60, 200), (230, 230, 240)]
SKY_A = ((170, 210, 250), (240, 225, 180))  # top colour, bottom colour
SKY_B = ((10, 15, 50), (60, 30, 80))
OUTLINE_B = (255, 255, 200)


@dataclass(frozen=True)
class Shape:
    kind: str  # circle, box, triangle
    cx: float
    cy: float
    r: float
    material: int


def random_scene(rng: random.Random, min_shapes: int, max_shapes: int) -> list[Shape]:
    return [
        Shape(
            kind=rng.choice(("circle", "box", "triangle")),
            cx=rng.uniform(0.15, 0.85),
            cy=rng.uniform(0.15, 0.85),
            r=rng.uniform(0.1, 0.25),
            material=rng.randrange(len(PALETTE_A)),
        )
        for _ in range(rng.randint(min_shapes, max_shapes))
    ]


def render(scene: list[Shape], size: int, domain: str) -> np.ndarray:
    """Draw ``scene`` in the appearance of ``domain`` ("A" or "B") as a ``(size, size, 3)`` uint8 array."""
    big = size * SUPERSAMPLE
    (top, bottom) = SKY_A if domain == "A" else SKY_B
    palette = PALETTE_A if domain == "A" else PALETTE_B
    t = np.linspace(0.0, 1.0, big, dtype=np.float32)[:, None, None]
    sky = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    image = Image.fromarray(np.broadcast_to(sky, (big, big, 3)).round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    outline = OUTLINE_B if domain == "B" else None
    width = max(1, big // 32) if domain == "B" else 0
    for s in scene:
        x, y, r = s.cx * big, s.cy * big, s.r * big
        fill = palette[s.material]
        if s.kind == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline, width=width)
        elif s.kind == "box":
            draw.rectangle((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=fill, outline=outline, width=width)
        else:
            points = [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)]
            draw.polygon(points, fill=fill, outline=outline, width=width)
    image = image.resize((size, size), Image.Resampling.BOX)
    return np.asarray(image)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` (``(H, W)`` -> ``(1, H, W)``) float in [-1, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_grey(array: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` uint8 grey (ITU-R 601-2 luma, PIL's ``convert("L")``)."""
    return np.asarray(Image.fromarray(array, "RGB").convert("L"))


class SyntheticScenes(Dataset):
    """Scenes rendered in both appearances; ``a_channels``/``b_channels`` = 1 gives greyscale images."""

    def __init__(
        self,
        *,
        size: int,
        length: int,
        seed: int,
        split: str,
        min_shapes: int,
        max_shapes: int,
        a_channels: int = 3,
        b_channels: int = 3,
    ) -> None:
        self.size = size
        self.length = length
        self.seed = seed
        self.split = split
        self.min_shapes = min_shapes
        self.max_shapes = max_shapes
        self.channels = {"A": a_channels, "B": b_channels}

    def __len__(self) -> int:
        return self.length

    @property
    def paired(self) -> bool:
        """Test items show one scene in both appearances (a true pair); training items do not."""
        return self.split != "train"

    def scene(self, stream: str, index: int) -> list[Shape]:
        rng = random.Random(f"{self.seed}/{self.split}/{stream}/{index}")
        return random_scene(rng, self.min_shapes, self.max_shapes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.split == "train":  # different scenes in each domain: unpaired
            scene_a, scene_b = self.scene("A", index), self.scene("B", index)
        else:  # one scene, both appearances: the true pair
            scene_a = scene_b = self.scene("AB", index)
        return {
            domain: to_tensor(self._in_channels(render(scene, self.size, domain), domain))
            for domain, scene in (("A", scene_a), ("B", scene_b))
        }

    def _in_channels(self, array: np.ndarray, domain: str) -> np.ndarray:
        return to_grey(array) if self.channels[domain] == 1 else array
