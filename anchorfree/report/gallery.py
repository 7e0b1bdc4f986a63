"""Images with boxes drawn for the reports: ground truth beside detections, coloured by match status."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from anchorfree.data import load_image
from anchorfree.errors import DatasetError
from anchorfree.visualize import draw_boxes, draw_ground_truth

from .html import image_uri
from .matching import ImageBoxes, ImageErrors, MatchResult

DISPLAY_SIDE = 400
"""Longer side of the drawn images in pixels (small images are enlarged so that captions stay legible)."""

DISPLAY_WIDTH = 2
"""Box outline width on the drawn images."""

STATUS_COLORS = {"found": "#2ca02c", "correct": "#2ca02c", "wrong_class": "#ff7f0e", "missed": "#d62728",
                 "false": "#d62728", "crowd": "#7f7f7f", "ignored": "#7f7f7f"}


def fit_display(image: Tensor, boxes: np.ndarray, side: int = DISPLAY_SIDE) -> tuple[Tensor, Tensor]:
    """``image`` resized so that its longer side is ``side`` pixels, and ``boxes`` (xyxy) scaled with it."""
    h, w = image.shape[-2:]
    scale = side / max(h, w)
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    resized = TF.resize(image, size, antialias=True)
    factors = torch.tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h], dtype=torch.float32)
    return resized, torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4) * factors


def _name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def draw_gt_panel(image: Tensor, gt: ImageBoxes, status: Sequence[str], class_names: Sequence[str]) -> Tensor:
    """The ground truth of an image (already resized), each box coloured by its status (found, missed, …)."""
    captions = [_name(class_names, int(label)) + (" (crowd)" if crowd else "")
                for label, crowd in zip(gt.labels, gt.crowd)]
    image, boxes = fit_display(image, gt.boxes)
    return draw_boxes(image, boxes, captions, [STATUS_COLORS[s] for s in status], DISPLAY_WIDTH)


def draw_det_panel(image: Tensor, det: ImageBoxes, status: Sequence[str], class_names: Sequence[str]) -> Tensor:
    """The detections of an image, captioned ``class score``, coloured by status (correct, false, …)."""
    scores = det.scores if det.scores is not None else np.zeros(len(det))
    captions = [f"{_name(class_names, int(label))} {float(score):.2f}" for label, score in zip(det.labels, scores)]
    image, boxes = fit_display(image, det.boxes)
    return draw_boxes(image, boxes, captions, [STATUS_COLORS[s] for s in status], DISPLAY_WIDTH)


def gallery_items(image_dir: str | Path, gt_images: Mapping[int, Mapping[str, Any]],
                  ground_truth: Mapping[int, ImageBoxes], detections: Mapping[int, ImageBoxes], matched: MatchResult,
                  order: Sequence[ImageErrors], class_names: Sequence[str], score_thresh: float) -> list[dict]:
    """One gallery entry per image of ``order``: ``{"title", "gt", "pred", "error"}`` where ``gt`` and ``pred``
    are figures (``uri``, ``alt``, ``caption``) and ``error`` says why an image could not be shown."""
    items = []
    for errors in order:
        info = gt_images[errors.image_id]
        title = (f"{info['file_name']} (id {errors.image_id}): {errors.missed} missed, {errors.false} false, "
                 f"{errors.wrong_class} wrong class, {errors.correct} correct")
        item: dict[str, Any] = {"title": title, "error": None, "gt": None, "pred": None}
        try:
            image = load_image(Path(image_dir) / info["file_name"], errors.image_id)
        except DatasetError as e:
            item["error"] = str(e)
            items.append(item)
            continue
        match = matched.matches[errors.image_id]
        gt = ground_truth[errors.image_id]
        det = detections.get(errors.image_id) or ImageBoxes.empty(with_scores=True)
        det = det.select(det.scores >= score_thresh)
        item["gt"] = {"uri": image_uri(draw_gt_panel(image, gt, match.gt_status(), class_names)),
                      "alt": f"ground truth of {info['file_name']}",
                      "caption": f"ground truth: {errors.ground_truth} boxes"}
        item["pred"] = {"uri": image_uri(draw_det_panel(image, det, match.det_status(), class_names)),
                        "alt": f"detections on {info['file_name']}",
                        "caption": f"detections ≥ {score_thresh:g}: {errors.detections}"}
        items.append(item)
    return items


def ground_truth_thumbnail(image: Tensor, boxes: np.ndarray, labels: np.ndarray, crowd: np.ndarray,
                           class_names: Sequence[str], side: int = 300) -> Tensor:
    """An image with its ground-truth boxes in class colours (crowd regions grey), for the dataset report."""
    image, scaled = fit_display(image, boxes, side)
    drawn = draw_ground_truth(image, scaled[~torch.as_tensor(crowd, dtype=torch.bool)],
                              torch.as_tensor(labels[~crowd]), class_names, DISPLAY_WIDTH)
    if crowd.any():
        drawn = draw_boxes(drawn, scaled[torch.as_tensor(crowd, dtype=torch.bool)], ["crowd"] * int(crowd.sum()),
                           [STATUS_COLORS["crowd"]] * int(crowd.sum()), DISPLAY_WIDTH)
    return drawn
