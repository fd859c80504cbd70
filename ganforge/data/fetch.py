"""Download and unpack a published dataset archive, safely.

Which archives exist, and where, is not known here: plugins register them as
:class:`~ganforge.data.sources.DatasetSource` records (the ``register_dataset_sources`` hook), and
:func:`resolve` picks one by name. ``fetch(source, root)`` then does four things, each of which can
fail without leaving something that looks like a dataset:

1. **Download** the source's URL into ``<root>/<name>.<archive>.part``. A ``.part`` left by an
   interrupted download is continued with an HTTP ``Range`` request (a server that ignores it sends
   the whole file, which replaces the partial one). Two fetches of one name cannot write the same file
   at once (a lock on the ``.part`` file).
2. **Check** the file: its size and SHA-256 when the source states them, that it is a complete
   archive of its format (zip or tar, plain or gzip/bzip2/xz compressed), and that every member stays
   inside the target: absolute names, ``..`` components, links and device files are refused before
   anything is written.
3. **Extract** into a hidden temporary folder inside ``root`` (``.<name>.extract-*``); a zip member's
   CRC is checked as it is written, a compressed tar's as its stream ends.
4. **Move** the archive's top folder (``<name>/`` in most archives) to ``<root>/<name>`` with one
   rename, then delete the archive (unless asked to keep it).

A mirror (``base`` in :func:`resolve`, or the environment variable ``GANFORGE_DATASET_URL``) serves
``<base>/<name>.<archive>`` in place of each source's URL, and may serve names no plugin registers
(as zip archives). Only the standard library's ``urllib`` is used.

Pretrained generators (:class:`~ganforge.data.sources.ModelSource`, the ``register_model_sources``
hook) take the same download and check, without unpacking: :func:`fetch_model` puts one file in the
model cache (:func:`model_cache`), renamed into place in one step; ``GANFORGE_MODEL_URL`` is their mirror.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

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

from ganforge.cache import cache_dir, offline
from ganforge.data.folders import list_images
from ganforge.data.sources import DatasetSource, DatasetSources, ModelSource, ModelSources, check_dataset_name
from ganforge.errors import DatasetError, did_you_mean

URL_ENV = "GANFORGE_DATASET_URL"
#: A mirror of the model sources: ``<mirror>/<name><suffix>`` replaces each registered URL.
MODEL_URL_ENV = "GANFORGE_MODEL_URL"
CHUNK = 1 << 16
TIMEOUT_S = 60.0
_IGNORED_TOP = ("__MACOSX",)
#: Who a source made up for a mirror's unregistered name is said to come from.
MIRROR = "--base-url"


class FetchError(DatasetError):
    """A dataset that cannot be downloaded or unpacked."""


class NoAnswer(FetchError):
    """The server could not be reached, or answered with an HTTP error: nothing was downloaded."""


class BadArchive(FetchError):
    """An archive that is truncated, damaged or unsafe: it is deleted, since resuming cannot mend it."""


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` put where."""

    source: DatasetSource  # as downloaded (its url is the mirror's when one was used)
    path: Path
    downloaded_bytes: int  # bytes transferred by this call (less than the archive after a resume)
    archive_bytes: int
    resumed_from: int  # bytes already in the .part file when this call began
    folders: dict[str, int]  # top-level subfolder -> number of images in it

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def url(self) -> str:
        return self.source.url


# ------------------------------------------------------------------------------------------ naming


