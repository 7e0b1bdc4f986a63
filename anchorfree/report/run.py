"""The run report: config, metrics, training curves, PR curves, confusion matrix and worst images."""
from __future__ import annotations

import json
import shlex
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from anchorfree.data import CocoDetection, DataSpec, load_data_spec
from anchorfree.errors import ConfigError
from anchorfree.runlog import read_rows
from anchorfree.evaluation import COCO_METRIC_NAMES, CocoEvalArrays, coco_evaluate_detailed

from .curves import mean_pr_curve, per_class_ap_by_area, pr_curves
from .figures import LARGE_AREA, SMALL_AREA, confusion_figure, line_figure, pr_figure
from .gallery import gallery_items
from .html import render, write_page
from .matching import detections_from_coco, ground_truth_of, load_coco_gt, match_dataset, worst_first

REPORT_NAME = "report.html"
MAX_PR_PANELS = 40
"""Classes drawn in the precision–recall figure (the first ones by category id)."""

METRIC_MEANINGS = {
    "AP": "IoU 0.50:0.95, all sizes, 100 detections", "AP50": "IoU 0.50", "AP75": "IoU 0.75",
    "APs": "small: area < 32²", "APm": "medium: 32² ≤ area < 96²", "APl": "large: area ≥ 96²",
    "AR1": "1 detection per image", "AR10": "10 detections per image", "AR100": "100 detections per image",
    "ARs": "small, 100 detections", "ARm": "medium, 100 detections", "ARl": "large, 100 detections",
}  # fmt: skip
SECTIONS = [("summary", "Summary"), ("config", "Config"), ("metrics", "Metrics"), ("training", "Training"),
            ("pr", "Precision–recall"), ("confusion", "Confusion matrix"), ("gallery", "Worst images"),
            ("next", "Next")]

DatasetLike = CocoDetection | DataSpec | str | Path


