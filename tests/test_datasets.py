"""The image-folder datasets: preprocessing, image modes, extensions, missing data, unreadable files.

Everything is built through the registries, as a recipe would build it, on folders of a few tiny images
written by the tests.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ganforge.data.folders import list_images
from ganforge.data.sampling import EpochSampler, SeededItems
from ganforge.errors import DatasetError, RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def dataset(type_: str, root: Path, split: str = "train", **params):
    spec = REGISTRIES.resolve("dataset", {"type": type_, "root": str(root), **params}, "data")
    return spec.build(split)


def unpaired(root: Path, size=(45, 31), n: int = 2) -> Path:
    for k, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (50 * k, 90 * i, 20)).save(root / folder / f"{i}.png")
    return root


def asymmetric(size=(16, 12)) -> Image.Image:
    """Dark left half, light right half: a flip is visible."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, size[0] // 2 :] = 230
    return Image.fromarray(array)


def truncated_jpeg(path: Path) -> Path:
    Image.new("RGB", (32, 32), (10, 200, 30)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png16(path: Path, width: int, height: int, colour: bool, value: int) -> Path:
    """A 16-bit PNG (greyscale or RGB) written by hand; Pillow cannot save 16-bit RGB."""
    channels = 3 if colour else 1
    row = b"\x00" + struct.pack(f">{width * channels}H", *([value] * width * channels))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2 if colour else 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
    return path


# ------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize(
    ("mode", "params", "shape"),
    [
        ("resize_and_crop", {"load_size": 40, "crop_size": 32}, (3, 32, 32)),
        ("crop", {"crop_size": 24}, (3, 24, 24)),
        ("scale_width", {"load_size": 40, "crop_size": 24}, (3, 28, 40)),  # 40 x 27.6 -> 40 x 27 -> 40 x 28
        ("scale_width_and_crop", {"load_size": 40, "crop_size": 24}, (3, 24, 24)),
        ("none", {}, (3, 32, 44)),  # 45 x 31 rounded to multiples of 4
    ],
)
def test_each_preprocess_mode_gives_its_size(tmp_path, mode, params, shape):
    root = unpaired(tmp_path / "data", size=(45, 31))
    for split in ("train", "test"):
        item = dataset("unpaired_folder", root, split, preprocess=mode, **params)[0]
        assert item["A"].shape == item["B"].shape == shape
        assert item["A"].dtype == torch.float32 and -1 <= item["A"].min() <= item["A"].max() <= 1


def test_paper_sizes_and_crop_bounds(tmp_path):
    root = unpaired(tmp_path / "data", size=(256, 256), n=1)
    item = dataset("unpaired_folder", root)[0]  # defaults: load 286, random crop 256
    assert item["A"].shape == (3, 256, 256)
    with pytest.raises(RecipeError, match=r"^data: .*crop_size \(300\) is larger than load_size \(286\)"):
        dataset("unpaired_folder", root, crop_size=300)
    with pytest.raises(RecipeError, match="data.on_corrupt"):
        dataset("unpaired_folder", root, on_corrupt="ignore")
    small = unpaired(tmp_path / "small", size=(20, 20), n=1)
    with pytest.raises(DatasetError, match=r"trainA/0\.png: image of 20x20 px is smaller than crop_size 24"):
        dataset("unpaired_folder", small, preprocess="crop", crop_size=24)[0]


def flipped(image: torch.Tensor) -> bool:
    return bool(image[:, :, 0].mean() > image[:, :, -1].mean())


def test_flip_on_and_off(tmp_path):
    root = tmp_path / "data"
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True)
        asymmetric().save(root / folder / "0.png")

    def flips(split: str, flip: bool) -> set[bool]:
        data = dataset("unpaired_folder", root, split, preprocess="none", flip=flip)
        seen = set()
        for seed in range(12):
            torch.manual_seed(seed)
            seen.add(flipped(data[0]["A"]))
        return seen

    assert flips("train", True) == {True, False}
    assert flips("train", False) == {False}
    assert flips("test", True) == {False}  # never at test time


def test_items_are_a_function_of_the_seed(tmp_path):
    root = unpaired(tmp_path / "data", size=(45, 31), n=3)
    items = SeededItems(dataset("unpaired_folder", root, load_size=40, crop_size=32), seed=7)
    first, again, other = items[(0, 1, 2)], items[(0, 1, 2)], items[(1, 1, 2)]
    assert torch.equal(first["A"], again["A"]) and torch.equal(first["B"], again["B"])
    assert first["A"].shape == other["A"].shape


