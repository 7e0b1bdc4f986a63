"""The FPN presets: FCOS, RetinaNet, ATSS, GFL and GFLv2 at the references' R50 1x settings and as small CPU models."""
from __future__ import annotations

from typing import Callable

from ..config import Config, HeadConfig, convert_head


INF = 1e8


def set_head(cfg: Config, head_type: str) -> HeadConfig:
    """Switch ``cfg`` to a head of ``head_type`` (fields both heads read are kept) and return the section."""
    cfg.model.head = convert_head(cfg.model.head, head_type)
    return cfg.model.head


def fcos_r50_fpn() -> Config:
    """FCOS R50-FPN with the "tricks" of mmdetection's reference (38.7 AP, 1x): center sampling,
    GIoU, normalised box targets, center-ness on the regression branch."""
    cfg = Config()
    cfg.model.name = "fcos_r50_fpn"
    cfg.train.warmup_ratio = 1.0 / 3.0
    cfg.train.grad_clip = 35.0
    return cfg


def fcos_resnet(depth: int) -> Callable[[], Config]:
    def preset() -> Config:
        cfg = fcos_r50_fpn()
        cfg.model.name = f"fcos_r{depth}_fpn"
        cfg.model.backbone.name = f"resnet{depth}"
        return cfg

    preset.__doc__ = f"FCOS with a ResNet-{depth} FPN, otherwise as fcos_r50_fpn."
    return preset


def fcos_r50_fpn_torchvision() -> Config:
    """FCOS in torchvision's conventions (``fcos_resnet50_fpn``, 39.2 AP): points at offset 0 spaced by
    padded input size // map size, no per-level scale, open scale ranges, unweighted GIoU,
    ``sqrt(cls*ctr)`` > 0.2, 91 classes."""
    cfg = fcos_r50_fpn()
    cfg.model.name = "fcos_r50_fpn_torchvision"
    cfg.model.num_classes = 91
    h = cfg.model.head
    h.prior_offset = 0.0
    h.prior_stride = "padded_input"
    h.scale_per_level = False
    h.bbox_activation = "relu"
    h.norm_on_bbox = True
    h.centerness_on_reg = True
    h.regress_ranges = [[0, 64], [64, 128], [128, 256], [256, 512], [512, float("inf")]]
    h.range_bounds = "open"
    h.bbox_weighting = "none"
    h.score_mode = "sqrt"
    h.score_thresh = 0.2
    cfg.model.input.size_divisor = 32
    cfg.model.backbone.frozen_stages = 1
    return cfg


def fcos_r18_fpn_tiny() -> Config:
    """A small FCOS for CPUs: ResNet-18, 64-channel FPN and 2-conv head, 320 px input,
    BatchNorm trained from scratch, AdamW + cosine. Trains on the synthetic data in minutes."""
    cfg = Config()
    m, t = cfg.model, cfg.train
    m.name = "fcos_r18_fpn_tiny"
    m.backbone.name = "resnet18"
    m.backbone.norm = "bn"
    m.backbone.frozen_stages = 0
    m.neck.out_channels = 64
    m.head.feat_channels = 64
    m.head.num_convs = 2
    m.head.gn_groups = 16
    m.input.min_size = 320
    m.input.max_size = 320
    t.epochs = 8
    t.batch_size = 8
    t.optimizer = "adamw"
    t.lr = 2e-3
    t.weight_decay = 0.05
    t.schedule = "cosine"
    t.warmup_iters = 100
    t.grad_clip = 10.0
    t.augment.color_jitter = 0.2
    t.eval_interval = 0
    return cfg


