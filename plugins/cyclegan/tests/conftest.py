"""The plugin's own test fixtures; they make ``ganforge_cyclegan`` importable from a source checkout.

These tests need only ``ganforge`` and this plugin (not the core's ``tests/`` package), so they run the
same from the repository root (``python -m pytest -q`` collects ``tests`` and ``plugins``) as from here.
Test files under ``plugins/*/tests`` have no ``__init__.py`` and are imported by their base name, so a
plugin's test file names must differ from the core's and from other plugins'.
"""

import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]

try:
    import ganforge_cyclegan  # noqa: F401
except ImportError:
    sys.path.insert(0, str(PLUGIN_ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from threads, and on a shared 2-core machine two threads spin-wait."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
