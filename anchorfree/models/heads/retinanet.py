"""RetinaNet: Focal Loss for Dense Object Detection (Lin, Goyal, Girshick, He, Dollár; ICCV 2017).

Every location of the FPN levels P3–P7 (strides 8..128) carries ``A = 9`` anchors: 3 aspect
ratios ``h / w`` in {1:2, 1:1, 2:1} (outer) × 3 scales ``2**(0, 1/3, 2/3)`` (inner) of a base
size ``4 * stride`` (32..512 px), Sec. 4. An anchor is positive for the box it overlaps most when
that IoU is ≥ 0.5, background below 0.4 and ignored in between; the anchors that overlap a box
best become positive for it even below 0.5 ("low-quality matches", Sec. 4 footnote / Detectron).

Two subnets of 4 × (3x3 conv, 256 ch, ReLU) run on every level with shared weights (Sec. 4.1):
the classification subnet ends in ``A * C`` sigmoid logits, its bias set so that every anchor
starts at foreground probability π = 0.01; the box subnet ends in ``A * 4`` deltas
``(dx, dy, dw, dh)`` w.r.t. the anchor (R-CNN coding). Losses (Sec. 3, 4.1): sigmoid focal loss
(α .25, γ 2) summed over all non-ignored anchors and classes, and a box loss on positives (smooth
L1 in the paper; L1 in mmdetection and torchvision; GIoU on decoded boxes in torchvision's v2),
both divided by the number of positive anchors. Inference: per level the top 1000 candidates
scoring above 0.05, boxes decoded and clipped, class-wise NMS at 0.5, best 100 per image.

The conventions on which mmdetection and torchvision differ are config fields: prior offset,
explicit anchor sizes with rounding (torchvision), the low-quality rule ('gt' vs 'argmax'),
the box loss, and whether losses are normalised per batch (mmdetection) or per image and then
averaged (torchvision, ``head.loss_normalizer``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from ...boxes import decode_deltas, encode_deltas
from ...config import RetinaNetHeadConfig
from ...errors import ConfigError
from ...losses import box_iou_loss, positives_normalizer, sigmoid_focal_loss
from .dense import DenseHead, assign_images, flatten_levels, output_conv, pad_targets
from ..priors import Priors, anchor_priors, level_anchor_shapes

BACKGROUND = -1
IGNORED = -2
LOW_QUALITY_RULES = ("gt", "argmax", "none")
BOX_LOSSES = ("l1", "smooth_l1", "giou")
LOSS_NORMALIZERS = ("batch", "image_sum", "image")


def anchor_gt_ious(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of every anchor ``[N, 4]`` with every box ``[B, M, 4]`` → ``[B, N, M]`` (one ``box_iou`` call)."""
    num_images, num_boxes = gt_boxes.shape[:2]
    ious = box_iou(anchors, gt_boxes.reshape(-1, 4))  # [N, B*M]
    return ious.reshape(-1, num_images, num_boxes).permute(1, 0, 2)