def retinanet_r50_fpn() -> Config:
    """RetinaNet R50-FPN as mmdetection's reference (``retinanet_r50_fpn_1x_coco``, 36.5 AP, 1x).

    Model: P3–P7 with P6 from C5 (``add_extra_convs='on_input'``) and no ReLU before P7 (mmdet's
    FPN default ``relu_before_extra_convs=False``; the paper applies one); head of 4 convs with
    bias and no norm; 9 anchors ``4 * stride * 2**(0, 1/3, 2/3)`` × ratios .5/1/2 at offset 0
    (mmdet v2 ``center_offset=0``); MaxIoUAssigner pos .5 / neg .4 with ``min_pos_iou=0`` and
    ``gt_max_assign_all`` (``low_quality_matches='gt'``); deltas with means 0 / stds 1, L1 box
    loss, focal loss α .25 γ 2, both over the positives of the batch; test: top 1000 per level
    above 0.05, NMS 0.5, 100 per image. Input 1333x800 padded to 32.

    Training: SGD lr 0.01 (batch 16), momentum .9, wd 1e-4, 500 linear warm-up iterations from
    0.001, steps at epochs 8 and 11 of 12. To the best of our knowledge the mmdet v2 config
    (``schedule_1x``) has no gradient clipping (``grad_clip=None``; the mmdet v1 config clipped at
    35), so ``grad_clip`` is 0 here; not re-checked against the source (no network).
    Differences left: mmdet keeps BN affine parameters trainable (``norm_eval``) where
    ``frozen_bn`` fixes them, and counts at least one positive per image in the normaliser.
    """
    cfg = Config()
    m, h = cfg.model, set_head(cfg, "retinanet")
    m.name = "retinanet_r50_fpn"
    m.neck.extra_from = "c5"
    m.neck.relu_before_extra = False
    h.norm = "none"
    h.prior_offset = 0.0
    h.octave_base_scale = 4.0
    h.scales_per_octave = 3
    h.anchor_ratios = [0.5, 1.0, 2.0]
    h.anchor_sizes = []
    h.round_anchors = False
    h.pos_iou_thr, h.neg_iou_thr = 0.5, 0.4
    h.low_quality_matches = "gt"
    h.delta_means, h.delta_stds = [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]
    h.box_loss = "l1"
    h.focal_alpha, h.focal_gamma = 0.25, 2.0
    h.score_thresh, h.topk, h.nms_thresh, h.max_detections = 0.05, 1000, 0.5, 100
    m.input.size_divisor = 32
    cfg.train.grad_clip = 0.0
    return cfg


def retinanet_r50_fpn_torchvision() -> Config:
    """RetinaNet in torchvision's conventions (``retinanet_resnet50_fpn``, 36.4 AP): P6/P7 from P5
    (``LastLevelP6P7(256, 256)``) with ReLU before P7, anchors of sizes ``(x, int(x*2**(1/3)),
    int(x*2**(2/3)))`` for x in 32..512 with rounded half-sizes at offset 0 spaced by padded input
    size // map size, Matcher with
    low-quality matches ('argmax'), L1 loss, losses normalised per image then averaged, NMS 0.5,
    score 0.05, 300 detections per image, 91 classes.

    Training settings are those of ``retinanet_r50_fpn`` (torchvision's recipe: 26 epochs, steps
    16/22, is not reproduced).
    """
    cfg = retinanet_r50_fpn()
    m, h = cfg.model, cfg.model.head
    m.name = "retinanet_r50_fpn_torchvision"
    m.num_classes = 91
    m.neck.extra_from = "p5"
    m.neck.relu_before_extra = True
    h.anchor_sizes = [[x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))] for x in (32, 64, 128, 256, 512)]
    h.round_anchors = True
    h.prior_stride = "padded_input"
    h.low_quality_matches = "argmax"
    h.loss_normalizer = "image"
    h.max_detections = 300
    m.input.size_divisor = 32
    m.backbone.frozen_stages = 1
    return cfg


