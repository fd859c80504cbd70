"""``ganforge fetch`` against an HTTP server on 127.0.0.1 that the tests start, serving archives they build.

The server (a small ``http.server`` handler) can honour or ignore ``Range`` requests and can drop the
connection half-way through a response, which is how a download is interrupted and then resumed.
Which archives exist is registered by plugins (``register_dataset_sources``): the tests write small
plugin modules whose sources point at the loopback server, and use it as a mirror (``--base-url``).
The command runs through the real CLI in a subprocess (``run_cli``) for a download, a resume, a
refused archive and an installed plugin, and in-process (``ganforge.cli.main`` or ``fetch()``)
otherwise, since each subprocess pays torch's import time.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tarfile
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.data import fetch as fetch_module
from ganforge.data.fetch import FetchError, fetch, resolve
from ganforge.data.folders import PairedFolder, Preprocess, UnpairedFolders
from ganforge.data.sources import DatasetSource, DatasetSources, make_source
from tests.conftest import add_distribution, run_cli

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


def paired_members(name: str) -> dict[str, bytes]:
    """The pix2pix layout in miniature: <name>/train/ and <name>/val/ of 16x8 A|B images."""
    members = {}
    for folder in ("train", "val"):
        for i in range(2):
            buffer = io.BytesIO()
            image = Image.new("RGB", (16, 8), (200, 10 * i, 0))
            image.paste((0, 10 * i, 200), (8, 0, 16, 8))
            image.save(buffer, "PNG")
            members[f"{name}/{folder}/{i}.png"] = buffer.getvalue()
    return members


def make_tar(
    members: dict[str, bytes], compression: str = "gz", links: dict[str, str] | None = None
) -> bytes:
    """A tar archive (``compression`` "", "gz", "bz2" or "xz"); ``links``: symbolic links name -> target."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
            def do_GET(self) -> None:
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
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets"

    def serve(self, name: str, data: bytes, archive: str = "zip") -> str:
        """Serve ``data`` as ``<url>/<name>.<archive>``; returns that URL."""
        self.files[f"/datasets/{name}.{archive}"] = data
        return f"{self.url}/{name}.{archive}"

    def source(self, name: str = NAME, archive: str = "zip", **record: object) -> DatasetSource:
        """A source as a plugin would register it, for what this server serves under ``name``."""
        return make_source(name, f"{self.url}/{name}.{archive}", plugin="loopback", **record)


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
    assert server.requests == [(f"/datasets/{NAME}.zip", None)]


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


def sources_plugin(folder: Path, module: str, body: str) -> str:
    """A plugin module in ``folder`` whose ``register_dataset_sources`` runs ``body``; returns its path."""
    path = folder / f"{module}.py"
    hook = "@hookimpl\ndef register_dataset_sources(register):\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )
    path.write_text("from ganforge import hookimpl\n\n\n" + hook)
    return str(path)


def test_plugin_source_downloads_checks_and_unpacks_a_paired_tar_gz(server, tmp_path, capsys):
    data = make_tar(paired_members("tiny_facades"))
    url = server.serve("tiny_facades", data, "tar.gz")
    plugin = sources_plugin(
        tmp_path,
        "loopback_sources",
        f"""
        register("tiny_facades", "{url}", sha256="{sha256(data).upper()}", size={len(data)},
                 layout="paired", summary="facades in miniature")
        """,
    )
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "tiny_facades", "--root", str(root), "--plugin", plugin])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"tiny_facades: {root / 'tiny_facades'} (train 2, val 2 images)" in out
    path = (root / "tiny_facades").as_posix()
    assert f'[data]\n  type = "paired_folder"\n  root = "{path}"\n  test_folder = "val"' in out
    assert server.requests == [("/datasets/tiny_facades.tar.gz", None)]
    assert leftovers(root) == ["tiny_facades"]
    item = PairedFolder(root / "tiny_facades" / "train", Preprocess("none", 8, 8, False, True))[1]
    assert item["A"].shape == item["B"].shape == (3, 8, 8)
    assert item["A"][0].mean() > 0.5 and item["B"][2].mean() > 0.5  # A the red left half, B the blue right


def test_list_shows_each_source_with_its_plugin(tmp_path, capsys, monkeypatch):
    plugin = sources_plugin(
        tmp_path,
        "listed",
        """
        register("tiny_set", "http://127.0.0.1:9/tiny_set.zip", summary="a few images")
        register("tiny_pairs", "http://127.0.0.1:9/pairs.tgz", layout="paired")
        """,
    )
    with pytest.raises(SystemExit):
        main(["fetch", "--list", "--json", "--plugin", plugin])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tiny_set"] == {
        "name": "tiny_set",
        "plugin": plugin,
        "archive": "zip",
        "layout": "unpaired",
        "summary": "a few images",
        "url": "http://127.0.0.1:9/tiny_set.zip",
        "sha256": None,
        "size": None,
    }
    assert rows["tiny_pairs"]["archive"] == "tar.gz" and rows["tiny_pairs"]["layout"] == "paired"
    monkeypatch.syspath_prepend(str(tmp_path))  # by module name, as a recipe may name it
    with pytest.raises(SystemExit):
        main(["fetch", "--list", "--plugin", "listed"])
    table = capsys.readouterr().out
    assert re.search(r"name\s+.\s+plugin\s+.\s+archive\s+.\s+summary", table)
    assert re.search(r"tiny_set\s+.\s+listed\s+.\s+zip\s+.\s+a few images", table)


