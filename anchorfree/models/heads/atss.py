"""ATSS: Adaptive Training Sample Selection (Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection", CVPR 2020).

The paper shows that RetinaNet and FCOS differ mainly in *which* priors are trained as positives,
and replaces fixed IoU / scale-range rules by a per-box statistic (Alg. 1): for every box, on every
FPN level, take the ``k = 9`` anchors whose centers are closest (L2) to the box center; the IoU
threshold is ``mean + std`` of those candidates' IoUs with the box; candidates with IoU above it
whose center lies inside the box are positives; an anchor claimed by several boxes takes the one
with the highest IoU.

Reference setting (mmdetection ``atss_r50_fpn_1x_coco``, 39.4 AP): one square anchor per location,
``8 * stride`` wide (``octave_base_scale=8, scales_per_octave=1, anchor_ratios=[1]``), prior offset
0 (mmdetection v2 ``center_offset=0``); FCOS-like towers (4 convs, GN) with a classification conv
(prior 0.01), a 4-delta regression conv scaled by a learnable scalar per level (delta coder means
0, stds ``[0.1, 0.1, 0.2, 0.2]``) and center-ness on the regression tower. Losses: focal loss (α .25,
γ 2) / #pos; GIoU (weight 2) on the decoded boxes, weighted by the center-ness targets and divided
by their sum (at least 1, as mmdetection); center-ness BCE / #pos. Inference: ``score = cls * ctr``,
threshold 0.05, 1000 candidates per level, NMS 0.6, 100 detections.

The assignment (:func:`atss_assign`) is shared with GFL; the head is FCOS's on anchors.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...boxes import aligned_iou, bbox2distance, decode_deltas
from ...config import ATSSHeadConfig
from .fcos import FCOSHead
from ..priors import Priors, anchor_priors, level_anchor_shapes


def atss_assign(priors: Priors, gt_boxes: Tensor, gt_valid: Tensor, topk: int = 9,
                min_inside: float = 0.01, prior_valid: Tensor | None = None) -> Tensor:
    """Adaptive training sample selection (ATSS Alg. 1), batched over images, boxes and priors.

    Args:
        priors: ``anchors [N, 4]`` with their centers ``points [N, 2]`` and ``num_per_level``.
        gt_boxes: ``[B, M, 4]`` padded boxes; ``gt_valid [B, M]`` marks the real ones.
        topk: candidates per level and box, by L2 distance between the anchor and box centers
            (fewer on a level with fewer priors).
        min_inside: a positive's center must be inside the box by more than this many pixels,
            ``min(l, t, r, b) > 0.01`` (mmdetection).
        prior_valid: ``[B, N]``; priors marked False are neither candidates nor counted in the statistics
            (mmdetection leaves anchors outside its valid flags out before the selection).

    Returns:
        ``[B, N]`` index of the matched box, ``-1`` for background. The threshold per box is
        ``mean + std`` of its candidates' IoUs (``torch.std``: unbiased, as mmdetection); an
        anchor that is positive for several boxes goes to the box with the highest IoU.
    """
    anchors, centers = priors.anchors, priors.points
    ious = aligned_iou(anchors[None, :, None, :], gt_boxes[:, None, :, :])  # [B, N, M]
    gt_centers = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
    distances = (centers[None, :, None, :] - gt_centers[:, None, :, :]).pow(2).sum(-1).sqrt()  # [B, N, M]
    if prior_valid is not None:
        distances = distances.masked_fill(~prior_valid[:, :, None], float("inf"))

    candidates, start = [], 0
    for count in priors.num_per_level:  # top-k closest per level (a loop over ~5 levels)
        level = distances[:, start:start + count]
        candidates.append(level.topk(min(topk, count), dim=1, largest=False).indices + start)
        start += count
    candidates = torch.cat(candidates, dim=1)  # [B, K, M], distinct priors in every column

    candidate_ious = ious.gather(1, candidates)
    if prior_valid is None:
        threshold = candidate_ious.mean(dim=1, keepdim=True) + candidate_ious.std(dim=1, keepdim=True)
        is_candidate = True
    else:  # a level with fewer valid priors than topk: mean and (unbiased) std over the valid candidates only
        is_candidate = prior_valid[:, :, None].expand_as(ious).gather(1, candidates)
        count = is_candidate.sum(dim=1, keepdim=True)
        mean = (candidate_ious * is_candidate).sum(dim=1, keepdim=True) / count
        var = ((candidate_ious - mean).pow(2) * is_candidate).sum(dim=1, keepdim=True) / (count - 1)
        threshold = mean + var.sqrt()
    inside = bbox2distance(centers[candidates], gt_boxes[:, None]).min(dim=-1).values > min_inside
    is_pos = (candidate_ious >= threshold) & inside & gt_valid[:, None, :] & is_candidate

    positive_ious = torch.full_like(ious, float("-inf"))
    positive_ious.scatter_(1, candidates, candidate_ious.masked_fill(~is_pos, float("-inf")))
    best, matched = positive_ious.max(dim=2)  # several boxes: the highest IoU wins
    return torch.where(torch.isinf(best), torch.full_like(matched, -1), matched)


class ATSSHead(FCOSHead):
    """FCOS's head (towers, Scale per level, center-ness, losses) on anchors: A·4 box deltas around
    ``8 * stride`` squares, assigned by :func:`atss_assign`."""

    centerness_norm_min = 1.0  # mmdetection's ATSSHead clamps the center-ness sum at 1

    def __init__(self, cfg: ATSSHeadConfig, in_channels: int, num_classes: int) -> None:
        shapes = level_anchor_shapes(cfg)
        super().__init__(cfg, in_channels, num_classes, num_anchors=len(shapes[0]))
        self.anchor_shapes = shapes
        self.register_buffer("delta_means", torch.tensor(cfg.delta_means, dtype=torch.float32), persistent=False)
        self.register_buffer("delta_stds", torch.tensor(cfg.delta_stds, dtype=torch.float32), persistent=False)

    def priors(self, outputs: dict[str, list[Tensor]]) -> Priors:
        return anchor_priors(super().priors(outputs), self.anchor_shapes)

    def assign(self, priors: Priors, gt_boxes: Tensor, gt_valid: Tensor, prior_valid: Tensor | None = None) -> Tensor:
        return atss_assign(priors, gt_boxes, gt_valid, self.cfg.atss_topk, prior_valid=prior_valid)

    def decode_boxes(self, reg: Tensor, priors: Priors) -> Tensor:
        """Flattened deltas ``[B, N, 4]`` → boxes around the anchors (``dw, dh`` clipped at ``delta_clip``)."""
        return decode_deltas(priors.anchors[None], reg, self.delta_means, self.delta_stds, self.cfg.delta_clip,
                             self.cfg.delta_clip_below)