def retinanet_r50_fpn_v2_torchvision() -> Config:
    """RetinaNet v2 in torchvision's conventions (``retinanet_resnet50_fpn_v2``, 41.5 AP): as
    ``retinanet_r50_fpn_torchvision`` but P6/P7 from C5 (``LastLevelP6P7(2048, 256)``), GroupNorm
    (32) in the head towers and a GIoU loss on decoded boxes.

    torchvision builds the backbone with ``BatchNorm2d``; in eval mode it equals ``frozen_bn``
    (eps 1e-5), which is kept here for fine-tuning with small batches.
    """
    cfg = retinanet_r50_fpn_torchvision()
    m, h = cfg.model, cfg.model.head
    m.name = "retinanet_r50_fpn_v2_torchvision"
    m.neck.extra_from = "c5"
    h.norm = "gn"
    h.gn_groups = 32
    h.box_loss = "giou"
    return cfg


def retinanet_r18_fpn_tiny() -> Config:
    """A small RetinaNet for CPUs: ResNet-18, 64-channel FPN and 2-conv GN head, GIoU loss,
    320 px input, BatchNorm trained from scratch, AdamW + cosine (as ``fcos_r18_fpn_tiny``)."""
    cfg = fcos_r18_fpn_tiny()
    tiny = retinanet_r50_fpn().model
    m = cfg.model
    m.name = "retinanet_r18_fpn_tiny"
    m.head, m.neck.extra_from, m.neck.relu_before_extra = tiny.head, tiny.neck.extra_from, tiny.neck.relu_before_extra
    h = m.head
    h.feat_channels = 64
    h.num_convs = 2
    h.norm = "gn"
    h.gn_groups = 16
    h.box_loss = "giou"
    return cfg


def atss_family(cfg: Config, name: str, head_type: str) -> Config:
    """Model settings shared by the ATSS, GFL and GFLv2 presets (R50 and tiny), as mmdetection's
    ``atss_r50_fpn_1x_coco`` / ``gfl_r50_fpn_1x_coco`` (and the GFocalV2 repository for GFLv2):
    P6/P7 by stride-2 convs on the P5 output (``add_extra_convs='on_output'``) without a ReLU between
    them (FPN default ``relu_before_extra_convs=False``); one ``8 * stride`` square anchor per
    location at offset 0 (``center_offset=0``); ATSS assignment with the top 9 per level; focal
    (ATSS) / quality focal (GFL) classification, GIoU weight 2; test: 1000 per level above 0.05,
    NMS 0.6, 100 per image. Towers (number of convs, channels, GN groups) are left to the caller."""
    m, h = cfg.model, set_head(cfg, head_type)
    m.name = name
    m.neck.extra_from = "p5"
    m.neck.relu_before_extra = False
    h.prior_offset = 0.0
    h.octave_base_scale, h.scales_per_octave, h.anchor_ratios, h.anchor_sizes = 8.0, 1, [1.0], []
    h.atss_topk = 9
    h.scale_per_level = True
    h.iou_loss, h.bbox_weight = "giou", 2.0
    h.score_thresh, h.topk, h.nms, h.nms_thresh, h.max_detections = 0.05, 1000, "classwise", 0.6, 100
    if head_type == "atss":  # focal loss, DeltaXYWHBBoxCoder, center-ness on the regression tower, score cls * ctr
        h.focal_alpha, h.focal_gamma = 0.25, 2.0
        h.delta_means, h.delta_stds = [0.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.2, 0.2]
        h.centerness_on_reg, h.bbox_weighting, h.centerness_weight, h.score_mode = True, "centerness", 1.0, "mul"
    else:  # GFL: reg_max 16, QFL beta 2, DFL weight 0.25
        h.reg_max, h.qfl_beta, h.dfl_weight = 16, 2.0, 0.25
    if head_type == "gflv2":  # DGQP top 4 (+ mean), 64 channels
        h.dgqp_topk, h.dgqp_channels = 4, 64
    return cfg