# ------------------------------------------------------------------------------- modes, extensions


@pytest.mark.parametrize("kind", ["L", "P", "RGBA", "LA", "1", "I;16", "RGB16", "CMYK"])
def test_every_image_mode_becomes_rgb(tmp_path, kind):
    folder = tmp_path / "images"
    folder.mkdir()
    expected = 128 / 127.5 - 1  # every pixel's value, in [-1, 1]
    if kind == "I;16":
        png16(folder / "grey16.png", 12, 8, colour=False, value=128 * 256)
    elif kind == "RGB16":
        png16(folder / "rgb16.png", 12, 8, colour=True, value=128 * 256)
    elif kind == "1":
        Image.new("1", (12, 8), 1).save(folder / "bits.png")
        expected = 1.0
    elif kind == "CMYK":
        Image.new("CMYK", (12, 8), (0, 0, 0, 0)).save(folder / "print.jpg")
        expected = 1.0
    elif kind == "P":
        Image.new("RGB", (12, 8), (128, 128, 128)).convert("P", palette=Image.Palette.ADAPTIVE).save(
            folder / "palette.png"
        )
    else:
        colour = {"L": 128, "RGBA": (128, 128, 128, 40), "LA": (128, 40)}[kind]
        Image.new(kind, (12, 8), colour).save(folder / f"{kind}.png")
    (image,) = dataset("single_folder", folder)[0].values()
    assert image.shape == (3, 8, 12)
    assert torch.allclose(image, torch.full_like(image, expected), atol=1.5 / 127.5), image.unique()


def test_extensions_in_any_case(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    names = ["a.JPG", "b.Jpeg", "c.PNG", "d.BMP", "e.WEBP", "f.TIF", "nested/g.tiff", "h.jpg"]
    for name in names:
        Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "folder.png").mkdir()  # a folder with an image's name
    Image.new("RGB", (8, 8)).save(folder / ".hidden.png")
    (folder / "._h.jpg").write_bytes(b"macOS resource fork")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._a.JPG").write_bytes(b"macOS resource fork")
    assert [p.relative_to(folder).as_posix() for p in list_images(folder)] == sorted(names)
    data = dataset("single_folder", folder)
    assert len(data) == len(names)
    for i in range(len(data)):
        assert data[i]["A"].shape == (3, 8, 8)


# ---------------------------------------------------------------------------------- missing, empty


def test_missing_and_empty_folders_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"dataset folder {missing} not found.*ganforge fetch --list"):
        dataset("unpaired_folder", missing)
    published = tmp_path / "datasets" / "monet2photo"
    with pytest.raises(DatasetError) as info:
        dataset("unpaired_folder", published)
    assert str(info.value).endswith(  # the core names no server: the plugins' sources say which exist
        "expected folders trainA/ trainB/ testA/ testB/; to download a published dataset: "
        f"ganforge fetch monet2photo --root {published.parent} (ganforge fetch --list shows the names)"
    )
    with pytest.raises(
        DatasetError, match=r"expected train/ and test/ of A\|B images.*ganforge fetch facades"
    ):
        dataset("paired_folder", tmp_path / "datasets" / "facades")
    root = unpaired(tmp_path / "data")
    for image in (root / "trainB").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=f"data.root: {root / 'trainB'} holds no images"):
        dataset("unpaired_folder", root)
    (root / "trainB").rmdir()
    with pytest.raises(
        DatasetError, match=f"data.root: {root / 'trainB'} not found; expected trainA/ and trainB/"
    ):
        dataset("unpaired_folder", root)

    with pytest.raises(DatasetError, match=f"data.root: dataset folder {missing} not found"):
        dataset("paired_folder", missing)
    with pytest.raises(
        DatasetError, match=f"{root / 'train'} not found; {root} holds testA/, testB/, trainA/"
    ):
        dataset("paired_folder", root)
    (root / "train").mkdir()
    with pytest.raises(DatasetError, match=f"paired image folder {root / 'train'} holds no images"):
        dataset("paired_folder", root)

    with pytest.raises(DatasetError, match=f"image folder {missing} not found"):
        dataset("single_folder", missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=f"image folder {empty} holds no images"):
        dataset("single_folder", empty)


# ------------------------------------------------------------------------------------ unreadable


def test_corrupt_image_is_an_error_naming_the_file(tmp_path):
    root = unpaired(tmp_path / "data")
    bad = truncated_jpeg(root / "trainA" / "2.jpg")
    data = dataset("unpaired_folder", root, preprocess="none")
    data[0]  # the good ones load
    with pytest.raises(DatasetError, match=f"^{bad}: cannot read image"):
        data[2]


