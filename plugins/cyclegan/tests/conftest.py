"""Make ``ganforge_cyclegan`` importable from a source checkout where the plugin is not installed."""

import sys
from pathlib import Path

try:
    import ganforge_cyclegan  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "cyclegan"))