def base_url(explicit: str | None = None) -> str | None:
    """The mirror: ``explicit``, else ``$GANFORGE_DATASET_URL``, else None; checked to be http(s)."""
    url = explicit or os.environ.get(URL_ENV) or None
    if url is None:
        return None
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        source = "--base-url" if explicit else URL_ENV
        raise FetchError(f"{source} {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def unknown_name(name: str, sources: DatasetSources) -> str:
    """The one line for a name no plugin registers."""
    if not len(sources):
        return (
            f"unknown dataset {name!r}: no installed plugin registers any dataset source "
            "(ganforge plugins lists the plugins; --base-url fetches NAME.zip from a server of your choice)"
        )
    names = sources.names()
    return (
        f"unknown dataset {name!r}{did_you_mean(name, names)}; known: {', '.join(names)} "
        "(ganforge fetch --list shows which plugin serves each)"
    )


def resolve(name: str, sources: DatasetSources, base: str | None = None) -> DatasetSource:
    """The source to download for ``name``: a registered one, from the mirror when there is one.

    Without a mirror only registered names are accepted; a mirror may also serve other (file-name
    safe) names, as ``<base>/<name>.zip``.
    """
    mirror = base_url(base)
    source = sources.get(name)
    if source is None:
        if mirror is None:
            raise FetchError(unknown_name(name, sources))
        problem = check_dataset_name(name)
        if problem is not None:
            raise FetchError(f"dataset name {name!r} {problem}")
        return DatasetSource(name, f"{mirror}/{urllib.parse.quote(name)}.zip", "zip", "unpaired", MIRROR)
    if mirror is not None:
        return dataclasses.replace(source, url=f"{mirror}/{urllib.parse.quote(source.file_name)}")
    return source


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


def _open(url: str, offset: int, what: str = "dataset") -> http.client.HTTPResponse | None:
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
        hint = f"; no such {what} on this server" if exc.code == 404 else ""
        raise NoAnswer(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise NoAnswer(f"{url}: cannot connect: {reason}") from None


def download(
    url: str,
    part: Path,
    console: Console | None = None,
    *,
    size: int | None = None,
    label: str = "",
    what: str = "dataset",
) -> tuple[int, int]:
    """Download ``url`` into ``part``, continuing what is there; returns (bytes transferred, size).

    ``size``, when known, is the archive's size in bytes: it sizes the progress bar and the disk check
    when the server does not say. An interrupted transfer keeps ``part`` and raises
    :class:`FetchError` saying how to continue; no answer from the server raises :class:`NoAnswer`.
    ``what`` ("dataset", "model") names the file in messages.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    with _locked(part) as out:
        offset = out.seek(0, os.SEEK_END)
        response = _open(url, offset, what)
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
            expected = total if total is not None else size
            if expected is not None:
                _check_space(part.parent, expected - offset, f"downloading {url}")
            done = offset
            with _progress(console) as progress:
                task = progress.add_task(label or part.name, total=expected, completed=offset)
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        progress.update(task, completed=done)
                except (http.client.HTTPException, OSError) as exc:
                    out.flush()
                    raise FetchError(
                        f"{url}: download interrupted at {done:,} of {_size(expected)} bytes "
                        f"({type(exc).__name__}); {part} is kept: run the same command again to resume"
                    ) from None
            out.flush()
            os.fsync(out.fileno())
            if expected is not None and done < expected:
                raise FetchError(
                    f"{url}: download interrupted at {done:,} of {expected:,} bytes (connection closed); "
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


def verify(part: Path, source: DatasetSource | ModelSource, done: str = ", nothing was extracted") -> None:
    """The size and SHA-256 the source states, when it states them; a mismatch is a :class:`BadArchive`.

    ``done`` ends the message, after "removed the download".
    """
    actual = part.stat().st_size
    if source.size is not None and actual != source.size:
        raise BadArchive(
            f"{source.url}: the download is {actual:,} bytes, not the {source.size:,} that plugin "
            f"'{source.plugin}' registered; removed it{done}"
        )
    if source.sha256 is not None:
        digest = hashlib.sha256()
        with open(part, "rb") as handle:
            while chunk := handle.read(CHUNK * 16):
                digest.update(chunk)
        if digest.hexdigest() != source.sha256:
            raise BadArchive(
                f"{source.url}: SHA-256 {digest.hexdigest()} is not the {source.sha256} that plugin "
                f"'{source.plugin}' registered; removed the download{done}: run the command again to "
                "download it anew"
            )


@dataclass(frozen=True)
class Member:
    """One archive member that passed the checks."""

    name: str  # as written in the archive
    path: PurePosixPath  # where it goes, relative to the target folder
    is_dir: bool
    size: int
    entry: Any  # the format's own record (ZipInfo, TarInfo)


def _checked_path(raw: str, kind_problem: str | None, source: Path) -> PurePosixPath | None:
    """Where member ``raw`` goes (None: left out); raises if it would land outside the target folder."""
    name = raw.replace("\\", "/")
    path = PurePosixPath(name)
    problem = kind_problem
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or path.is_absolute():
        problem = "an absolute path"
    elif ".." in path.parts:
        problem = "a '..' component"
    elif "\x00" in name:
        problem = "a NUL character"
    if problem:
        raise BadArchive(
            f"{source}: refused: member {raw!r} has {problem} and would land outside the target folder; "
            "nothing was extracted and the archive was deleted"
        )
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or parts[0] in _IGNORED_TOP:
        return None
    return PurePosixPath(*parts)


class _Zip:
    """A zip archive; each member's CRC is checked when it is read to its end."""

    #: What reading a damaged (or encrypted, or oddly compressed) member raises.
    errors: tuple[type[BaseException], ...] = (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    )

    def __init__(self, path: Path, archive: str) -> None:
        self.archive = zipfile.ZipFile(path)

    def entries(self) -> Iterator[tuple[str, str | None, bool, int, Any]]:
        for info in self.archive.infolist():
            link = stat.S_ISLNK(info.external_attr >> 16)
            yield info.filename, "a symbolic link" if link else None, info.is_dir(), info.file_size, info

    def open(self, entry: Any) -> IO[bytes]:
        return self.archive.open(entry)

    def close(self) -> None:
        self.archive.close()


class _Tar:
    """A tar archive, plain or compressed (``tar``, ``tar.gz``, ``tar.bz2``, ``tar.xz``)."""

    errors: tuple[type[BaseException], ...] = (
        tarfile.TarError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        OSError,
    )

    def __init__(self, path: Path, archive: str) -> None:
        self.archive = tarfile.open(path, "r:" + archive.partition(".")[2])  # noqa: SIM115 (see close)

    def entries(self) -> Iterator[tuple[str, str | None, bool, int, Any]]:
        infos = self.archive.getmembers()
        # tarfile takes a missing end-of-archive block for the end: a cut at a member boundary would pass
        stream = self.archive.fileobj
        assert stream is not None
        stream.seek(self.archive.offset)
        if stream.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
            raise tarfile.ReadError("no end-of-archive block")
        while stream.read(CHUNK):  # to the end, so a compressed stream checks its trailer
            pass
        for info in infos:
            problem = None
            if info.issym():
                problem = "a symbolic link"
            elif info.islnk():
                problem = "a hard link"
            elif not (info.isfile() or info.isdir()):
                problem = "a device or pipe"
            yield info.name, problem, info.isdir(), info.size, info

    def open(self, entry: Any) -> IO[bytes]:
        handle = self.archive.extractfile(entry)
        assert handle is not None  # a regular file
        return handle

    def close(self) -> None:
        self.archive.close()


@contextlib.contextmanager
def open_archive(path: Path, source: DatasetSource) -> Iterator[_Zip | _Tar]:
    """The downloaded archive, opened by its format; truncated or not of that format: :class:`BadArchive`."""
    kind = _Zip if source.archive == "zip" else _Tar
    try:
        archive = kind(path, source.archive)
    except (*kind.errors, OSError) as exc:
        raise BadArchive(_not_an_archive(source, exc)) from None
    try:
        yield archive
    finally:
        archive.close()


def _not_an_archive(source: DatasetSource, exc: BaseException) -> str:
    return (
        f"{source.url}: the downloaded archive is truncated or not a {source.archive} file ({exc}); "
        "removed it, nothing was extracted: run the command again to download it anew"
    )


def members(archive: _Zip | _Tar, path: Path, source: DatasetSource) -> list[Member]:
    """Every member with where it goes; raises before anything is written if one would escape."""
    found = []
    try:
        for raw, problem, is_dir, size, entry in archive.entries():
            relative = _checked_path(raw, problem, path)
            if relative is not None:
                found.append(Member(raw, relative, is_dir, size, entry))
    except BadArchive:
        raise
    except archive.errors as exc:
        raise BadArchive(_not_an_archive(source, exc)) from None
    return found


# -------------------------------------------------------------------------------------- extracting


def extract(
    archive: _Zip | _Tar, found: list[Member], source: Path, into: Path, console: Console | None = None
) -> None:
    """Write every (checked) member under ``into``."""
    _check_space(into, sum(m.size for m in found if not m.is_dir), f"unpacking {source.name}")
    root = into.resolve()
    console = console or Console(stderr=True)
    with Progress(
        TextColumn("[bold]unpacking"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("unpacking", total=len(found))
        for member in found:
            target = into.joinpath(*member.path.parts)
            if not target.resolve().is_relative_to(root):  # belt and braces, after the name checks
                raise BadArchive(f"{source}: refused: member {member.name!r} would land outside {into}")
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_member(archive, member, target, source)
            progress.advance(task)


def _write_member(archive: _Zip | _Tar, member: Member, target: Path, source: Path) -> None:
    def damaged(exc: BaseException) -> BadArchive:
        return BadArchive(
            f"{source}: member {member.name!r} is damaged or cannot be unpacked ({exc}); removed the "
            "archive and everything unpacked: run the command again to download it anew"
        )

    def unwritable(exc: OSError) -> FetchError:
        return FetchError(f"cannot write {target}: {exc}; the archive is kept")

    try:
        src = archive.open(member.entry)
    except archive.errors as exc:
        raise damaged(exc) from None
    with src:
        try:
            dst = open(target, "wb")  # noqa: SIM115 (a write error and a read error differ: see below)
        except OSError as exc:
            raise unwritable(exc) from None
        with dst:
            while True:
                try:
                    chunk = src.read(CHUNK)
                except archive.errors as exc:
                    raise damaged(exc) from None
                if not chunk:
                    break
                try:
                    dst.write(chunk)
                except OSError as exc:
                    raise unwritable(exc) from None


def _content_folder(extracted: Path) -> Path:
    """The archive's top folder (``<name>/`` in most archives) if it has only one, else all of it."""
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
    source: DatasetSource,
    root: Path,
    *,
    keep_archive: bool = False,
    console: Console | None = None,
) -> Fetched:
    """Download ``source`` into ``root/<name>`` (see the module docstring)."""
    name = source.name
    problem = check_dataset_name(name)
    if problem is not None:
        raise FetchError(f"dataset name {name!r} {problem}")
    target = root / name
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise FetchError(f"{target} already exists; delete it to fetch {name} again")
    if root.exists() and not root.is_dir():
        raise FetchError(f"--root {root} is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, name)
    part = root / f"{source.file_name}.part"
    resumed_from = part.stat().st_size if part.is_file() else 0
    try:
        transferred, size = download(source.url, part, console, size=source.size, label=name)
    except FetchError:
        if part.is_file() and part.stat().st_size == 0:  # nothing to resume: leave nothing behind
            part.unlink()
        raise

    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.extract-", dir=root))
    try:
        verify(part, source)
        with open_archive(part, source) as archive:
            extract(archive, members(archive, part, source), part, scratch, console)
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
        part.replace(root / source.file_name)
    else:
        part.unlink(missing_ok=True)
    return Fetched(source, target, transferred, size, resumed_from, _summary(target))


# ---------------------------------------------------------------------------------- model weights


@dataclass(frozen=True)
class FetchedModel:
    """What :func:`fetch_model` found or put in the cache."""

    source: ModelSource  # as downloaded (its url is the mirror's when one was used)
    path: Path
    downloaded_bytes: int  # 0 when the file was already cached
    size: int
    resumed_from: int
    cached: bool  # the file was there already: nothing was downloaded


def model_cache() -> Path:
    """Where pretrained generators are kept: ``models/`` in :func:`ganforge.cache.cache_dir`."""
    return cache_dir() / "models"


def model_base_url(explicit: str | None = None) -> str | None:
    """The model mirror: ``explicit``, else ``$GANFORGE_MODEL_URL``, else None; checked to be http(s)."""
    url = explicit or os.environ.get(MODEL_URL_ENV) or None
    if url is None:
        return None
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(
            f"{'--base-url' if explicit else MODEL_URL_ENV} {url!r} is not an http:// or https:// URL"
        )
    return url.rstrip("/")


def resolve_model(name: str, sources: ModelSources, base: str | None = None) -> ModelSource:
    """The registered model ``name``, its URL replaced by the mirror's (``<mirror>/<name><suffix>``) if any."""
    source = sources.get(name)
    if source is None:
        if not len(sources):
            raise FetchError(f"unknown model {name!r}: no installed plugin registers any pretrained model")
        names = sources.names()
        raise FetchError(
            f"unknown model {name!r}{did_you_mean(name, names)}; known: {', '.join(names)} "
            "(ganforge models list shows what each does)"
        )
    mirror = model_base_url(base)
    if mirror is not None:
        return dataclasses.replace(source, url=f"{mirror}/{urllib.parse.quote(source.file_name)}")
    return source


def fetch_model(
    source: ModelSource, cache: Path | None = None, console: Console | None = None
) -> FetchedModel:
    """The cached file of ``source``, downloaded first if it is not in ``cache`` (default :func:`model_cache`).

    The download goes to ``<cache>/<name><suffix>.part``, continued with a ``Range`` request after an
    interruption, is checked against the registered size and SHA-256, and is renamed into place in one
    step. ``GANFORGE_OFFLINE=1`` never downloads. Every failure is one line; where nothing could be
    downloaded, it names the URL and the path to put the file at by hand.
    """
    cache = model_cache() if cache is None else cache
    target = cache / source.file_name
    if target.is_file():
        return FetchedModel(source, target, 0, target.stat().st_size, 0, cached=True)
    by_hand = f"download {source.url} yourself and put it at {target}"
    if offline():
        raise FetchError(f"model '{source.name}' is not in the cache and GANFORGE_OFFLINE is set: {by_hand}")
    if cache.exists() and not cache.is_dir():
        raise FetchError(f"the model cache {cache} is not a folder (set GANFORGE_CACHE to another)")
    part = cache / f"{source.file_name}.part"
    resumed_from = part.stat().st_size if part.is_file() else 0
    try:
        transferred, size = download(
            source.url, part, console, size=source.size, label=source.name, what="model"
        )
    except NoAnswer as exc:
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()
        raise FetchError(f"{exc.lines[0]}; {by_hand}") from None
    try:
        verify(part, source, "")
    except BadArchive:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)  # one step: the cached file is whole, or not there
    return FetchedModel(source, target, transferred, size, resumed_from, cached=False)
