"""The ``ganforge`` command line: one module per command group, errors as one line each.

Known errors (:class:`ganforge.errors.GanforgeError`) print ``error: <message>`` lines on stderr and
exit with the error's code (2 for a bad recipe or plugin, 1 otherwise). Set ``GANFORGE_DEBUG=1`` to
see the traceback as well.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback
import warnings
from collections.abc import Sequence

import typer

from ganforge.errors import GanforgeError, GanforgeWarning
from ganforge.plugins import make_plugin_manager

DEBUG_ENV = "GANFORGE_DEBUG"


def build_app() -> typer.Typer:
    """The root app: every module of this package with a ``register(app)`` adds its commands."""
    app = typer.Typer(
        name="ganforge",
        help="Train image-translation GANs from TOML recipes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)
    make_plugin_manager().manager.hook.register_commands(app=app)
    return app


def printable(text: str) -> str:
    """Escape control characters (a user's value may hold a newline), so one error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """ganforge's own warnings as one ``warning: ...`` line (with their source under GANFORGE_DEBUG)."""
    if issubclass(category, GanforgeWarning) and not _debug():
        sys.stderr.write(f"warning: {printable(str(message))}\n")
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> None:
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            build_app()(args=list(argv) if argv is not None else None, prog_name="ganforge")
    except GanforgeError as exc:
        if _debug():
            traceback.print_exc()
        for line in exc.lines:
            sys.stderr.write(f"{exc.label}: {printable(line)}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
