"""``ganforge translate``: checkpoints and run directories, folders, own sizes, tiles, safety.

The command line runs for real in a subprocess where it matters (a folder translated from a run
directory) and in-process through ``ganforge.cli.main`` for the rest, since every subprocess pays for
importing torch. Networks are tiny (ngf 4, one residual block) and images at most 150 px.
"""

from __future__ import annotations

import itertools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.engine.checkpoint import FORMAT, FORMAT_VERSION
from ganforge.errors import CheckpointError, GanforgeError
from ganforge.inference import (
    Generator,
    Tiling,
    load_generator,
    pad_to_multiple,
    parse_size,
    tile_starts,
    tile_window,
    to_uint8,
    to_unit,
    translate_batch,
    translate_tiled,
)
from tests.conftest import RECIPES, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["model.generator.ngf=4", "model.generator.n_blocks=1", "model.discriminator.ndf=4", "data.size=32"]


def make_run(folder: Path, seed: int = 0) -> Path:
    """A run directory with one checkpoint, as ``ganforge run`` writes it (the parts translate reads)."""
    from ganforge.recipe import load_recipe

    recipe = load_recipe(RECIPES / "quickstart.toml", TINY).recipe
    torch.manual_seed(seed)
    model = recipe.model.build(seed)
    with torch.no_grad():  # untrained nets are close to the identity map: make G_A and G_B differ clearly
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    (folder / "checkpoints").mkdir(parents=True)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": recipe.to_dict(),
        "epoch": 3,
        "step": 6,
        "model": model.state_dict(),
    }
    torch.save(state, folder / "checkpoints" / "epoch_0003.pt")
    os.link(folder / "checkpoints" / "epoch_0003.pt", folder / "checkpoints" / "latest.pt")
    return folder


