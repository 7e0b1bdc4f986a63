"""COCO box evaluation through faster-coco-eval or pycocotools.

Both backends give the same numbers: ``faster_coco_eval.COCOeval_faster`` with its
defaults (``iouType="bbox"``, ``lvis_style=False``, ``extra_calc=False``; ``separate_eval``
does not change the result) reproduces ``pycocotools.cocoeval.COCOeval`` to within
floating-point rounding (about 1e-16).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anchorfree.errors import ConfigError, DatasetError
from anchorfree.files import atomic_write_text

COCO_METRIC_NAMES: list[str] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
]  # fmt: skip
"""The 12 summary metrics, in ``COCOeval.stats`` order."""

BACKENDS = ("faster", "pycocotools")
_DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")
_MAX_LISTED_IDS = 10


def coco_evaluate(
    gt: str | Path | dict,
    detections: list[dict],
    backend: str = "faster",
    class_names: list[str] | None = None,
    verbose: bool = False,
) -> dict:
    """Evaluate COCO-format box detections against a COCO ground truth.

    Args:
        gt: Path to a COCO annotation JSON file, or the already-loaded dict (not modified), such
            as the COCO view of a YOLO or Pascal VOC split. Annotations without ``iscrowd`` count
            as ``iscrowd=0``; without ``area``, the area is the box's ``w * h``.
        detections: COCO result dicts ``{image_id, category_id, bbox: [x, y, w, h], score}``
            (not modified). An empty list is allowed.
        backend: ``"faster"`` (faster-coco-eval) or ``"pycocotools"``.
        class_names: Names for the GT categories sorted by id; defaults to their ``name`` field.
        verbose: Let the library print its progress and summary.

    Returns:
        ``{"metrics": {name: float}, "per_class": [{"class", "category_id", "AP", "AP50",
        "AP75"}, ...]}``. ``metrics`` holds the 12 :data:`COCO_METRIC_NAMES` values as COCOeval
        reports them, so a metric is ``-1.0`` when the GT has no box for it (e.g. APs without
        small objects). ``per_class`` is ordered by category id; its AP values are taken from
        ``eval["precision"]`` at area=all, maxDets=100, and are ``None`` for a category with no
        non-crowd GT box. The mean of the non-``None`` per-class APs equals ``metrics["AP"]``.

    Raises:
        DatasetError: The GT cannot be read, or a detection is malformed or refers to an
            image or category id that the GT does not have.
        ConfigError: ``backend`` is unknown.
    """
    return coco_evaluate_detailed(gt, detections, backend, class_names, verbose)[0]


@dataclass(frozen=True)
class CocoEvalArrays:
    """The arrays that ``COCOeval.accumulate()`` leaves in ``eval``, with the axes they are indexed by.

    Attributes:
        precision: ``[T, R, K, A, M]`` interpolated precision at IoU threshold ``T``, recall
            threshold ``R``, category ``K``, area range ``A`` and max-detections setting ``M``;
            ``-1`` where a category has no non-crowd ground-truth box.
        recall: ``[T, K, A, M]`` the highest recall reached (``-1`` likewise).
        scores: ``[T, R, K, A, M]`` the detection score at each precision point.
        iou_thresholds: ``[T]`` (0.5, 0.55, ..., 0.95).
        recall_thresholds: ``[R]`` (0, 0.01, ..., 1).
        category_ids: the ``K`` category ids, ascending.
        class_names: the display names of those categories.
        area_labels: the ``A`` area ranges (``all``, ``small``, ``medium``, ``large``).
        max_dets: the ``M`` max-detections settings (1, 10, 100).
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: list[int]
    class_names: list[str]
    area_labels: list[str]
    max_dets: list[int]


def coco_evaluate_detailed(
    gt: str | Path | dict,
    detections: list[dict],
    backend: str = "faster",
    class_names: list[str] | None = None,
    verbose: bool = False,
) -> tuple[dict, CocoEvalArrays]:
    """:func:`coco_evaluate`, and the accumulated COCOeval arrays it was computed from.

    Arguments, the returned dict and the errors raised are those of :func:`coco_evaluate`; the
    second value holds ``eval["precision"]``, ``eval["recall"]`` and ``eval["scores"]`` with their
    axes (see :class:`CocoEvalArrays`), e.g. for precision-recall curves.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown evaluation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    gt_data = _load_gt(gt)
    _check_detections(gt_data, detections)
    cat_ids = sorted(int(c["id"]) for c in gt_data["categories"])
    names = _class_names(gt_data, cat_ids, class_names)

    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        coco_dt = _load_results(coco_gt, COCO, [dict(d) for d in detections])
        if backend == "faster":
            log = print if verbose else (lambda *args, **kwargs: None)
            evaluator = COCOeval(coco_gt, coco_dt, "bbox", print_function=log)
        else:
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    stats = [float(v) for v in evaluator.stats[: len(COCO_METRIC_NAMES)]]
    result = {
        "metrics": dict(zip(COCO_METRIC_NAMES, stats)),
        "per_class": _per_class_ap(evaluator, names),
    }
    params = evaluator.params
    arrays = CocoEvalArrays(
        precision=np.asarray(evaluator.eval["precision"], dtype=np.float64),
        recall=np.asarray(evaluator.eval["recall"], dtype=np.float64),
        scores=np.asarray(evaluator.eval["scores"], dtype=np.float64),
        iou_thresholds=np.asarray(params.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64),
        category_ids=[int(c) for c in params.catIds],
        class_names=[names[int(c)] for c in params.catIds],
        area_labels=list(params.areaRngLbl),
        max_dets=[int(m) for m in params.maxDets],
    )
    return result, arrays


def format_metrics_table(result: dict) -> str:
    """Render the result of :func:`coco_evaluate` as two aligned text tables.

    Undefined values (``None`` or COCO's ``-1``) are shown as ``n/a``.
    """
    metrics = result["metrics"]
    name_width = max(len("Metric"), *(len(name) for name in metrics))
    lines = [f"{'Metric':<{name_width}}  {'Value':>7}"]
    lines += [f"{name:<{name_width}}  {_format_value(value):>7}" for name, value in metrics.items()]

    rows = result.get("per_class", [])
    if rows:
        class_width = max(len("Class"), *(len(str(row["class"])) for row in rows))
        header = f"{'Class':<{class_width}}" + "".join(f"  {key:>7}" for key in ("AP", "AP50", "AP75"))
        lines += ["", header]
        lines += [
            f"{str(row['class']):<{class_width}}"
            + "".join(f"  {_format_value(row[key]):>7}" for key in ("AP", "AP50", "AP75"))
            for row in rows
        ]
    return "\n".join(lines)


def coco_result(image_id: int, category_id: int, box_xyxy: list[float], score: float) -> dict[str, Any]:
    """One COCO results entry: ``bbox`` as ``[x, y, w, h]`` rounded to 0.001 px, ``score`` to 1e-5 (what
    ``eval --save-results``, ``predict``'s ``results.json`` and the server write)."""
    x1, y1, x2, y2 = box_xyxy
    return {"image_id": int(image_id), "category_id": int(category_id),
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)], "score": round(float(score), 5)}


