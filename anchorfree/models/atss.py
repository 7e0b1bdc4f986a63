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

The assignment (:func:`atss_assign`) and the anchors (:func:`anchor_priors`) are shared with GFL.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ..boxes import aligned_iou, bbox2distance, centerness_target, decode_deltas
from ..config import HeadConfig
from ..errors import ConfigError
from ..losses import box_iou_loss, num_positives, reduce_mean, sigmoid_focal_loss
from .dense_head import DenseHead, Scale, flatten_levels, output_conv, pad_targets
from .priors import Priors, anchor_shapes, anchors_from_priors, repeat_priors


def level_anchor_shapes(cfg: HeadConfig) -> list[Tensor]:
    """Per level ``[A, 4]`` zero-centred anchors: base size = stride, scales
    ``octave_base_scale * 2**(i / scales_per_octave)``, ratios ``anchor_ratios`` (mmdetection's
    ``AnchorGenerator``). ATSS/GFL: ``8 * stride`` squares, ``A = 1``."""
    scales = [cfg.octave_base_scale * 2 ** (i / cfg.scales_per_octave) for i in range(cfg.scales_per_octave)]
    return [anchor_shapes(float(s), scales, list(cfg.anchor_ratios)) for s in cfg.strides]


def anchor_priors(points: Priors, shapes_per_level: list[Tensor]) -> Priors:
    """Grid points → one prior per anchor (ordered location, then anchor) with ``anchors [N, 4]``.
    Every anchor is centred on its point, so ``priors.points`` are the anchor centers."""
    priors = repeat_priors(points, len(shapes_per_level[0]))
    priors.anchors = anchors_from_priors(points, shapes_per_level)
    return priors


def atss_assign(priors: Priors, gt_boxes: Tensor, gt_valid: Tensor, topk: int = 9,
                min_inside: float = 0.01) -> Tensor:
    """Adaptive training sample selection (ATSS Alg. 1), batched over images, boxes and priors.

    Args:
        priors: ``anchors [N, 4]`` with their centers ``points [N, 2]`` and ``num_per_level``.
        gt_boxes: ``[B, M, 4]`` padded boxes; ``gt_valid [B, M]`` marks the real ones.
        topk: candidates per level and box, by L2 distance between the anchor and box centers
            (fewer on a level with fewer priors).
        min_inside: a positive's center must be inside the box by more than this many pixels,
            ``min(l, t, r, b) > 0.01`` (mmdetection).

    Returns:
        ``[B, N]`` index of the matched box, ``-1`` for background. The threshold per box is
        ``mean + std`` of its candidates' IoUs (``torch.std``: unbiased, as mmdetection); an
        anchor that is positive for several boxes goes to the box with the highest IoU.
    """
    anchors, centers = priors.anchors, priors.points
    ious = aligned_iou(anchors[None, :, None, :], gt_boxes[:, None, :, :])  # [B, N, M]
    gt_centers = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
    distances = (centers[None, :, None, :] - gt_centers[:, None, :, :]).pow(2).sum(-1).sqrt()  # [B, N, M]

    candidates, start = [], 0
    for count in priors.num_per_level:  # top-k closest per level (a loop over ~5 levels)
        level = distances[:, start:start + count]
        candidates.append(level.topk(min(topk, count), dim=1, largest=False).indices + start)
        start += count
    candidates = torch.cat(candidates, dim=1)  # [B, K, M], distinct priors in every column

    candidate_ious = ious.gather(1, candidates)
    threshold = candidate_ious.mean(dim=1, keepdim=True) + candidate_ious.std(dim=1, keepdim=True)
    inside = bbox2distance(centers[candidates], gt_boxes[:, None]).min(dim=-1).values > min_inside
    is_pos = (candidate_ious >= threshold) & inside & gt_valid[:, None, :]

    positive_ious = torch.full_like(ious, float("-inf"))
    positive_ious.scatter_(1, candidates, candidate_ious.masked_fill(~is_pos, float("-inf")))
    best, matched = positive_ious.max(dim=2)  # several boxes: the highest IoU wins
    return torch.where(torch.isinf(best), torch.full_like(matched, -1), matched)


