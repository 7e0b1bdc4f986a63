"""Sliced inference for small objects in large images (SAHI: Akyon et al., ICIP 2022): the image is cut into
overlapping tiles, each tile is detected at the model's input size, the detections are shifted back to
full-image pixels and merged across tiles; optionally a pass on the whole (downscaled) image is added for the
large objects.

* tiles: :func:`slice_windows`, SAHI's ``get_slice_bboxes`` rule (a step of ``size - int(overlap * size)``; the
  last tile of a row or column is shifted back inside the image);
* merging, as SAHI's postprocessors: ``nms`` (a box is dropped when its overlap with a kept, higher-scoring box
  is at least the threshold) or ``greedy_nmm`` (greedy non-maximum merging: each kept box absorbs the
  lower-scoring boxes that overlap it — the union box, the higher score, the higher-scoring box's label, the
  absorbed one's on a tie); the
  overlap is ``ios`` (intersection over the smaller box, SAHI's default: a box cut by a tile edge lies inside
  the whole one) or ``iou``; class-wise or across classes. Ties in score are broken by the box coordinates,
  as SAHI does, so the result does not depend on the tile order.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

MERGES = ("greedy_nmm", "nms")
METRICS = ("ios", "iou")


@dataclass(frozen=True)
class SliceOptions:
    """How :func:`predict_sliced` cuts and merges (one object, checked once, passed down)."""

    size: int  # tile side in pixels
    overlap: float = 0.2  # fraction of a tile shared with its neighbour, in [0, 1)
    full_image: bool = False  # also detect on the whole image (at the model's size) and merge it in
    merge: str = "nms"  # nms | greedy_nmm (SAHI's default; it fused neighbouring tree crowns, BENCHMARKS.md)
    match_metric: str = "ios"  # ios | iou
    match_threshold: float = 0.5
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"slice size must be a whole number of pixels >= 16, got {self.size!r}")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"slice overlap must be a fraction in [0, 1), got {self.overlap!r}")
        if self.merge not in MERGES:
            raise ConfigError(f"slice merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if self.match_metric not in METRICS:
            raise ConfigError(f"slice match metric must be one of {', '.join(METRICS)}, got {self.match_metric!r}")
        if not 0 < self.match_threshold <= 1:
            raise ConfigError(f"slice match threshold must be in (0, 1], got {self.match_threshold!r}")


def slice_windows(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The tiles ``(x0, y0, x1, y1)`` of a ``height x width`` image, row by row: SAHI's ``get_slice_bboxes`` with
    square slices of ``size`` (an image smaller than a tile is one tile, the whole image)."""
    shared = int(overlap * size)  # pixels two neighbouring tiles share
    windows = []
    y_min = y_max = 0
    while y_max < height:
        x_min = x_max = 0
        y_max = y_min + size
        while x_max < width:
            x_max = x_min + size
            if y_max > height or x_max > width:
                x_max, y_max = min(width, x_max), min(height, y_max)
                x_min, y_min = max(0, x_max - size), max(0, y_max - size)
            windows.append((x_min, y_min, x_max, y_max))
            x_min = x_max - shared
        y_min = y_max - shared
    return windows


def overlap_matrix(boxes: Tensor, metric: str) -> Tensor:
    """``[N, N]`` pairwise overlap of ``xyxy`` boxes (float64): IoU, or IoS (intersection over the smaller area);
    0 where the denominator is 0."""
    b = boxes.double()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    denom = area[:, None] + area[None, :] - inter if metric == "iou" else torch.minimum(area[:, None], area[None, :])
    return torch.where(denom > 0, inter / denom.clamp(min=1e-12), torch.zeros_like(inter))


def score_order(boxes: Tensor, scores: Tensor) -> Tensor:
    """Indices by decreasing score, ties broken by ``x1, y1, x2, y2`` ascending (SAHI's lexsort order)."""
    b, s = boxes.double().cpu().numpy(), scores.double().cpu().numpy()
    return torch.from_numpy(np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s)).astype(np.int64))


def _groups(labels: Tensor, class_agnostic: bool) -> list[Tensor]:
    if class_agnostic or labels.numel() == 0:
        return [torch.arange(labels.numel())]
    return [torch.nonzero(labels == c).flatten() for c in torch.unique(labels).tolist()]


def merge_nms(boxes: Tensor, scores: Tensor, labels: Tensor, threshold: float, metric: str = "ios",
              class_agnostic: bool = False) -> Tensor:
    """Indices kept by NMS (drop a box whose overlap with a kept, higher-scoring one is >= ``threshold``), sorted by
    decreasing score."""
    kept = []
    for index in _groups(labels, class_agnostic):
        overlaps = overlap_matrix(boxes[index], metric)
        suppressed = torch.zeros(len(index), dtype=torch.bool)
        for i in score_order(boxes[index], scores[index]).tolist():
            if not suppressed[i]:
                kept.append(int(index[i]))
                suppressed |= overlaps[i] >= threshold
    kept_t = torch.tensor(kept, dtype=torch.long)
    return kept_t[torch.sort(scores[kept_t], descending=True, stable=True).indices] if kept else kept_t


