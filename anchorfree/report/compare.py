"""The comparison report of ``anchorfree bench compare``: the table of models and accuracy against speed."""
from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .figures import accuracy_speed_figure, grouped_bar_figure
from .html import render, write_page

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
SECTIONS = [("table", "Models"), ("plots", "Accuracy and speed"), ("next", "Next")]


def write_compare_report(out_dir: str | Path, rows: Sequence[Any], out: str | Path | None = None,
                         title: str | None = None, data: str | None = None) -> Path:
    """Write the comparison page of ``bench compare`` and return its path.

    Args:
        out_dir: the comparison folder (``compare.json`` and one run folder per model).
        rows: one entry per model: :class:`~anchorfree.compare.CompareResult` objects or their dicts
            (``name``, ``run``, ``params``, ``epochs``, ``train_minutes``, ``train_images_per_s``,
            ``infer_images_per_s``, ``metrics`` with AP, AP50, AP75, APs, APm, APl as fractions).
        out: where to write the page (default ``out_dir/report.html``).
        title: the page title (default: "Model comparison: <folder name>").
        data: how the dataset is named in the suggested commands (default ``DATA``).
    """
    out_dir = Path(out_dir)
    page = Path(out) if out is not None else out_dir / "report.html"
    entries = [_as_dict(row) for row in rows]
    header = ["model", "params (M)", "epochs", "train min", "train img/s", "infer img/s", *(f"{k} %" for k in AP_KEYS)]
    table = [[_model_cell(e, page.parent), f"{e['params'] / 1e6:.2f}", str(e["epochs"]), f"{e['train_minutes']:.1f}",
              f"{e['train_images_per_s']:.1f}", f"{e['infer_images_per_s']:.1f}",
              *(_percent(e["metrics"].get(k)) for k in AP_KEYS)] for e in entries]
    figures = []
    if entries:
        names = [e["name"] for e in entries]
        figures.append({"uri": accuracy_speed_figure(names, [e["infer_images_per_s"] for e in entries],
                                                     [100 * max(0.0, e["metrics"].get("AP", 0.0)) for e in entries],
                                                     [e["params"] for e in entries]),
                        "alt": "AP against inference speed",
                        "caption": "Up and to the right is better: AP against inference images/s at batch 1."})
        figures.append({"uri": grouped_bar_figure(names, {k: [100 * max(0.0, e["metrics"].get(k, 0.0))
                                                              for e in entries] for k in AP_KEYS},
                                                  "COCO AP (%)", "COCO AP by IoU and object size"),
                        "alt": "COCO AP numbers per model", 
                        "caption": "n/a values (no object of that size) show as 0."})
        figures.append({"uri": grouped_bar_figure(names, {"train": [e["train_images_per_s"] for e in entries],
                                                          "inference": [e["infer_images_per_s"] for e in entries]},
                                                  "images / s", "Speed"),
                        "alt": "training and inference speed per model", "caption": ""})
    notes = [("Every model trained within the same time budget (train.minutes: the run's length was re-estimated "
              "from its measured time per step, and its schedule spans it). Inference speed: batch 1 on "
              "validation images.")]
    context = {
        "title": title or f"Model comparison: {out_dir.resolve().name}",
        "subtitle": str(out_dir.resolve()),
        "sections": SECTIONS,
        "header": header,
        "rows": table,
        "notes": notes,
        "figures": figures,
        "next_steps": _next_steps(entries, data or "DATA"),
    }
    return write_page(render("compare.html", **context), page)


def _as_dict(row: Any) -> dict[str, Any]:
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"a comparison row must be a CompareResult or a dict, got {type(row).__name__}")


def _model_cell(entry: Mapping[str, Any], page_dir: Path) -> str | dict[str, str]:
    """The model's name, linked to its run report when that exists."""
    report = Path(entry.get("run", "")) / "report.html"
    if entry.get("run") and report.is_file():
        return {"text": entry["name"], "href": Path(os.path.relpath(report.resolve(), page_dir.resolve())).as_posix()}
    return entry["name"]


def _percent(value: float | None) -> str:
    return "n/a" if value is None or value < 0 else f"{100 * value:.1f}"


def _next_steps(entries: list[dict], data: str) -> list[str]:
    if not entries:
        return ["anchorfree bench compare MODEL [MODEL ...] --data DATA --out OUT --minutes 5"]
    best = max(entries, key=lambda e: e["metrics"].get("AP", -1.0))
    run = shlex.quote(str(best["run"]))
    return [f"# the most accurate model here: {best['name']}",
            f"anchorfree eval {run} --data {shlex.quote(data)} --save-results",
            f"anchorfree predict {shlex.quote(str(Path(best['run']) / 'best.pt'))} IMAGES --out {run}/predictions"]
