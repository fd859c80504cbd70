"""``ganforge fetch`` against an HTTP server on 127.0.0.1 that the tests start, serving zips they build.

The server (a small ``http.server`` handler) can honour or ignore ``Range`` requests and can drop the
connection half-way through a response, which is how a download is interrupted and then resumed.
The command runs through the real CLI in a subprocess (``run_cli``) for a download, a resume and a
refused archive, and in-process (``ganforge.cli.main`` or ``fetch()``) otherwise, since each
subprocess pays torch's import time.
"""

from __future__ import annotations

import io
import re
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.data import fetch as fetch_module
from ganforge.data.fetch import DATASETS, FetchError, fetch
from ganforge.data.folders import OFFICIAL_BASE_URL, Preprocess, UnpairedFolders
from tests.conftest import run_cli

NAME = "horse2zebra"


# ----------------------------------------------------------------------------------------- helpers


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def dataset_members(name: str = NAME) -> dict[str, bytes]:
    """The official layout in miniature: <name>/trainA/ trainB/ testA/ testB/, two images each."""
    members = {}
    for k, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        for i in range(2):
            members[f"{name}/{folder}/{i}.png"] = png((60 * k, 100 * i, 30))
    return members


def make_zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # keeps '../' and absolute names as written
            if name == symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


class Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1, on a free port, from a thread."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_ranges = True
        self.drop_after: int | None = None  # the next response stops after this many body bytes
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                header = self.headers.get("Range")
                server.requests.append((self.path, header))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", header or "")
                if match and server.honour_ranges:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.drop_after is not None:
                    payload, server.drop_after = payload[: server.drop_after], None
                    self.close_connection = True
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/cyclegan/datasets"

    def serve(self, name: str, data: bytes) -> None:
        self.files[f"/cyclegan/datasets/{name}.zip"] = data


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def leftovers(root: Path) -> list[str]:
    """Everything in ``root`` (hidden temporary folders included)."""
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def assert_dataset(path: Path) -> None:
    for folder in ("trainA", "trainB", "testA", "testB"):
        assert sorted(p.name for p in (path / folder).iterdir()) == ["0.png", "1.png"]
    item = UnpairedFolders(path, "train", Preprocess("none", 8, 8, False, True))[0]
    assert item["A"].shape == (3, 8, 8)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ---------------------------------------------------------------------------------- through the CLI


def test_fetch_unpacks_into_the_reference_layout(server, tmp_path):
    server.serve(NAME, make_zip(dataset_members()))
    root = tmp_path / "datasets"
    result = run_cli(
        "fetch", NAME, "--root", str(root), cwd=tmp_path, env={"GANFORGE_DATASET_URL": server.url}
    )
    assert result.returncode == 0, result.stderr
    assert f"{NAME}: {root / NAME} (testA 2, testB 2, trainA 2, trainB 2 images)" in result.stdout
    assert f'[data]\n  type = "unpaired_folder"\n  root = "{(root / NAME).as_posix()}"' in result.stdout
    assert_dataset(root / NAME)
    assert leftovers(root) == [NAME]  # no archive, no .part, no temporary folder
    assert server.requests == [(f"/cyclegan/datasets/{NAME}.zip", None)]


