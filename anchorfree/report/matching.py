"""Detections matched to ground truth per image: the confusion matrix and the per-image error counts.

Matching (per image, IoU threshold 0.5 by default): detections with a score at or above the score
threshold are taken greedily by decreasing score; each takes the not-yet-matched non-crowd
ground-truth box it overlaps most (IoU at or above the threshold), preferring a box of its own
class when it overlaps one. A detection that matches nothing but lies inside a crowd region (at
least the IoU threshold of its area covered) is ignored, as COCO evaluation ignores it.

Confusion matrix, for ``K`` classes: ``(K + 1) x (K + 1)`` counts whose rows are the ground-truth
class and, last, ``background`` (detections that matched nothing: false positives); columns are
the predicted class and, last, ``missed`` (ground-truth boxes no detection matched). The
``background``/``missed`` corner is always 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anchorfree.data import CocoDetection

UNMATCHED = -1
"""``ImageMatch.det_to_gt`` value of a detection that matched no ground-truth box."""
IGNORED = -2
"""``ImageMatch.det_to_gt`` value of an unmatched detection inside a crowd region."""


@dataclass
class ImageBoxes:
    """The boxes of one image.

    Attributes:
        boxes: ``float [N, 4]`` xyxy pixels.
        labels: ``int [N]`` contiguous class labels ``0..K-1``.
        scores: ``float [N]`` detection scores (``None`` for ground truth).
        crowd: ``bool [N]`` crowd regions (``None``: none are).
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    crowd: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.crowd = (np.zeros(len(self.labels), dtype=bool) if self.crowd is None
                      else np.asarray(self.crowd, dtype=bool).reshape(-1))

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, keep: np.ndarray) -> ImageBoxes:
        """The boxes where ``keep`` (a boolean mask or indices) selects."""
        return ImageBoxes(self.boxes[keep], self.labels[keep], None if self.scores is None else self.scores[keep],
                          self.crowd[keep])

    @staticmethod
    def empty(with_scores: bool = False) -> ImageBoxes:
        return ImageBoxes(np.zeros((0, 4)), np.zeros(0), np.zeros(0) if with_scores else None)


@dataclass
class ImageMatch:
    """The matching of one image's detections to its ground truth.

    Attributes:
        det_to_gt: per detection, the index of the ground-truth box it matched, :data:`UNMATCHED`
            or :data:`IGNORED`.
        gt_to_det: per ground-truth box, the index of the detection that matched it, or ``-1``
            (always ``-1`` for crowd regions).
        gt_labels / det_labels: the class labels, to tell correct matches from wrong-class ones.
        gt_crowd: which ground-truth boxes are crowd regions.
    """

    det_to_gt: np.ndarray
    gt_to_det: np.ndarray
    gt_labels: np.ndarray
    det_labels: np.ndarray
    gt_crowd: np.ndarray

    def det_status(self) -> list[str]:
        """Per detection: ``"correct"``, ``"wrong_class"``, ``"false"`` or ``"ignored"``."""
        out = []
        for d, g in enumerate(self.det_to_gt.tolist()):
            if g == IGNORED:
                out.append("ignored")
            elif g == UNMATCHED:
                out.append("false")
            else:
                out.append("correct" if self.gt_labels[g] == self.det_labels[d] else "wrong_class")
        return out

    def gt_status(self) -> list[str]:
        """Per ground-truth box: ``"found"``, ``"wrong_class"``, ``"missed"`` or ``"crowd"``."""
        out = []
        for g, d in enumerate(self.gt_to_det.tolist()):
            if self.gt_crowd[g]:
                out.append("crowd")
            elif d < 0:
                out.append("missed")
            else:
                out.append("found" if self.gt_labels[g] == self.det_labels[d] else "wrong_class")
        return out


@dataclass(frozen=True)
class ImageErrors:
    """What went wrong on one image (detections at or above the score threshold).

    ``missed``: ground-truth boxes no detection matched; ``false``: detections that matched nothing
    (crowd regions excepted); ``wrong_class``: matches whose classes differ; ``correct``: matches of
    the right class. :attr:`total` (missed + false + wrong_class) orders the gallery.
    """

    image_id: int
    ground_truth: int
    detections: int
    correct: int
    wrong_class: int
    missed: int
    false: int

    @property
    def total(self) -> int:
        return self.missed + self.false + self.wrong_class


@dataclass
class MatchResult:
    """The matching of a whole dataset: :attr:`confusion` (see the module docstring), one
    :class:`ImageErrors` per image in the ground truth's image order, and each image's :class:`ImageMatch`."""

    confusion: np.ndarray
    images: list[ImageErrors] = field(default_factory=list)
    matches: dict[int, ImageMatch] = field(default_factory=dict)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of xyxy boxes ``a [N, 4]`` and ``b [M, 4]``."""
    inter = _intersection(a, b)
    area_a = _area(a)[:, None]
    area_b = _area(b)[None, :]
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` fraction of each box of ``a`` that each box of ``b`` covers."""
    area_a = _area(a)[:, None]
    return np.where(area_a > 0, _intersection(a, b) / np.maximum(area_a, 1e-12), 0.0)