def _atss_family_r50(name: str, head_type: str) -> Config:
    """R50-FPN (frozen BN, stem + layer1 frozen), 4-conv GN(32) 256-channel head, input 1333x800
    padded to 32; 1x: SGD lr 0.01 (batch 16), momentum .9, wd 1e-4, 500 linear warm-up iterations
    from 0.001, steps at epochs 8 and 11 of 12, no gradient clipping (mmdetection ``schedule_1x``)."""
    cfg = atss_family(Config(), name, head_type)
    m, h, t = cfg.model, cfg.model.head, cfg.train
    m.backbone.name, m.backbone.norm, m.backbone.frozen_stages = "resnet50", "frozen_bn", 1
    h.num_convs, h.feat_channels, h.norm, h.gn_groups = 4, 256, "gn", 32
    m.input.size_divisor = 32
    t.optimizer, t.lr, t.momentum, t.weight_decay = "sgd", 0.01, 0.9, 1e-4
    t.epochs, t.schedule, t.milestones = 12, "step", [8, 11]
    t.warmup_iters, t.warmup_ratio, t.grad_clip = 500, 0.001, 0.0
    return cfg


def _atss_family_tiny(name: str, head_type: str) -> Config:
    """``fcos_r18_fpn_tiny`` (backbone, 64-channel neck and 2-conv head, input, AdamW + cosine) with
    the ATSS / GFL model settings of :func:`_atss_family`."""
    return atss_family(fcos_r18_fpn_tiny(), name, head_type)


def atss_r50_fpn() -> Config:
    """ATSS R50-FPN as mmdetection's reference (``atss_r50_fpn_1x_coco``, 39.4 AP, 1x).

    One ``8 * stride`` square anchor per location (offset 0); ATSS assignment (top 9 per level,
    IoU >= mean + std, center inside the box); deltas with stds [.1, .1, .2, .2]; focal loss,
    GIoU (weight 2) weighted by center-ness targets, center-ness BCE; score cls * ctr, NMS 0.6.
    Training and the rest of the model: see ``_atss_family_r50`` and ``_atss_family``.
    """
    return _atss_family_r50("atss_r50_fpn", "atss")


def gfl_r50_fpn() -> Config:
    """GFL R50-FPN as mmdetection's reference (``gfl_r50_fpn_1x_coco``, 40.2 AP, 1x).

    ATSS anchors and assignment; Quality Focal Loss (beta 2) on the joint class-IoU score;
    reg_max 16 distributions with Distribution Focal Loss (weight .25) and GIoU (weight 2),
    both weighted by the best class score; score sigmoid(cls), NMS 0.6.
    """
    return _atss_family_r50("gfl_r50_fpn", "gfl")


def gflv2_r50_fpn() -> Config:
    """GFLv2 R50-FPN as the GFocalV2 reference (``gfocal_r50_fpn_1x``, 41.1 AP, 1x).

    GFL plus the Distribution-Guided Quality Predictor (top 4 + mean per side, 64 channels):
    score = sigmoid(cls) * quality in training (QFL on probabilities) and inference.
    """
    return _atss_family_r50("gflv2_r50_fpn", "gflv2")


def atss_r18_fpn_tiny() -> Config:
    """A small ATSS for CPUs: the settings of ``fcos_r18_fpn_tiny`` with the ATSS head and assignment."""
    return _atss_family_tiny("atss_r18_fpn_tiny", "atss")


def gfl_r18_fpn_tiny() -> Config:
    """A small GFL for CPUs: the settings of ``fcos_r18_fpn_tiny`` with the GFL head (QFL, DFL)."""
    return _atss_family_tiny("gfl_r18_fpn_tiny", "gfl")


def gflv2_r18_fpn_tiny() -> Config:
    """A small GFLv2 for CPUs: the settings of ``fcos_r18_fpn_tiny`` with the GFLv2 head (DGQP)."""
    return _atss_family_tiny("gflv2_r18_fpn_tiny", "gflv2")


def fcos_r10_fpn_tiny() -> Config:
    """The demo preset: fcos_r18_fpn_tiny with a ResNet-10 body (one block per stage), ~2x faster
    per step on a CPU, which buys more steps in a few minutes of training."""
    cfg = fcos_r18_fpn_tiny()
    cfg.model.name = "fcos_r10_fpn_tiny"
    cfg.model.backbone.name = "resnet10"
    return cfg
