"""The run directory, and the only place the engine writes files.

Every write goes through :class:`RunDir`; on a rank other than 0 it writes nothing, so the rest of
the engine runs the same code on every process. Files that matter are written atomically: to a
temporary file in the same folder, flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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

    def atomic_write(self, relative: str, write: Callable[[IO[bytes]], Any]) -> Path | None:
        """Write ``relative`` by calling ``write(file)`` on a temporary file, then rename it."""
        if not self.is_main:
            return None
        target = self.path / relative
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise GanforgeError(
                    f"cannot write {target}: {exc.strerror or exc}; the previous file is unchanged"
                ) from None
            raise
        _fsync_dir(target.parent)
        return target

    def write_text(self, relative: str, text: str) -> Path | None:
        return self.atomic_write(relative, lambda f: f.write(text.encode("utf-8")))

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

    def prune(self, relative_folder: str, pattern: re.Pattern[str], keep: int) -> None:
        """Delete all but the last ``keep`` files (in name order) whose names match ``pattern``."""
        if not self.is_main:
            return
        folder = self.path / relative_folder
        matching = sorted(p for p in folder.iterdir() if pattern.match(p.name))
        for old in matching[: max(0, len(matching) - keep)]:
            old.unlink()


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
