"""The pix2pix authors' paired archives reach ``ganforge fetch`` through the plugin's source hook; a
loopback HTTP server stands in for their server (as a mirror, ``--base-url``)."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from ganforge_pix2pix.sources import DATASETS, SERVER
from PIL import Image

from ganforge.cli import main
from ganforge.data.fetch import resolve
from ganforge.plugins import collect_dataset_sources, collect_registries, make_plugin_manager

AUTHORS = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
PAPER_SETS = ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day")


@pytest.fixture(scope="module")
def sources():
    return collect_dataset_sources(make_plugin_manager())


def test_the_authors_six_archives_are_registered_as_paired_tar_gz(sources):
    assert SERVER == AUTHORS
    ours = [s for s in sources if s.plugin == "pix2pix"]
    assert [s.name for s in ours] == list(PAPER_SETS) == list(DATASETS)
    for s in ours:
        assert (s.url, s.archive, s.layout) == (f"{AUTHORS}/{s.name}.tar.gz", "tar.gz", "paired")
        assert s.dataset_type == "paired_folder"
    assert "photo | label map" in sources.get("facades").summary  # which half is which


def test_a_mirror_serves_name_tar_gz(sources):
    assert (
        resolve("facades", sources, "http://mirror.example/p2p/").url
        == "http://mirror.example/p2p/facades.tar.gz"
    )


def side_by_side(left: tuple[int, int, int], right: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (16, 8), left)
    image.paste(Image.new("RGB", (8, 8), right), (8, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def facades_tar() -> bytes:
    members = {
        "facades/train/1.png": side_by_side((200, 180, 150), (40, 90, 230)),  # photo | label
        "facades/train/2.png": side_by_side((190, 170, 140), (40, 90, 230)),
        "facades/val/1.png": side_by_side((180, 160, 130), (40, 90, 230)),
        "facades/test/1.png": side_by_side((170, 150, 120), (40, 90, 230)),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    files: dict[str, bytes] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/pix2pix/datasets", files, requests
    httpd.shutdown()
    httpd.server_close()


def test_fetch_facades_from_a_mirror_then_read_labels_as_a(server, tmp_path, capsys, monkeypatch):
    url, files, requests = server
    files["/pix2pix/datasets/facades.tar.gz"] = facades_tar()
    monkeypatch.delenv("GANFORGE_DATASET_URL", raising=False)
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "facades", "--root", str(root), "--base-url", url])
    assert exit_info.value.code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert requests == ["/pix2pix/datasets/facades.tar.gz"]
    assert sorted(p.name for p in (root / "facades").iterdir()) == ["test", "train", "val"]
    assert 'type = "paired_folder"' in out
    registries = collect_registries(make_plugin_manager())
    spec = registries.resolve(
        "dataset",
        {
            "type": "paired_folder",
            "root": str(root / "facades"),
            "a_half": "right",
            "preprocess": "none",
            "flip": False,
        },
        "data",
    )
    item = spec.build("train")[0]
    to_unit = lambda rgb: torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(item["A"][:, 0, 0], to_unit((40, 90, 230)))  # the label map (right half)
    torch.testing.assert_close(item["B"][:, 0, 0], to_unit((200, 180, 150)))  # the photo (left half)