def test_skip_mode_replaces_and_counts_unreadable_images(tmp_path, capfd):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(["a", "c", "d", "f"]):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{name}.png")
    bad_b = truncated_jpeg(folder / "b.jpg")
    bad_e = folder / "e.png"
    bad_e.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing
    data = dataset("single_folder", folder, on_corrupt="skip")
    assert len(data) == 6
    items = [data[i]["A"] for i in range(6)]
    assert torch.equal(items[1], items[2]) and torch.equal(items[4], items[5])  # replaced by the next
    data[1]  # a file already found bad is not read (nor reported) again in this process
    assert data.reader.skips.count == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert (
        lines[0].startswith(f"warning: skipped {bad_b}: cannot read image")
        and "1 image(s) skipped so far" in lines[0]
    )
    assert (
        lines[1].startswith(f"warning: skipped {bad_e}: cannot read image")
        and "2 image(s) skipped so far" in lines[1]
    )

    # DataLoader workers share the count: worker 1 meets b.jpg (item 1), worker 0 e.png (item 4)
    data = dataset("single_folder", folder, on_corrupt="skip")
    loader = DataLoader(data, batch_size=1, num_workers=2)
    assert len(list(loader)) == 6
    assert data.reader.skips.count == 2
    assert len(capfd.readouterr().err.strip().splitlines()) == 2

    for good in ("a", "c", "d", "f"):
        truncated_jpeg(folder / f"{good}.png")
    with pytest.raises(DatasetError, match=f"none of the 6 images in {folder} can be read"):
        dataset("single_folder", folder, on_corrupt="skip")[0]


# --------------------------------------------------------------------------------- paired, single


def write_pair(path: Path, width: int = 20, height: int = 16) -> np.ndarray:
    """A|B side by side with B = 255 - A (so aligned halves give B == -A in [-1, 1])."""
    rng = np.random.default_rng(len(str(path)))
    left = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([left, 255 - left], axis=1)).save(path)
    return left


def test_paired_images_split_into_aligned_halves(tmp_path):
    root = tmp_path / "facades"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
    left = write_pair(root / "train" / "1.png")
    write_pair(root / "val" / "1.png")
    odd = np.concatenate(
        [left, 255 - left, np.zeros((16, 1, 3), np.uint8)], axis=1
    )  # 41 px: last column dropped
    Image.fromarray(odd).save(root / "train" / "2.png")

    exact = dataset("paired_folder", root, preprocess="none", flip=False)
    assert len(exact) == 2 and exact.paired is True  # evaluation may score true pairs
    a = torch.from_numpy(left).permute(2, 0, 1).float() / 127.5 - 1
    for i in range(2):
        item = exact[i]
        assert (
            set(item) == {"A", "B"} and torch.equal(item["A"], a) and torch.allclose(item["B"], -a, atol=1e-6)
        )
    swapped = dataset("paired_folder", root, preprocess="none", flip=False, a_half="right")[0]
    assert torch.allclose(swapped["A"], -a, atol=1e-6) and torch.equal(swapped["B"], a)

    # random crops and flips are the same for both halves
    augmented = dataset("paired_folder", root, load_size=24, crop_size=12)
    for seed in range(6):
        torch.manual_seed(seed)
        item = augmented[0]
        assert item["A"].shape == (3, 12, 12) and (item["A"] + item["B"]).abs().max() < 0.02
    test = dataset("paired_folder", root, "test", test_folder="val", load_size=24, crop_size=12)
    assert len(test) == 1 and test[0]["A"].shape == (3, 12, 12)


def test_single_folder_gives_domain_a_only(tmp_path):
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    Image.new("RGB", (30, 22), (10, 20, 30)).save(folder / "x.jpg")
    Image.new("L", (17, 9), 100).save(folder / "2024" / "y.png")
    for split in ("train", "test"):
        data = dataset("single_folder", folder, split)
        assert len(data) == 2
        first, second = data[0], data[1]
        assert list(first) == ["A"] and list(second) == ["A"]
        assert second["A"].shape == (3, 24, 32)  # whole images, sides rounded to multiples of 4
        assert first["A"].shape == (3, 8, 16)  # 2024/y.png sorts first
    cropped = dataset("single_folder", folder, preprocess="resize_and_crop", load_size=20, crop_size=16)
    assert cropped[0]["A"].shape == (3, 16, 16)


