"""Recipe validation: every mistake is one line with its path; the CLI exits 2 without a traceback."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ganforge.errors import RecipeError
from ganforge.recipe import load_recipe, parse_override
from tests.conftest import RECIPES, run_cli

QUICKSTART = RECIPES / "quickstart.toml"


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def errors_of(path: Path, *overrides: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.lines


def test_shipped_recipes_validate():
    for path in sorted(RECIPES.glob("*.toml")):
        loaded = load_recipe(path)
        assert loaded.recipe.name == path.stem


def test_out_of_range_value_names_its_path():
    (line,) = errors_of(QUICKSTART, "model.generator.n_blocks=-1")
    assert line == (
        f"{QUICKSTART}: model.generator.n_blocks: Input should be greater than or equal to 0"
    )


def test_cuda_graphs_need_compile():
    (line,) = errors_of(QUICKSTART, "train.cuda_graphs=true")
    assert line == (
        f"{QUICKSTART}: train: Value error, cuda_graphs = true needs compile = true (the graphs replay "
        "torch.compile's kernels)"
    )
    assert load_recipe(QUICKSTART, ["train.cuda_graphs=true", "train.compile=true"]).recipe.train.cuda_graphs


def test_unknown_type_lists_known_names_with_did_you_mean():
    (line,) = errors_of(QUICKSTART, 'model.generator.type="resnt"')
    assert "model.generator.type: unknown generator 'resnt' (did you mean 'resnet'?)" in line
    assert "known: resnet" in line


def test_unknown_metric_name_fails_validation_not_the_first_evaluation():
    (line,) = errors_of(QUICKSTART, 'eval.metrics=["psnr", "fidd"]')
    assert line.startswith(f"{QUICKSTART}: eval.metrics[1].type: unknown metric 'fidd' (did you mean 'fid'?)")
    assert load_recipe(QUICKSTART, ['eval.metrics=["psnr", "ssim"]']).recipe.eval.metrics == ["psnr", "ssim"]


def test_unknown_key_is_an_error_with_suggestion():
    (line,) = errors_of(QUICKSTART, "model.generator.n_block=6")
    assert "model.generator.n_block: unknown key (did you mean 'n_blocks'?)" in line
    assert "valid keys:" in line and "ngf" in line


def test_unknown_top_level_and_section_keys(tmp_path):
    text = QUICKSTART.read_text().replace("[train]\n", "[train]\nepohcs = 3\n")
    lines = errors_of(write_recipe(tmp_path, "seeed = 1\n" + text))
    assert any(": seeed: unknown key (did you mean 'seed'?)" in line for line in lines)
    assert any(": train.epohcs: unknown key (did you mean 'epochs'?)" in line for line in lines)


def test_several_errors_one_line_each():
    lines = errors_of(QUICKSTART, "model.generator.ngf=0", "model.discriminator.n_layers=-1", "train.epochs=0")
    assert len(lines) == 3
    assert any("train.epochs: Input should be greater than or equal to 1" in line for line in lines)


def test_wrong_type_and_nested_tuple_bound():
    (line,) = errors_of(QUICKSTART, "train.optimizer.betas=[0.5, 1.5]")
    assert line.endswith("train.optimizer.betas.1: Input should be less than 1")
    (line,) = errors_of(QUICKSTART, 'train.batch_size="two"')
    assert "train.batch_size: Input should be a valid integer" in line


INTEGER, NUMBER, BOOLEAN = (f"Input should be a valid {what}" for what in ("integer", "number", "boolean"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # a plugin component's params model (the CycleGAN generator and pool)
        ("model.generator.n_blocks=true", f"model.generator.n_blocks: {INTEGER}, got a boolean"),
        ('model.generator.n_blocks="5"', f"model.generator.n_blocks: {INTEGER}, got a string"),
        (
            "model.generator.n_blocks=1.5",
            f"model.generator.n_blocks: {INTEGER}, got a number with a fractional part",
        ),
        ("model.pool.p_swap=true", f"model.pool.p_swap: {NUMBER}, got a boolean"),
        ("model.generator.norm_affine=1", f"model.generator.norm_affine: {BOOLEAN}, got a number"),
        # a built-in component's params model, inside a tuple
        ("train.optimizer.betas=[0.5, true]", f"train.optimizer.betas.1: {NUMBER}, got a boolean"),
        ('train.optimizer.lr="2e-4"', f"train.optimizer.lr: {NUMBER}, got a string"),
        # recipe sections, optional ints among them
        ("train.epochs=true", f"train.epochs: {INTEGER}, got a boolean"),
        ("output.checkpoint_every_steps=true", f"output.checkpoint_every_steps: {INTEGER}, got a boolean"),
        ('eval.every_epochs="2"', f"eval.every_epochs: {INTEGER}, got a string"),
        ('output.report="yes"', f"output.report: {BOOLEAN}, got a string"),
        # a metric's table inside eval.metrics
        (
            'eval.metrics=["psnr", {type = "ssim", window = true}]',
            f"eval.metrics[1].window: {INTEGER}, got a boolean",
        ),
    ],
)
def test_a_bool_or_string_is_not_a_number(override, expected):
    (line,) = errors_of(QUICKSTART, override)
    assert line == f"{QUICKSTART}: {expected}"


def test_strict_types_keep_what_toml_cannot_say_otherwise():
    # an integral float is an int, an int is a float, an array is a tuple, a string is a literal
    recipe = load_recipe(
        QUICKSTART,
        [
            "model.generator.n_blocks=2.0",
            "train.optimizer.lr=1",
            "train.optimizer.betas=[0, 0.5]",
            'model.generator.upsample="resize_conv"',
            "output.checkpoint_every_steps=5",
        ],
    ).recipe
    generator = recipe.model.params.generator.params
    assert generator.n_blocks == 2 and type(generator.n_blocks) is int
    assert generator.upsample == "resize_conv"
    assert recipe.train.optimizer.params.lr == 1.0 and recipe.train.optimizer.params.betas == (0.0, 0.5)
    assert recipe.output.checkpoint_every_steps == 5


def test_cli_names_a_bool_given_for_an_int_in_the_file_and_in_an_override(tmp_path):
    text = QUICKSTART.read_text().replace("n_blocks = 3\n", "n_blocks = true\n")
    path = write_recipe(tmp_path, text)
    from_file = run_cli("validate", str(path))
    assert from_file.returncode == 2 and "Traceback" not in from_file.stderr
    assert from_file.stderr.strip().splitlines() == [
        f"error: {path}: model.generator.n_blocks: Input should be a valid integer, got a boolean"
    ]
    overridden = run_cli("validate", str(QUICKSTART), "--set", "train.optimizer.betas=[true, 0.999]")
    assert overridden.returncode == 2
    assert overridden.stderr.strip().splitlines() == [
        f"error: {QUICKSTART}: train.optimizer.betas.0: Input should be a valid number, got a boolean"
    ]


def test_missing_type_and_unknown_model(tmp_path):
    text = QUICKSTART.read_text().replace('[data]\ntype = "synthetic_scenes"\n', "[data]\n")
    (line,) = errors_of(write_recipe(tmp_path, text))
    assert "data.type: missing; name a dataset (known:" in line and "synthetic_scenes" in line
    (line,) = errors_of(QUICKSTART, 'model.type="cyclgan"')
    assert "(did you mean 'cyclegan'?)" in line


def test_toml_syntax_error_gives_line_and_column(tmp_path):
    path = write_recipe(tmp_path, 'name = "x"\n\n[train]\nepochs = = 3\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: TOML syntax error:")
    assert "line 4, column" in line


def test_missing_file_and_not_utf8(tmp_path):
    (line,) = errors_of(tmp_path / "nope.toml")
    assert line == f"{tmp_path / 'nope.toml'}: recipe file not found"
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00junk")
    (line,) = errors_of(path)
    assert "not UTF-8 text" in line


def test_overrides_parse_toml_values():
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("train.optimizer.betas=[0.5, 0.9]") == (["train", "optimizer", "betas"], [0.5, 0.9])
    assert parse_override("model.generator.upsample=resize_conv") == (
        ["model", "generator", "upsample"],
        "resize_conv",
    )
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        parse_override("train.epochs")


def test_override_applies_and_resolved_recipe_round_trips(tmp_path):
    loaded = load_recipe(QUICKSTART, ["model.generator.n_blocks=2", "train.epochs=3"])
    recipe = loaded.recipe
    assert recipe.model.params.generator.params.n_blocks == 2
    assert recipe.train.epochs == 3
    resolved = tomllib.loads(recipe.to_toml())
    # every default is written out, so the resolved file alone reproduces the run
    assert resolved["model"]["generator"] == {
        "type": "resnet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 16,
        "n_blocks": 2,
        "upsample": "resize_conv",
        "output": "image",
        "norm": "instance",
        "init": "normal",
        "init_gain": 0.02,
    }  # norm_affine unset (None) is left out
    assert resolved["model"]["pool"]["size"] == 50
    again = load_recipe(write_recipe(tmp_path, recipe.to_toml())).recipe
    assert again.to_dict() == recipe.to_dict()


def test_cli_validate_exit_codes_and_no_traceback(tmp_path):
    ok = run_cli("validate", str(QUICKSTART))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = run_cli("validate", str(QUICKSTART), "--set", "model.generator.n_blocks=-1", "--set", "model.x=1")
    assert bad.returncode == 2
    assert set(bad.stderr.strip().splitlines()) == {
        f"error: {QUICKSTART}: model.x: unknown key; valid keys: augment, batch_calls, cycle_loss, discriminator, fake_label, "
        "gan_loss, generator, gradient_penalty, lambda_cycle, lambda_identity, pool, real_label",
        f"error: {QUICKSTART}: model.generator.n_blocks: Input should be greater than or equal to 0",
    }
    syntax = run_cli("validate", str(write_recipe(tmp_path, "name = \n")))
    assert syntax.returncode == 2 and "Traceback" not in syntax.stderr
    assert "TOML syntax error" in syntax.stderr and "line 1, column" in syntax.stderr
    bad_set = run_cli("run", str(QUICKSTART), "--set", "nonsense")
    assert bad_set.returncode == 2 and "expected KEY.PATH=VALUE" in bad_set.stderr


def test_debug_variable_shows_traceback():
    result = run_cli("validate", str(QUICKSTART), "--set", "train.epochs=0", env={"GANFORGE_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "train.epochs" in result.stderr


def test_schedule_longer_than_its_epochs_fails_validation_not_the_run():
    (line,) = errors_of(QUICKSTART, "train.epochs=20")
    assert "train.scheduler: the run has 20 epochs but constant_epochs + decay_epochs is 8" in line


def test_the_backend_is_a_component_section_with_auto_by_default(tmp_path):
    recipe = load_recipe(QUICKSTART).recipe
    assert recipe.train.backend.type == "auto"
    assert tomllib.loads(recipe.to_toml())["train"]["backend"] == {"type": "auto"}
    assert load_recipe(QUICKSTART, ["train.backend.type=direct"]).recipe.train.backend.type == "direct"
    (line,) = errors_of(QUICKSTART, "train.backend.type=drect")
    assert line.startswith(
        f"{QUICKSTART}: train.backend.type: unknown backend 'drect' (did you mean 'direct'?); known: "
    )
    (line,) = errors_of(QUICKSTART, "train.backend.type=direct", "train.backend.fast=true")
    assert line == f"{QUICKSTART}: train.backend.fast: unknown key; valid keys: none"


@pytest.mark.parametrize(("old", "backend"), [("winograd", "auto"), ("direct", "direct")])
def test_older_recipes_with_conv_algorithm_still_validate(tmp_path, old, backend):
    """``train.conv_algorithm`` was the key before ``[train.backend]``: "direct" stays direct, anything else
    (it asked for the faster CPU layers) becomes auto, which takes them where they run."""
    text = QUICKSTART.read_text().replace("[train]\n", f'[train]\nconv_algorithm = "{old}"\n')
    loaded = load_recipe(write_recipe(tmp_path, text))
    assert loaded.recipe.train.backend.type == backend
    assert "conv_algorithm" not in loaded.recipe.to_toml()
    # a train.backend given as well (an override on an older run) is the one that counts
    both = load_recipe(write_recipe(tmp_path, text), ["train.backend.type=direct"]).recipe
    assert both.train.backend.type == "direct"
    result = run_cli("validate", str(tmp_path / "recipe.toml"))
    assert result.returncode == 0 and result.stderr == ""


def test_an_old_conv_algorithm_value_that_never_existed_is_an_error(tmp_path):
    text = QUICKSTART.read_text().replace("[train]\n", "[train]\nconv_algorithm = true\n")
    (line,) = errors_of(write_recipe(tmp_path, text))
    assert line.endswith("train.conv_algorithm: True is not an option; it is now [train.backend] type = "
                         '"auto", "direct" or a plugin\'s backend')


@pytest.mark.parametrize(("old", "half"), [("AtoB", "left"), ("BtoA", "right")])
def test_paired_folder_direction_of_older_recipes_becomes_a_half(tmp_path, old, half):
    """Runs saved before ``a_half`` hold ``data.direction`` (every default is written out), and resume."""
    text = QUICKSTART.read_text().split("[model]")[1]
    recipe = f'name = "p"\n[data]\ntype = "paired_folder"\nroot = "x"\ndirection = "{old}"\n[model]{text}'
    loaded = load_recipe(write_recipe(tmp_path, recipe))
    assert loaded.recipe.data.params.a_half == half
