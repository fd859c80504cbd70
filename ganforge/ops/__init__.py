"""Numerical kernels the core offers to any model: Winograd convolutions (see winograd.py)."""