def test_duplicate_source_names_name_both_plugins(tmp_path, capsys):
    first = sources_plugin(tmp_path, "first", 'register("same", "http://127.0.0.1:9/same.zip")\n')
    second = sources_plugin(tmp_path, "second", 'register("same", "http://127.0.0.1:9/other.zip")\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "--list", "--plugin", first, "--plugin", second])
    assert exit_info.value.code == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: dataset source 'same' is registered twice: by plugin '{first}' and by plugin '{second}'"
    )


def test_installed_plugin_whose_source_hook_raises_is_named_and_the_rest_listed(server, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    hook = "from ganforge import hookimpl\n\n\n@hookimpl\ndef register_dataset_sources(register):\n"
    add_distribution(
        site,
        "broken_sources",
        hook + '    raise RuntimeError("the list is offline")\n',
        "broken-sources",
        "broken_sources",
    )
    add_distribution(
        site,
        "good_sources",
        hook + f'    register("tiny_set", "{server.url}/tiny_set.zip")\n',
        "good-sources",
        "good_sources",
    )
    result = run_cli("fetch", "--list", "--json", cwd=tmp_path, pythonpath=site)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row["plugin"] for row in json.loads(result.stdout)}
    assert rows["tiny_set"] == "good_sources"
    assert result.stderr.strip() == (
        "warning: plugin 'broken_sources' (entry point of broken-sources) skipped: failed in "
        "register_dataset_sources: RuntimeError: the list is offline"
    )


