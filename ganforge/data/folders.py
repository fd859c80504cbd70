"""Image folders: unpaired (``trainA/ trainB/ testA/ testB/``), paired (A|B side by side), aligned
(``A/<split>/`` and ``B/<split>/`` matched by file name) and single.

Every image is opened as 8-bit RGB or, for a 1-channel domain, 8-bit greyscale (palette, RGBA,
greyscale and 16-bit files are converted; RGB to grey by the ITU-R 601-2 luma weights, PIL's
``convert("L")``) and goes through :class:`Preprocess`, the reference implementation's preprocessing. Random choices (crops,
flips, the B image of an unpaired item) use torch's global generator, which the engine seeds per item
(:mod:`ganforge.data.sampling`), so an item does not depend on the worker that loads it.

An unreadable image (corrupt, truncated, not an image) is an error naming the file, or, with
``on_corrupt="skip"``, is replaced by the next readable image of its folder and reported on stderr with
a running count shared by all DataLoader workers.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ganforge.errors import DatasetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

OnCorrupt = Literal["error", "skip"]
OnUnmatched = Literal["error", "skip"]
Channels = Literal[1, 3]


def image_mode(channels: int) -> str:
    """The PIL mode images of a domain with ``channels`` channels are converted to: ``L`` or ``RGB``."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels!r}")
    return "L" if channels == 1 else "RGB"


# ----------------------------------------------------------------------------------------- finding


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; extensions in any case."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in relative):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found)


def how_to_get(root: Path) -> str:
    """How to download a missing dataset; which archives exist, and where, is ``ganforge fetch``'s to say."""
    return (
        f"to download a published dataset: ganforge fetch {root.name or 'NAME'} --root {root.parent} "
        "(ganforge fetch --list shows the names)"
    )


def _extensions() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def image_folder(folder: Path, what: str) -> list[Path]:
    """The images in ``folder``; a missing folder or one without images is a :class:`DatasetError`."""
    if not folder.is_dir():
        kind = "is not a folder" if folder.exists() else "not found"
        raise DatasetError(f"data.root: {what} {folder} {kind} (absolute: {folder.resolve()})")
    images = list_images(folder)
    if not images:
        raise DatasetError(f"data.root: {what} {folder} holds no images ({_extensions()}, in any case)")
    return images


def find_domain_folders(root: Path, split: str) -> tuple[list[Path], list[Path]]:
    if not root.is_dir():
        raise DatasetError(
            f"data.root: dataset folder {root} not found (absolute: {root.resolve()}); expected folders "
            f"trainA/ trainB/ testA/ testB/; {how_to_get(root)}"
        )
    found = []
    for domain in ("A", "B"):
        folder = root / f"{split}{domain}"
        if not folder.is_dir():
            raise DatasetError(
                f"data.root: {folder} not found; expected {split}A/ and {split}B/ in {root}; "
                + how_to_get(root)
            )
        images = list_images(folder)
        if not images:
            raise DatasetError(f"data.root: {folder} holds no images ({_extensions()}, in any case)")
        found.append(images)
    return found[0], found[1]


# ----------------------------------------------------------------------------------------- reading


def load_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Open an image as 8-bit ``mode`` (``RGB`` or ``L``; palette, RGBA and 16-bit inputs are converted)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                image = image.point(lambda v: v / 256).convert("L")
            elif image.mode == "F":
                image = image.convert("L")
            return image.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DatasetError(f"{path}: cannot read image: {reason}") from None


def load_rgb(path: Path) -> Image.Image:
    """Open an image as 8-bit RGB (:func:`load_image` with ``mode="RGB"``)."""
    return load_image(path, "RGB")


class SkipLog:
    """Counts images skipped as unreadable; the count is shared with DataLoader worker processes.

    Each skip prints one ``warning:`` line on stderr with the file, the reason and the running count.
    """

    def __init__(self) -> None:
        self._count = multiprocessing.Value("q", 0)

    @property
    def count(self) -> int:
        return int(self._count.value)

    def record(self, path: Path, reason: str) -> int:
        with self._count.get_lock():
            self._count.value += 1
            n = int(self._count.value)
        sys.stderr.write(
            f'warning: skipped {path}: {reason} (on_corrupt = "skip"; {n} image(s) skipped so far)\n'
        )
        sys.stderr.flush()
        return n


