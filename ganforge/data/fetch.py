"""Download and unpack the official CycleGAN datasets, safely.

``fetch(name, root)`` does four things, each of which can fail without leaving something that looks
like a dataset:

1. **Download** ``<base>/<name>.zip`` into ``<root>/<name>.zip.part``. A ``.part`` left by an
   interrupted download is continued with an HTTP ``Range`` request (a server that ignores it sends
   the whole file, which replaces the partial one). Two fetches of one name cannot write the same file
   at once (a lock on the ``.part`` file).
2. **Check** that the file is a complete zip archive (a truncated one has no central directory) and
   that every member stays inside the target: absolute names, ``..`` components and symbolic links
   are refused before anything is written.
3. **Extract** into a hidden temporary folder inside ``root`` (``.<name>.extract-*``), checking every
   member's CRC as it is written.
4. **Move** the archive's top folder ``<name>/`` to ``<root>/<name>`` with one rename, then delete the
   archive (unless asked to keep it).

The server is :data:`ganforge.data.folders.OFFICIAL_BASE_URL`, or ``base_url``, or the environment
variable ``GANFORGE_DATASET_URL``. Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ganforge.data.folders import OFFICIAL_BASE_URL, OFFICIAL_DATASETS, list_images
from ganforge.errors import DatasetError, did_you_mean

#: The archives on the CycleGAN authors' server (``<name>.zip``).
DATASETS: tuple[str, ...] = OFFICIAL_DATASETS

URL_ENV = "GANFORGE_DATASET_URL"
CHUNK = 1 << 16
TIMEOUT_S = 60.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IGNORED_TOP = ("__MACOSX",)


class FetchError(DatasetError):
    """A dataset that cannot be downloaded or unpacked."""


class BadArchive(FetchError):
    """An archive that is truncated, damaged or unsafe: it is deleted, since resuming cannot mend it."""


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` put where."""

    name: str
    path: Path
    url: str
    downloaded_bytes: int  # bytes transferred by this call (less than the archive after a resume)
    archive_bytes: int
    resumed_from: int  # bytes already in the .part file when this call began
    folders: dict[str, int]  # top-level subfolder -> number of images in it


# ------------------------------------------------------------------------------------------ naming


def base_url(explicit: str | None = None) -> str:
    """``explicit``, else ``$GANFORGE_DATASET_URL``, else the authors' server; checked to be http(s)."""
    url = explicit or os.environ.get(URL_ENV) or OFFICIAL_BASE_URL
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        source = "--base-url" if explicit else URL_ENV if os.environ.get(URL_ENV) else "base URL"
        raise FetchError(f"{source} {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def check_name(name: str, custom_server: bool) -> None:
    """Known names always; other (file-name-safe) names only from a server other than the authors'."""
    if name in DATASETS:
        return
    if not custom_server:
        raise FetchError(
            f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)} "
            "(ganforge fetch --list)"
        )
    if not _SAFE_NAME.match(name) or name.endswith((".part", ".zip")):
        raise FetchError(f"dataset name {name!r} must be letters, digits, '_', '-' or '.'")


def dataset_url(name: str, base: str) -> str:
    return f"{base}/{urllib.parse.quote(name)}.zip"


# ---------------------------------------------------------------------------------------- download


def _progress(console: Console | None) -> Progress:
    """A download bar on stderr; drawn only on a terminal (logs get the summary line instead)."""
    console = console or Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for appending, holding an exclusive lock (where the platform has ``fcntl``)."""
    with open(path, "ab") as handle:
        try:
            import fcntl  # POSIX only
        except ImportError:  # pragma: no cover (Windows)
            yield handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FetchError(
                f"{path} is being written by another ganforge fetch; wait for it to finish"
            ) from None
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _open(url: str, offset: int) -> http.client.HTTPResponse | None:
    """GET ``url`` from byte ``offset``; None when the server says the range is past the end (416)."""
    request = urllib.request.Request(url, headers={"User-Agent": "ganforge-fetch"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            exc.close()
            return None
        hint = "; no such dataset on this server" if exc.code == 404 else ""
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise FetchError(f"{url}: cannot connect: {reason}") from None


def download(url: str, part: Path, console: Console | None = None) -> tuple[int, int]:
    """Download ``url`` into ``part``, continuing what is there; returns (bytes transferred, size).

    An interrupted transfer keeps ``part`` and raises :class:`FetchError` saying how to continue.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    with _locked(part) as out:
        offset = out.seek(0, os.SEEK_END)
        response = _open(url, offset)
        if response is None:  # 416: nothing after offset; the file may already be whole
            return 0, offset
        with response:
            total: int | None
            if response.status == 206:
                span = _content_range(response.headers.get("Content-Range"))
                if span is None or span[0] != offset:
                    raise FetchError(
                        f"{url}: server answered range {offset}- with {span}; delete {part} and retry"
                    )
                total = span[1]
            else:  # 200: the whole file (the server ignored the range, or there was nothing to continue)
                out.seek(0)
                out.truncate()
                offset = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            if total is not None:
                _check_space(part.parent, total - offset, f"downloading {url}")
            done = offset
            with _progress(console) as progress:
                task = progress.add_task(
                    f"{part.name.removesuffix('.zip.part')}", total=total, completed=offset
                )
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        progress.update(task, completed=done)
                except (http.client.HTTPException, OSError) as exc:
                    out.flush()
                    raise FetchError(
                        f"{url}: download interrupted at {done:,} of {_size(total)} bytes "
                        f"({type(exc).__name__}); {part} is kept: run the same command again to resume"
                    ) from None
            out.flush()
            os.fsync(out.fileno())
            if total is not None and done != total:
                raise FetchError(
                    f"{url}: download interrupted at {done:,} of {total:,} bytes (connection closed); "
                    f"{part} is kept: run the same command again to resume"
                )
            return done - offset, done


