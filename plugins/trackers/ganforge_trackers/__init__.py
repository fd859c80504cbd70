"""Experiment trackers for ganforge: ``wandb`` and ``mlflow`` callbacks (see docs/trackers.md)."""
