"""The few error types the CLI turns into one-line messages.

Every error a user can cause derives from :class:`GanforgeError`. The CLI prints ``str(error)`` (one
line per entry in ``error.lines``) and exits with ``error.exit_code``; the traceback is shown only
when the ``GANFORGE_DEBUG`` environment variable is set.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GanforgeError(Exception):
    """Base class: a message meant for a user, not a bug report."""

    exit_code = 1
    label = "error"  # how the CLI leads each line

    def __init__(self, *lines: str) -> None:
        self.lines = [line for line in lines if line]
        super().__init__("\n".join(self.lines))


class RecipeError(GanforgeError):
    """A recipe that cannot be read or does not validate (exit code 2)."""

    exit_code = 2


class PluginError(GanforgeError):
    """A plugin that cannot be imported, or that registers something invalid."""

    exit_code = 2


class DatasetError(GanforgeError):
    """A dataset that is missing, empty or unreadable."""


class CheckpointError(GanforgeError):
    """A checkpoint that cannot be read, or does not belong to this run."""


class TrainingError(GanforgeError):
    """Training cannot go on (for example, a loss became NaN)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class GanforgeWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as one line."""