def _size(total: int | None) -> str:
    return "?" if total is None else f"{total:,}"


def _check_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(f"{folder}: {what} needs {needed / 1e6:,.0f} MB, only {free / 1e6:,.0f} MB free")


# ---------------------------------------------------------------------------------------- checking


def safe_members(archive: zipfile.ZipFile, source: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every member with its relative path; raises if any would land outside the target folder."""
    members = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        mode = info.external_attr >> 16
        problem = None
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or path.is_absolute():
            problem = "an absolute path"
        elif ".." in path.parts:
            problem = "a '..' component"
        elif stat.S_ISLNK(mode):
            problem = "a symbolic link"
        elif "\x00" in name:
            problem = "a NUL character"
        if problem:
            raise BadArchive(
                f"{source}: refused: member {info.filename!r} has {problem} and would land outside the "
                "target folder; nothing was extracted and the archive was deleted"
            )
        parts = [p for p in path.parts if p not in ("", ".")]
        if not parts or parts[0] in _IGNORED_TOP:
            continue
        members.append((info, PurePosixPath(*parts)))
    return members


def open_archive(path: Path, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BadArchive(
            f"{url}: the downloaded archive is truncated or not a zip file ({exc}); removed it, "
            "nothing was extracted: run the command again to download it anew"
        ) from None


# -------------------------------------------------------------------------------------- extracting


#: What reading a damaged (or encrypted, or oddly compressed) member raises.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


def extract(archive: zipfile.ZipFile, source: Path, into: Path, console: Console | None = None) -> None:
    """Extract every (checked) member of ``archive`` under ``into``, verifying CRCs."""
    members = safe_members(archive, source)
    _check_space(into, sum(info.file_size for info, _ in members), f"unpacking {source.name}")
    root = into.resolve()
    console = console or Console(stderr=True)
    with Progress(
        TextColumn("[bold]unpacking"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("unpacking", total=len(members))
        for info, relative in members:
            target = into.joinpath(*relative.parts)
            if not target.resolve().is_relative_to(root):  # belt and braces, after the name checks
                raise BadArchive(f"{source}: refused: member {info.filename!r} would land outside {into}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                except _ARCHIVE_ERRORS as exc:
                    raise BadArchive(
                        f"{source}: member {info.filename!r} is damaged or cannot be unpacked ({exc}); "
                        "removed the archive and everything unpacked: run the command again to download "
                        "it anew"
                    ) from None
                except OSError as exc:
                    raise FetchError(f"cannot write {target}: {exc}; the archive is kept") from None
            progress.advance(task)


def _content_folder(extracted: Path) -> Path:
    """The archive's top folder (``<name>/`` in the official archives) if it has only one, else all of it."""
    entries = list(extracted.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return extracted


def _summary(folder: Path) -> dict[str, int]:
    return {p.name: len(list_images(p)) for p in sorted(folder.iterdir()) if p.is_dir()}


def _remove_stale(root: Path, name: str) -> None:
    """Temporary folders left by a fetch that was killed while unpacking."""
    for stale in root.glob(f".{name}.extract-*"):
        shutil.rmtree(stale, ignore_errors=True)


# ------------------------------------------------------------------------------------------- fetch


def fetch(
    name: str,
    root: Path,
    base: str | None = None,
    *,
    keep_archive: bool = False,
    console: Console | None = None,
) -> Fetched:
    """Download ``name`` into ``root/<name>`` (see the module docstring)."""
    server = base_url(base)
    check_name(name, custom_server=server != OFFICIAL_BASE_URL)
    url = dataset_url(name, server)
    target = root / name
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise FetchError(f"{target} already exists; delete it to fetch {name} again")
    if root.exists() and not root.is_dir():
        raise FetchError(f"--root {root} is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, name)
    part = root / f"{name}.zip.part"
    resumed_from = part.stat().st_size if part.is_file() else 0
    try:
        transferred, size = download(url, part, console)
    except FetchError:
        if part.is_file() and part.stat().st_size == 0:  # nothing to resume: leave nothing behind
            part.unlink()
        raise

    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.extract-", dir=root))
    try:
        with open_archive(part, url) as archive:
            extract(archive, part, scratch, console)
        content = _content_folder(scratch)
        try:
            if target.is_dir():  # an empty folder: replace it
                target.rmdir()
            content.rename(target)  # one step: the dataset is there whole, or not at all
        except OSError as exc:
            raise FetchError(f"cannot move the unpacked dataset to {target}: {exc}") from None
    except BadArchive:
        part.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if keep_archive:
        part.replace(root / f"{name}.zip")
    else:
        part.unlink(missing_ok=True)
    return Fetched(name, target, url, transferred, size, resumed_from, _summary(target))
