"""Shared inference flow of the dense heads: per-level top-k → score threshold → clip → batched NMS.

Everything is batched over images and levels at once: one ``topk`` per level on ``[B, N*C]``
scores, one NMS call for the whole batch (boxes of different images/classes are shifted apart),
and a vectorised per-image cap of ``max_detections``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

from ..boxes import clip_boxes
from ..structures import Detections


def batched_nms_all(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group, one kernel call: groups are moved apart by an offset.

    The offset trick runs in float64 so that shifting never rounds box coordinates (in float32
    an offset of ~1e6 would), giving the same decisions as NMS run per group. Returns kept
    indices sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes64 = boxes.double()
    offsets = groups.to(boxes64) * (boxes64.max() - boxes64.min() + 1)
    return nms(boxes64 + offsets[:, None], scores.double(), iou_threshold)


def select_detections(
    level_scores: list[Tensor],
    level_boxes: list[Tensor],
    image_sizes: Tensor,
    score_thresh: float,
    topk: int,
    nms_thresh: float,
    max_detections: int,
) -> list[Detections]:
    """Turn per-level ``scores [B, N_l, C]`` and ``boxes [B, N_l, 4]`` into detections per image."""
    num_images, num_classes = level_scores[0].shape[0], level_scores[0].shape[-1]
    cand_scores, cand_boxes, cand_labels = [], [], []
    for scores, boxes in zip(level_scores, level_boxes):
        flat = scores.reshape(num_images, -1)
        top, idx = flat.topk(min(topk, flat.shape[1]), dim=1)
        prior = torch.div(idx, num_classes, rounding_mode="floor")
        cand_scores.append(top)
        cand_labels.append(idx % num_classes)
        cand_boxes.append(boxes.gather(1, prior[..., None].expand(-1, -1, 4)))
    scores = torch.cat(cand_scores, dim=1)
    labels = torch.cat(cand_labels, dim=1)
    boxes = clip_boxes(torch.cat(cand_boxes, dim=1), image_sizes)
    image_index = torch.arange(num_images, device=scores.device)[:, None].expand_as(scores)

    valid = scores > score_thresh
    scores, labels, boxes, image_index = scores[valid], labels[valid], boxes[valid], image_index[valid]
    keep = batched_nms_all(boxes, scores, image_index * num_classes + labels, nms_thresh)

    # keep is sorted by score; a stable sort by image keeps that order within each image
    keep = keep[torch.sort(image_index[keep], stable=True).indices]
    kept_images = image_index[keep]
    counts = torch.bincount(kept_images, minlength=num_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(keep.numel(), device=keep.device) - starts[kept_images]
    keep = keep[rank < max_detections]
    counts = counts.clamp(max=max_detections).tolist()
    return [
        Detections(b, s, l)
        for b, s, l in zip(boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts))
    ]