def test_folders_feed_the_engine_loader(tmp_path):
    """The trainer's loader (seeded items, epoch sampler, two workers) over an unpaired folder."""
    root = unpaired(tmp_path / "data", size=(45, 31), n=4)
    data = dataset("unpaired_folder", root, load_size=40, crop_size=32)
    assert data.paired is False and data.domain_sizes == {"A": 4, "B": 4}
    sampler = EpochSampler(len(data), seed=3)
    loader = DataLoader(
        SeededItems(data, 3), batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True
    )
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        epochs.append([batch["A"] for batch in loader])
    assert [b.shape for b in epochs[0]] == [(2, 3, 32, 32)] * 2
    sampler.set_epoch(0)
    again = DataLoader(SeededItems(data, 3), batch_size=2, sampler=sampler, num_workers=0)
    assert all(torch.equal(x, y) for x, y in zip(epochs[0], [b["A"] for b in again], strict=True))


# ------------------------------------------------------------------------------ channels (1 or 3)


def grey_value(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601-2 luma, as PIL's convert("L") rounds it."""
    r, g, b = rgb
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def test_channels_convert_images_to_grey_or_rgb(tmp_path):
    assert grey_value((200, 100, 50)) == 124  # 0.299*200 + 0.587*100 + 0.114*50 = 124.2
    root = tmp_path / "data"
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 100, 50)).save(root / "trainA" / "0.png")  # colour -> grey
    Image.new("L", (8, 8), 77).save(root / "trainB" / "0.png")  # grey -> RGB
    grey = dataset("unpaired_folder", root, preprocess="none", a_channels=1, b_channels=3)[0]
    assert grey["A"].shape == (1, 8, 8) and grey["B"].shape == (3, 8, 8)
    assert torch.allclose(grey["A"], torch.full((1, 8, 8), 124 / 127.5 - 1))
    assert torch.allclose(grey["B"], torch.full((3, 8, 8), 77 / 127.5 - 1))
    rgb = dataset("unpaired_folder", root, preprocess="none")[0]  # default: 3 and 3
    assert rgb["A"].shape == (3, 8, 8) and torch.allclose(
        rgb["A"][:, 0, 0], torch.tensor([200, 100, 50]) / 127.5 - 1
    )
    # the preprocessing (resize, crop, flip) works on 1-channel images too
    assert dataset("unpaired_folder", root, a_channels=1, load_size=12, crop_size=8)[0]["A"].shape == (
        1,
        8,
        8,
    )
    with pytest.raises(RecipeError, match=r"data\.a_channels"):
        dataset("unpaired_folder", root, a_channels=2)

    pairs = tmp_path / "facades"
    (pairs / "train").mkdir(parents=True)
    left = write_pair(pairs / "train" / "1.png")
    item = dataset("paired_folder", pairs, preprocess="none", flip=False, a_channels=1)[0]
    expected = np.asarray(Image.fromarray(left).convert("L"), np.float32) / 127.5 - 1
    assert item["A"].shape == (1, 16, 20) and torch.allclose(item["A"][0], torch.from_numpy(expected))
    assert item["B"].shape == (3, 16, 20)
    swapped = dataset("paired_folder", pairs, preprocess="none", flip=False, a_half="right", b_channels=1)[0]
    assert swapped["A"].shape == (3, 16, 20) and torch.allclose(swapped["B"][0], torch.from_numpy(expected))

    single = dataset("single_folder", root / "trainA", channels=1)[0]["A"]
    assert single.shape == (1, 8, 8) and torch.allclose(single, grey["A"])


