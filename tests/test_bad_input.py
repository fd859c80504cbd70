"""Bad input never gives a traceback: malformed recipes, overrides and image folders.

The property-based tests call the CLI's entry point in-process (the same ``main`` the ``ganforge``
script runs) so that hypothesis can try hundreds of inputs in seconds.
"""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganforge.cli import main
from tests.conftest import RECIPES, run_cli

QUICKSTART = RECIPES / "quickstart.toml"
BASE = tomllib.loads(QUICKSTART.read_text())


def paths(data: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in data.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(paths(value, (*prefix, key)))
    return found


PATHS = paths(BASE)
toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=6,
)


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["validate", *args])
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def assert_clean(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err + out
    if code == 0:
        assert "ok (" in out
        return
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err


def write(data: bytes) -> str:
    handle = tempfile.NamedTemporaryFile(suffix=".toml", delete=False)
    handle.write(data)
    handle.close()
    return handle.name


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
def test_junk_files(capsys, data):
    path = write(data)
    code, out, err = validate(capsys, path)
    assert code == 2  # nothing in there is a complete recipe
    assert_clean(code, out, err)
    Path(path).unlink()


@FAST
@given(st.sampled_from(PATHS), toml_values, st.booleans())
def test_mutated_recipes(capsys, path, value, delete):
    data = tomllib.loads(QUICKSTART.read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    try:
        text = tomli_w.dumps(data).encode()
    except (TypeError, ValueError):  # a value TOML cannot hold (e.g. mixed arrays in old writers)
        return
    file = write(text)
    assert_clean(*validate(capsys, file))
    Path(file).unlink()


@FAST
@given(st.sampled_from(PATHS), st.text(max_size=30), st.text(max_size=10))
def test_overrides(capsys, path, value, extra_key):
    dotted = ".".join(path)
    assert_clean(*validate(capsys, str(QUICKSTART), "--set", f"{dotted}={value}"))
    assert_clean(*validate(capsys, str(QUICKSTART), "--set", f"{dotted}.{extra_key}={value}"))
    assert_clean(*validate(capsys, str(QUICKSTART), "--set", value))


def test_empty_file_and_huge_numbers(capsys, tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    code, out, err = validate(capsys, str(empty))
    assert code == 2 and "name: Field required" in err and "Traceback" not in err
    code, out, err = validate(capsys, str(QUICKSTART), "--set", "model.generator.n_blocks=100000000000")
    assert code == 2 and "model.generator.n_blocks: Input should be less than or equal to" in err
    code, out, err = validate(capsys, str(QUICKSTART), "--set", "train.epochs=1e400")
    assert code == 2 and "train.epochs" in err


def make_folders(root: Path) -> None:
    for domain, color in (("A", 40), ("B", 200)):
        for split in ("train", "test"):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (36, 36), (color, 30 * i, 90)).save(folder / f"{i}.png")


@pytest.mark.parametrize("workers", [0, 2])
def test_junk_image_in_a_folder_names_the_file(tmp_path, workers):
    root = tmp_path / "data"
    make_folders(root)
    (root / "trainA" / "notes.txt").write_text("not an image, ignored")
    (root / "trainA" / "folder.png").mkdir()  # a folder with an image's name, ignored
    junk = root / "trainA" / "3.PNG"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)  # a PNG signature and nothing else
    overrides = [
        'data={type = "unpaired_folder", root = "%s", load_size = 36, crop_size = 32}' % root,
        "model.generator.ngf=4",
        "model.generator.n_blocks=1",
        "model.discriminator.ndf=8",
        "train.epochs=1",
        f"train.num_workers={workers}",
        "output.n_samples=1",
    ]
    args = [arg for item in overrides for arg in ("--set", item)]
    result = run_cli("run", str(QUICKSTART), *args, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {junk}: cannot read image"), line
