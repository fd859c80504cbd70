"""The plugin's own test fixtures; they make ``ganforge_pix2pix`` importable from a source checkout.

These tests need only ``ganforge`` and this plugin (not the core's ``tests/`` package). Test files
under ``plugins/*/tests`` have no ``__init__.py`` and are imported by their base name, so their names
start with ``test_pix2pix_`` to differ from the core's and from other plugins'.
"""

import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]

try:
    import ganforge_pix2pix  # noqa: F401
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