def test_synthetic_scenes_in_grey_are_the_luma_of_the_colour_ones():
    colour = REGISTRIES.resolve("dataset", {"type": "synthetic_scenes", "size": 16}, "data").build("test")[0]
    grey = REGISTRIES.resolve(
        "dataset", {"type": "synthetic_scenes", "size": 16, "a_channels": 1, "b_channels": 1}, "data"
    ).build("test")[0]
    for domain in ("A", "B"):
        assert grey[domain].shape == (1, 16, 16)
        rgb = ((colour[domain] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        luma = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 127.5 - 1
        assert torch.allclose(grey[domain][0], torch.from_numpy(luma))


# ---------------------------------------------------------------------------------------- aligned


def aligned(root: Path, names_a, names_b, split: str = "train", size=(20, 16)) -> dict[str, np.ndarray]:
    """root/A/<split>/ and root/B/<split>/; each B image is 255 - its A image (aligned: B == -A)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for side, names in (("A", names_a), ("B", names_b)):
        (root / side / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            stem = Path(name).with_suffix("").as_posix()
            if stem not in arrays:
                arrays[stem] = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            array = arrays[stem] if side == "A" else 255 - arrays[stem]
            (root / side / split / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / side / split / name)
    return arrays


def test_aligned_folders_pair_files_by_name(tmp_path):
    root = tmp_path / "maps"
    arrays = aligned(root, ["1.png", "2.png", "sub/3.png"], ["2.bmp", "1.png", "sub/3.tif"])
    aligned(root, ["9.png"], ["9.png"], split="val")
    exact = dataset("aligned_folders", root, preprocess="none", flip=False)
    assert len(exact) == 3 and exact.paired is True
    for i, stem in enumerate(["1", "2", "sub/3"]):  # sorted by name; 2.png pairs with 2.bmp
        a = torch.from_numpy(arrays[stem]).permute(2, 0, 1).float() / 127.5 - 1
        item = exact[i]
        assert torch.equal(item["A"], a) and torch.allclose(item["B"], -a, atol=1e-6)
    # the same random crop and flip for both images
    augmented = dataset("aligned_folders", root, load_size=24, crop_size=12)
    for seed in range(6):
        torch.manual_seed(seed)
        item = augmented[1]
        assert item["A"].shape == (3, 12, 12) and (item["A"] + item["B"]).abs().max() < 0.02
    test = dataset("aligned_folders", root, "test", test_folder="val", preprocess="none", b_channels=1)
    assert len(test) == 1 and test[0]["A"].shape == (3, 16, 20) and test[0]["B"].shape == (1, 16, 20)


def test_aligned_folders_refuse_unmatched_names_or_skip_them(tmp_path, capfd):
    root = tmp_path / "maps"
    aligned(root, ["1.png", "2.png", "3.png", "4.png", "5.png", "6.png"], ["1.png", "7.png"])
    with pytest.raises(DatasetError) as error:
        dataset("aligned_folders", root)
    message = str(error.value)
    assert "\n" not in message
    assert f"{root / 'A' / 'train'} and {root / 'B' / 'train'} do not hold the same file names" in message
    assert "5 only in" in message and "(2, 3, 4 and 2 more)" in message and "1 only in" in message
    assert "(7)" in message and 'data.on_unmatched = "skip"' in message
    capfd.readouterr()
    kept = dataset("aligned_folders", root, preprocess="none", on_unmatched="skip")
    assert len(kept) == 1 and kept[0]["A"].shape == (3, 16, 20)
    assert capfd.readouterr().err.count("warning:") == 1
    with pytest.raises(RecipeError, match=r"data\.on_unmatched"):
        dataset("aligned_folders", root, on_unmatched="ignore")

    nothing = tmp_path / "nothing"
    aligned(nothing, ["1.png"], ["2.png"])
    with pytest.raises(DatasetError, match="no file name is in both"):
        dataset("aligned_folders", nothing, on_unmatched="skip")
    twice = tmp_path / "twice"
    aligned(twice, ["1.png", "1.bmp"], ["1.png"])
    with pytest.raises(DatasetError, match=r"holds both 1\.bmp and 1\.png"):
        dataset("aligned_folders", twice)
    (root / "A" / "test").mkdir()
    with pytest.raises(DatasetError, match=r"B[/\\]test not found; aligned data"):
        dataset("aligned_folders", root, "test")
    with pytest.raises(DatasetError, match="dataset folder .* not found"):
        dataset("aligned_folders", tmp_path / "absent")


def test_aligned_folders_check_sizes_and_skip_unreadable_pairs(tmp_path, capfd):
    root = tmp_path / "maps"
    aligned(root, ["1.png", "2.png", "3.png"], ["1.png", "2.png", "3.png"])
    Image.new("RGB", (10, 10)).save(root / "B" / "train" / "3.png")
    (root / "A" / "train" / "1.png").write_bytes(b"not an image")
    strict = dataset("aligned_folders", root, preprocess="none", flip=False)
    with pytest.raises(DatasetError, match=r"1\.png: cannot read image"):
        strict[0]
    with pytest.raises(DatasetError, match=r"3\.png is 20x16 px but .*3\.png is 10x10 px"):
        strict[2]
    capfd.readouterr()
    skipping = dataset("aligned_folders", root, preprocess="none", flip=False, on_corrupt="skip")
    second = skipping[1]
    assert torch.equal(skipping[0]["A"], second["A"])  # the unreadable pair 1 is replaced by pair 2
    assert "skipped" in capfd.readouterr().err