def test_interrupted_download_is_resumed(server, tmp_path, capsys):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    server.drop_after = len(data) // 3
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:  # the first try, in-process: the connection drops
        main(["fetch", NAME, "--root", str(root), "--base-url", server.url])
    assert exit_info.value.code == 1
    line = one_error_line(capsys.readouterr().err)
    assert "download interrupted at" in line and "run the same command again to resume" in line
    assert leftovers(root) == [f"{NAME}.zip.part"]
    assert (root / f"{NAME}.zip.part").read_bytes() == data[: len(data) // 3]

    result = run_cli("fetch", NAME, "--root", str(root), "--base-url", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed at {len(data) // 3:,} bytes" in result.stdout
    assert server.requests[-1][1] == f"bytes={len(data) // 3}-"
    assert_dataset(root / NAME)
    assert leftovers(root) == [NAME]


def test_archive_escaping_the_folder_is_refused(server, tmp_path):
    members = dataset_members()
    members["../evil.txt"] = b"owned"
    server.serve(NAME, make_zip(members))
    root = tmp_path / "datasets"
    result = run_cli("fetch", NAME, "--root", str(root), "--base-url", server.url, cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "refused" in line and "'../evil.txt'" in line and "nothing was extracted" in line
    assert not (tmp_path / "evil.txt").exists() and not list(tmp_path.rglob("evil.txt"))
    assert leftovers(root) == []


def test_truncated_archive_is_an_error_and_leaves_no_dataset(server, tmp_path, capsys):
    data = make_zip(dataset_members())
    server.serve(NAME, data[: len(data) // 2])  # a complete transfer of half an archive
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:  # in-process: one subprocess fewer
        main(["fetch", NAME, "--root", str(root), "--base-url", server.url])
    assert exit_info.value.code == 1
    assert "truncated or not a zip file" in one_error_line(capsys.readouterr().err)
    assert not (root / NAME).exists()
    assert leftovers(root) == []


# ------------------------------------------------------------------------------------- in-process


def test_list_shows_every_official_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "--list"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.split() == list(DATASETS)
    for name in (
        "apple2orange",
        "summer2winter_yosemite",
        "monet2photo",
        "maps",
        "facades",
        "iphone2dslr_flower",
    ):
        assert name in DATASETS


def test_partial_part_file_is_continued_with_a_range_request(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(data[:100])
    done = fetch(NAME, root, server.url)
    assert (done.resumed_from, done.downloaded_bytes, done.archive_bytes) == (100, len(data) - 100, len(data))
    assert server.requests == [(f"/cyclegan/datasets/{NAME}.zip", "bytes=100-")]
    assert_dataset(root / NAME)


def test_server_without_ranges_sends_the_whole_file_again(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    server.honour_ranges = False
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(b"stale bytes from another file")
    done = fetch(NAME, root, server.url, keep_archive=True)
    assert done.downloaded_bytes == len(data)
    assert (root / f"{NAME}.zip").read_bytes() == data
    assert leftovers(root) == [NAME, f"{NAME}.zip"]


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(data)
    done = fetch(NAME, root, server.url)  # the server answers 416: nothing after the end
    assert done.downloaded_bytes == 0
    assert_dataset(root / NAME)


@pytest.mark.parametrize(
    ("member", "symlink", "problem"),
    [
        ("/tmp/ganforge-absolute.txt", False, "an absolute path"),
        (f"{NAME}/trainA/../../../up.txt", False, "a '..' component"),
        ("C:\\windows.txt", False, "an absolute path"),
        (f"{NAME}/trainA/link.png", True, "a symbolic link"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(server, tmp_path, member, symlink, problem):
    members = dataset_members()
    members[member] = b"/etc/passwd" if symlink else b"x"
    server.serve(NAME, make_zip(members, symlink=member if symlink else None))
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match=re.escape(problem)):
        fetch(NAME, root, server.url)
    assert leftovers(root) == []
    assert not Path("/tmp/ganforge-absolute.txt").exists() and not (tmp_path / "up.txt").exists()


def test_damaged_member_removes_everything_unpacked(server, tmp_path):
    data = bytearray(make_zip(dataset_members()))
    stored = png((60, 100, 30))  # trainA/1.png, stored uncompressed: flip a byte inside it
    at = bytes(data).index(stored) + len(stored) // 2
    data[at] ^= 0xFF
    server.serve(NAME, bytes(data))
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match="is damaged or cannot be unpacked"):
        fetch(NAME, root, server.url)
    assert leftovers(root) == []


def test_missing_archive_existing_target_and_unknown_names(server, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match=r"HTTP 404.*no such dataset on this server"):
        fetch("facades", root, server.url)
    assert leftovers(root) == []  # no empty .part left behind
    (root / "maps").mkdir(parents=True)
    (root / "maps" / "mine.txt").write_text("keep")
    with pytest.raises(FetchError, match="already exists"):
        fetch("maps", root, server.url)
    assert server.requests == [("/cyclegan/datasets/facades.zip", None)]  # maps was not even asked for
    with pytest.raises(FetchError, match=r"unknown dataset 'hors2zebra' \(did you mean 'horse2zebra'\?\)"):
        fetch("hors2zebra", root)
    with pytest.raises(FetchError, match="must be letters"):
        fetch("../x", root, server.url)
    # a mirror may serve other names; the environment variable names the mirror
    server.serve("my_set", make_zip(dataset_members("my_set")))
    monkeypatch.setenv("GANFORGE_DATASET_URL", server.url + "/")
    assert fetch("my_set", root).path == root / "my_set"
    assert fetch_module.base_url() == server.url
    monkeypatch.delenv("GANFORGE_DATASET_URL")
    assert fetch_module.base_url() == OFFICIAL_BASE_URL
    assert fetch_module.dataset_url(NAME, OFFICIAL_BASE_URL) == (
        "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    )
