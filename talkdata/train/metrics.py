"""A run's metrics files: ``metrics.csv`` (one row per training step and per evaluation, kept up to
the checkpoint on resume), read back by :func:`read_metrics`, and TensorBoard events when
``torch.utils.tensorboard`` imports."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model_task import Task

METRICS = "metrics.csv"
BASE_COLUMNS = ("step", "epoch", "phase", "split", "loss")


def csv_columns(task: Task) -> list[str]:
    return list(BASE_COLUMNS) + [column for column in task.columns if column not in BASE_COLUMNS]


class MetricsCSV:
    """``metrics.csv``, appended and flushed row by row; on resume, the rows after the checkpoint's
    step are dropped first."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None):
        self.path = path
        self.columns = columns
        kept: list[dict] = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= keep_until]
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, columns, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()
        self.kept = kept

    def write(self, row: dict) -> None:
        self._writer.writerow({key: value for key, value in row.items() if value is not None})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.csv`` with numbers parsed (empty cells left out)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                if value == "":
                    continue
                if key in ("phase", "split"):
                    parsed[key] = value
                elif key in ("step", "epoch", "frames"):
                    parsed[key] = int(value)
                else:
                    parsed[key] = float(value)
            rows.append(parsed)
    return rows


def tensorboard_writer(path: Path, purge_step: int | None):
    """A ``SummaryWriter`` on ``path`` when ``torch.utils.tensorboard`` imports, else ``None`` (silently)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path), purge_step=purge_step)