def merge_greedy_nmm(boxes: Tensor, scores: Tensor, labels: Tensor, threshold: float, metric: str = "ios",
                     class_agnostic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy non-maximum merging: in score order, each box not yet absorbed keeps itself and absorbs the later
    boxes whose overlap with it is >= ``threshold``; they are then merged into it one by one (in score order, each
    merge checked again against the grown box, as SAHI does): the union box, the higher score and the label of the
    higher-scoring box. Returns the merged ``boxes``, ``scores``, ``labels``, by decreasing score."""
    out_boxes, out_scores, out_labels = [], [], []
    for index in _groups(labels, class_agnostic):
        group_boxes, group_scores, group_labels = boxes[index].double(), scores[index].double(), labels[index]
        overlaps = overlap_matrix(group_boxes, metric)
        absorbed = torch.zeros(len(index), dtype=torch.bool)
        order = score_order(group_boxes, group_scores).tolist()
        for rank, i in enumerate(order):
            if absorbed[i]:
                continue
            later = torch.tensor([j for j in order[rank + 1:] if not absorbed[j]], dtype=torch.long)
            members = later[overlaps[i, later] >= threshold] if later.numel() else later
            absorbed[members] = True
            box, score, label = group_boxes[i].clone(), float(group_scores[i]), int(group_labels[i])
            for j in members.tolist():
                if overlap_matrix(torch.stack((box, group_boxes[j])), metric)[0, 1] >= threshold:
                    box = torch.cat((torch.minimum(box[:2], group_boxes[j, :2]), torch.maximum(box[2:], group_boxes[j, 2:])))
                    if float(group_scores[j]) >= score:  # a tie takes the absorbed box's label, as SAHI
                        score, label = float(group_scores[j]), int(group_labels[j])
            out_boxes.append(box)
            out_scores.append(score)
            out_labels.append(label)
    if not out_boxes:
        return boxes.new_zeros(0, 4), scores.new_zeros(0), labels.new_zeros(0)
    merged_scores = torch.tensor(out_scores, dtype=torch.float64)
    order_t = torch.sort(merged_scores, descending=True, stable=True).indices
    return (torch.stack(out_boxes)[order_t].to(boxes.dtype), merged_scores[order_t].to(scores.dtype),
            torch.tensor(out_labels, dtype=labels.dtype)[order_t])


def merge_detections(boxes: Tensor, scores: Tensor, labels: Tensor,
                     opts: SliceOptions) -> tuple[Tensor, Tensor, Tensor]:
    """The detections of all tiles, in full-image pixels, merged as ``opts`` says."""
    if opts.merge == "nms":
        keep = merge_nms(boxes, scores, labels, opts.match_threshold, opts.match_metric, opts.class_agnostic)
        return boxes[keep], scores[keep], labels[keep]
    return merge_greedy_nmm(boxes, scores, labels, opts.match_threshold, opts.match_metric, opts.class_agnostic)


def predict_sliced(detect: Callable[[Sequence[Tensor]], list[tuple[Tensor, Tensor, Tensor]]], image: Tensor,
                   opts: SliceOptions, batch_size: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """Detections ``(boxes xyxy, scores, labels)`` of ``image`` (``uint8 [3, H, W]``) in its own pixels, from its
    tiles (and the whole image with ``opts.full_image``), merged. ``detect`` takes a list of images and returns
    per image ``(boxes, scores, labels)`` in that image's pixels (a model resizes each to its own input size)."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    if opts.size >= max(height, width):
        warnings.warn(f"slice size {opts.size} px is not smaller than the image ({width}x{height} px): it is "
                      "predicted whole, as without slicing; choose a slice below the image's sides", stacklevel=2)
    windows = slice_windows(height, width, opts.size, opts.overlap)
    crops = [image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    found_boxes, found_scores, found_labels = [], [], []
    for start in range(0, len(crops), batch_size):
        for (x0, y0, _, _), (b, s, lab) in zip(windows[start:start + batch_size],
                                               detect(crops[start:start + batch_size])):
            found_boxes.append(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
                               + torch.tensor([x0, y0, x0, y0], dtype=torch.float32))
            found_scores.append(torch.as_tensor(s, dtype=torch.float32).reshape(-1))
            found_labels.append(torch.as_tensor(lab, dtype=torch.long).reshape(-1))
    if opts.full_image and len(windows) > 1:
        b, s, lab = detect([image])[0]
        found_boxes.append(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4))
        found_scores.append(torch.as_tensor(s, dtype=torch.float32).reshape(-1))
        found_labels.append(torch.as_tensor(lab, dtype=torch.long).reshape(-1))
    boxes, scores, labels = torch.cat(found_boxes), torch.cat(found_scores), torch.cat(found_labels)
    return merge_detections(boxes, scores, labels, opts)


__all__ = ["MERGES", "METRICS", "SliceOptions", "merge_detections", "merge_greedy_nmm", "merge_nms",
           "overlap_matrix", "predict_sliced", "score_order", "slice_windows"]
