"""A run's ``metrics.jsonl``: one JSON object per logged training step (``"type": "train"``) or validation
(``"type": "val"``). The one owner of that file: the trainer appends and truncates through it; plots,
reports and comparisons read it through it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import atomic_write_text

METRICS = "metrics.jsonl"


def metrics_path(run: str | Path) -> Path:
    """``run/metrics.jsonl`` (``run`` may also be the file itself)."""
    run = Path(run)
    return run if run.name == METRICS or run.suffix == ".jsonl" else run / METRICS


def read_rows(run: str | Path) -> list[dict[str, Any]]:
    """Every row of a run's ``metrics.jsonl`` (none when it has none); a line cut short by a killed run is
    skipped."""
    path = metrics_path(run)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def append_row(run: str | Path, row: dict[str, Any]) -> None:
    """Add one row (one line) at the end of the run's ``metrics.jsonl``."""
    with open(metrics_path(run), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def truncate_after(run: str | Path, iteration: int, epoch: int) -> int:
    """Drop the rows logged after a checkpoint taken at ``iteration`` / ``epoch`` (a resumed run logs them
    again) and lines cut short; rewritten atomically. Returns the number of lines dropped."""
    path = metrics_path(run)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short when the run was killed
            dropped += 1
            continue
        after = row.get("iteration", 0) > iteration
        if row.get("type") == "val":
            after = after or row.get("epoch", 0) > epoch
        if after:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return dropped
