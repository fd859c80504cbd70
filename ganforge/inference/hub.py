"""Generators on the Hugging Face Hub: ``hf://owner/repo[@revision][/path/in/repo]``.

:func:`parse_hf` reads the form strictly (without huggingface_hub, so a typo is one line even where
the library is missing); :func:`download` gets the file (``hf://owner/repo/file.pt``) or the whole
repository (``hf://owner/repo``, the folder ``ganforge export --to hub-folder`` writes, or a run
directory) through huggingface_hub's own ``hf_hub_download`` / ``snapshot_download``, so its cache
(``HF_HOME``, ``HF_HUB_CACHE``), its token (``HF_TOKEN``, ``hf auth login``), its endpoint
(``HF_ENDPOINT``) and its offline mode (``HF_HUB_OFFLINE=1``) apply unchanged; ``GANFORGE_OFFLINE=1``
asks for cached files only as well. The library's errors become one line naming the source and
what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ganforge.cache import offline
from ganforge.errors import GanforgeError

PREFIX = "hf://"
FORMS = (
    "hf://OWNER/REPO, hf://OWNER/REPO/PATH/IN/REPO, with @REVISION after REPO (hf://OWNER/REPO@v1/model.pt)"
)
INSTALL = 'pip install "ganforge[hub]"'

# a Hub name: letters, digits, '.', '_' and '-', not starting or ending with '.' or '-', no '--' or '..'
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
# revisions that hold a '/' themselves (pull requests, conversions), as huggingface_hub's URIs allow
_SLASHED_REVISION = re.compile(r"refs/(?:pr/\d+|convert/[\w.-]+)")
_OTHER_TYPES = ("datasets", "spaces", "kernels", "buckets")


@dataclass(frozen=True)
class HfSource:
    """A parsed ``hf://`` source."""

    repo_id: str  # owner/repo
    revision: str | None = None  # None: the repository's default branch
    filename: str | None = None  # a file in the repository; None: the whole repository

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision is not None else ""
        path = f"/{self.filename}" if self.filename is not None else ""
        return f"{PREFIX}{self.repo_id}{revision}{path}"

    @property
    def name(self) -> str:
        """A short name for files written from it: the file's stem, else the repository's name."""
        if self.filename is not None:
            return Path(self.filename).name.split(".")[0] or self.repo_id.split("/")[1]
        return self.repo_id.split("/")[1]


def is_hf_source(source: object) -> bool:
    """``source`` is a string (not a path) that starts with ``hf://``."""
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_hf(source: str) -> HfSource:
    """Parse ``hf://owner/repo[@revision][/path]``; a malformed one is one line listing the forms."""

    def bad(why: str) -> GanforgeError:
        return GanforgeError(f"{source}: {why}; use {FORMS}")

    if not source.startswith(PREFIX):
        raise bad("not an hf:// source")
    rest = source[len(PREFIX) :]
    parts = rest.split("/")
    if parts[0] in _OTHER_TYPES or parts[0] == "models":
        kind = (
            "model repositories only, named without 'models/'"
            if parts[0] == "models"
            else "model repositories only"
        )
        raise bad(f"ganforge reads {kind}, not {parts[0]}")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise bad("name the repository as OWNER/REPO")
    owner, repo = parts[0], parts[1]
    revision = None
    tail = parts[2:]
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        after = "/".join([revision, *tail])
        special = _SLASHED_REVISION.match(after)
        if special and (special.end() == len(after) or after[special.end()] == "/"):
            revision = special.group(0)
            tail = after[special.end() + 1 :].split("/") if special.end() < len(after) else []
        revision = unquote(revision)
        if not revision or any(c.isspace() for c in revision):
            raise bad("an empty or blank revision after '@'")
    elif any("@" in part for part in tail):
        raise bad("'@REVISION' goes right after the repository name")
    for name, what in ((owner, "owner"), (repo, "repository name")):
        if not _NAME.fullmatch(name) or "--" in name or ".." in name:
            raise bad(f"'{name}' is not a valid {what} (letters, digits, '.', '_', '-'; at most 96)")
    filename = None
    if tail:
        if any(part in ("", ".", "..") for part in tail):
            raise bad("the path in the repository has an empty, '.' or '..' part")
        filename = "/".join(tail)
    return HfSource(f"{owner}/{repo}", revision, filename)


def download(source: str | HfSource) -> Path:
    """The local path of ``source`` in huggingface_hub's cache, downloaded first if need be: a file,
    or (for a whole repository) its snapshot folder."""
    hf = parse_hf(source) if isinstance(source, str) else source
    try:  # optional dependency (the [hub] extra): only hf:// sources need it
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise GanforgeError(
            f"{hf}: reading from the Hugging Face Hub needs huggingface_hub: {INSTALL}"
        ) from None
    local_only = offline()
    # names that moved between huggingface_hub releases (>= 1.0: Remote..., IncompleteSnapshotError)
    missing_file = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    incomplete = getattr(errors, "IncompleteSnapshotError", ())
    try:
        if hf.filename is None:
            path = huggingface_hub.snapshot_download(
                hf.repo_id, revision=hf.revision, local_files_only=local_only
            )
        else:
            path = huggingface_hub.hf_hub_download(
                hf.repo_id, hf.filename, revision=hf.revision, local_files_only=local_only
            )
    except errors.GatedRepoError:
        raise GanforgeError(
            f"{hf}: {hf.repo_id} is gated: accept its conditions on its Hub page, then log in "
            "(hf auth login, or set HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise GanforgeError(
            f"{hf}: no repository {hf.repo_id} on {huggingface_hub.constants.ENDPOINT}, or it is private "
            "(log in with hf auth login, or set HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise GanforgeError(
            f"{hf}: {hf.repo_id} has no revision '{hf.revision}' (a branch, tag or commit)"
        ) from None
    except errors.LocalEntryNotFoundError as exc:  # before missing_file: older releases derive it from that
        if local_only or huggingface_hub.constants.HF_HUB_OFFLINE:
            switch = "GANFORGE_OFFLINE" if local_only else "HF_HUB_OFFLINE"
            why = f"offline ({switch} is set)"
        else:
            why = f"{huggingface_hub.constants.ENDPOINT} cannot be reached"
        more = " (or only part of it)" if incomplete and isinstance(exc, incomplete) else ""
        raise GanforgeError(
            f"{hf}: not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}){more} and {why}: "
            "download it once while online"
        ) from None
    except missing_file:
        at = f" at revision '{hf.revision}'" if hf.revision else ""
        raise GanforgeError(f"{hf}: {hf.repo_id} has no file '{hf.filename}'{at}") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise GanforgeError(
                f"{hf}: access denied ({status}): log in (hf auth login, or set HF_TOKEN)"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GanforgeError(f"{hf}: download failed: {first}") from None
    except (OSError, ValueError) as exc:  # a connection that broke, a full disk, a bad argument
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GanforgeError(f"{hf}: download failed: {type(exc).__name__}: {first}") from None
    return Path(path)
