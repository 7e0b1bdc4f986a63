"""The report's plots, drawn with matplotlib's object-oriented API (no pyplot state) as data URIs."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .curves import PRCurve
from .html import figure_uri

SMALL_AREA, LARGE_AREA = 32**2, 96**2
"""COCO's area boundaries between small, medium and large objects (pixels²)."""
WIDTH = 5.8
"""Width of the single plots in inches (at 100 dpi two fit side by side on a 1280-pixel page)."""


def _fixed_margins(fig: Figure) -> None:
    """Margins for one axes with short tick labels (``tight_layout`` would draw the figure twice)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height)


def line_figure(x: Sequence[float], series: dict[str, Sequence[float | None]], xlabel: str, ylabel: str,
                title: str, log: bool = False, marker: str | None = None, scientific: bool = False) -> str:
    """A line plot of each ``series`` against ``x``; ``None`` values leave gaps; ``scientific`` writes the y ticks
    as multiples of a power of ten (for learning rates)."""
    fig = Figure(figsize=(WIDTH, 3.6))
    ax = fig.add_subplot()
    for name, values in series.items():
        y = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        ax.plot(x, y, marker=marker, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    elif scientific:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    _fixed_margins(fig)
    return figure_uri(fig)


def pr_figure(curves: Sequence[PRCurve], mean: PRCurve | None, columns: int = 5) -> str:
    """Small multiples: the mean curve, then one panel per class, at IoU 0.5 and averaged over 0.5:0.95."""
    panels = ([mean] if mean is not None else []) + list(curves)
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(2.6 * columns, 2.4 * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, curve in zip(axes.flat, panels):
        ax.plot(curve.recall, curve.precision_50, label="IoU 0.5", color="#2b5fd9")
        ax.plot(curve.recall, curve.precision_mean, label="IoU 0.5:0.95", color="#d62728")
        ax.set_title(f"{curve.class_name}\nAP50 {curve.ap50:.3f}  AP {curve.ap:.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("recall", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision", fontsize=9)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.5 / height,
                        wspace=0.12, hspace=0.5)
    return figure_uri(fig)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """The confusion matrix: colour = share of its row, text = count (when there are few classes)."""
    k = len(class_names)
    rows = [*class_names, "background"]
    cols = [*class_names, "missed"]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = min(16.0, 2.5 + 0.45 * (k + 1))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_xticks(range(k + 1), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k + 1), rows, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    if k <= 30:
        for i in range(k + 1):
            for j in range(k + 1):
                if matrix[i, j] or (i < k and j < k and i == j):
                    color = "white" if share[i, j] > 0.6 else "black"
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7, color=color)
    ax.axhline(k - 0.5, color="#888", lw=0.8)
    ax.axvline(k - 0.5, color="#888", lw=0.8)
    fig.tight_layout()
    return figure_uri(fig)


def bar_figure(names: Sequence[str], values: Sequence[float], ylabel: str, title: str) -> str:
    """One bar per name (horizontal when there are many)."""
    many = len(names) > 12
    fig = Figure(figsize=(WIDTH, max(3.0, 0.22 * len(names) + 1)) if many else (WIDTH, 3.4))
    ax = fig.add_subplot()
    if many:
        ax.barh(range(len(names)), values, color="#2b5fd9")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.bar(range(len(names)), values, color="#2b5fd9")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x" if many else "y")
    fig.tight_layout()
    return figure_uri(fig)


def box_size_figure(widths: np.ndarray, heights: np.ndarray) -> str:
    """Histogram of the box size √(w·h) on a log axis, with COCO's small/medium/large boundaries (boxes of zero or
    negative width or height are left out)."""
    valid = (widths > 0) & (heights > 0)
    size = np.sqrt(widths[valid] * heights[valid])
    fig = Figure(figsize=(WIDTH, 3.4))
    ax = fig.add_subplot()
    if size.size:
        bins = np.geomspace(max(size.min(), 0.5), max(size.max(), 1.0) * 1.01, 40)
        ax.hist(size, bins=bins, color="#2b5fd9")
        ax.set_xscale("log")
    for edge, label in ((math.sqrt(SMALL_AREA), "32 (small | medium)"), (math.sqrt(LARGE_AREA), "96 (medium | large)")):
        ax.axvline(edge, color="#d62728", lw=1, ls="--")
        ax.text(edge, 1, label, transform=ax.get_xaxis_transform(), rotation=90, va="top", ha="right", fontsize=7)
    ax.set_xlabel("box size √(w·h), pixels")
    ax.set_ylabel("boxes")
    ax.set_title("Box sizes")
    ax.grid(alpha=0.3)
    _fixed_margins(fig)
    return figure_uri(fig)


def aspect_ratio_figure(widths: np.ndarray, heights: np.ndarray) -> str:
    """Histogram of the aspect ratio w/h on a log axis."""
    valid = (widths > 0) & (heights > 0)
    ratio = widths[valid] / heights[valid]
    fig = Figure(figsize=(WIDTH, 3.4))
    ax = fig.add_subplot()
    if ratio.size:
        low, high = min(ratio.min(), 0.5), max(ratio.max(), 2.0)
        ax.hist(ratio, bins=np.geomspace(low, high * 1.01, 40), color="#3cb44b")
        ax.set_xscale("log")
    ax.axvline(1.0, color="#555", lw=1, ls="--")
    ax.set_xlabel("aspect ratio w / h")
    ax.set_ylabel("boxes")
    ax.set_title("Aspect ratios")
    ax.grid(alpha=0.3)
    _fixed_margins(fig)
    return figure_uri(fig)


def accuracy_speed_figure(names: Sequence[str], speed: Sequence[float], ap: Sequence[float],
                          params: Sequence[float]) -> str:
    """AP against inference images/s, one labelled point per model (marker area ∝ parameters)."""
    fig = Figure(figsize=(WIDTH, 4.2))
    ax = fig.add_subplot()
    largest = max(params) if params and max(params) > 0 else 1.0
    sizes = [40 + 360 * p / largest for p in params]
    ax.scatter(speed, ap, s=sizes, alpha=0.6, color="#2b5fd9", edgecolor="black")
    for name, x, y in zip(names, speed, ap):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if all(s > 0 for s in speed) and len(speed) > 1 and max(speed) / min(speed) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("inference images / s (batch 1)")
    ax.set_ylabel("COCO AP (%)")
    ax.set_title("Accuracy vs speed (marker area ∝ parameters)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    _fixed_margins(fig)
    return figure_uri(fig)


def grouped_bar_figure(names: Sequence[str], groups: dict[str, Sequence[float]], ylabel: str, title: str) -> str:
    """One group of bars per name, one bar per key of ``groups``."""
    fig = Figure(figsize=(max(WIDTH, 1.2 * len(names) + 2), 3.8))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(groups))
    for i, (key, values) in enumerate(groups.items()):
        ax.bar([x + i * width for x in range(len(names))], values, width, label=key)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    highest = max((v for values in groups.values() for v in values), default=0.0)
    ax.set_ylim(0, highest * 1.25 if highest > 0 else 1.0)  # room for the legend above the bars
    ax.legend(ncol=min(6, len(groups)), fontsize=8, loc="upper center")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return figure_uri(fig)
