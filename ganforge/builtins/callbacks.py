"""Built-in callbacks: ``epoch_table`` writes ``epochs.csv``, one row per epoch, for a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import Field

from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params


class EpochTableParams(Params):
    file: str = Field(
        "epochs.csv", pattern=r"^[A-Za-z0-9_.-]+\.csv$", description="File name in the run directory."
    )


class EpochTable:
    """Rewrites the table from ``metrics.jsonl`` after every epoch, so a resumed run's table is whole."""

    def __init__(self, params: EpochTableParams) -> None:
        self.file = params.file

    def on_epoch_end(self, trainer: Any, losses: dict[str, float]) -> None:
        log = trainer.run_dir.path / "metrics.jsonl"
        rows = []
        for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(record, dict) and record.get("kind") == "epoch":
                row = {"epoch": record.get("epoch"), "step": record.get("step"), "time": record.get("time")}
                row.update({f"lr_{k}": v for k, v in (record.get("lr") or {}).items()})
                row.update(record.get("losses") or {})
                rows.append(row)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        trainer.run_dir.write_text(self.file, text.getvalue())


def build_epoch_table(params: EpochTableParams) -> EpochTable:
    """epochs.csv in the run directory: epoch, step, time, learning rates and mean losses per epoch."""
    return EpochTable(params)


@hookimpl
def register_callbacks(register: Register) -> None:
    register("epoch_table", build_epoch_table, params=EpochTableParams)
