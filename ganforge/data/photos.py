"""Photo mappings: crops of real photographs (A) and the same crops after a known edit (B).

The photographs are the colour images bundled with scikit-image (``skimage.data``: astronaut,
chelsea, coffee, rocket and the left view of stereo_motorcycle), so nothing is downloaded. The right
30 % of every photograph is kept for the test split and the rest for training, so no test pixel is
ever seen while training. A crop is a square of side ``scale`` x the photograph's shorter side (at
most the test strip's width, the same in both splits), resized to ``size``; the mapping is then
applied to the crop at its final size. Every mapping keeps the geometry and is a pure function of the
image, so each test crop has its true counterpart in the other domain:

- ``grade``: a colour grade, pixel by pixel: an S-shaped tone curve, teal shadows and orange
  highlights (split toning), more saturation and a gamma lift;
- ``cartoon``: a change of texture: edge-preserving (bilateral) smoothing, tones posterised into
  flat bands and dark lines along the strong edges;
- ``clarity``: local and non-linear: large-scale contrast compressed and local detail amplified
  through a soft limit (an "HDR"/clarity look), then a light unsharp mask.

A domain with 1 channel is converted to grey after the edit (as ``synthetic_scenes`` does).
Training items draw A and B crops at independent random positions (unpaired) from torch's generator,
which the engine seeds per item; test items are fixed by ``seed`` and show one crop both ways.
"""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ganforge.data.synthetic import to_grey, to_tensor
from ganforge.errors import DatasetError

#: The bundled photographs: name in ``skimage.data`` (stereo_motorcycle gives left, right, disparity).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
MAPPINGS = ("grade", "cartoon", "clarity")
TEST_FRACTION = 0.3  # the right 30 % of each photograph is the test region
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _skimage_data():
    try:
        import skimage.data
    except ImportError:
        raise DatasetError(
            "data.type = 'photo_mappings' needs scikit-image for its photographs: "
            "pip install scikit-image (or pip install 'ganforge[bench]')"
        ) from None
    return skimage.data


