"""Training curves from a run's ``metrics.jsonl``: loss terms per iteration, mAP per epoch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..runlog import read_rows  # noqa: E402


def plot_run(run: str | Path) -> list[Path]:
    """Write ``loss.png`` and (once validated) ``map.png`` into the run folder."""
    run = Path(run)
    rows = read_rows(run)
    written = []
    train = [r for r in rows if r.get("type") == "train"]
    if train:
        keys = sorted({k for r in train for k in r if k.startswith("loss")})
        written.append(_line_plot(run / "loss.png", train, "iteration", keys, "loss", log=True))
    val = [r for r in rows if r.get("type") == "val"]
    if val:
        written.append(_line_plot(run / "map.png", val, "epoch", ["AP", "AP50", "AP75"], "COCO metric", marker="o"))
    return written


def _line_plot(path: Path, rows: list[dict], x: str, keys: list[str], ylabel: str, log: bool = False,
               marker: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        ax.plot([r[x] for r in rows], [r.get(key) for r in rows], marker=marker, label=key)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