def matched_targets(matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``matched [B, N]`` → positives mask ``[B, N]``, labels ``[B, N]`` and boxes ``[B, N, 4]``
    of the matched boxes (values at background priors are those of box 0; mask them)."""
    safe = matched.clamp(min=0)
    labels = torch.gather(gt_labels, 1, safe)
    boxes = torch.gather(gt_boxes, 1, safe[..., None].expand(-1, -1, 4))
    return matched >= 0, labels, boxes


def one_hot_targets(pos: Tensor, labels: Tensor, num_classes: int, values: Tensor | float = 1.0) -> Tensor:
    """``[B, N, C]`` zeros with ``values`` (one per positive, row-major) at each positive's class."""
    target = torch.zeros(*pos.shape, num_classes, device=pos.device)
    image, prior = pos.nonzero(as_tuple=True)
    target[image, prior, labels[image, prior]] = values
    return target


class ATSSHead(DenseHead):
    """Classification tower → A·C logits; regression tower → A·4 box deltas and A center-ness logits."""

    def __init__(self, cfg: HeadConfig, in_channels: int, num_classes: int) -> None:
        super().__init__(cfg, in_channels, num_classes)
        if cfg.score_mode not in ("mul", "sqrt"):
            raise ConfigError(f"head.score_mode must be mul or sqrt, got '{cfg.score_mode}'")
        self.anchor_shapes = level_anchor_shapes(cfg)
        self.num_anchors = a = len(self.anchor_shapes[0])
        c = cfg.feat_channels
        self.cls_logits = output_conv(c, a * num_classes, bias_prior=cfg.prior_prob)
        self.bbox_pred = output_conv(c, a * 4)
        self.centerness = output_conv(c, a)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides) if cfg.scale_per_level else None
        self.register_buffer("delta_means", torch.tensor(cfg.delta_means, dtype=torch.float32), persistent=False)
        self.register_buffer("delta_stds", torch.tensor(cfg.delta_stds, dtype=torch.float32), persistent=False)

    def forward_level(self, x: Tensor, level: int) -> dict[str, Tensor]:
        cls_feat, reg_feat = self.cls_tower(x), self.reg_tower(x)
        reg = self.bbox_pred(reg_feat)
        if self.scales is not None:
            reg = self.scales[level](reg)
        ctr = self.centerness(reg_feat if self.cfg.centerness_on_reg else cls_feat)
        return {"cls": self.cls_logits(cls_feat), "reg": reg, "ctr": ctr}

    def priors(self, outputs: dict[str, list[Tensor]]) -> Priors:
        return anchor_priors(super().priors(outputs), self.anchor_shapes)

    def decode_boxes(self, reg: Tensor, priors: Priors) -> Tensor:
        """Flattened deltas ``[B, N, 4]`` → boxes around the anchors (``dw, dh`` clipped at ``delta_clip``)."""
        return decode_deltas(priors.anchors[None], reg, self.delta_means, self.delta_stds, clip=self.cfg.delta_clip)

    def scores_and_boxes(self, outputs: dict[str, list[Tensor]], priors: Priors) -> tuple[Tensor, Tensor]:
        cls = flatten_levels(outputs["cls"], self.num_classes).sigmoid()
        scores = cls * flatten_levels(outputs["ctr"], 1).sigmoid()
        if self.cfg.score_mode == "sqrt":
            scores = scores.sqrt()
        return scores, self.decode_boxes(flatten_levels(outputs["reg"], 4), priors)

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        outputs = {k: [m.float() for m in v] for k, v in outputs.items()}
        priors = self.priors(outputs)
        cls = flatten_levels(outputs["cls"], self.num_classes)  # [B, N, C]
        reg = flatten_levels(outputs["reg"], 4)
        ctr = flatten_levels(outputs["ctr"], 1)[..., 0]
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls.device)

        matched = atss_assign(priors, gt_boxes, gt_valid, cfg.atss_topk)
        pos, labels, box_targets = matched_targets(matched, gt_boxes, gt_labels)
        num_pos = num_positives(pos)
        cls_target = one_hot_targets(pos, labels, self.num_classes)
        loss_cls = sigmoid_focal_loss(cls, cls_target, cfg.focal_alpha, cfg.focal_gamma, reduction="sum") / num_pos

        # boxes: GIoU on decoded boxes; center-ness of the anchor center w.r.t. its box (FCOS Eq. 3)
        box_target = box_targets[pos]
        pred_boxes = self.decode_boxes(reg, priors)[pos]
        pos_centers = priors.points[None].expand(len(targets), -1, -1)[pos]
        ctr_target = centerness_target(bbox2distance(pos_centers, box_target))
        box_loss = box_iou_loss(pred_boxes, box_target, cfg.iou_loss)
        if cfg.bbox_weighting == "centerness":
            loss_bbox = (box_loss * ctr_target).sum() / reduce_mean(ctr_target.sum()).clamp(min=1.0)
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