def max_iou_assign(
    ious: Tensor,
    gt_valid: Tensor,
    pos_thr: float = 0.5,
    neg_thr: float = 0.4,
    low_quality: str = "gt",
    min_pos_iou: float = 0.0,
) -> Tensor:
    """Max-IoU anchor assignment, batched over images (RetinaNet Sec. 4, Faster R-CNN Sec. 3.1.2).

    Args:
        ious: ``[B, N, M]`` IoU of each anchor with each (padded) box, see :func:`anchor_gt_ious`.
        gt_valid: ``[B, M]`` marks the real boxes; padded ones never match.
        pos_thr, neg_thr: an anchor whose best IoU is ``>= pos_thr`` matches that box, ``< neg_thr``
            is background, in between it is ignored.
        low_quality: extra positives for boxes whose anchors all fall below ``pos_thr``; for each
            box, the anchors whose IoU equals the box's highest IoU (ties included) become positive:
            ``'argmax'`` — with their *own* best box (torchvision ``Matcher(allow_low_quality_matches=True)``);
            ``'gt'`` — with that box, a later box overwriting an earlier one (mmdetection
            ``MaxIoUAssigner(min_pos_iou=0, gt_max_assign_all=True)``); ``'none'`` — off.
        min_pos_iou: a box takes low-quality matches only if its best IoU is ``>= min_pos_iou``
            and ``> 0``. (Both references would, for a box overlapping no anchor at all, make every
            anchor it does not overlap positive; such degenerate boxes get none here.)

    Returns:
        ``[B, N]`` long: index of the matched box, ``-1`` background, ``-2`` ignored.
    """
    if low_quality not in LOW_QUALITY_RULES:
        raise ConfigError(f"head.low_quality_matches must be one of {', '.join(LOW_QUALITY_RULES)}, "
                          f"got '{low_quality}'")
    num_images, num_anchors, num_boxes = ious.shape
    if num_boxes == 0:
        return torch.full((num_images, num_anchors), BACKGROUND, dtype=torch.long, device=ious.device)
    valid = gt_valid[:, None, :]
    ious = ious.masked_fill(~valid, -1.0)  # below any real IoU: padded boxes never win
    max_iou, argmax = ious.max(dim=-1)  # [B, N]; an image without boxes has max_iou = -1 → background
    matched = torch.where(max_iou >= pos_thr, argmax,
                          torch.where(max_iou < neg_thr, torch.full_like(argmax, BACKGROUND),
                                      torch.full_like(argmax, IGNORED)))
    if low_quality == "none":
        return matched

    gt_max = ious.max(dim=1, keepdim=True).values  # [B, 1, M] each box's best IoU
    is_best = (ious == gt_max) & valid & (gt_max >= min_pos_iou) & (gt_max > 0)  # [B, N, M]
    if low_quality == "argmax":
        return torch.where(is_best.any(dim=-1), argmax, matched)
    # 'gt': mmdetection loops over the boxes in order, so the last box an anchor is best for wins
    box_index = torch.arange(num_boxes, device=ious.device).expand_as(is_best)
    last = torch.where(is_best, box_index, torch.full_like(box_index, -1)).max(dim=-1).values
    return torch.where(last >= 0, last, matched)


