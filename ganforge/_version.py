"""The version of ganforge (its own module, so the core reads it without importing the package root)."""

__version__ = "0.1.0"
