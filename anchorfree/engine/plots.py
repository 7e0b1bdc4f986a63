"""Training curves from a run's ``metrics.jsonl``: loss terms per iteration, mAP per epoch."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run: str | Path) -> list[Path]:
    """Write ``loss.png`` and (once validated) ``map.png`` into the run folder."""
    run = Path(run)
    rows = read_metrics(run / "metrics.jsonl")
    written = []
    train = [r for r in rows if r.get("type") == "train"]
    if train:
        fig, ax = plt.subplots(figsize=(7, 4))
        keys = sorted({k for r in train for k in r if k.startswith("loss")})
        for key in keys:
            ax.plot([r["iteration"] for r in train], [r.get(key) for r in train], label=key)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(run / "loss.png", dpi=100)
        plt.close(fig)
        written.append(run / "loss.png")
    val = [r for r in rows if r.get("type") == "val"]
    if val:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("AP", "AP50", "AP75"):
            ax.plot([r["epoch"] for r in val], [r[key] for r in val], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("COCO metric")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(run / "map.png", dpi=100)
        plt.close(fig)
        written.append(run / "map.png")
    return written
