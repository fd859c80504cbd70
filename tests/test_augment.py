"""Augmentations (``augment`` kind): ``none`` and DiffAugment's colour, translation and cutout."""

from __future__ import annotations

import tomllib

import pytest
import torch

from ganforge.builtins.augment import POLICIES
from ganforge.errors import RecipeError
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.recipe import load_recipe
from tests.conftest import RECIPES, run_cli

REGISTRIES = collect_registries(make_plugin_manager())
QUICKSTART = RECIPES / "quickstart.toml"


def augment(name: str = "diffaugment", **params):
    return REGISTRIES.resolve("augment", {"type": name, **params}, "model.augment").build()


def images(n: int = 4, c: int = 3, h: int = 17, w: int = 15, seed: int = 0) -> torch.Tensor:
    """Random images in [-1, 1] with no exact zeros, so zeroed pixels are the augment's doing."""
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 1.8 - 0.9
    return torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)


def shifted(x: torch.Tensor, ty: int, tx: int) -> torch.Tensor:
    """``x`` moved down by ty and right by tx, zeros where nothing moved in (one image, C x H x W)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[:, max(ty, 0) : h + min(ty, 0), max(tx, 0) : w + min(tx, 0)] = x[
        :, max(-ty, 0) : h + min(-ty, 0), max(-tx, 0) : w + min(-tx, 0)
    ]
    return out


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (5, 3, 17, 15), (2, 1, 9, 32), (3, 6, 31, 7)])
@pytest.mark.parametrize("policy", [list(POLICIES), ["color"], ["translation"], ["cutout"]])
def test_shape_dtype_and_range_are_kept(shape, policy) -> None:
    x = torch.rand(shape) * 2 - 1
    y = augment(policy=policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


def test_none_is_the_identity() -> None:
    none = augment("none")
    x = images()
    assert not none.enabled and none(x) is x
    assert augment().enabled
    assert not list(augment().state_dict())  # nothing to save: old checkpoints keep loading


def test_draws_follow_the_global_seed_and_each_image_draws_its_own() -> None:
    diff = augment()
    x = images()
    torch.manual_seed(3)
    first = diff(x)
    torch.manual_seed(3)
    assert torch.equal(diff(x), first)
    torch.manual_seed(4)
    assert not torch.equal(diff(x), first)
    same = images(1).expand(6, -1, -1, -1)  # one image six times: six different results
    out = augment()(same)
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) == 6


def test_gradient_reaches_the_input() -> None:
    x = images().requires_grad_(True)
    torch.manual_seed(0)
    augment()(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_color_is_an_affine_change_of_each_image() -> None:
    """A grey image stays grey (saturation and contrast have nothing to act on) and moves by one
    brightness shift in [-0.5, 0.5]; shifts differ between images."""
    torch.manual_seed(0)
    grey = torch.full((64, 3, 5, 7), 0.25)
    out = augment(policy=["color"])(grey)
    per_image = out.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    shift = per_image[:, 0] - 0.25
    assert shift.abs().max() <= 0.5 and shift.min() < -0.4 and shift.max() > 0.4  # U(-0.5, 0.5)
    # on colourful images it changes the image but moves no content: a pixel's colour stays a
    # function of that same pixel (the brightest pixel of a one-bright-pixel image stays put)
    x = torch.full((8, 3, 9, 9), -0.5)
    x[:, :, 4, 6] = 0.9
    y = augment(policy=["color"])(x)
    assert not torch.equal(x, y)
    assert (y.sum(1).flatten(1).argmax(1) == 4 * 9 + 6).all()


def test_translation_moves_content_and_pads_with_zeros() -> None:
    torch.manual_seed(0)
    x = images(16, h=16, w=24)
    y = augment(policy=["translation"], translation_ratio=0.125)(x)
    moves = []
    for xi, yi in zip(x, y, strict=True):
        found = [
            (ty, tx)
            for ty in range(-2, 3)  # 0.125 x 16
            for tx in range(-3, 4)  # 0.125 x 24
            if torch.equal(yi, shifted(xi, ty, tx))
        ]
        assert len(found) == 1, "each image is its input moved by whole pixels within the ratio"
        moves.append(found[0])
    assert len(set(moves)) > 3  # per-image shifts
    assert any(ty != 0 and tx != 0 for ty, tx in moves)
    assert torch.equal(augment(policy=["translation"], translation_ratio=0.0)(x), x)


def test_cutout_zeroes_one_rectangle_of_the_expected_size_inside_the_image() -> None:
    torch.manual_seed(0)
    x = images(32, h=17, w=15)
    y = augment(policy=["cutout"], cutout_ratio=0.5)(x)
    corners = set()
    for xi, yi in zip(x, y, strict=True):
        zero = (yi == 0).all(0)
        rows, cols = zero.nonzero(as_tuple=True)
        assert int(zero.sum()) == 9 * 8  # round(0.5 x 17) x round(0.5 x 15)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (9, 8)  # one rectangle
        assert torch.equal(yi[:, ~zero], xi[:, ~zero])  # the rest untouched
        corners.add((int(rows.min()), int(cols.min())))
    assert len(corners) > 5
    assert torch.equal(augment(policy=["cutout"], cutout_ratio=0.0)(x), x)
    assert (augment(policy=["cutout"], cutout_ratio=1.0)(x) == 0).all()


def test_parts_of_a_pair_get_the_same_transform() -> None:
    """augment(pair, parts=...) on [input | image]: each half is transformed as if alone, alike."""
    a, b = images(6, c=1, seed=1), images(6, c=3, seed=2)
    torch.manual_seed(5)
    pair = augment()(torch.cat([a, b], 1), parts=(1, 3))
    # translation and cutout are the same on both halves: zeros (cutout, padding) at the same places
    assert torch.equal(pair[:, :1] == 0, (pair[:, 1:] == 0).all(1, keepdim=True))
    # colour alone: the same factors on each half, each with its own means; the same as running
    # the half alone with the same draws
    torch.manual_seed(5)
    halves = augment(policy=["color"])(torch.cat([a, b], 1), parts=(1, 3))
    torch.manual_seed(5)
    alone = augment(policy=["color"])(b)
    assert torch.allclose(halves[:, 1:], alone, atol=1e-6)
    with pytest.raises(ValueError, match="do not add up"):
        augment()(torch.cat([a, b], 1), parts=(3, 3))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["color", "flip"]', "model.augment.policy.1: Input should be 'color', 'translation' or 'cutout'"),
        (
            '["cutout", "cutout"]',
            "model.augment.policy: Value error, cutout listed more than once; valid values: "
            + ", ".join(POLICIES),
        ),
        ('"color"', "model.augment.policy: Input should be a valid tuple"),
        (
            "[]",
            "model.augment.policy: Value error, empty: list one or more of "
            + ", ".join(POLICIES)
            + " (or use augment type 'none')",
        ),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_field_and_the_valid_values(value: str, message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(QUICKSTART, ["model.augment.type=diffaugment", f"model.augment.policy={value}"])
    assert caught.value.lines == [f"{QUICKSTART}: {message}"]


def test_bad_policy_on_the_command_line() -> None:
    result = run_cli(
        "run",
        str(QUICKSTART),
        "--set",
        "model.augment.type=diffaugment",
        "--set",
        'model.augment.policy=["zoom"]',
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "model.augment.policy.0" in line and "'color', 'translation' or 'cutout'" in line


def test_recipe_round_trip() -> None:
    overrides = [
        "model.augment.type=diffaugment",
        'model.augment.policy=["translation", "cutout"]',
        "model.augment.cutout_ratio=0.25",
    ]
    recipe = load_recipe(QUICKSTART, overrides).recipe
    text = recipe.to_toml()
    section = tomllib.loads(text)["model"]["augment"]
    assert section == {
        "type": "diffaugment",
        "policy": ["translation", "cutout"],
        "translation_ratio": 0.125,
        "cutout_ratio": 0.25,
    }
    # and the written recipe reads back to the same component
    again = load_recipe(QUICKSTART, [f"model.augment={_inline(section)}"]).recipe
    assert again.to_toml() == text
    default = tomllib.loads(load_recipe(QUICKSTART).recipe.to_toml())["model"]["augment"]
    assert default == {"type": "none"}


def _inline(table: dict) -> str:
    items = ", ".join(f"{k} = {_value(v)}" for k, v in table.items())
    return "{" + items + "}"


def _value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    return repr(v)