def test_unknown_name_says_did_you_mean_and_the_known_names(tmp_path, capsys):
    plugin = sources_plugin(tmp_path, "named", 'register("tiny_facades", "http://127.0.0.1:9/f.tar.gz")\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "tiny_fcades", "--plugin", plugin, "--root", str(tmp_path / "datasets")])
    assert exit_info.value.code == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: unknown dataset 'tiny_fcades' (did you mean 'tiny_facades'?); known: ")
    assert "tiny_facades" in line.split("known: ")[1]
    assert line.endswith("(ganforge fetch --list shows which plugin serves each)")
    assert not (tmp_path / "datasets").exists()
    with pytest.raises(FetchError, match="no installed plugin registers any dataset source"):
        resolve("tiny_facades", DatasetSources())


# ------------------------------------------------------------------------------------- in-process


def test_partial_part_file_is_continued_with_a_range_request(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(data[:100])
    done = fetch(server.source(), root)
    assert (done.resumed_from, done.downloaded_bytes, done.archive_bytes) == (100, len(data) - 100, len(data))
    assert server.requests == [(f"/datasets/{NAME}.zip", "bytes=100-")]
    assert_dataset(root / NAME)


def test_server_without_ranges_sends_the_whole_file_again(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    server.honour_ranges = False
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(b"stale bytes from another file")
    done = fetch(server.source(), root, keep_archive=True)
    assert done.downloaded_bytes == len(data)
    assert (root / f"{NAME}.zip").read_bytes() == data
    assert leftovers(root) == [NAME, f"{NAME}.zip"]


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    root = tmp_path / "datasets"
    root.mkdir()
    (root / f"{NAME}.zip.part").write_bytes(data)
    done = fetch(server.source(), root)  # the server answers 416: nothing after the end
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
        fetch(server.source(), root)
    assert leftovers(root) == []
    assert not Path("/tmp/ganforge-absolute.txt").exists() and not (tmp_path / "up.txt").exists()


@pytest.mark.parametrize(
    ("member", "link", "problem"),
    [
        ("/tmp/ganforge-absolute-tar.txt", None, "an absolute path"),
        ("tiny/train/../../../up.txt", None, "a '..' component"),
        ("tiny/train/link.png", "/etc/passwd", "a symbolic link"),
    ],
)
def test_unsafe_tar_members_are_refused_before_anything_is_written(server, tmp_path, member, link, problem):
    members = paired_members("tiny")
    if link is None:
        members[member] = b"x"
    server.serve("tiny", make_tar(members, "bz2", links={member: link} if link else None), "tar.bz2")
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match=re.escape(problem) + ".*nothing was extracted"):
        fetch(server.source("tiny", "tar.bz2"), root)
    assert leftovers(root) == []
    assert not Path("/tmp/ganforge-absolute-tar.txt").exists() and not (tmp_path / "up.txt").exists()


def test_damaged_member_removes_everything_unpacked(server, tmp_path):
    data = bytearray(make_zip(dataset_members()))
    stored = png((60, 100, 30))  # trainA/1.png, stored uncompressed: flip a byte inside it
    at = bytes(data).index(stored) + len(stored) // 2
    data[at] ^= 0xFF
    server.serve(NAME, bytes(data))
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match="is damaged or cannot be unpacked"):
        fetch(server.source(), root)
    assert leftovers(root) == []


@pytest.mark.parametrize("archive", ["tar.gz", "tar.xz", "tar"])
def test_truncated_tar_archives_are_refused(server, tmp_path, archive):
    members = paired_members("tiny")
    data = make_tar(members, archive.partition(".")[2])
    if archive == "tar":  # cut right after the first member: no header is broken, the end block is missing
        first = len(next(iter(members.values())))
        data = data[: 512 + -(-first // 512) * 512]
    else:
        data = data[: len(data) - 12]  # the compressed stream's end
    server.serve("tiny", data, archive)
    root = tmp_path / "datasets"
    with pytest.raises(FetchError, match=f"truncated or not a {re.escape(archive)} file"):
        fetch(server.source("tiny", archive), root)
    assert leftovers(root) == []


def test_checksum_and_size_are_checked_before_unpacking(server, tmp_path):
    data = make_zip(dataset_members())
    server.serve(NAME, data)
    root = tmp_path / "datasets"
    with pytest.raises(
        FetchError, match=rf"SHA-256 {sha256(data)} is not the {'0' * 64} that plugin 'loopback'"
    ):
        fetch(server.source(sha256="0" * 64), root)
    assert leftovers(root) == []  # the download is removed: resuming cannot mend it
    with pytest.raises(FetchError, match=f"the download is {len(data):,} bytes, not the {len(data) + 1:,}"):
        fetch(server.source(size=len(data) + 1), root)
    assert leftovers(root) == []
    done = fetch(server.source(sha256=sha256(data), size=len(data)), root)
    assert done.archive_bytes == len(data)
    assert_dataset(root / NAME)


def test_missing_archive_existing_target_and_mirror_names(server, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    sources = DatasetSources()
    sources.add(make_source("facades", "https://example.org/pix2pix/facades.tar.gz", plugin="p2p"))
    with pytest.raises(FetchError, match=r"HTTP 404.*no such dataset on this server"):
        fetch(resolve("facades", sources, server.url), root)
    assert leftovers(root) == []  # no empty .part left behind
    (root / "maps").mkdir(parents=True)
    (root / "maps" / "mine.txt").write_text("keep")
    with pytest.raises(FetchError, match="already exists"):
        fetch(resolve("maps", sources, server.url), root)
    # a mirror serves NAME.<archive> of a registered source: facades stays a tar.gz
    assert server.requests == [("/datasets/facades.tar.gz", None)]  # maps was not even asked for
    with pytest.raises(FetchError, match=r"unknown dataset 'facade' \(did you mean 'facades'\?\)"):
        resolve("facade", sources)
    with pytest.raises(FetchError, match="must be letters"):
        resolve("../x", sources, server.url)
    # a mirror may serve other names, as zip archives; the environment variable names the mirror
    server.serve("my_set", make_zip(dataset_members("my_set")))
    monkeypatch.setenv("GANFORGE_DATASET_URL", server.url + "/")
    mine = resolve("my_set", sources)
    assert (mine.url, mine.archive, mine.plugin) == (f"{server.url}/my_set.zip", "zip", "--base-url")
    assert fetch(mine, root).path == root / "my_set"
    assert fetch_module.base_url() == server.url
    monkeypatch.setenv("GANFORGE_DATASET_URL", "file:///etc")
    with pytest.raises(FetchError, match="GANFORGE_DATASET_URL 'file:///etc' is not an http"):
        resolve("facades", sources)
    monkeypatch.delenv("GANFORGE_DATASET_URL")
    assert fetch_module.base_url() is None
    assert resolve("facades", sources).url == "https://example.org/pix2pix/facades.tar.gz"


def test_an_aligned_archive_gets_the_aligned_folders_table(tmp_path):
    from ganforge.cli.fetch import recipe_hint
    from ganforge.data.fetch import Fetched

    path = tmp_path / "maps"
    for side in ("A", "B"):
        for split in ("train", "val"):
            (path / side / split).mkdir(parents=True)
    source = make_source("maps", "https://example.org/maps.zip", plugin="p", layout="aligned")
    assert source.dataset_type == "aligned_folders"
    hint = recipe_hint(Fetched(source, path, 1, 1, 0, {"A": 4, "B": 4}))
    assert hint.endswith(f'type = "aligned_folders"\n  root = "{path.as_posix()}"\n  test_folder = "val"')
    assert recipe_hint(Fetched(source, path, 1, 1, 0, {"A": 4})) == ""  # no B/: not the layout
