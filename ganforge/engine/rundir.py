"""The run directory, and the only place the engine writes files.

Every write goes through :class:`RunDir`; on a rank other than 0 it writes nothing, so the rest of
the engine runs the same code on every process. Files that matter are written atomically: to a
temporary file in the same folder, flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ganforge.errors import GanforgeError


class RunDir:
    CHECKPOINTS = "checkpoints"
    SAMPLES = "samples"
    METRICS = "metrics.jsonl"
    RECIPE = "recipe.toml"

    def __init__(self, path: Path, *, is_main: bool = True) -> None:
        self.path = path
        self.is_main = is_main

    def create(self) -> None:
        if not self.is_main:
            return
        try:
            for sub in ("", self.CHECKPOINTS, self.SAMPLES):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GanforgeError(f"cannot create run directory {self.path}: {exc.strerror}") from None

    def ensure_free(self, nbytes: int, what: str) -> None:
        """Fail early, with figures, when the run directory's disk cannot take ``nbytes`` more."""
        if not self.is_main:
            return
        folder = self.path if self.path.exists() else self.path.parent
        while not folder.exists():
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        if free < nbytes:
            raise GanforgeError(
                f"not enough free space for {what} in {self.path}: needs {nbytes / 2**20:.1f} MiB, "
                f"{free / 2**20:.1f} MiB free"
            )

    def atomic_write(self, relative: str, data: bytes) -> Path | None:
        """Write ``relative`` to a temporary file in the same folder, fsync it, then rename it over."""
        if not self.is_main:
            return None
        target = self.path / relative
        self.ensure_free(len(data), target.name)
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise GanforgeError(
                    f"cannot write {target}: {exc.strerror or exc}; the previous {target.name} is unchanged"
                ) from None
            raise
        _fsync_dir(target.parent)
        return target

    def write_text(self, relative: str, text: str) -> Path | None:
        return self.atomic_write(relative, text.encode("utf-8"))

    def append_json(self, relative: str, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.path / relative, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def link(self, relative_src: str, relative_dst: str) -> None:
        """Point ``relative_dst`` at the same file as ``relative_src`` (hard link, atomically)."""
        if not self.is_main:
            return
        src, dst = self.path / relative_src, self.path / relative_dst
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links: fall back to a copy
            tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)

    def truncate_jsonl(self, relative: str, max_step: int) -> None:
        """Drop records logged after ``max_step`` (they are redone when a run resumes from there)."""
        path = self.path / relative
        if not self.is_main or not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= max_step:
                    kept.append(line + "\n")
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        self.write_text(relative, "".join(kept))

    def remove_temporaries(self) -> list[Path]:
        """Delete ``.*.tmp`` files that a killed process left half-written."""
        if not self.is_main:
            return []
        stale = [p for sub in ("", self.CHECKPOINTS, self.SAMPLES) for p in (self.path / sub).glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def prune(self, relative_folder: str, pattern: re.Pattern[str], keep: int) -> None:
        """Delete all but the last ``keep`` files (in name order) whose names match ``pattern``."""
        if not self.is_main:
            return
        folder = self.path / relative_folder
        matching = sorted(p for p in folder.iterdir() if pattern.match(p.name))
        for old in matching[: max(0, len(matching) - keep)]:
            old.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