def write_run_report(run_dir: str | Path, dataset: DatasetLike | None = None, model: Any = None,
                     results: list[dict] | None = None, metrics: Mapping[str, Any] | None = None,
                     out: str | Path | None = None, gallery: int = 16, *, score_thresh: float = 0.3,
                     iou_thresh: float = 0.5, backend: str = "faster", data: str | None = None) -> Path:
    """Write the self-contained HTML report of a run folder and return its path.

    Args:
        run_dir: the run folder (``config.yaml``, ``metrics.jsonl``, ``metrics.json``, ``best.pt`` as
            the trainer writes them; any of them may be missing: ``eval`` of converted weights has
            no ``metrics.jsonl``, and the page says so).
        dataset: the evaluation split, as the :class:`~anchorfree.data.CocoDetection` the detections were
            made on, a :class:`~anchorfree.data.DataSpec` or a dataset path (its ``val`` split). Needed
            for the precision–recall curves, the confusion matrix and the gallery.
        model: a :class:`~anchorfree.models.detector.Detector` to predict ``dataset`` with, used only
            when ``results`` is not given.
        results: the COCO results list of ``dataset`` (as :func:`~anchorfree.inference.evaluate.predict_dataset`
            returns). Default: ``model``'s predictions, else ``run_dir/results.json`` if it exists
            (``anchorfree eval --save-results``).
        metrics: the result of :func:`~anchorfree.evaluation.coco_evaluate` for the metrics tables.
            Default: computed from ``results`` when there are detections and a dataset, else read
            from ``run_dir/metrics.json``.
        out: where to write the page (default ``run_dir/report.html``).
        gallery: how many images the worst-first gallery shows (0: none).
        score_thresh: detections at or above this score count in the confusion matrix and the gallery.
        iou_thresh: IoU at which a detection matches a ground-truth box there.
        backend: COCO evaluation backend (``"faster"`` or ``"pycocotools"``).
        data: how the dataset is named in the suggested commands (default: the dataset's path).

    The confusion matrix and the gallery draw the ground truth as the dataset's loader cleaned it (see
    :func:`~anchorfree.report.matching.ground_truth_of`); if they cannot be made, the page says why (and a
    warning is issued) and the rest is written.

    Raises:
        ConfigError: ``run_dir`` is not a folder.
        DatasetError: the dataset cannot be read, or ``results`` do not belong to it.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist; pass the folder that `anchorfree train` or "
                          "`anchorfree eval` wrote")
    split, data_hint = _eval_split(dataset)
    data_hint = data or data_hint
    notes: list[str] = []
    if results is None and model is not None and split is not None:
        results = _predict(model, split)
        notes.append("Detections: predicted for this report.")
    elif results is None and (run / "results.json").is_file():
        results = json.loads((run / "results.json").read_text())
        notes.append(f"Detections: {run / 'results.json'}.")

    config_text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else None
    config = _parse_config(config_text)
    rows = read_rows(run)

    arrays: CocoEvalArrays | None = None
    analysis = None
    if results is not None and split is not None:
        class_names = list(split.class_names)
        computed, arrays = coco_evaluate_detailed(split.coco_gt, results, backend=backend, class_names=class_names)
        computed["num_detections"] = len(results)
        metrics = metrics if metrics is not None else computed
        try:
            analysis = _analyse(split, results, class_names, gallery, score_thresh, iou_thresh)
        except Exception as e:  # noqa: BLE001 - the metrics and curves are still worth writing
            problem = (f"the confusion matrix and the worst-images gallery could not be made ({type(e).__name__}: "
                       f"{e})")
            notes.append(f"{problem[0].upper()}{problem[1:]}.")
            warnings.warn(f"{out or run / REPORT_NAME}: {problem}; the rest of the report is written", stacklevel=2)
    if metrics is None and (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
        notes.append(f"Metrics: {run / 'metrics.json'}.")

    analysis_note = _analysis_note(results, run)
    context = {
        "title": f"Run report: {run.resolve().name}",
        "subtitle": f"{run.resolve()}" + (f" · model {config['name']}" if config.get("name") else ""),
        "sections": SECTIONS,
        "facts": _facts(config, rows, metrics, split, results),
        "notes": notes,
        "config_text": config_text,
        "metrics_tables": _metrics_tables(metrics, split) if metrics else [],
        "per_class": (_per_class_table(metrics, arrays, split, results) if metrics and metrics.get("per_class")
                      else None),
        "training_figures": _training_figures(rows),
        "training_note": _training_note(run, rows),
        "pr_figure": _pr_figure(arrays) if arrays is not None else None,
        "confusion": analysis["confusion"] if analysis else None,
        "gallery": analysis["gallery"] if analysis else [],
        "analysis_note": analysis_note,
        "score_thresh": f"{score_thresh:g}",
        "next_steps": _next_steps(run, data_hint, split),
    }
    return write_page(render("run.html", **context), out or run / REPORT_NAME)


# ---- inputs ---------------------------------------------------------------------------------------


def _eval_split(dataset: DatasetLike | None) -> tuple[CocoDetection | None, str]:
    """The evaluation split of ``dataset`` and how to name the dataset in commands."""
    if dataset is None:
        return None, "DATA"
    if isinstance(dataset, CocoDetection):
        return dataset, "DATA"
    spec = dataset if isinstance(dataset, DataSpec) else load_data_spec(dataset)
    split = CocoDetection(spec.val_ann, spec.val_images, class_names=spec.class_names)
    return split, spec.source


def _predict(model: Any, split: CocoDetection) -> list[dict]:
    from anchorfree.inference.evaluate import make_eval_dataset, predict_dataset

    eval_set = split if split.transforms is not None else make_eval_dataset(model, split.coco_gt, split.image_dir,
                                                                            split.class_names)
    return predict_dataset(model, eval_set, workers=0, progress=False)


def _parse_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    model = raw.get("model") if isinstance(raw, dict) else None
    return model if isinstance(model, dict) else {}


# ---- analysis -------------------------------------------------------------------------------------


def _analyse(split: CocoDetection, results: list[dict], class_names: list[str], gallery: int, score_thresh: float,
             iou_thresh: float) -> dict[str, Any]:
    cat_ids = list(split.cat_ids)
    ground_truth = ground_truth_of(split)
    detections = detections_from_coco(results, cat_ids)
    matched = match_dataset(ground_truth, detections, len(cat_ids), iou_thresh, score_thresh)
    images = {int(info["id"]): info for info in map(split.get_image_info, range(len(split)))}
    order = worst_first(matched.images, gallery)
    items = gallery_items(split.image_dir, images, ground_truth, detections, matched, order, class_names,
                          score_thresh) if gallery > 0 else []
    matrix = matched.confusion
    header = ["ground truth \\ predicted", *class_names, "missed"]
    rows = [[name, *map(int, matrix[i])] for i, name in enumerate([*class_names, "background"])]
    caption = (f"Detections with score ≥ {score_thresh:g} matched to ground truth at IoU ≥ {iou_thresh:g}, "
               "greedily by score, one detection per box. Rows: ground-truth class, then background (false positives). "
               "Columns: predicted class, then missed (no detection).")
    confusion = {"figure": {"uri": confusion_figure(matrix, class_names), "alt": "confusion matrix",
                            "caption": caption},
                 "header": header, "rows": rows}
    return {"confusion": confusion, "gallery": items}


def _analysis_note(results: list[dict] | None, run: Path) -> str:
    if results is None:
        return ("No detections to analyse: pass the results of predict_dataset (results=) with the dataset, or run "
                f"`anchorfree eval {run} --data DATA --save-results` and write the report again with dataset=DATA.")
    return ("The detections came without their dataset: pass dataset= (the evaluation CocoDetection, a DataSpec or "
            "a dataset path) for precision–recall curves, the confusion matrix and the gallery.")


# ---- page parts -----------------------------------------------------------------------------------


def _facts(config: dict, rows: list[dict], metrics: Mapping | None, split: CocoDetection | None,
           results: list[dict] | None) -> list[tuple[str, str]]:
    facts = []
    if config.get("name"):
        facts.append(("model", str(config["name"])))
    train = [r for r in rows if r.get("type") == "train"]
    if train:
        facts.append(("epochs", str(max(int(r.get("epoch", 0)) for r in train))))
        facts.append(("iterations", str(max(int(r.get("iteration", 0)) for r in train))))
    if metrics and "metrics" in metrics:
        for key in ("AP", "AP50"):
            value = metrics["metrics"].get(key)
            facts.append((key, "n/a" if value is None or value < 0 else f"{value:.3f}"))
    if split is not None:
        facts.append(("val images", str(len(split))))
        facts.append(("val boxes", str(split.stats["boxes"])))
    if results is not None:
        facts.append(("detections", str(len(results))))
    return facts


def _gt_counts(split: CocoDetection | None) -> tuple[Counter, Counter]:
    """Non-crowd ground-truth boxes per category id, and per size (small, medium, large; COCO areas), as COCO
    evaluation counts them: from the annotation file, with its ``area`` fields."""
    per_class: Counter = Counter()
    per_size: Counter = Counter()
    if split is None:
        return per_class, per_size
    for ann in load_coco_gt(split.coco_gt)["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        per_class[int(ann["category_id"])] += 1
        area = ann.get("area") or float(ann["bbox"][2]) * float(ann["bbox"][3])
        per_size["small" if area < SMALL_AREA else "medium" if area < LARGE_AREA else "large"] += 1
    return per_class, per_size


def _num(value: Any) -> str:
    return "n/a" if value is None or float(value) < 0 else f"{float(value):.3f}"


def _metrics_tables(metrics: Mapping[str, Any], split: CocoDetection | None) -> list[dict]:
    values = metrics.get("metrics", {})
    ap = [[k, _num(values.get(k)), METRIC_MEANINGS[k]] for k in COCO_METRIC_NAMES[:6]]
    ar = [[k, _num(values.get(k)), METRIC_MEANINGS[k]] for k in COCO_METRIC_NAMES[6:]]
    _, per_size = _gt_counts(split)
    bounds = (("small", "area < 32²"), ("medium", "32² ≤ area < 96²"), ("large", "area ≥ 96²"))
    sizes = [[size, bound, str(per_size[size]) if split is not None else "?", _num(values.get(f"AP{size[0]}")),
              _num(values.get(f"AR{size[0]}"))] for size, bound in bounds]
    return [
        {"caption": "Average precision", "header": ["metric", "value", "meaning"], "rows": ap},
        {"caption": "Average recall", "header": ["metric", "value", "meaning"], "rows": ar},
        {"caption": "By object size", "header": ["size", "area (px²)", "GT boxes", "AP", "AR100"], "rows": sizes},
    ]


def _per_class_table(metrics: Mapping[str, Any], arrays: CocoEvalArrays | None, split: CocoDetection | None,
                     results: list[dict] | None) -> dict:
    per_class, _ = _gt_counts(split)
    by_size = dict(zip(arrays.category_ids, per_class_ap_by_area(arrays))) if arrays is not None else {}
    detected = Counter(int(r["category_id"]) for r in results) if results is not None else None
    header = ["class", "id", "GT boxes", "detections", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    rows = []
    for row in metrics["per_class"]:
        cat_id = int(row["category_id"])
        sizes = by_size.get(cat_id, {})
        rows.append([row["class"], cat_id, per_class[cat_id] if split is not None else "?",
                     detected[cat_id] if detected is not None else "?", _num(row.get("AP")), _num(row.get("AP50")),
                     _num(row.get("AP75")), *(_num(sizes.get(k)) for k in ("APs", "APm", "APl"))])
    return {"header": header, "rows": rows}


def _training_figures(rows: list[dict]) -> list[dict]:
    figures = []
    train = [r for r in rows if r.get("type") == "train"]
    if train:
        x = [r.get("iteration") for r in train]
        keys = sorted({k for r in train for k in r if k.startswith("loss")}, key=lambda k: (k != "loss", k))
        series = {k: [r.get(k) for r in train] for k in keys}
        positive = all(v is None or v > 0 for values in series.values() for v in values)
        figures.append({"uri": line_figure(x, series, "iteration", "loss", "Loss terms", log=positive),
                        "alt": "loss terms over training", "caption": "loss terms per logged iteration"})
        if any("lr" in r for r in train):
            figures.append({"uri": line_figure(x, {"lr": [r.get("lr") for r in train]}, "iteration", "learning rate",
                                               "Learning rate", scientific=True),
                            "alt": "learning rate over training", "caption": "learning rate (first parameter group)"})
    val = [r for r in rows if r.get("type") == "val"]
    if val:
        series = {k: [None if r.get(k) is None or r[k] < 0 else r[k] for r in val]
                  for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
        series = {k: values for k, values in series.items() if any(v is not None for v in values)}  # -1: no such box
        figures.append({"uri": line_figure([r.get("epoch") for r in val], series, "epoch", "COCO metric",
                                           "Validation mAP", marker="o"),
                        "alt": "validation mAP per epoch", "caption": "validation metrics after each evaluated epoch"})
    return figures


def _training_note(run: Path, rows: list[dict]) -> str:
    if not (run / "metrics.jsonl").is_file():
        return ("No training curves: this folder has no metrics.jsonl, so it was evaluated here but not trained "
                "here (for example `anchorfree eval` of converted weights).")
    return "No training curves: metrics.jsonl holds no training or validation rows yet."


def _pr_figure(arrays: CocoEvalArrays) -> dict | None:
    curves = pr_curves(arrays)
    present = [c for c in curves if c is not None]
    if not present:
        return None
    shown = present[:MAX_PR_PANELS]
    caption = ("Interpolated precision at COCO's 101 recall points (area all, 100 detections per image), at IoU 0.5 "
               "and averaged over IoU 0.5:0.95; the first panel averages the classes.")
    if len(present) > len(shown):
        caption += f" The first {len(shown)} of {len(present)} classes are shown."
    missing = len(curves) - len(present)
    if missing:
        caption += f" {missing} class(es) without ground truth have no curve."
    return {"uri": pr_figure(shown, mean_pr_curve(curves)), "alt": "precision-recall curves per class",
            "caption": caption}


def _next_steps(run: Path, data: str, split: CocoDetection | None) -> list[str]:
    q = shlex.quote
    checkpoint = run / "best.pt" if (run / "best.pt").is_file() else run
    images = str(split.image_dir) if split is not None else "IMAGES"
    return [
        "# evaluate the checkpoint, keeping its detections (results.json) for this page",
        f"anchorfree eval {q(str(run))} --data {q(data)} --save-results",
        "# draw its detections on images",
        f"anchorfree predict {q(str(checkpoint))} {q(images)} --out {q(str(run / 'predictions'))}",
        "# write this page again (e.g. after eval --save-results)",
        (f"python -c \"from anchorfree.report import write_run_report; write_run_report({str(run)!r}, "
         f"dataset={data!r})\""),
    ]
