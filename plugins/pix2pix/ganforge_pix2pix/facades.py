"""Synthetic facades: a label map of a building front (A) and a rendered "photo" of it (B).

A pair is a pure function of ``(seed, split, index)``: no files, no download. The layout is drawn
first — a building of 2 to 5 floors and 2 to 6 window columns under a strip of sky, a cornice along
the roof line, string courses between some floors, windows with sills (and now and then a balcony),
a door and shop windows on the ground floor — as one class per pixel. A paints each class in one flat
colour (like the label maps of the CMP facade database); B renders the same layout with light from
above: plaster with a vertical gradient and fine grain, brick courses, glass that reflects the sky,
dark frames, wooden doors with vertical grain, stone bands with a shadow beneath. The wall's hue and
brightness vary a little per building, so B is mostly, not wholly, decided by A (as with real
facades); every test pair is a true pair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

# Classes, in drawing order (a later one covers an earlier one).
SKY, WALL, CORNICE, WINDOW, SILL, BALCONY, DOOR, SHOP = range(8)
CLASSES = ("sky", "wall", "cornice", "window", "sill", "balcony", "door", "shop")

#: The flat colour of each class in the label map (domain A).
LABEL_COLOURS = np.array(
    [
        (20, 30, 140),  # sky / background: dark blue
        (40, 90, 230),  # wall: blue
        (240, 200, 40),  # cornice, string course: yellow
        (90, 220, 250),  # window: light cyan
        (250, 130, 40),  # sill: orange
        (200, 60, 200),  # balcony: magenta
        (220, 40, 40),  # door: red
        (60, 200, 90),  # shop window: green
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Rect:
    label: int
    top: float  # fractions of the image side
    left: float
    bottom: float
    right: float


@dataclass(frozen=True)
class Facade:
    rects: tuple[Rect, ...]
    wall_rgb: tuple[float, float, float]  # the building's plaster colour
    brick: bool  # brick courses on the wall (else smooth plaster)


def random_facade(rng: random.Random) -> Facade:
    """Draw one building front (all coordinates in [0, 1])."""
    rects: list[Rect] = []
    roof = rng.uniform(0.06, 0.22)  # sky above the roof line
    margin = rng.choice((0.0, 0.0, rng.uniform(0.03, 0.1)))  # sky beside a narrower building
    left, right = margin, 1.0 - margin
    rects.append(Rect(WALL, roof, left, 1.0, right))
    cornice = rng.uniform(0.035, 0.06)
    rects.append(Rect(CORNICE, roof, left, roof + cornice, right))
    floors = rng.randint(2, 5)
    columns = rng.randint(2, 6)
    top = roof + cornice
    floor_h = (1.0 - top) / floors
    col_w = (right - left) / columns
    win_w = rng.uniform(0.4, 0.62) * col_w
    win_h = rng.uniform(0.45, 0.65) * floor_h
    courses = rng.random() < 0.5
    door_col = rng.randrange(columns)
    for floor in range(floors):
        y0 = top + floor * floor_h
        ground = floor == floors - 1
        if courses and 0 < floor:
            rects.append(Rect(CORNICE, y0, left, y0 + 0.25 * cornice + 0.01, right))
        for col in range(columns):
            cx = left + (col + 0.5) * col_w
            if ground and col == door_col:
                w = min(col_w * 0.8, win_w * 1.25)
                rects.append(Rect(DOOR, y0 + floor_h * 0.25, cx - w / 2, 1.0, cx + w / 2))
                continue
            if ground and rng.random() < 0.6:
                w = col_w * 0.8
                rects.append(Rect(SHOP, y0 + floor_h * 0.3, cx - w / 2, 1.0 - floor_h * 0.08, cx + w / 2))
                continue
            wy = y0 + (floor_h - win_h) * 0.45
            rects.append(Rect(WINDOW, wy, cx - win_w / 2, wy + win_h, cx + win_w / 2))
            sill = max(0.012, 0.08 * floor_h)
            if not ground and rng.random() < 0.2:
                rects.append(
                    Rect(BALCONY, wy + win_h * 0.7, cx - win_w * 0.7, wy + win_h + sill, cx + win_w * 0.7)
                )
            else:
                rects.append(
                    Rect(SILL, wy + win_h, cx - win_w / 2 - 0.01, wy + win_h + sill, cx + win_w / 2 + 0.01)
                )
    hue = rng.choice(((214, 190, 160), (200, 170, 150), (220, 210, 190), (190, 150, 120)))
    shade = rng.uniform(0.9, 1.05)
    wall = tuple(min(255.0, c * shade) for c in hue)
    return Facade(tuple(rects), wall, rng.random() < 0.35)  # type: ignore[arg-type]


def label_map(facade: Facade, size: int) -> np.ndarray:
    """``(size, size)`` class indices; rectangle edges on whole pixels, so labels stay flat."""
    labels = np.full((size, size), SKY, dtype=np.int64)
    for r in facade.rects:
        t, b = round(r.top * size), round(r.bottom * size)
        left, right = round(r.left * size), round(r.right * size)
        if r.label in (SILL, CORNICE):  # thin bands stay at least one pixel high
            b = max(b, t + 1)
        labels[t:b, left:right] = r.label
    return labels


def render_labels(labels: np.ndarray) -> np.ndarray:
    """Domain A: every class in its flat colour, ``(H, W, 3)`` uint8."""
    return LABEL_COLOURS[labels].astype(np.uint8)


def _edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``mask`` whose upper or left neighbour is outside it, and those whose lower or right
    neighbour is (the image border counts as outside)."""
    outside = np.pad(~mask, 1, constant_values=True)
    up, down = outside[:-2, 1:-1], outside[2:, 1:-1]
    left, right = outside[1:-1, :-2], outside[1:-1, 2:]
    return mask & (up | left), mask & (down | right) & ~(up | left)


