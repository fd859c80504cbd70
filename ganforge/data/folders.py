"""Unpaired image folders in the reference layout: ``trainA/ trainB/ testA/ testB/`` under a root."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ganforge.errors import DatasetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

#: Where the CycleGAN authors serve their datasets as ``<name>.zip``.
OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; extensions in any case."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def how_to_get(root: Path) -> str:
    name = root.name or "<name>"
    return (
        f"get it with: curl -LO {OFFICIAL_URL.format(name=name)} && unzip {name}.zip -d {root.parent} "
        "(folders trainA/ trainB/ testA/ testB/)"
    )


def find_domain_folders(root: Path, split: str) -> tuple[list[Path], list[Path]]:
    if not root.is_dir():
        raise DatasetError(f"data.root: dataset folder {root} not found (absolute: {root.resolve()}); {how_to_get(root)}")
    found = []
    for domain in ("A", "B"):
        folder = root / f"{split}{domain}"
        if not folder.is_dir():
            raise DatasetError(f"data.root: {folder} not found; expected {split}A/ and {split}B/ in {root}; {how_to_get(root)}")
        images = list_images(folder)
        if not images:
            raise DatasetError(f"data.root: {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        found.append(images)
    return found[0], found[1]


def load_rgb(path: Path) -> Image.Image:
    """Open an image as 8-bit RGB (greyscale, palette, RGBA and 16-bit inputs are converted)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = image.point(lambda v: v / 256).convert("L")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image: {exc}") from None


class Preprocess:
    """The reference preprocessing on PIL images; at test time crops are centred and nothing is flipped.

    Plain PIL and torch (torchvision's transforms would add seconds to every start-up for the same few
    operations). Random choices use torch's generator, which the DataLoader seeds per worker.
    """

    def __init__(self, preprocess: str, load_size: int, crop_size: int, flip: bool, train: bool) -> None:
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip and train
        self.train = train

    def __call__(self, image: Image.Image) -> torch.Tensor:
        mode, load, crop = self.preprocess, self.load_size, self.crop_size
        if mode == "resize_and_crop":
            image = image.resize((load, load), Image.Resampling.BICUBIC)
        elif mode in ("scale_width", "scale_width_and_crop"):
            image = _scale_width(image, load, crop)
        if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
            image = self._crop(image, crop)
        image = _round_to_4(image)
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return array.view(image.height, image.width, 3).permute(2, 0, 1).float().div(127.5).sub(1.0)

    def _crop(self, image: Image.Image, size: int) -> Image.Image:
        w, h = image.size
        if w < size or h < size:
            raise DatasetError(f"image of {w}x{h} px is smaller than crop_size {size}")
        if self.train:
            left = int(torch.randint(w - size + 1, ()))
            top = int(torch.randint(h - size + 1, ()))
        else:
            left, top = (w - size) // 2, (h - size) // 2
        return image.crop((left, top, left + size, top + size))


def _scale_width(image: Image.Image, target_width: int, crop_size: int) -> Image.Image:
    w, h = image.size
    if w == target_width and h >= crop_size:
        return image
    height = max(int(target_width * h / w), crop_size)
    return image.resize((target_width, height), Image.Resampling.BICUBIC)


def _round_to_4(image: Image.Image) -> Image.Image:
    """The generator needs sides that are multiples of 4 (two stride-2 stages)."""
    w, h = image.size
    nw, nh = max(4, round(w / 4) * 4), max(4, round(h / 4) * 4)
    return image if (nw, nh) == (w, h) else image.resize((nw, nh), Image.Resampling.BICUBIC)


class UnpairedFolders(Dataset):
    """Item i: the i-th A image and a B image drawn at random (as the reference's unaligned data)."""

    def __init__(self, root: Path, split: str, transform: Preprocess) -> None:
        self.split = split
        self.a, self.b = find_domain_folders(root, split)
        self.transform = transform

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path_a = self.a[index % len(self.a)]
        if self.split == "train":
            path_b = self.b[int(torch.randint(len(self.b), ()))]
        else:
            path_b = self.b[index % len(self.b)]
        return {"A": self.transform(load_rgb(path_a)), "B": self.transform(load_rgb(path_b))}
