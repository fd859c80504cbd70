"""Pretrained generators by name: ``register_model_sources``, the model cache, ``ganforge models`` and
``ganforge translate NAME``, against an HTTP server on 127.0.0.1 (the one ``tests/test_fetch.py`` uses).

The tests register models through small plugin files (``--plugin``) whose URLs point at the loopback
server, or reach a registered name through the mirror variable ``GANFORGE_MODEL_URL``; the cache is
``GANFORGE_CACHE`` under ``tmp_path``. The served files are ganforge safetensors exports of a tiny
ResNet generator (the core reads them without a model plugin); the CycleGAN and pix2pix plugins test
their own registered names and the authors' layouts (``plugins/*/tests/test_*_zoo.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import cache as cache_module
from ganforge.cli import main
from ganforge.data.fetch import FetchError, fetch_model, model_cache, resolve_model
from ganforge.data.sources import ModelSources, make_model_source
from ganforge.inference import Generator, load_generator, save_safetensors
from ganforge.plugins import collect_registries, make_plugin_manager
from tests.conftest import run_cli
from tests.test_fetch import Server

SPEC = {"type": "resnet", "ngf": 4, "n_blocks": 1}


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("GANFORGE_CACHE", str(root))
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    monkeypatch.delenv("GANFORGE_MODEL_URL", raising=False)
    return root


def tiny_generator(tmp_path: Path) -> tuple[torch.nn.Module, bytes]:
    """A 1-block, ngf-4 ResNet generator and its safetensors export's bytes."""
    torch.manual_seed(0)
    net = collect_registries(make_plugin_manager()).resolve("generator", SPEC, "generator").build().eval()
    path = tmp_path / "tiny.safetensors"
    save_safetensors(Generator(net, "test", path, torch.device("cpu"), net, dict(SPEC)), path)
    return net, path.read_bytes()


def model_plugin(folder: Path, module: str, body: str) -> str:
    """A plugin file whose ``register_model_sources`` runs ``body``; returns its path."""
    path = folder / f"{module}.py"
    hook = "@hookimpl\ndef register_model_sources(register):\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )
    path.write_text("from ganforge import hookimpl\n\n\n" + hook)
    return str(path)


def served(server: Server, name: str, data: bytes) -> str:
    server.files[f"/models/{name}.safetensors"] = data
    return f"{server.url.rsplit('/', 1)[0]}/models/{name}.safetensors"


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- cache


def test_cache_folder_follows_the_platform(monkeypatch, tmp_path):
    monkeypatch.delenv("GANFORGE_CACHE", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    monkeypatch.setattr(cache_module.sys, "platform", "linux")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert model_cache() == tmp_path / "home" / ".cache" / "ganforge" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache() == tmp_path / "xdg" / "ganforge" / "models"
    monkeypatch.setattr(cache_module.sys, "platform", "darwin")
    assert model_cache() == tmp_path / "home" / "Library" / "Caches" / "ganforge" / "models"
    monkeypatch.setattr(cache_module.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert model_cache() == tmp_path / "local" / "ganforge" / "Cache" / "models"
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "mine"))
    assert model_cache() == tmp_path / "mine" / "models"


# ------------------------------------------------------------------------------ through the CLI


def test_fetch_by_name_then_cached_and_listed(server, tmp_path, cache, capsys):
    _, data = tiny_generator(tmp_path)
    url = served(server, "tiny_style", data)
    plugin = model_plugin(
        tmp_path,
        "tiny_zoo",
        f"""
        register("tiny_style", "{url}", translates="photo -> tiny painting", sha256="{sha256(data)}",
                 size={len(data)}, summary="a test generator")
        """,
    )
    env = {"GANFORGE_CACHE": str(cache)}
    result = run_cli("models", "fetch", "tiny_style", "--plugin", plugin, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    target = cache / "models" / "tiny_style.safetensors"
    assert result.stdout.strip() == f"tiny_style: {target} ({len(data):,} bytes from {url})"
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny_style.safetensors"]  # no .part
    assert server.requests == [("/models/tiny_style.safetensors", None)]

    with pytest.raises(SystemExit) as exit_info:  # in-process from here: the cache answers
        main(["models", "fetch", "tiny_style", "--plugin", plugin])
    assert exit_info.value.code == 0
    assert len(server.requests) == 1
    assert capsys.readouterr().out.strip() == f"tiny_style: {target} (already cached)"
    with pytest.raises(SystemExit):
        main(["models", "list", "--json", "--plugin", plugin])
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "tiny_style")
    assert (row["cached"], row["path"], row["sha256"], row["size"]) == (
        True,
        str(target),
        sha256(data),
        len(data),
    )