class RetinaNetHead(DenseHead):
    """Classification tower → ``A * C`` logits; regression tower → ``A * 4`` box deltas.

    Output channels are laid out anchor-major (``a * K + k``), so flattening a level gives rows
    ordered (y, x, anchor) — the order of :meth:`priors` and of torchvision/mmdetection.
    """

    def __init__(self, cfg: RetinaNetHeadConfig, in_channels: int, num_classes: int) -> None:
        super().__init__(cfg, in_channels, num_classes)
        if cfg.box_loss not in BOX_LOSSES:
            raise ConfigError(f"head.box_loss must be one of {', '.join(BOX_LOSSES)}, got '{cfg.box_loss}'")
        if cfg.low_quality_matches not in LOW_QUALITY_RULES:
            raise ConfigError(f"head.low_quality_matches must be one of {', '.join(LOW_QUALITY_RULES)}, "
                              f"got '{cfg.low_quality_matches}'")
        if self.loss_normalizer not in LOSS_NORMALIZERS:
            raise ConfigError(f"head.loss_normalizer must be one of {', '.join(LOSS_NORMALIZERS)}, "
                              f"got '{self.loss_normalizer}'")
        self.anchor_shapes = level_anchor_shapes(cfg)
        self.num_anchors = len(self.anchor_shapes[0])
        c, a = cfg.feat_channels, self.num_anchors
        self.cls_logits = output_conv(c, a * num_classes, bias_prior=cfg.prior_prob)
        self.bbox_pred = output_conv(c, a * 4)
        self.register_buffer("delta_means", torch.tensor(cfg.delta_means, dtype=torch.float32), persistent=False)
        self.register_buffer("delta_stds", torch.tensor(cfg.delta_stds, dtype=torch.float32), persistent=False)

    @property
    def loss_normalizer(self) -> str:
        # 'batch': sums over the batch / positives in the batch (mmdetection, the paper);
        # 'image': each image's sum / its positives, then the mean over images (torchvision)
        return self.cfg.loss_normalizer

    def forward_level(self, x: Tensor, level: int) -> dict[str, Tensor]:
        return {"cls": self.cls_logits(self.cls_tower(x)), "reg": self.bbox_pred(self.reg_tower(x))}

    def priors(self, outputs: dict[str, list[Tensor]]) -> Priors:
        """One prior per anchor: every location repeated ``A`` times, with ``anchors [N, 4]`` set."""
        return anchor_priors(super().priors(outputs), self.anchor_shapes)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        return decode_deltas(anchors, deltas, self.delta_means, self.delta_stds, self.cfg.delta_clip,
                             self.cfg.delta_clip_below)

    def scores_and_boxes(self, outputs: dict[str, list[Tensor]], priors: Priors) -> tuple[Tensor, Tensor]:
        scores = flatten_levels(outputs["cls"], self.num_classes).sigmoid()
        return scores, self.decode(flatten_levels(outputs["reg"], 4), priors.anchors[None])

    def normalize(self, per_anchor: Tensor, pos: Tensor) -> Tensor:
        """Reduce a ``[B, N]`` loss map by the positives, see :attr:`loss_normalizer`."""
        if self.loss_normalizer == "image":
            return (per_anchor.sum(dim=1) / pos.sum(dim=1).clamp(min=1)).mean()
        return per_anchor.sum() / positives_normalizer(pos, self.loss_normalizer)

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        outputs, priors = self.float_outputs_and_priors(outputs)
        cls = flatten_levels(outputs["cls"], self.num_classes)  # [B, N, C]
        reg = flatten_levels(outputs["reg"], 4)  # [B, N, 4]
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls.device)

        trained = self.inside_padding_limit(priors, image_sizes)

        def assign(boxes: Tensor, valid: Tensor, inside: Tensor | None) -> Tensor:
            ious = anchor_gt_ious(priors.anchors, boxes)
            if inside is not None:  # anchors over the padding match nothing and count for no box's best IoU
                ious = ious.masked_fill(~inside[:, :, None], -1.0)
            return max_iou_assign(ious, valid, cfg.pos_iou_thr, cfg.neg_iou_thr, cfg.low_quality_matches)

        matched = assign_images(assign, gt_boxes, gt_valid, trained, len(priors.anchors))
        if trained is not None:
            matched = matched.masked_fill(~trained, IGNORED)
        pos = matched >= 0
        safe = matched.clamp(min=0)
        labels = torch.gather(gt_labels, 1, safe)
        cls_target = torch.zeros_like(cls)
        cls_target[pos, labels[pos]] = 1.0
        focal = sigmoid_focal_loss(cls, cls_target, cfg.focal_alpha, cfg.focal_gamma, reduction="none")
        loss_cls = self.normalize(focal.sum(dim=-1) * (matched != IGNORED), pos)

        box_target = torch.gather(gt_boxes, 1, safe[..., None].expand(-1, -1, 4))[pos]
        anchors = priors.anchors[None].expand(len(targets), -1, -1)[pos]
        if cfg.box_loss == "giou":
            box_loss = box_iou_loss(self.decode(reg[pos], anchors), box_target, "giou")
        else:
            deltas = encode_deltas(anchors, box_target, self.delta_means, self.delta_stds)
            if cfg.box_loss == "l1":
                box_loss = F.l1_loss(reg[pos], deltas, reduction="none").sum(dim=-1)
            else:
                box_loss = F.smooth_l1_loss(reg[pos], deltas, reduction="none", beta=cfg.smooth_l1_beta).sum(dim=-1)
        per_anchor = torch.zeros_like(matched, dtype=reg.dtype).masked_scatter(pos, box_loss)
        loss_bbox = self.normalize(per_anchor, pos)
        return {"loss_cls": cfg.cls_weight * loss_cls, "loss_bbox": cfg.bbox_weight * loss_bbox}
