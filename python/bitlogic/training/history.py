"""The per-epoch history of a run: its rows, and the CSV or JSON file they are written to.

One row per epoch, with the columns of :data:`COLUMNS`; a figure a run does not measure (``val_acc`` without a
validation split, ``test_acc`` between epochs when there is one, any figure a checkpoint of an older bitlogic did not
hold) is NaN in the rows, an empty field in CSV and ``null`` in JSON. The file is rewritten whole, atomically, at the
end of every epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from bitlogic._native import write_atomic
from bitlogic.errors import InputError

#: The history's columns, in the file's order. ``lr``: the learning rate of the epoch's last step; ``loss`` and
#: ``train_acc``: over the epoch's training steps; ``val_acc``: ``eval()`` on the validation split; ``test_acc``:
#: ``eval()`` on the test set; ``relaxed_acc`` / ``eval_acc``: the relaxed and the ``eval()`` model on the gap's
#: rows (the validation split, else a fixed sample of the training set), ``gap = relaxed_acc - eval_acc``.
COLUMNS = ("epoch", "lr", "loss", "train_acc", "val_acc", "test_acc", "relaxed_acc", "eval_acc", "gap", "seconds")
#: The keys of ``TrainResult.history``, the rows of bitlogic before the history file.
LEGACY_COLUMNS = ("epoch", "loss", "train_acc", "test_acc", "seconds")
FORMATS = (".csv", ".json")


def complete(row: dict[str, float]) -> dict[str, float]:
    """``row`` with every column, NaN where it has none (rows of older checkpoints)."""
    return {key: float(row.get(key, math.nan)) for key in COLUMNS}


def legacy(row: dict[str, float]) -> dict[str, float]:
    return {key: float(row.get(key, math.nan)) for key in LEGACY_COLUMNS}


def check_path(path: Path) -> Path:
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"history file {path}: expected a .csv or .json name (the suffix picks the format)")
    return path


def derived_path(checkpoint: Path) -> Path:
    """The history beside ``checkpoint``: ``run.ckpt`` -> ``run.history.csv``."""
    return checkpoint.with_name(f"{checkpoint.stem}.history.csv")


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else value


def render(rows: list[dict[str, float]], suffix: str) -> bytes:
    """The file's bytes: CSV with a header line, or a JSON list of objects."""
    table = [complete(row) for row in rows]
    if suffix.lower() == ".json":
        plain = [{key: _plain(row[key]) for key in COLUMNS} for row in table]
        return (json.dumps(plain, indent=1) + "\n").encode()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in table:
        writer.writerow(
            ["" if math.isnan(row[k]) else (int(row[k]) if k == "epoch" else repr(row[k])) for k in COLUMNS]
        )
    return text.getvalue().encode()


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """The rows to ``path`` through the core's atomic write (a reader sees the previous file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(os.fspath(path), render(rows, path.suffix))


def read_history(path: Path) -> list[dict[str, float]]:
    """The rows of a history file (CSV or JSON), NaN for empty fields."""
    check_path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return [{k: math.nan if v is None else float(v) for k, v in row.items()} for row in json.loads(text)]
    return [{k: math.nan if v == "" else float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


__all__ = ["COLUMNS", "FORMATS", "LEGACY_COLUMNS", "check_path", "complete", "derived_path", "legacy", "read_history",
           "render", "write_history"]