def render_photo(facade: Facade, labels: np.ndarray, noise: np.random.Generator) -> np.ndarray:
    """Domain B: the facade lit from above, ``(H, W, 3)`` uint8 (see the module docstring)."""
    size = labels.shape[0]
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :, None]
    image = np.zeros((size, size, 3), dtype=np.float32)

    def paint(label: int, colour: np.ndarray) -> None:
        mask = labels == label
        image[mask] = np.broadcast_to(colour, (size, size, 3))[mask]

    grain = noise.normal(0.0, 1.0, (size, size, 1)).astype(np.float32)
    sky = (1 - y) * np.array((120, 165, 225), np.float32) + y * np.array((215, 230, 245), np.float32)
    paint(SKY, np.broadcast_to(sky, (size, size, 3)))
    wall = np.array(facade.wall_rgb, np.float32) * (1.04 - 0.14 * y) + 5.0 * grain
    if facade.brick:
        row = np.arange(size)[:, None, None]
        period = max(3, size // 24)
        wall = wall * np.where(row % period == 0, 0.8, 1.0) * np.array((1.0, 0.86, 0.8), np.float32)
    paint(WALL, wall)
    paint(CORNICE, np.array((235, 230, 215), np.float32) + 3.0 * grain)
    glass = (1 - y) * np.array((150, 180, 205), np.float32) + y * np.array((40, 55, 75), np.float32)
    glass = glass + 50.0 * np.clip(0.6 - np.abs(x - y - 0.1) * 4, 0, None)  # a diagonal sky reflection
    paint(WINDOW, glass)
    paint(SHOP, glass * 0.8 + np.array((30, 25, 10), np.float32))
    paint(SILL, np.array((225, 222, 210), np.float32) + 3.0 * grain)
    railing = np.where((np.arange(size) % 3 == 0)[None, :, None], 40.0, 150.0) * np.ones(3, np.float32)
    paint(BALCONY, np.broadcast_to(railing, (size, size, 3)))
    wood = np.array((110, 65, 35), np.float32) * (0.85 + 0.15 * np.sin(x * size * 1.7)) + 4.0 * grain
    paint(DOOR, wood)
    # Frames: dark bottom-right and light top-left edges of openings; a shadow under each stone band.
    for label in (WINDOW, SHOP, DOOR):
        light, dark = _edges(labels == label)
        image[light] = (70, 62, 55)
        image[dark] = (35, 30, 28)
    for label in (CORNICE, SILL, BALCONY):
        below = np.zeros_like(labels, dtype=bool)
        below[1:, :] = (labels[:-1, :] == label) & (labels[1:, :] == WALL)
        image[below] *= 0.55
    return np.clip(image, 0, 255).round().astype(np.uint8)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float in [-1, 1]."""
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


class SyntheticFacades(Dataset):
    """Pairs of (label map, photo) of random building fronts; every item is a true pair."""

    paired = True

    def __init__(self, *, size: int, length: int, seed: int, split: str) -> None:
        self.size = size
        self.length = length
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.length

    def facade(self, index: int) -> Facade:
        return random_facade(random.Random(f"facades/{self.seed}/{self.split}/{index}"))

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The label map and the photo of item ``index``, as ``(H, W, 3)`` uint8 arrays."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        facade = self.facade(index)
        labels = label_map(facade, self.size)
        noise = np.random.default_rng([self.seed, 0 if self.split == "train" else 1, index])
        return render_labels(labels), render_photo(facade, labels, noise)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, b = self.arrays(index)
        return {"A": to_tensor(a), "B": to_tensor(b)}