def match_image(gt: ImageBoxes, det: ImageBoxes, iou_thresh: float = 0.5) -> ImageMatch:
    """Match ``det`` (all of them: filter by score first) to ``gt`` as the module docstring describes."""
    if det.scores is None:
        raise ValueError("detections need scores to be matched greedily by score")
    det_to_gt = np.full(len(det), UNMATCHED, dtype=np.int64)
    gt_to_det = np.full(len(gt), -1, dtype=np.int64)
    regular = ~gt.crowd
    iou = box_iou(det.boxes, gt.boxes)
    iou[:, ~regular] = -1.0
    crowd_cover = box_ioa(det.boxes, gt.boxes[gt.crowd]) if gt.crowd.any() else np.zeros((len(det), 0))
    for d in np.argsort(-det.scores, kind="stable"):
        candidates = (gt_to_det < 0) & regular & (iou[d] >= iou_thresh)
        if candidates.any():
            same_class = candidates & (gt.labels == det.labels[d])
            pool = same_class if same_class.any() else candidates
            g = int(np.argmax(np.where(pool, iou[d], -np.inf)))
            det_to_gt[d], gt_to_det[g] = g, d
        elif crowd_cover.shape[1] and crowd_cover[d].max() >= iou_thresh:
            det_to_gt[d] = IGNORED
    return ImageMatch(det_to_gt, gt_to_det, gt.labels, det.labels, gt.crowd)


def match_dataset(ground_truth: Mapping[int, ImageBoxes], detections: Mapping[int, ImageBoxes], num_classes: int,
                  iou_thresh: float = 0.5, score_thresh: float = 0.3) -> MatchResult:
    """Match the detections of every image of ``ground_truth`` (image id → boxes) and count the confusion
    matrix; detections below ``score_thresh`` and of images not in ``ground_truth`` are left out."""
    confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    result = MatchResult(confusion)
    for image_id, gt in ground_truth.items():
        det = detections.get(image_id) or ImageBoxes.empty(with_scores=True)
        det = det.select(det.scores >= score_thresh)
        match = match_image(gt, det, iou_thresh)
        result.matches[image_id] = match
        counts = {"correct": 0, "wrong_class": 0, "false": 0, "ignored": 0}
        for d, status in enumerate(match.det_status()):
            counts[status] += 1
            g = match.det_to_gt[d]
            if g >= 0:
                confusion[gt.labels[g], det.labels[d]] += 1
            elif status == "false":
                confusion[num_classes, det.labels[d]] += 1
        missed = [g for g, status in enumerate(match.gt_status()) if status == "missed"]
        for g in missed:
            confusion[gt.labels[g], num_classes] += 1
        result.images.append(ImageErrors(int(image_id), int((~gt.crowd).sum()), len(det), counts["correct"],
                                         counts["wrong_class"], len(missed), counts["false"]))
    return result


def worst_first(images: Iterable[ImageErrors], limit: int | None = None) -> list[ImageErrors]:
    """``images`` ordered by most errors first (:attr:`ImageErrors.total`, then missed, then false boxes;
    ties keep the given order), at most ``limit`` of them."""
    ranked = sorted(enumerate(images), key=lambda item: (-item[1].total, -item[1].missed, -item[1].false, item[0]))
    ordered = [errors for _, errors in ranked]
    return ordered if limit is None else ordered[:limit]


def ground_truth_of(dataset: CocoDetection) -> dict[int, ImageBoxes]:
    """Image id → ground-truth boxes of every image of ``dataset`` (in its order), as its loader cleaned them
    (clipped; boxes of zero or negative size left out, as training leaves them out), crowd regions included."""
    out = {}
    for index in range(len(dataset)):
        boxes, labels, crowd = dataset.ground_truth(index)
        out[int(dataset.get_image_info(index)["id"])] = ImageBoxes(boxes, labels, crowd=crowd)
    return out


def detections_from_coco(results: Iterable[Mapping[str, Any]], cat_ids: list[int]) -> dict[int, ImageBoxes]:
    """Image id → detections of a COCO results list (``bbox`` ``[x, y, w, h]``, ``score``, ``category_id``)."""
    label_of = {int(c): i for i, c in enumerate(cat_ids)}
    per_image: dict[int, list[tuple[list[float], int, float]]] = {}
    for r in results:
        x, y, w, h = (float(v) for v in r["bbox"])
        per_image.setdefault(int(r["image_id"]), []).append(
            ([x, y, x + w, y + h], label_of[int(r["category_id"])], float(r["score"])))
    return {image_id: _to_boxes(entries, with_scores=True) for image_id, entries in per_image.items()}


def load_coco_gt(gt: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """The COCO dict of ``gt`` (a dict as it is, or the JSON file it names)."""
    if isinstance(gt, Mapping):
        return gt
    from anchorfree.data import read_coco_json

    return read_coco_json(gt)


def _to_boxes(entries: list[tuple], with_scores: bool) -> ImageBoxes:
    if not entries:
        return ImageBoxes.empty(with_scores)
    boxes, labels, extra = zip(*entries)
    if with_scores:
        return ImageBoxes(np.array(boxes), np.array(labels), scores=np.array(extra))
    return ImageBoxes(np.array(boxes), np.array(labels), crowd=np.array(extra))


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]
