"""The photo_mappings dataset: real photographs, three known edits, unpaired training, paired tests.

Built through the registries as a recipe builds it, at 32 px.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("skimage", reason="photo_mappings needs scikit-image (the test extra installs it)")

from ganforge.data import photos
from ganforge.errors import DatasetError, RecipeError
from ganforge.evaluation import is_paired
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())
SIZE = 32


def dataset(split: str = "test", **params):
    spec = REGISTRIES.resolve("dataset", {"type": "photo_mappings", "size": SIZE, **params}, "data")
    return spec.build(split)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


def edges(image: np.ndarray) -> np.ndarray:
    """Where the luminance gradient is in its top 10 %: the strong edges."""
    y = photos.luma(image.astype(np.float32) / 255)
    gy, gx = np.gradient(photos.blur(y, 1.0))
    magnitude = np.hypot(gx, gy)
    return magnitude > np.quantile(magnitude, 0.9)


@pytest.mark.parametrize("mapping", photos.MAPPINGS)
def test_test_pairs_are_the_same_crop_mapped(mapping):
    data = dataset(mapping=mapping, test_length=5)
    assert is_paired(data) and len(data) == 5
    for index in range(len(data)):
        item = data[index]
        assert item["A"].shape == item["B"].shape == (3, SIZE, SIZE)
        assert item["A"].min() >= -1 and item["A"].max() <= 1
        a = to_uint8(item["A"])
        expected = photos.apply_mapping(mapping, a)
        assert np.abs(to_uint8(item["B"]).astype(int) - expected).max() <= 1  # B is exactly A, mapped
        assert not np.array_equal(a, to_uint8(item["B"]))  # and the mapping changed it


@pytest.mark.parametrize("mapping", photos.MAPPINGS)
def test_mappings_are_deterministic_and_keep_the_geometry(mapping):
    first, again = dataset(mapping=mapping), dataset(mapping=mapping)
    aligned, shifted = [], []
    for index in range(len(first)):
        a, b = first[index], again[index]
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
        edges_a, edges_b = edges(to_uint8(a["A"])), edges(to_uint8(a["B"]))
        aligned.append((edges_a & edges_b).sum() / edges_a.sum())
        shifted.append((edges_a & np.roll(edges_b, 3, axis=1)).sum() / edges_a.sum())
    # the strong edges stay where they were: B shares far more of them with A than B moved by 3 px does
    assert np.mean(aligned) > 0.5, aligned
    assert np.mean(aligned) > 2 * np.mean(shifted), (aligned, shifted)


def test_the_mappings_differ_in_character():
    data = {m: dataset(mapping=m, test_length=8) for m in photos.MAPPINGS}
    a = torch.stack([data["grade"][i]["A"] for i in range(8)])
    b = {m: torch.stack([d[i]["B"] for i in range(8)]) for m, d in data.items()}
    # the grade moves colours everywhere; clarity changes local contrast and keeps the mean colour
    colour_shift = {m: (b[m].mean((0, 2, 3)) - a.mean((0, 2, 3))).abs().max().item() for m in b}
    assert colour_shift["grade"] > colour_shift["clarity"]
    for one, other in [("grade", "cartoon"), ("grade", "clarity"), ("cartoon", "clarity")]:
        assert (b[one] - b[other]).abs().mean() > 0.02


def test_training_items_are_unpaired_random_crops_and_reproducible():
    data = dataset("train", mapping="grade", length=4)
    assert not is_paired(data) and len(data) == 4
    torch.manual_seed(3)
    first = data[0]
    torch.manual_seed(3)
    again = data[0]
    assert torch.equal(first["A"], again["A"]) and torch.equal(first["B"], again["B"])
    torch.manual_seed(4)
    other = data[0]
    assert not torch.equal(first["A"], other["A"])
    # B is not the grade of A: the two crops are drawn independently
    assert not np.array_equal(photos.apply_mapping("grade", to_uint8(first["A"])), to_uint8(first["B"]))


def test_train_and_test_regions_are_disjoint():
    train, test = dataset("train", mapping="clarity"), dataset(mapping="clarity", test_length=50)
    for photo, image in enumerate(photos.photographs()):
        width = image.shape[1]
        train_end, test_start = photos.regions(width)
        assert train_end <= test_start and width - test_start == round(width * photos.TEST_FRACTION)
        for split, low, high in ((train, 0, train_end), (test, test_start, width)):
            for pick in ("low", "high"):  # the extreme windows: smallest and largest positions
                top, left, side = split.window(photo, lambda n, pick=pick: 0 if pick == "low" else n - 1)
                assert low <= left and left + side <= high, (split.split, photo, left, side)
                assert top >= 0 and top + side <= image.shape[0]


def test_test_split_is_not_flipped_and_has_fixed_crops():
    a = dataset(mapping="grade", flip=True, seed=1)
    b = dataset(mapping="grade", flip=False, seed=1)
    c = dataset(mapping="grade", seed=2)
    assert all(torch.equal(a[i]["A"], b[i]["A"]) for i in range(3))
    assert not all(torch.equal(a[i]["A"], c[i]["A"]) for i in range(5))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"mapping": "sepia"}, "data.mapping"),
        ({"size": 8}, "data.size"),
        ({"size": 512}, "data.size"),
        ({"scale": 0.0}, "data.scale"),
        ({"test_length": 0}, "data.test_length"),
        ({"colour": True}, "colour"),
    ],
)
def test_bad_params_are_one_line_errors(params, fragment):
    with pytest.raises(RecipeError) as info:
        REGISTRIES.resolve("dataset", {"type": "photo_mappings", **params}, "data").build("train")
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_unknown_mapping_in_code_is_a_dataset_error():
    with pytest.raises(DatasetError, match="grade, cartoon, clarity"):
        photos.apply_mapping("sepia", np.zeros((SIZE, SIZE, 3), np.uint8))


def test_sizes_follow_the_parameter():
    for size in (16, 48):
        item = REGISTRIES.resolve("dataset", {"type": "photo_mappings", "size": size}, "data").build("test")[
            0
        ]
        assert item["A"].shape == item["B"].shape == (3, size, size)


def test_without_scikit_image_the_error_says_what_to_install(monkeypatch):
    photos.photographs.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(DatasetError) as info:
            dataset(mapping="grade")
    finally:
        photos.photographs.cache_clear()
    message = str(info.value)
    assert "pip install scikit-image" in message and "ganforge[bench]" in message and "\n" not in message


def test_a_greyscale_domain_is_converted_after_the_edit():
    data = dataset(mapping="grade", a_channels=1)
    item = data[0]
    assert item["A"].shape == (1, SIZE, SIZE) and item["B"].shape == (3, SIZE, SIZE)
    colour = dataset(mapping="grade")[0]
    grey = photos.to_grey(to_uint8(colour["A"]))
    assert np.abs(to_uint8(item["A"])[:, :, 0].astype(int) - grey).max() <= 1
