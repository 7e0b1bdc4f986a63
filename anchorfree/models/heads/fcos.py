"""FCOS: Fully Convolutional One-Stage object detection (Tian et al., ICCV 2019 / TPAMI 2020).

Every FPN location is a prior point that regresses its distances ``(l, t, r, b)`` to the box
(Eq. 1). A point is positive for a box when it lies inside it (inside the center region of
radius ``1.5 * stride`` with center sampling), and the box's ``max(l, t, r, b)`` falls in the
level's range (Sec. 3.2); a point claimed by several boxes takes the smallest one. Center-ness
(Eq. 3) down-weights low-quality boxes at inference: ``score = cls * ctr`` (or its square root).

Losses: sigmoid focal loss (α .25, γ 2) over all points, IoU/GIoU loss on positives weighted by
their center-ness targets (or unweighted, as torchvision), and center-ness BCE; all divided by
the number of positives averaged across processes.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ...boxes import bbox2distance, centerness_target, distance2bbox
from ...config import ATSSHeadConfig, FCOSHeadConfig
from ...errors import ConfigError
from ...losses import box_iou_loss, positives_normalizer, reduce_mean, sigmoid_focal_loss
from .dense import (DenseHead, Scale, assign_images, flatten_levels, matched_targets, one_hot_targets,
                    output_conv, pad_targets)
from ..priors import Priors


def fcos_assign(
    priors: Priors,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    regress_ranges: Tensor,
    center_sampling_radius: float,
    closed_ranges: bool = True,
    prior_valid: Tensor | None = None,
) -> Tensor:
    """Match every prior point to a box, batched over images (Sec. 3.1–3.2).

    Args:
        priors: points ``[N, 2]`` with their ``strides [N]`` and ``level_index [N]``.
        gt_boxes: ``[B, M, 4]`` padded boxes; ``gt_valid [B, M]`` marks the real ones.
        regress_ranges: ``[L, 2]`` (lo, hi) of ``max(l, t, r, b)`` per level.
        center_sampling_radius: positives must be within ``radius * stride`` of the box
            center (L∞ distance); 0 disables center sampling.
        closed_ranges: ``lo <= d <= hi`` (mmdetection) or ``lo < d < hi`` (torchvision).
        prior_valid: ``[B, N]``; priors marked False match nothing.

    Returns:
        ``[B, N]`` index of the matched box, ``-1`` for background.
    """
    points = priors.points[None, :, None, :]  # [1, N, 1, 2]
    boxes = gt_boxes[:, None, :, :]  # [B, 1, M, 4]
    ltrb = bbox2distance(points, boxes)  # [B, N, M, 4]
    inside = ltrb.min(dim=-1).values > 0
    if center_sampling_radius > 0:
        centers = (boxes[..., :2] + boxes[..., 2:]) / 2
        radius = center_sampling_radius * priors.strides[None, :, None]
        inside &= (points - centers).abs().max(dim=-1).values < radius
    max_dist = ltrb.max(dim=-1).values
    ranges = regress_ranges[priors.level_index]  # [N, 2]
    lo, hi = ranges[None, :, 0, None], ranges[None, :, 1, None]
    in_range = (max_dist >= lo) & (max_dist <= hi) if closed_ranges else (max_dist > lo) & (max_dist < hi)
    match = inside & in_range & gt_valid[:, None, :]
    if prior_valid is not None:
        match &= prior_valid[:, :, None]
    areas = ((gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1]))[:, None, :]
    cost = torch.where(match, areas.expand_as(match), torch.full_like(max_dist, float("inf")))
    min_area, matched = cost.min(dim=-1)  # ambiguous points go to the smallest box
    return torch.where(torch.isinf(min_area), torch.full_like(matched, -1), matched)


class FCOSHead(DenseHead):
    """Classification tower → C logits; regression tower → 4 distances and 1 center-ness logit."""

    centerness_norm_min = 1e-6  # lower bound of the center-ness sum that normalises the box loss (mmdet)

    def __init__(self, cfg: FCOSHeadConfig | ATSSHeadConfig, in_channels: int, num_classes: int,
                 num_anchors: int = 1) -> None:
        super().__init__(cfg, in_channels, num_classes)
        c, a = cfg.feat_channels, num_anchors
        self.num_anchors = a
        self.cls_logits = output_conv(c, a * num_classes, bias_prior=cfg.prior_prob)
        self.bbox_pred = output_conv(c, a * 4)
        self.centerness = output_conv(c, a)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides) if cfg.scale_per_level else None
        if cfg.candidate_score == "class" and cfg.score_mode != "mul":
            raise ConfigError("head.candidate_score=class multiplies the center-ness into the class score after the "
                              "top-k (score cls * ctr); head.score_mode=sqrt goes with head.candidate_score=joint only")

    def forward_level(self, x: Tensor, level: int) -> dict[str, Tensor]:
        cls_feat, reg_feat = self.cls_tower(x), self.reg_tower(x)
        reg = self.bbox_pred(reg_feat)
        if self.scales is not None:
            reg = self.scales[level](reg)
        ctr = self.centerness(reg_feat if self.cfg.centerness_on_reg else cls_feat)
        return {"cls": self.cls_logits(cls_feat), "reg": reg, "ctr": ctr}

    def assign(self, priors: Priors, gt_boxes: Tensor, gt_valid: Tensor, prior_valid: Tensor | None = None) -> Tensor:
        """``[B, N]`` matched box per prior (-1: background), see :func:`fcos_assign`."""
        cfg = self.cfg
        if len(cfg.regress_ranges) != len(self.strides):
            raise ConfigError("head.regress_ranges needs one [lo, hi] pair per stride in head.strides")
        ranges = torch.tensor(cfg.regress_ranges, dtype=torch.float32, device=gt_boxes.device)
        return fcos_assign(priors, gt_boxes, gt_valid, ranges, cfg.center_sampling_radius,
                           closed_ranges=cfg.range_bounds == "closed", prior_valid=prior_valid)

    def decode_boxes(self, reg: Tensor, priors: Priors) -> Tensor:
        """Flattened raw regression ``[B, N, 4]`` → boxes: ``act(reg) * (stride if norm_on_bbox)``."""
        dist = F.relu(reg) if self.cfg.bbox_activation == "relu" else reg.exp()
        if self.cfg.norm_on_bbox:
            dist = dist * priors.strides[None, :, None]
        return distance2bbox(priors.points[None], dist)

    def scores_and_boxes(self, outputs: dict[str, list[Tensor]], priors: Priors) -> tuple[Tensor, Tensor]:
        """Scores ``cls * ctr`` (or its square root), or ``cls`` alone with ``candidate_score=class``
        (:meth:`score_factors` then gives the center-ness)."""
        scores = flatten_levels(outputs["cls"], self.num_classes).sigmoid()
        if self.cfg.candidate_score == "joint":
            scores = scores * flatten_levels(outputs["ctr"], 1).sigmoid()
            if self.cfg.score_mode == "sqrt":
                scores = scores.sqrt()
        return scores, self.decode_boxes(flatten_levels(outputs["reg"], 4), priors)

    def score_factors(self, outputs: dict[str, list[Tensor]]) -> Tensor | None:
        if self.cfg.candidate_score == "joint":
            return None
        return flatten_levels(outputs["ctr"], 1)[..., 0].sigmoid()

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        outputs, priors = self.float_outputs_and_priors(outputs)
        cls = flatten_levels(outputs["cls"], self.num_classes)  # [B, N, C]
        reg = flatten_levels(outputs["reg"], 4)
        ctr = flatten_levels(outputs["ctr"], 1)[..., 0]
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls.device)
        trained = self.inside_padding_limit(priors, image_sizes)
        matched = assign_images(partial(self.assign, priors), gt_boxes, gt_valid, trained, len(priors.points))
        pos, labels, box_targets = matched_targets(matched, gt_boxes, gt_labels)
        num_pos = positives_normalizer(pos, getattr(cfg, "loss_normalizer", "batch"))  # FCOS: the batch's
        cls_target = one_hot_targets(pos, labels, self.num_classes)
        focal = sigmoid_focal_loss(cls, cls_target, cfg.focal_alpha, cfg.focal_gamma, reduction="none")
        if trained is not None:
            focal = focal * trained[..., None]
        loss_cls = focal.sum() / num_pos

        # boxes: IoU/GIoU on decoded boxes; center-ness targets of the prior point w.r.t. its box (Eq. 3)
        box_target = box_targets[pos]
        pos_points = priors.points[None].expand(len(targets), -1, -1)[pos]
        pred_boxes = self.decode_boxes(reg, priors)[pos]
        ctr_target = centerness_target(bbox2distance(pos_points, box_target))
        box_loss = box_iou_loss(pred_boxes, box_target, cfg.iou_loss)
        if cfg.bbox_weighting == "centerness":
            loss_bbox = (box_loss * ctr_target).sum() / reduce_mean(ctr_target.sum()).clamp(min=self.centerness_norm_min)
        elif cfg.bbox_weighting == "none":
            loss_bbox = box_loss.sum() / num_pos
        else:
            raise ConfigError(f"head.bbox_weighting must be centerness or none, got '{cfg.bbox_weighting}'")
        loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], ctr_target, reduction="sum") / num_pos
        return {
            "loss_cls": cfg.cls_weight * loss_cls,
            "loss_bbox": cfg.bbox_weight * loss_bbox,
            "loss_ctr": cfg.centerness_weight * loss_ctr,
        }