@cache
def photographs() -> tuple[np.ndarray, ...]:
    """The source photographs as ``(H, W, 3)`` uint8 arrays, in the order of :data:`PHOTOS`."""
    data = _skimage_data()
    arrays = []
    for name in PHOTOS:
        image = getattr(data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        arrays.append(np.ascontiguousarray(image[:, :, :3], dtype=np.uint8))
    return tuple(arrays)


def regions(width: int) -> tuple[int, int]:
    """``(train_end, test_start)`` columns: training crops lie in ``[0, train_end)``, test crops in
    ``[test_start, width)``; ``train_end == test_start``, so the regions are disjoint."""
    test_start = width - round(width * TEST_FRACTION)
    return test_start, test_start


def crop_side(shape: tuple[int, ...], scale: float) -> int:
    """Side of a crop of a photograph of ``shape``: ``scale`` x its shorter side, at most the test strip."""
    height, width = shape[:2]
    strip = width - regions(width)[1]
    return max(8, min(round(scale * min(height, width)), strip))


# --- the mappings: float32 (H, W, 3) images in [0, 1] at their final size -------------------------


def _kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the first two axes, edges reflected."""
    k = _kernel(sigma)
    r = len(k) // 2
    out = image.astype(np.float32)
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect" if r < n else "edge")  # tiny images: edge repeated
        acc = np.zeros_like(out)
        for j, w in enumerate(k):
            acc += w * np.take(padded, range(j, j + n), axis=axis)
        out = acc
    return out


def luma(image: np.ndarray) -> np.ndarray:
    return image @ LUMA


def grade(image: np.ndarray) -> np.ndarray:
    """Teal-orange colour grade: tone curve, split toning, saturation, gamma (per pixel)."""
    x = image
    x = x + 0.4 * (x * x * (3 - 2 * x) - x)  # S-curve (smoothstep blend): more contrast
    y = luma(x)[..., None]
    shadows, highlights = (1 - y) ** 2, y**2
    x = x + shadows * np.array([-0.10, 0.03, 0.10], np.float32)  # teal shadows
    x = x + highlights * np.array([0.12, 0.02, -0.12], np.float32)  # orange highlights
    y = luma(np.clip(x, 0, 1))[..., None]
    x = y + 1.3 * (x - y)  # saturation
    return np.clip(np.clip(x, 0, 1) ** 0.85, 0, 1)  # gamma lift


def _bilateral(image: np.ndarray, radius: int, sigma_space: float, sigma_range: float) -> np.ndarray:
    h, w = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    total = np.zeros_like(image)
    weights = np.zeros(image.shape[:2], np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            d2 = ((shifted - image) ** 2).sum(axis=2)
            wgt = np.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2) - d2 / (2 * sigma_range**2))
            total += wgt[..., None] * shifted
            weights += wgt
    return total / weights[..., None]


def cartoon(image: np.ndarray) -> np.ndarray:
    """Cartoon look: bilateral smoothing, posterised tones, dark lines on strong edges."""
    s = image.shape[0] / 64  # filter sizes follow the image size, so every size looks alike
    radius = max(1, round(2 * s))
    x = image
    for _ in range(2):
        x = _bilateral(x, radius, sigma_space=1.5 * s, sigma_range=0.15)
    y = luma(x)
    levels = 6
    f = np.clip(y, 0, 1) * levels
    t = f - np.floor(f)
    t = t * t * (3 - 2 * t)
    t = t * t * (3 - 2 * t)  # twice smoothstepped: flat tone bands with soft steps between them
    banded = (np.floor(f) + t) / levels
    x = x + (banded - y)[..., None]
    soft = blur(luma(image), 0.6 * s)
    gy, gx = np.gradient(soft)
    magnitude = np.hypot(gx, gy) * s  # per pixel at 64 px
    edges = np.clip((magnitude - 0.045) / 0.06, 0, 1)
    x = x * (1 - 0.85 * edges[..., None])
    return np.clip(x, 0, 1)


def clarity(image: np.ndarray) -> np.ndarray:
    """Clarity: large-scale contrast compressed, local detail amplified through a soft limit."""
    s = image.shape[0] / 64
    y = luma(image)
    base = blur(y, 5 * s)
    detail = y - base
    limit = 0.12
    y_new = 0.5 + 0.85 * (base - 0.5) + 2.0 * limit * np.tanh(detail / limit)
    x = image + (y_new - y)[..., None]
    x = np.clip(x, 0, 1)
    x = x + 0.6 * (x - blur(x, 1.0 * s))  # unsharp mask
    return np.clip(x, 0, 1)


MAPPING_FUNCTIONS = {"grade": grade, "cartoon": cartoon, "clarity": clarity}


def apply_mapping(mapping: str, image: np.ndarray) -> np.ndarray:
    """Apply ``mapping`` to an ``(H, W, 3)`` uint8 image; returns uint8 of the same shape."""
    if mapping not in MAPPING_FUNCTIONS:
        raise DatasetError(f"data.mapping: unknown mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}")
    x = image.astype(np.float32) / 255.0
    return np.round(MAPPING_FUNCTIONS[mapping](x) * 255.0).astype(np.uint8)


class PhotoMappings(Dataset):
    """Crops of the bundled photographs (A) and the same kind of crops after ``mapping`` (B)."""

    def __init__(
        self,
        *,
        mapping: str,
        size: int,
        scale: float,
        length: int,
        seed: int,
        split: str,
        flip: bool,
        a_channels: int = 3,
        b_channels: int = 3,
    ) -> None:
        if mapping not in MAPPING_FUNCTIONS:
            raise DatasetError(
                f"data.mapping: unknown mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}"
            )
        self.mapping = mapping
        self.size = size
        self.scale = scale
        self.length = length
        self.seed = seed
        self.split = split
        self.flip = flip and split == "train"
        self.channels = {"A": a_channels, "B": b_channels}
        self.photos = photographs()

    def __len__(self) -> int:
        return self.length

    @property
    def paired(self) -> bool:
        """Test items show one crop in both versions (a true pair); training items do not."""
        return self.split != "train"

    def window(self, photo: int, draw) -> tuple[int, int, int]:
        """``(top, left, side)`` of a crop of ``photo`` in this split's region; ``draw(n)`` picks in range(n)."""
        height, width = self.photos[photo].shape[:2]
        side = crop_side(self.photos[photo].shape, self.scale)
        train_end, test_start = regions(width)
        if self.split == "train":
            low, high = 0, train_end - side
        else:
            low, high = test_start, width - side
        return draw(height - side + 1), low + draw(high - low + 1), side

    def crop(self, photo: int, top: int, left: int, side: int) -> np.ndarray:
        patch = Image.fromarray(self.photos[photo][top : top + side, left : left + side])
        return np.asarray(patch.resize((self.size, self.size), Image.Resampling.LANCZOS))

    def _train_crop(self) -> np.ndarray:
        photo = int(torch.randint(len(self.photos), ()))
        array = self.crop(photo, *self.window(photo, lambda n: int(torch.randint(n, ()))))
        if self.flip and bool(torch.rand(()) < 0.5):
            array = array[:, ::-1]
        return array

    def test_crop(self, index: int) -> np.ndarray:
        rng = random.Random(f"{self.seed}/{self.split}/{index}")
        photo = index % len(self.photos)
        return self.crop(photo, *self.window(photo, rng.randrange))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.split == "train":  # independent crops for A and B: unpaired
            a, b = self._train_crop(), apply_mapping(self.mapping, self._train_crop())
        else:  # one crop, both versions: the true pair
            a = self.test_crop(index)
            b = apply_mapping(self.mapping, a)
        return {
            domain: to_tensor(to_grey(array) if self.channels[domain] == 1 else array)
            for domain, array in (("A", a), ("B", b))
        }
