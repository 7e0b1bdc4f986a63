"""Precision–recall curves and per-class AP by object size, read off COCOeval's ``eval["precision"]``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anchorfree.evaluation import CocoEvalArrays


@dataclass(frozen=True)
class PRCurve:
    """The precision–recall curve of one class (area ``all``, 100 detections per image).

    Attributes:
        class_name / category_id: the class.
        recall: ``[R]`` COCO's recall thresholds 0, 0.01, ..., 1.
        precision_50: ``[R]`` interpolated precision at IoU 0.5, ``eval["precision"][t50, :, k, all, 100]``.
        precision_mean: ``[R]`` the same averaged over the IoU thresholds 0.5:0.95.
        ap50 / ap: the means of those two curves (COCO's AP50 and AP of the class).
    """

    class_name: str
    category_id: int
    recall: np.ndarray
    precision_50: np.ndarray
    precision_mean: np.ndarray
    ap50: float
    ap: float


def _indices(arrays: CocoEvalArrays, area: str, max_det: int) -> tuple[int, int]:
    return arrays.area_labels.index(area), arrays.max_dets.index(max_det)


def pr_curves(arrays: CocoEvalArrays, area: str = "all", max_det: int = 100) -> list[PRCurve | None]:
    """One :class:`PRCurve` per category of ``arrays`` (in category-id order); ``None`` for a category without
    non-crowd ground truth (COCO's ``-1``)."""
    a, m = _indices(arrays, area, max_det)
    t50 = int(np.argmin(np.abs(arrays.iou_thresholds - 0.5)))
    curves: list[PRCurve | None] = []
    for k, (cat_id, name) in enumerate(zip(arrays.category_ids, arrays.class_names)):
        p = arrays.precision[:, :, k, a, m]  # [T, R]
        if (p <= -1).all():
            curves.append(None)
            continue
        p = np.where(p > -1, p, 0.0)
        p50, mean = p[t50], p.mean(axis=0)
        curves.append(PRCurve(name, int(cat_id), arrays.recall_thresholds.copy(), p50, mean, float(p50.mean()),
                              float(p.mean())))
    return curves


def mean_pr_curve(curves: list[PRCurve | None]) -> PRCurve | None:
    """The curves averaged over the classes that have ground truth (their mean AP is COCO's AP)."""
    present = [c for c in curves if c is not None]
    if not present:
        return None
    p50 = np.mean([c.precision_50 for c in present], axis=0)
    mean = np.mean([c.precision_mean for c in present], axis=0)
    return PRCurve("all classes", -1, present[0].recall, p50, mean, float(p50.mean()), float(mean.mean()))


def per_class_ap_by_area(arrays: CocoEvalArrays, max_det: int = 100) -> list[dict[str, float | None]]:
    """Per category (id order): ``{"APs", "APm", "APl"}``, AP over IoU 0.5:0.95 for small, medium and large
    objects (``None`` where the class has no ground-truth box of that size)."""
    m = arrays.max_dets.index(max_det)
    rows = []
    for k in range(len(arrays.category_ids)):
        row: dict[str, float | None] = {}
        for key, area in (("APs", "small"), ("APm", "medium"), ("APl", "large")):
            p = arrays.precision[:, :, k, arrays.area_labels.index(area), m]
            valid = p[p > -1]
            row[key] = float(valid.mean()) if valid.size else None
        rows.append(row)
    return rows