def test_list_shows_plugin_what_it_translates_and_cached(tmp_path, cache, capsys, monkeypatch):
    plugin = model_plugin(
        tmp_path, "listed_zoo", 'register("tiny_style", "http://127.0.0.1:9/t.pth", translates="a -> b")\n'
    )
    with pytest.raises(SystemExit):
        main(["models", "list", "--json", "--plugin", plugin])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tiny_style"] == {
        "name": "tiny_style",
        "plugin": plugin,
        "translates": "a -> b",
        "summary": "",
        "url": "http://127.0.0.1:9/t.pth",
        "format": None,
        "sha256": None,
        "size": None,
        "cached": False,
        "path": str(cache / "models" / "tiny_style.pth"),
    }
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "tiny_style.pth").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))  # by module name: a short plugin column
    with pytest.raises(SystemExit):
        main(["models", "list", "--plugin", "listed_zoo"])
    out = capsys.readouterr().out
    assert re.search(r"tiny_style\s+.\s+listed_zoo\s+.\s+a -> b\s+.\s+yes", out)
    assert out.strip().endswith(f"cache: {cache / 'models'} (GANFORGE_CACHE moves it)")
    with pytest.raises(SystemExit):
        main(["models", "path", "tiny_style", "--plugin", plugin])
    assert capsys.readouterr().out.strip() == str(cache / "models" / "tiny_style.pth")


def test_duplicate_model_names_name_both_plugins(tmp_path, cache, capsys):
    first = model_plugin(tmp_path, "first_zoo", 'register("same", "http://127.0.0.1:9/a.pth")\n')
    second = model_plugin(tmp_path, "second_zoo", 'register("same", "http://127.0.0.1:9/b.pth")\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "list", "--plugin", first, "--plugin", second])
    assert exit_info.value.code == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: model 'same' is registered twice: by plugin '{first}' and by plugin '{second}'"
    )