class ImageReader:
    """Reads the ``index``-th image of a list with the ``on_corrupt`` policy.

    ``"error"``: an unreadable file raises :class:`DatasetError` naming it. ``"skip"``: the file is
    logged (:class:`SkipLog`), remembered as bad in this process, and the next image of the list is
    read instead; a list with no readable image left is an error.
    """

    def __init__(self, on_corrupt: OnCorrupt) -> None:
        if on_corrupt not in ("error", "skip"):
            raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
        self.on_corrupt = on_corrupt
        self.skips = SkipLog()
        self._bad: set[Path] = set()  # per process: a worker warns once per file

    def read(self, paths: list[Path], index: int, mode: str = "RGB") -> tuple[Path, Image.Image]:
        n = len(paths)
        for step in range(n):
            path = paths[(index + step) % n]
            if path in self._bad:
                continue
            try:
                return path, load_image(path, mode)
            except DatasetError as exc:
                self.failed(path, exc)
        raise DatasetError(f"data.root: none of the {n} images in {paths[0].parent} can be read")

    def failed(self, path: Path, exc: DatasetError) -> None:
        """``path`` could not be read: raise (``"error"``) or remember and log it (``"skip"``)."""
        if self.on_corrupt == "error":
            raise DatasetError(f'{exc}; set data.on_corrupt = "skip" to skip unreadable images') from None
        self._bad.add(path)
        self.skips.record(path, str(exc).removeprefix(f"{path}: "))

    def is_bad(self, path: Path) -> bool:
        """Whether ``path`` was found unreadable before (in this process)."""
        return path in self._bad


# ------------------------------------------------------------------------------------ preprocessing

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none", "resize")