def noise_image(path: Path, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return np.array(Image.open(path).convert("RGB"))


def reference_output(run: Path, array: np.ndarray, net: str) -> np.ndarray:
    """What the checkpoint's net gives for one image, computed here without the CLI."""
    generator = load_generator(run, net=net)
    x = to_unit(torch.from_numpy(array).permute(2, 0, 1)[None])
    return to_uint8(translate_batch(generator, x))[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("tiny") / "run")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``ganforge ARGS`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -------------------------------------------------------------------------------------------------
# The command line
# -------------------------------------------------------------------------------------------------


def test_translate_a_folder_keeps_names_folders_and_sizes(run_dir, tmp_path) -> None:
    images = tmp_path / "photos"
    a = noise_image(images / "a.png", 30, 22)  # not a multiple of 4: padded and cropped back
    noise_image(images / "sub" / "b.jpg", 37, 41, seed=1)
    noise_image(images / "sub" / "deeper" / "c.webp", 20, 20, seed=2)
    big = noise_image(images / "big.png", 150, 100, seed=3)  # above --tile-above: tiles
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = run_cli(
        "translate",
        str(run_dir),
        str(images),
        "--out",
        str(out),
        "--direction",
        "BtoA",
        "--device",
        "cpu",
        "--tile-above",
        "96",
        "--tile",
        "64",
        "--tile-overlap",
        "16",
        "--batch-size",
        "2",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "G_B of latest.pt (epoch 3)" in result.stdout
    assert "translated 4 image(s), 1 in tiles" in result.stdout and "images/s" in result.stdout
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "big.png", "sub/b.jpg", "sub/deeper/c.png"]
    sizes = {name: Image.open(out / name).size for name in written}
    assert sizes == {
        "a.png": (30, 22),
        "big.png": (150, 100),
        "sub/b.jpg": (37, 41),
        "sub/deeper/c.png": (20, 20),
    }
    assert Image.open(out / "sub/b.jpg").format == "JPEG" and Image.open(out / "a.png").format == "PNG"
    # the CLI's output is the checkpoint's G_B, pixel for pixel
    got = np.asarray(Image.open(out / "a.png"))
    assert np.abs(got.astype(int) - reference_output(run_dir, a, "G_B").astype(int)).max() <= 1
    assert np.abs(got.astype(int) - reference_output(run_dir, a, "G_A").astype(int)).mean() > 5
    # the large image went through tiles of 64 px, as asked
    tiled = np.asarray(Image.open(out / "big.png")).astype(int)
    generator = load_generator(run_dir, net="G_B")
    expected = translate_tiled(
        generator, torch.from_numpy(big).permute(2, 0, 1), Tiling(64, 16, 96), batch_size=2
    )
    assert np.abs(tiled - expected.permute(1, 2, 0).numpy().astype(int)).max() <= 1


def test_existing_outputs_are_not_replaced_without_overwrite(run_dir, tmp_path, capsys) -> None:
    noise_image(tmp_path / "in" / "x.png", 16, 16)
    args = (
        "translate",
        str(run_dir),
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    )
    assert cli(capsys, *args)[0] == 0
    code, _, err = cli(capsys, *args)
    assert code == 1
    assert (
        err
        == f"error: {tmp_path / 'out' / 'x.png'} exists; pass --overwrite to replace, or choose another --out\n"
    )
    assert cli(capsys, *args, "--overwrite")[0] == 0


def test_size_option_and_jpeg_output(run_dir, tmp_path, capsys) -> None:
    noise_image(tmp_path / "one.png", 40, 20)
    code, _, err = cli(
        capsys,
        "translate",
        str(run_dir / "checkpoints" / "epoch_0003.pt"),
        str(tmp_path / "one.png"),
        "--out",
        str(tmp_path / "out"),
        "--size",
        "16",
        "--image-format",
        "jpeg",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "one.jpg").size == (32, 16)  # shorter side 16, aspect kept
    code, _, err = cli(
        capsys,
        "translate",
        str(run_dir),
        str(tmp_path / "one.png"),
        "--out",
        str(tmp_path / "out2"),
        "--size",
        "24x12",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert Image.open(tmp_path / "out2" / "one.png").size == (24, 12)


@pytest.mark.parametrize("zipped", [False, True])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys, zipped) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "latest_net_G_A.pth"
    if zipped:
        torch.save({"model.1.weight": Payload()}, evil)
    else:
        evil.write_bytes(pickle.dumps({"model.1.weight": Payload()}, protocol=2))
    noise_image(tmp_path / "in.png", 8, 8)
    code, _, err = cli(
        capsys, "translate", str(evil), str(tmp_path / "in.png"), "--out", str(tmp_path / "out")
    )
    assert code == 1
    assert err == (
        f"error: {evil}: refused: it would call posix.system; ganforge loads tensors only and never runs "
        "code from a file\n"
    )
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--direction", "CtoD"], "error: --direction 'CtoD'"),
        (["--net", "G_C"], "no net 'G_C' to translate with in this checkpoint (its exported nets: G_A, G_B)"),
        (["--size", "big"], "error: --size 'big': give N"),
        (["--format", "onnx"], "--format onnx, but the file looks like a torch pickle"),
        (["--tile", "30"], "error: --tile 30: use a multiple of 4"),
        (
            ["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nope"],
            "error: --device",
        ),
    ],
)
def test_mistakes_get_one_line(run_dir, tmp_path, capsys, args, message) -> None:
    noise_image(tmp_path / "in.png", 8, 8)
    source = run_dir / "checkpoints" / "latest.pt"
    code, _, err = cli(
        capsys, "translate", str(source), str(tmp_path / "in.png"), "--out", str(tmp_path / "o"), *args
    )
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err, err


# -------------------------------------------------------------------------------------------------
# The pieces
# -------------------------------------------------------------------------------------------------


def tiny_generator(seed: int = 0) -> Generator:
    from ganforge.builtins.networks import ResnetParams, build_resnet

    torch.manual_seed(seed)
    module = build_resnet(ResnetParams(ngf=4, n_blocks=1, init_std=0.3)).eval()
    return Generator(
        module, "test", Path("test"), torch.device("cpu"), module, {"type": "resnet"}, "cyclegan"
    )


def test_padding_to_four_and_cropping_back() -> None:
    generator = tiny_generator()
    x = torch.rand(2, 3, 21, 30) * 2 - 1
    y = translate_batch(generator, x)
    assert y.shape == (2, 3, 21, 30)
    with torch.no_grad():
        padded = generator(torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect"))
    assert torch.equal(y, padded[..., :21, :30])
    assert pad_to_multiple(torch.zeros(1, 3, 2, 1)).shape == (1, 3, 4, 4)  # too small to reflect: edge copy


def test_tiles_cover_the_image_and_blend_to_one() -> None:
    for length in (64, 65, 100, 413, 4000):
        starts = tile_starts(length, 64, 16)
        assert starts[0] == 0 and starts[-1] == length - 64 if length > 64 else starts == [0]
        assert all(b - a <= 64 - 16 for a, b in itertools.pairwise(starts))  # overlap >= 16
    starts = [0, 48, 96]  # overlaps of exactly 16: raised-cosine ramps sum to one
    total = torch.zeros(160)
    for i, s in enumerate(starts):
        total[s : s + 64] += tile_window(starts, i, 64)
    assert torch.allclose(total, torch.ones(160), atol=1e-6)
    assert tile_window(starts, 1, 64)[0] < 0.01  # a tile's inner edge hardly counts


def test_tiled_translation_sees_only_tiles_and_matches_when_one_tile_fits() -> None:
    generator = tiny_generator()
    seen = []
    run = generator.run

    def spy(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return run(batch)

    generator.run = spy
    image = torch.randint(0, 256, (3, 150, 236), dtype=torch.uint8)
    out = translate_tiled(generator, image, Tiling(tile=64, overlap=16, above=0), batch_size=3)
    assert out.shape == (3, 150, 236) and out.dtype == torch.uint8
    assert max(s[2] * s[3] * s[0] for s in seen) <= 3 * 64 * 64  # memory: at most one batch of tiles
    assert len(seen) == len(tile_starts(150, 64, 16)) * -(-len(tile_starts(236, 64, 16)) // 3)
    whole = to_uint8(translate_batch(generator, to_unit(image[None])))[0]
    one_tile = translate_tiled(generator, image, Tiling(tile=256, overlap=16, above=0, norm="tile"))
    assert torch.equal(one_tile, whole)
    one_tile = translate_tiled(generator, image, Tiling(tile=256, overlap=16, above=0, norm="global"))
    assert (one_tile.int() - whole.int()).abs().max() <= 1  # the same statistics, computed by other code


def test_global_instance_norm_statistics_hide_tile_tones() -> None:
    generator = tiny_generator(seed=1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 120), torch.linspace(0, 1, 160), indexing="ij")
    scene = torch.stack(
        [torch.sin(6 * xx), torch.cos(5 * yy), ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1) * 1.0]
    )
    image = ((scene * 0.5 + 0.5) * 255).to(torch.uint8)
    whole = to_uint8(translate_batch(generator, to_unit(image[None])))[0].float()

    def error(norm: str) -> float:
        tiled = translate_tiled(
            generator, image, Tiling(tile=64, overlap=16, above=0, norm=norm, stats_size=160)
        )
        return float((tiled.float() - whole).abs().mean())

    assert error("global") < error("tile")
    assert torch.equal(  # the network itself is left as it was
        translate_batch(generator, to_unit(image[None])), translate_batch(generator, to_unit(image[None]))
    )


def test_parse_size() -> None:
    assert parse_size(None) is None
    assert parse_size("256") == 256
    assert parse_size("320x240") == (320, 240)
    with pytest.raises(GanforgeError):
        parse_size("0")


def test_loading_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a run directory"):
        load_generator(tmp_path / "empty_run")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(CheckpointError, match=r"refused: it holds more than tensors \(Unsupported operand"):
        load_generator(junk)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="holds no tensors keyed by name"):
        load_generator(listed)


def test_backend_option_names_a_registered_backend(run_dir, tmp_path, capsys) -> None:
    noise_image(tmp_path / "in" / "a.png", 24, 20)
    args = ["translate", str(run_dir), str(tmp_path / "in"), "--device", "cpu"]
    code, _, err = cli(capsys, *args, "--out", str(tmp_path / "direct"), "--backend", "direct")
    assert code == 0, err
    assert "note: backend direct\n" in err
    code, _, err = cli(capsys, *args, "--out", str(tmp_path / "typo"), "--backend", "drect")
    assert code == 1
    assert err.startswith("error: --backend: unknown backend 'drect' (did you mean 'direct'?); known: auto, ")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "typo").exists()


def test_the_default_batch_is_one_image_on_a_cpu_and_four_on_a_gpu() -> None:
    from ganforge.api import default_batch_size

    assert default_batch_size("cpu") == 1
    assert default_batch_size(torch.device("cpu")) == 1
    assert default_batch_size("cuda:0") == 4  # naming a device needs no GPU
    assert default_batch_size("mps") == 4