def test_bad_registration_names_the_plugin(tmp_path, cache, capsys):
    plugin = model_plugin(tmp_path, "bad_zoo", 'register("odd", "http://127.0.0.1:9/odd.zip")\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "list", "--plugin", plugin])
    assert exit_info.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: plugin '{plugin}': model source 'odd': url ")
    assert "does not end in a weight file suffix (.pth, .pt, .safetensors, .onnx)" in line


def test_translate_by_name_fetches_then_translates(server, tmp_path, cache):
    net, data = tiny_generator(tmp_path)
    url = served(server, "tiny_style", data)
    plugin = model_plugin(tmp_path, "tiny_zoo", f'register("tiny_style", "{url}", translates="a -> b")\n')
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    result = run_cli(
        "translate", "tiny_style", "photo.png", "--out", "out", "--device", "cpu", "--plugin", plugin,
        cwd=tmp_path, env={"GANFORGE_CACHE": str(cache)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"note: downloaded tiny_style from {url} to {cache / 'models' / 'tiny_style.safetensors'}"
        in result.stderr
    )
    assert "generator: tiny_style (a -> b; " in result.stdout
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
        expected = net(x).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = np.array(Image.open(tmp_path / "out" / "photo.png"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # an existing path of that name wins over the registered model
    (tmp_path / "tiny_style").mkdir()
    with pytest.raises(Exception, match="tiny_style"):
        load_generator(tmp_path / "tiny_style", plugins=[plugin])


def test_a_damaged_cached_file_says_to_delete_it(tmp_path, cache):
    plugin = model_plugin(
        tmp_path, "cached_zoo", 'register("tiny_style", "http://127.0.0.1:9/tiny_style.pth")\n'
    )
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "tiny_style.pth").write_bytes(b"not a weight file")
    with pytest.raises(Exception) as info:
        load_generator("tiny_style", plugins=[plugin])
    assert str(info.value).endswith(
        "; it is the cached download of 'tiny_style': delete it to download it again"
    )
    assert "\n" not in str(info.value)


def test_unknown_bare_name_says_where_to_look(tmp_path, cache):
    with pytest.raises(Exception, match=r"no_such_model: no such file \(nor a pretrained model's name"):
        load_generator("no_such_model")
    assert not (cache / "models").exists()


# ------------------------------------------------------------------------------------- in-process


def loopback_source(server: Server, data: bytes, **record: object):
    return make_model_source("tiny_style", served(server, "tiny_style", data), plugin="loopback", **record)


def test_partial_download_is_resumed_with_a_range_request(server, tmp_path, cache):
    _, data = tiny_generator(tmp_path)
    source = loopback_source(server, data, sha256=sha256(data))
    server.drop_after = len(data) // 3
    with pytest.raises(FetchError, match="download interrupted at .* run the same command again to resume"):
        fetch_model(source)
    part = cache / "models" / "tiny_style.safetensors.part"
    assert part.read_bytes() == data[: len(data) // 3]
    done = fetch_model(source)
    assert (done.resumed_from, done.downloaded_bytes, done.size) == (
        len(data) // 3,
        len(data) - len(data) // 3,
        len(data),
    )
    assert server.requests[-1] == ("/models/tiny_style.safetensors", f"bytes={len(data) // 3}-")
    assert done.path.read_bytes() == data and not part.exists()
    assert load_generator(done.path).spec["n_blocks"] == 1


def test_checksum_mismatch_removes_the_download(server, tmp_path, cache):
    _, data = tiny_generator(tmp_path)
    with pytest.raises(FetchError) as info:
        fetch_model(loopback_source(server, data, sha256="0" * 64))
    assert str(info.value) == (
        f"{server.url.rsplit('/', 1)[0]}/models/tiny_style.safetensors: SHA-256 {sha256(data)} is not the "
        f"{'0' * 64} that plugin 'loopback' registered; removed the download: run the command again to "
        "download it anew"
    )
    assert list((cache / "models").iterdir()) == []
    with pytest.raises(FetchError, match=f"the download is {len(data):,} bytes, not the {len(data) + 1:,}"):
        fetch_model(loopback_source(server, data, size=len(data) + 1))
    assert list((cache / "models").iterdir()) == []


def test_offline_is_one_line_with_the_url_and_the_path(tmp_path, cache, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models/tiny_style.pth"
    plugin = model_plugin(tmp_path, "down_zoo", f'register("tiny_style", "{url}")\n')
    target = cache / "models" / "tiny_style.pth"
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "fetch", "tiny_style", "--plugin", plugin])
    assert exit_info.value.code == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {url}: cannot connect: ")
    assert line.endswith(f"; download {url} yourself and put it at {target}")
    assert list((cache / "models").iterdir()) == []  # no empty .part
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit):
        main(["translate", "tiny_style", str(tmp_path), "--out", str(tmp_path / "o"), "--plugin", plugin])
    assert one_error_line(capsys.readouterr().err) == (
        f"error: model 'tiny_style' is not in the cache and GANFORGE_OFFLINE is set: download {url} "
        f"yourself and put it at {target}"
    )


def test_mirror_and_unknown_names(server, tmp_path, cache, monkeypatch):
    sources = ModelSources()
    sources.add(make_model_source("tiny_style", "https://example.org/zoo/tiny_style.pth", plugin="p"))
    with pytest.raises(
        FetchError, match=r"unknown model 'tiny_styl' \(did you mean 'tiny_style'\?\); known: tiny_style"
    ):
        resolve_model("tiny_styl", sources)
    with pytest.raises(FetchError, match="no installed plugin registers any pretrained model"):
        resolve_model("tiny_style", ModelSources())
    monkeypatch.setenv("GANFORGE_MODEL_URL", "http://127.0.0.1:9/mirror/")
    assert resolve_model("tiny_style", sources).url == "http://127.0.0.1:9/mirror/tiny_style.pth"
    monkeypatch.setenv("GANFORGE_MODEL_URL", "file:///etc")
    with pytest.raises(FetchError, match="GANFORGE_MODEL_URL 'file:///etc' is not an http"):
        resolve_model("tiny_style", sources)
