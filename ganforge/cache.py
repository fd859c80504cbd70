"""Where ganforge keeps files it downloads once (pretrained generators, the FID Inception weights).

:func:`cache_dir` is ``$GANFORGE_CACHE`` when set, else the platform's per-user cache folder plus
``ganforge``: ``$XDG_CACHE_HOME/ganforge`` (default ``~/.cache/ganforge``) on Linux and other Unix
systems, ``~/Library/Caches/ganforge`` on macOS, ``%LOCALAPPDATA%\\ganforge\\Cache`` on Windows.
``GANFORGE_OFFLINE=1`` asks every download to stay off the network (:func:`offline`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_CACHE = "GANFORGE_CACHE"
ENV_OFFLINE = "GANFORGE_OFFLINE"


def cache_dir() -> Path:
    """ganforge's cache folder (see the module docstring); not created here."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ganforge" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ganforge"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ganforge"


def offline() -> bool:
    """``GANFORGE_OFFLINE`` is set to something other than ``0``."""
    return os.environ.get(ENV_OFFLINE, "") not in ("", "0")