class Preprocess:
    """The reference preprocessing on PIL images; at test time crops are centred and nothing is flipped.

    ``resize_and_crop``: resize to ``load_size`` square, crop ``crop_size``; ``crop``: crop only;
    ``scale_width``: width to ``load_size``, keeping the aspect ratio (height at least ``crop_size``);
    ``scale_width_and_crop``: that, then crop; ``none``: as it is; ``resize``: the whole image resized
    to ``crop_size`` square, no crop (the reference's test protocol: it sets ``load_size`` to
    ``crop_size``, so nothing is cut off; evaluation's ``eval.preprocess = "resize"``). Sides are then rounded to multiples
    of 4 (the generator's two stride-2 stages need it) and the image is flipped left-right half the
    time if ``flip`` (training only).

    Plain PIL and numpy (torchvision's transforms would add seconds to every start-up for the same few
    operations). Random choices use torch's global generator.
    """

    def __init__(self, preprocess: str, load_size: int, crop_size: int, flip: bool, train: bool) -> None:
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, not {preprocess!r}")
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip and train
        self.train = train

    def __call__(self, image: Image.Image) -> torch.Tensor:
        mode, load, crop = self.preprocess, self.load_size, self.crop_size
        if mode == "resize_and_crop":
            image = image.resize((load, load), Image.Resampling.BICUBIC)
        elif mode == "resize":
            image = image.resize((crop, crop), Image.Resampling.BICUBIC)
        elif mode in ("scale_width", "scale_width_and_crop"):
            image = _scale_width(image, load, crop)
        if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
            image = self._crop(image, crop)
        image = _round_to_4(image)
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(image)

    def _crop(self, image: Image.Image, size: int) -> Image.Image:
        w, h = image.size
        if w < size or h < size:
            raise DatasetError(
                f"image of {w}x{h} px is smaller than crop_size {size} (preprocess {self.preprocess!r}); "
                "use a smaller crop_size or preprocess 'resize_and_crop'"
            )
        if self.train:
            left = int(torch.randint(w - size + 1, ()))
            top = int(torch.randint(h - size + 1, ()))
        else:
            left, top = (w - size) // 2, (h - size) // 2
        return image.crop((left, top, left + size, top + size))

    def same_for_both(self, a: Image.Image, b: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocess a pair with the same random crop and flip (paired data stays aligned)."""
        state = torch.get_rng_state()
        out_a = self(a)
        after = torch.get_rng_state()
        torch.set_rng_state(state)
        out_b = self(b)
        torch.set_rng_state(after)
        return out_a, out_b


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> ``(3, H, W)``, greyscale (``L``) image -> ``(1, H, W)``; float32 in [-1, 1].

    In numpy, single-threaded: torch's intra-op threads would spin on a busy CPU, which made this
    step 40 times slower in the main process (``num_workers = 0``) of a machine shared with other jobs.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    array = np.ascontiguousarray(array.transpose(2, 0, 1))
    array /= 127.5
    array -= 1.0
    return torch.from_numpy(array)


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


def _transform(transform: Preprocess, path: Path, image: Image.Image) -> torch.Tensor:
    try:
        return transform(image)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------- datasets


class UnpairedFolders(Dataset):
    """Item i: the i-th A image and a B image drawn at random (as the reference's unaligned data)."""

    paired = False  # items are not true pairs (what evaluation asks before pairwise metrics)

    def __init__(
        self,
        root: Path,
        split: str,
        transform: Preprocess,
        on_corrupt: OnCorrupt = "error",
        a_channels: int = 3,
        b_channels: int = 3,
    ) -> None:
        self.split = split
        self.a, self.b = find_domain_folders(root, split)
        self.transform = transform
        self.reader = ImageReader(on_corrupt)
        self.modes = image_mode(a_channels), image_mode(b_channels)

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    @property
    def domain_sizes(self) -> dict[str, int]:
        """Distinct images per domain (the smaller domain repeats up to the larger's length)."""
        return {"A": len(self.a), "B": len(self.b)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.split == "train":
            index_b = int(torch.randint(len(self.b), ()))
        else:
            index_b = index % len(self.b)
        path_a, image_a = self.reader.read(self.a, index % len(self.a), self.modes[0])
        path_b, image_b = self.reader.read(self.b, index_b, self.modes[1])
        return {
            "A": _transform(self.transform, path_a, image_a),
            "B": _transform(self.transform, path_b, image_b),
        }


class PairedFolder(Dataset):
    """Aligned pairs stored side by side (A left, B right) in ``root/<split>/``, as paired translation datasets are usually shipped.

    Both halves get the same crop and flip. ``a_half="right"`` swaps them.
    """

    paired = True  # every item is a true pair

    def __init__(
        self,
        folder: Path,
        transform: Preprocess,
        a_half: Literal["left", "right"] = "left",
        on_corrupt: OnCorrupt = "error",
        a_channels: int = 3,
        b_channels: int = 3,
    ) -> None:
        root = folder.parent
        if not root.is_dir():
            raise DatasetError(
                f"data.root: dataset folder {root} not found (absolute: {root.resolve()}); expected "
                f"train/ and test/ of A|B images side by side; {how_to_get(root)}"
            )
        if not folder.is_dir():
            subfolders = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
            raise DatasetError(
                f"data.root: {folder} not found; {root} holds {', '.join(subfolders) or 'no folders'} "
                "(paired data: root/train/, root/test/ with A|B side by side in each image)"
            )
        self.paths = image_folder(folder, "paired image folder")
        self.transform = transform
        self.a_half = a_half
        self.reader = ImageReader(on_corrupt)
        self.modes = image_mode(a_channels), image_mode(b_channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, image = self.reader.read(self.paths, index)
        w, h = image.size
        half = w // 2
        if half < 1:
            raise DatasetError(f"{path}: image of {w}x{h} px is too narrow to hold two images side by side")
        left = image.crop((0, 0, half, h))
        right = image.crop((half, 0, 2 * half, h))
        a_mode, b_mode = self.modes if self.a_half == "left" else self.modes[::-1]
        left, right = left.convert(a_mode), right.convert(b_mode)  # RGB to L is exact for grey pixels
        try:
            a, b = self.transform.same_for_both(left, right)
        except DatasetError as exc:
            raise DatasetError(f"{path} (each half): {exc}") from None
        return {"A": a, "B": b} if self.a_half == "left" else {"A": b, "B": a}


def _by_name(images: list[Path], folder: Path) -> dict[str, Path]:
    """Images keyed by their path under ``folder`` without the extension (``sub/0001``)."""
    keyed: dict[str, Path] = {}
    for path in images:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in keyed:
            raise DatasetError(
                f"data.root: {folder} holds both {keyed[key].name} and {path.name}; aligned pairs are "
                "matched by file name without extension, so each name may appear once"
            )
        keyed[key] = path
    return keyed


def _first_names(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


class AlignedFolders(Dataset):
    """Aligned pairs in two folders, ``root/A/<split>/`` and ``root/B/<split>/``, matched by file name.

    The names are compared without their extensions (``0001.png`` pairs with ``0001.jpg``), including
    subfolders. Both images of a pair must have the same size and get the same crop and flip. A name
    found on one side only is an error naming both folders, or, with ``on_unmatched="skip"``, left out
    with one warning line. With ``on_corrupt="skip"`` an unreadable image skips its whole pair.
    """

    paired = True

    def __init__(
        self,
        root: Path,
        split_folder: str,
        transform: Preprocess,
        on_corrupt: OnCorrupt = "error",
        on_unmatched: OnUnmatched = "error",
        a_channels: int = 3,
        b_channels: int = 3,
    ) -> None:
        layout = (
            f"aligned data: {root}/A/{split_folder}/ and {root}/B/{split_folder}/ with the same file names"
        )
        if not root.is_dir():
            raise DatasetError(
                f"data.root: dataset folder {root} not found (absolute: {root.resolve()}); expected {layout}"
            )
        folders = root / "A" / split_folder, root / "B" / split_folder
        for folder in folders:
            if not folder.is_dir():
                raise DatasetError(f"data.root: {folder} not found; {layout}")
        a, b = (_by_name(image_folder(folder, "aligned image folder"), folder) for folder in folders)
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        if only_a or only_b:
            parts = [
                f"{len(names)} only in {folder} ({_first_names(names)})"
                for names, folder in ((only_a, folders[0]), (only_b, folders[1]))
                if names
            ]
            message = (
                f"data.root: {folders[0]} and {folders[1]} do not hold the same file names: "
                + "; ".join(parts)
            )
            if on_unmatched != "skip":
                raise DatasetError(f'{message}; set data.on_unmatched = "skip" to leave them out')
            sys.stderr.write(f'warning: {message}; left out (on_unmatched = "skip")\n')
            sys.stderr.flush()
        common = sorted(a.keys() & b.keys())
        if not common:
            raise DatasetError(f"data.root: no file name is in both {folders[0]} and {folders[1]}")
        self.pairs = [(a[key], b[key]) for key in common]
        self.transform = transform
        self.reader = ImageReader(on_corrupt)
        self.modes = image_mode(a_channels), image_mode(b_channels)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.pairs)
        for step in range(n):
            path_a, path_b = self.pairs[(index + step) % n]
            if self.reader.is_bad(path_a) or self.reader.is_bad(path_b):
                continue
            images = []
            for path, mode in ((path_a, self.modes[0]), (path_b, self.modes[1])):
                try:
                    images.append(load_image(path, mode))
                except DatasetError as exc:
                    self.reader.failed(path, exc)  # raises unless on_corrupt is "skip"
                    break
            if len(images) < 2:
                continue
            image_a, image_b = images
            if image_a.size != image_b.size:
                raise DatasetError(
                    f"{path_a} is {image_a.size[0]}x{image_a.size[1]} px but {path_b} is "
                    f"{image_b.size[0]}x{image_b.size[1]} px; the two images of an aligned pair must have the same size"
                )
            try:
                a, b = self.transform.same_for_both(image_a, image_b)
            except DatasetError as exc:
                raise DatasetError(f"{path_a} (and its pair): {exc}") from None
            return {"A": a, "B": b}
        raise DatasetError(f"data.root: none of the {n} pairs in {self.pairs[0][0].parent} can be read")


class SingleFolder(Dataset):
    """The images of one folder (recursively) as items ``{"A": image}``: input for translation only."""

    paired = False

    def __init__(
        self, folder: Path, transform: Preprocess, on_corrupt: OnCorrupt = "error", channels: int = 3
    ) -> None:
        self.paths = image_folder(folder, "image folder")
        self.transform = transform
        self.reader = ImageReader(on_corrupt)
        self.mode = image_mode(channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, image = self.reader.read(self.paths, index, self.mode)
        return {"A": _transform(self.transform, path, image)}
