"""GFL: Generalized Focal Loss (Li et al., NeurIPS 2020) and GFLv2 (Li et al., CVPR 2021).

GFL keeps ATSS's anchors and assignment (:mod:`anchorfree.models.heads.atss`) and changes what the head
predicts:

* **Joint class–quality score.** The classification branch is trained towards the IoU of the
  predicted box with its box (0 elsewhere) by the Quality Focal Loss (Eq. 5, β = 2), so there is no
  separate center-ness branch and the inference score is simply ``σ(cls)``.
* **General distribution of box sides.** Each side ``(l, t, r, b)`` is a discrete distribution
  over bins ``0..reg_max`` (in units of the level's stride); the distance is its expectation
  ``Σ_i P(i)·i`` (Eq. 7, the "integral"), times the stride, measured from the anchor center. The
  Distribution Focal Loss (Eq. 6) pushes the mass onto the two bins around the target.

GFLv2 adds the Distribution-Guided Quality Predictor (DGQP, Sec. 3.2): the top-k (k = 4)
probabilities of each side's distribution and their mean (4 × 5 = 20 numbers) → 1×1 conv to 64 →
ReLU → 1×1 conv to 1 → sigmoid = quality I; the score is ``σ(cls) · I`` in training (QFL on
probabilities) and at inference. It is :class:`GFLv2Head`, :class:`GFLHead` with one flag.

Reference settings (mmdetection ``gfl_r50_fpn_1x_coco``, 40.2 AP; GFocalV2 repository
``gfocal_r50_fpn_1x``, 41.1 AP): ATSS anchors (one ``8 * stride`` square, offset 0) and assignment
(top 9); reg_max 16 with a learnable scale per level on the regression logits; QFL weight 1 / #pos,
GIoU weight 2 and DFL weight 0.25 on positives, both weighted by ``w = max_c score`` (detached) at
the positive and divided by ``max(Σw, 1)`` (GIoU) and ``4 · max(Σw, 1)`` (DFL, four sides), as
mmdetection's ``GFLHead``; DFL targets ``clamp(distance / stride, 0, reg_max - 0.1)`` (mmdetection's
``bbox2distance`` eps 0.1). Inference: threshold 0.05, 1000 per level, NMS 0.6, 100 detections.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ...boxes import aligned_iou, bbox2distance, distance2bbox
from ...config import GFLHeadConfig, GFLv2HeadConfig
from ...errors import ConfigError
from ...losses import box_iou_loss, distribution_focal_loss, positives_normalizer, quality_focal_loss, reduce_mean
from .atss import atss_assign
from .dense import (DenseHead, Scale, assign_images, flatten_levels, matched_targets, one_hot_targets, output_conv,
                    pad_targets)
from ..priors import Priors, anchor_priors, level_anchor_shapes


def integral_distance(reg: Tensor, reg_max: int) -> Tensor:
    """``[..., 4 * (reg_max + 1)]`` logits → ``[..., 4]`` expected bins ``Σ_i softmax(logits)_i · i``
    (GFL Eq. 7; multiply by the stride for pixels)."""
    prob = F.softmax(reg.reshape(*reg.shape[:-1], 4, reg_max + 1).float(), dim=-1)
    bins = torch.arange(reg_max + 1, device=reg.device, dtype=prob.dtype)
    return (prob * bins).sum(dim=-1)


def distance_targets(points: Tensor, boxes: Tensor, strides: Tensor, reg_max: int, eps: float = 0.1) -> Tensor:
    """DFL targets ``[P, 4]``: ``(l, t, r, b)`` from ``points [P, 2]`` to ``boxes [P, 4]`` in units of
    ``strides [P]``, clamped to ``[0, reg_max - eps]`` (mmdetection's ``bbox2distance``, eps 0.1) so
    that the right bin ``floor(t) + 1`` exists."""
    return (bbox2distance(points, boxes) / strides[:, None]).clamp(min=0, max=reg_max - eps)


def dgqp_features(reg: Tensor, reg_max: int, topk: int) -> Tensor:
    """GFLv2 DGQP statistics: regression logits ``[B, 4 * (reg_max + 1), H, W]`` → per side the ``topk``
    largest probabilities and their mean → ``[B, 4 * (topk + 1), H, W]`` (side-major, as GFocalV2)."""
    b, _, h, w = reg.shape
    prob = F.softmax(reg.reshape(b, 4, reg_max + 1, h, w), dim=2)
    top = prob.topk(topk, dim=2).values
    return torch.cat([top, top.mean(dim=2, keepdim=True)], dim=2).reshape(b, 4 * (topk + 1), h, w)


class GFLHead(DenseHead):
    """Classification tower → C logits (joint class–IoU score); regression tower → 4·(reg_max + 1)
    logits, a distribution over ``0..reg_max`` strides per side."""

    use_dgqp = False  # GFLv2: multiply the class score by the DGQP quality

    def __init__(self, cfg: GFLHeadConfig | GFLv2HeadConfig, in_channels: int, num_classes: int) -> None:
        super().__init__(cfg, in_channels, num_classes)
        self.anchor_shapes = level_anchor_shapes(cfg)
        if len(self.anchor_shapes[0]) != 1:
            raise ConfigError("GFL regresses distances from the anchor center and needs one anchor per location: "
                              "set head.anchor_ratios=[1.0] and head.scales_per_octave=1")
        c, bins = cfg.feat_channels, cfg.reg_max + 1
        self.cls_logits = output_conv(c, num_classes, bias_prior=cfg.prior_prob)
        self.bbox_pred = output_conv(c, 4 * bins)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides) if cfg.scale_per_level else None
        if self.use_dgqp:
            if not 1 <= cfg.dgqp_topk <= bins:
                raise ConfigError(f"head.dgqp_topk must be in 1..reg_max+1 = {bins}, got {cfg.dgqp_topk}")
            self.dgqp = nn.Sequential(nn.Conv2d(4 * (cfg.dgqp_topk + 1), cfg.dgqp_channels, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(cfg.dgqp_channels, 1, 1), nn.Sigmoid())
            for conv in (self.dgqp[0], self.dgqp[2]):
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)

    def forward_level(self, x: Tensor, level: int) -> dict[str, Tensor]:
        cls_feat, reg_feat = self.cls_tower(x), self.reg_tower(x)
        reg = self.bbox_pred(reg_feat)
        if self.scales is not None:
            reg = self.scales[level](reg)
        out = {"cls": self.cls_logits(cls_feat), "reg": reg}
        if self.use_dgqp:
            out["quality"] = self.dgqp(dgqp_features(reg, self.cfg.reg_max, self.cfg.dgqp_topk))
        return out

    def priors(self, outputs: dict[str, list[Tensor]]) -> Priors:
        return anchor_priors(super().priors(outputs), self.anchor_shapes)

    def decode_boxes(self, reg: Tensor, priors: Priors) -> Tensor:
        """Flattened logits ``[B, N, 4 * (reg_max + 1)]`` → boxes: integral × stride from the anchor centers."""
        distances = integral_distance(reg, self.cfg.reg_max) * priors.strides[None, :, None]
        return distance2bbox(priors.points[None], distances)

    def class_scores(self, outputs: dict[str, list[Tensor]]) -> Tensor:
        """``[B, N, C]`` scores in (0, 1): ``σ(cls)``, times the DGQP quality for GFLv2."""
        scores = flatten_levels(outputs["cls"], self.num_classes).sigmoid()
        if self.use_dgqp:
            scores = scores * flatten_levels(outputs["quality"], 1)
        return scores

    def scores_and_boxes(self, outputs: dict[str, list[Tensor]], priors: Priors) -> tuple[Tensor, Tensor]:
        reg = flatten_levels(outputs["reg"], 4 * (self.cfg.reg_max + 1))
        return self.class_scores(outputs), self.decode_boxes(reg, priors)

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        outputs, priors = self.float_outputs_and_priors(outputs)
        cls = flatten_levels(outputs["cls"], self.num_classes)  # [B, N, C] logits
        reg = flatten_levels(outputs["reg"], 4 * (cfg.reg_max + 1))
        scores = self.class_scores(outputs)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls.device)

        trained = self.inside_padding_limit(priors, image_sizes)
        matched = assign_images(lambda b, v, pv: atss_assign(priors, b, v, cfg.atss_topk, prior_valid=pv),
                                gt_boxes, gt_valid, trained, len(priors.points))
        pos, labels, box_targets = matched_targets(matched, gt_boxes, gt_labels)
        num_pos = positives_normalizer(pos, cfg.loss_normalizer)
        box_target = box_targets[pos]
        pred_boxes = self.decode_boxes(reg, priors)[pos]

        # QFL: the score at the positive's class is trained towards IoU(predicted box, its box)
        iou = aligned_iou(pred_boxes.detach(), box_target)
        score_target = one_hot_targets(pos, labels, self.num_classes, iou)
        if self.use_dgqp:  # GFLv2: the joint score σ(cls)·I is a probability
            qfl = quality_focal_loss(scores, score_target, cfg.qfl_beta, use_sigmoid=False)
        else:
            qfl = quality_focal_loss(cls, score_target, cfg.qfl_beta, use_sigmoid=True)
        if trained is not None:
            qfl = qfl * trained[..., None]
        loss_cls = qfl.sum() / num_pos

        # GIoU and DFL on positives, weighted by the (detached) best class score there
        weight = scores.detach().max(dim=-1).values[pos]
        avg = reduce_mean(weight.sum()).clamp(min=1.0)
        loss_bbox = (box_iou_loss(pred_boxes, box_target, cfg.iou_loss) * weight).sum() / avg
        strides = priors.strides[None].expand(len(targets), -1)[pos]
        pos_centers = priors.points[None].expand(len(targets), -1, -1)[pos]
        side_targets = distance_targets(pos_centers, box_target, strides, cfg.reg_max)
        dfl = distribution_focal_loss(reg[pos].reshape(-1, cfg.reg_max + 1), side_targets.reshape(-1))
        loss_dfl = (dfl * weight.repeat_interleave(4)).sum() / (4 * avg)
        return {
            "loss_cls": cfg.cls_weight * loss_cls,
            "loss_bbox": cfg.bbox_weight * loss_bbox,
            "loss_dfl": cfg.dfl_weight * loss_dfl,
        }


class GFLv2Head(GFLHead):
    """GFLv2: :class:`GFLHead` whose class score is multiplied by the DGQP quality (Li et al. 2021)."""

    use_dgqp = True