def save_metrics(result: dict, path: str | Path) -> None:
    """Write ``result`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


def _load_gt(gt: str | Path | dict) -> dict:
    """Return a private copy of the GT dict, checking its top-level structure."""
    if isinstance(gt, dict):
        data = copy.deepcopy(gt)  # the evaluators add keys to GT annotations
        source = "the ground-truth dict"
    else:
        source = str(gt)
        try:
            with open(gt, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DatasetError(f"COCO annotation file not found: {source}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"cannot read COCO annotation file {source}: {e}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{source} is not a COCO annotation object (expected a JSON object)")
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise DatasetError(f"{source} lacks the COCO field(s) {', '.join(missing)}")
    for ann in data["annotations"]:  # optional in COCO files, required by the evaluators
        if isinstance(ann, dict) and isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
            ann.setdefault("iscrowd", 0)
            ann.setdefault("area", float(max(ann["bbox"][2], 0) * max(ann["bbox"][3], 0)))
    return data


def _check_detections(gt: dict, detections: list[dict]) -> None:
    """Raise DatasetError for malformed detections or ids unknown to the GT."""
    for i, det in enumerate(detections):
        if not isinstance(det, dict) or any(key not in det for key in _DETECTION_KEYS):
            keys = ", ".join(_DETECTION_KEYS)
            raise DatasetError(f"detection {i} must be a dict with keys {keys}; got {det!r}")
        if len(det["bbox"]) != 4:
            raise DatasetError(f"detection {i} has bbox {det['bbox']!r}; expected [x, y, w, h]")
    for kind, key, known in (
        ("image", "image_id", {int(img["id"]) for img in gt["images"]}),
        ("category", "category_id", {int(cat["id"]) for cat in gt["categories"]}),
    ):
        unknown = sorted({int(det[key]) for det in detections} - known)
        if unknown:
            shown = ", ".join(map(str, unknown[:_MAX_LISTED_IDS]))
            shown += " ..." if len(unknown) > _MAX_LISTED_IDS else ""
            raise DatasetError(
                f"{len(unknown)} detection {kind} id(s) are not in the ground truth: {shown}; "
                "evaluate detections against the annotation file they were predicted for"
            )


def _class_names(gt: dict, cat_ids: list[int], class_names: list[str] | None) -> dict[int, str]:
    """Map category id to display name."""
    if class_names is None:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in gt["categories"]}
    if len(class_names) != len(cat_ids):
        raise DatasetError(
            f"class_names has {len(class_names)} entries but the ground truth has {len(cat_ids)} categories"
        )
    return dict(zip(cat_ids, class_names))


def _load_results(coco_gt: Any, coco_cls: type, detections: list[dict]) -> Any:
    """Build the detection COCO object; ``pycocotools`` ``loadRes`` cannot take an empty list."""
    if detections:
        return coco_gt.loadRes(detections)
    empty = coco_cls()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def _per_class_ap(evaluator: Any, names: dict[int, str]) -> list[dict]:
    """Per-category AP, AP50, AP75 from ``eval["precision"]`` at area=all, maxDets=100."""
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
    area = params.areaRngLbl.index("all")
    max_det = params.maxDets.index(100)
    iou_50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))

    def mean_valid(values: np.ndarray) -> float | None:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else None

    rows = []
    for k, cat_id in enumerate(params.catIds):
        p = precision[:, :, k, area, max_det]
        rows.append({
            "class": names[int(cat_id)],
            "category_id": int(cat_id),
            "AP": mean_valid(p),
            "AP50": mean_valid(p[iou_50]),
            "AP75": mean_valid(p[iou_75]),
        })
    return rows


def _format_value(value: float | None) -> str:
    return "n/a" if value is None or value < 0 else f"{value:.4f}"
