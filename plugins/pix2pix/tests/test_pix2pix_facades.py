"""synthetic_facades: deterministic, paired label maps and renderings, registered by the plugin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ganforge_pix2pix.facades import CLASSES, LABEL_COLOURS, SKY, WINDOW, SyntheticFacades, label_map

from ganforge.errors import RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def build(split="train", **params):
    return REGISTRIES.resolve("dataset", {"type": "synthetic_facades", **params}, "data").build(split)


def test_registered_by_the_plugin_with_lengths_per_split():
    component = REGISTRIES["dataset"].get("synthetic_facades")
    assert component.plugin == "pix2pix"
    assert len(build("train", length=7, test_length=3)) == 7
    assert len(build("test", length=7, test_length=3)) == 3
    with pytest.raises(RecipeError, match=r"data.size: Input should be greater than or equal to 16"):
        build(size=8)


def test_items_are_deterministic_given_seed_split_and_index():
    a, b = build(seed=3, size=32), build(seed=3, size=32)
    for i in (0, 5):
        x, y = a[i], b[i]
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    assert not torch.equal(a[0]["A"], a[1]["A"])
    assert not torch.equal(a[0]["A"], build(seed=4, size=32)[0]["A"])
    assert not torch.equal(a[0]["A"], build("test", seed=3, size=32)[0]["A"])


def test_every_item_is_a_true_pair_of_label_map_and_photo():
    data = build(size=64)
    assert data.paired is True and build("test").paired is True
    item = data[2]
    assert item["A"].shape == item["B"].shape == (3, 64, 64)
    assert item["A"].dtype == torch.float32 and item["A"].min() >= -1 and item["B"].max() <= 1
    labels_rgb, photo = data.arrays(2)
    # A holds only the flat class colours
    colours = {tuple(c) for c in labels_rgb.reshape(-1, 3)}
    assert colours <= {tuple(int(v) for v in c) for c in LABEL_COLOURS}
    # B follows A's layout: the label map of the same facade, rebuilt, puts glass where the photo is
    # dark and bluish, and the sky above the roof is lighter than the windows
    labels = label_map(data.facade(2), 64)
    assert np.array_equal(labels_rgb, LABEL_COLOURS[labels].astype(np.uint8))
    windows, sky = photo[labels == WINDOW].astype(float), photo[labels == SKY].astype(float)
    assert len(windows) > 0 and len(sky) > 0
    assert sky.mean() > windows.mean() + 40
    assert not np.array_equal(labels_rgb, photo)
    assert len(CLASSES) == len(LABEL_COLOURS)


def test_out_of_range_index_is_an_index_error():
    data = SyntheticFacades(size=32, length=2, seed=0, split="train")
    with pytest.raises(IndexError):
        data[2]
