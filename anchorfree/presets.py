"""Named model + training settings. Each preset is a plain function returning a :class:`Config`.

``*_r50_fpn`` presets follow the reference 1x COCO schedules; ``*_tiny`` presets are small
enough to train in minutes on a laptop CPU and are what the demo and the tests use.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from .config import Config, ConfigError, DenseHeadConfig, HeadConfig, apply_overrides, convert_head, load_config

INF = 1e8


def _set_head(cfg: Config, head_type: str) -> HeadConfig:
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


def _fcos_resnet(depth: int) -> Callable[[], Config]:
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
    m, h = cfg.model, _set_head(cfg, "retinanet")
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


def _atss_family(cfg: Config, name: str, head_type: str) -> Config:
    """Model settings shared by the ATSS, GFL and GFLv2 presets (R50 and tiny), as mmdetection's
    ``atss_r50_fpn_1x_coco`` / ``gfl_r50_fpn_1x_coco`` (and the GFocalV2 repository for GFLv2):
    P6/P7 by stride-2 convs on the P5 output (``add_extra_convs='on_output'``) without a ReLU between
    them (FPN default ``relu_before_extra_convs=False``); one ``8 * stride`` square anchor per
    location at offset 0 (``center_offset=0``); ATSS assignment with the top 9 per level; focal
    (ATSS) / quality focal (GFL) classification, GIoU weight 2; test: 1000 per level above 0.05,
    NMS 0.6, 100 per image. Towers (number of convs, channels, GN groups) are left to the caller."""
    m, h = cfg.model, _set_head(cfg, head_type)
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
    cfg = _atss_family(Config(), name, head_type)
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
    return _atss_family(fcos_r18_fpn_tiny(), name, head_type)


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


def _light_pan(name: str, head_type: str, body: str, channels: int, act: str) -> Config:
    """Model settings shared by the ``*_pan_nano`` / ``*_pan_small`` presets, after nanodet-m: a light
    torchvision body (BatchNorm trained, nothing frozen; ImageNet weights via ``backbone.weights``),
    C3–C5 into a slim PAN of ``channels`` with depthwise-separable output blocks and no extra level
    (strides 8/16/32), a GFL/GFLv2 head of 2 depthwise-separable convs of ``channels`` with BN, one
    ``5 * stride`` anchor per location for ATSS assignment, reg_max 7, no per-level scale; 320 px input
    padded to 32. Training as ``fcos_r18_fpn_tiny`` (AdamW + cosine, 100 warm-up iterations, batch 8) but
    with lr 0.016, the best of 0.002..0.032 for ``gfl_shufflenetv2_pan_nano`` in 6 epochs on 400
    synthetic images (AP 0.08 at 0.002, 0.30 at 0.016, 0.16 at 0.032). ``train.recipe=auto``: YOLO's recipe on
    datasets of up to 1000 training images (:mod:`anchorfree.engine.recipe`)."""
    cfg = _atss_family(fcos_r18_fpn_tiny(), name, head_type)
    m, h = cfg.model, cfg.model.head
    m.backbone.name, m.backbone.norm, m.backbone.frozen_stages = body, "bn", 0
    m.neck.type, m.neck.out_channels, m.neck.num_extra_levels = "pan", channels, 0
    m.neck.block, m.neck.downsample, m.neck.activation = "dwconv", "interp", act
    h.strides = [8, 16, 32]
    h.num_convs, h.feat_channels, h.norm, h.tower_conv, h.activation = 2, channels, "bn", "dwconv", act
    h.octave_base_scale, h.reg_max, h.scale_per_level = 5.0, 7, False
    m.input.size_divisor = 32
    cfg.train.lr, cfg.train.recipe = 0.016, "auto"
    return cfg


def gfl_shufflenetv2_pan_nano() -> Config:
    """nanodet-m-like GFL for CPUs: ShuffleNetV2 1.0x, 96-ch PAN, 2 dwconv head, LeakyReLU, 320 px."""
    return _light_pan("gfl_shufflenetv2_pan_nano", "gfl", "shufflenet_v2_x1_0", 96, "leaky_relu")


def gflv2_mobilenetv3_pan_nano() -> Config:
    """Light GFLv2 (DGQP) for CPUs: MobileNetV3-Large, 96-ch PAN, 2 dwconv head, hardswish, 320 px."""
    return _light_pan("gflv2_mobilenetv3_pan_nano", "gflv2", "mobilenet_v3_large", 96, "hardswish")


def _csp_pan(name: str, head_type: str, widths: list[int], depths: list[int], channels: int) -> Config:
    """The ``*_csp_*`` presets: the light-preset recipe of :func:`_light_pan` on a body that trains fast on
    CPUs: the cross-stage-partial body of plain 3x3 convs (:mod:`anchorfree.models.backbones.csp`, widths
    ``widths``, C2f depths ``depths``), a CSP-PAN neck of ``channels`` (C2f merge blocks, strides 8/16/32)
    and a GFL/GFLv2 head of 2 plain 3x3 convs of ``channels`` with BN; SiLU everywhere."""
    cfg = _light_pan(name, head_type, "csp", channels, "silu")
    m, h = cfg.model, cfg.model.head
    m.backbone.csp_widths, m.backbone.csp_depths, m.backbone.csp_activation = widths, depths, "silu"
    m.neck.type = "csp_pan"
    h.tower_conv = "conv"
    return cfg


def gfl_csp_pan_n() -> Config:
    """GFL on the CSP body, ~1 M parameters: widths 16..192, one bottleneck per stage, 64-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_n", "gfl", [16, 32, 64, 128, 192], [1, 1, 1, 1], 64)


def gfl_csp_pan_s() -> Config:
    """GFL on the CSP body, ~3 M parameters: widths 24..384, bottlenecks 1/2/2/1, 64-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_s", "gfl", [24, 48, 96, 192, 384], [1, 2, 2, 1], 64)


def gfl_csp_pan_m() -> Config:
    """GFL on the CSP body, ~6 M parameters: widths 32..512, bottlenecks 1/2/2/1, 96-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_m", "gfl", [32, 64, 128, 256, 512], [1, 2, 2, 1], 96)


def gflv2_csp_pan_s() -> Config:
    """GFLv2 (DGQP) on the CSP body of ``gfl_csp_pan_s``."""
    return _csp_pan("gflv2_csp_pan_s", "gflv2", [24, 48, 96, 192, 384], [1, 2, 2, 1], 64)


def gfl_regnetx400_pan_small() -> Config:
    """Larger light GFL: RegNetX-400MF, 128-ch PAN, 2 dwconv head, LeakyReLU, 320 px."""
    return _light_pan("gfl_regnetx400_pan_small", "gfl", "regnet_x_400mf", 128, "leaky_relu")


def _centernet(name: str, body: str) -> Config:
    """CenterNet as mmdetection's ``centernet_r18_8xb16-crop512-140e_coco`` with a plain 3×3 conv in the neck
    (``use_dcn=False``): a torchvision ResNet (BatchNorm trained, nothing frozen) whose C5 goes through the
    up-convolution neck (256, 128, 64 channels, 4×4 transposed convs, stride 4), branches of 64 channels;
    Gaussian radius as mmdetection (corrected formula, min overlap 0.3); 512×512 input padded to 32; top 100
    peaks, no NMS.

    Training follows the paper's recipe (Sec. 5: Adam 5e-4 at batch 128, 140 epochs, lr ÷10 at 90 and 120,
    random flip, random scale 0.6–1.3 with crop, colour jitter): Adam (no weight decay) with the learning
    rate scaled linearly to batch 32 (1.25e-4), random affine zoom 0.6–1.3 with translation as the crop,
    colour jitter 0.4, gradient clipping at 35 as mmdetection. mmdetection's own recipe (SGD 0.02 at
    batch 128, 28×5 epochs) reached 29.5 AP for R18 without DCN; set ``train.optimizer=sgd train.lr=…``
    for it."""
    cfg = Config()
    m, t = cfg.model, cfg.train
    m.name = name
    m.backbone.name, m.backbone.norm, m.backbone.frozen_stages, m.backbone.out_levels = body, "bn", 0, [5]
    m.neck.type, m.neck.upconv_channels, m.neck.upconv_kernels = "upconv", [256, 128, 64], [4, 4, 4]
    _set_head(cfg, "centernet")
    m.input.min_size, m.input.max_size, m.input.size_divisor = 512, 512, 32
    t.optimizer, t.lr, t.weight_decay, t.batch_size = "adam", 5e-4 * 32 / 128, 0.0, 32
    t.epochs, t.schedule, t.milestones, t.gamma = 140, "step", [90, 120], 0.1
    t.warmup_iters, t.warmup_ratio, t.grad_clip = 500, 0.001, 35.0
    a = t.augment
    a.affine, a.affine_scale, a.affine_translate, a.color_jitter, a.hflip_prob = True, [0.6, 1.3], 0.2, 0.4, 0.5
    return cfg


def centernet_r18() -> Config:
    """CenterNet ResNet-18 + up-convolutions, 512 px, the paper's Adam recipe (mmdetection without DCN: 29.5 AP)."""
    return _centernet("centernet_r18", "resnet18")


def centernet_r50() -> Config:
    """CenterNet ResNet-50 + up-convolutions (C5 of 2048 channels), 512 px, otherwise as centernet_r18."""
    return _centernet("centernet_r50", "resnet50")


def centernet_r18_tiny() -> Config:
    """A small CenterNet for CPUs: ResNet-18 up to C4 (stride 16; layer4 is not built), two up-convolutions
    of 128 and 64 channels to stride 4, 64-channel branches, 320 px input (80×80 map), BatchNorm from
    scratch, AdamW + cosine as fcos_r18_fpn_tiny. Starting from C4 instead of the paper's C5 keeps more
    resolution on small inputs (at 128 px C5 is a 4×4 map: AP50 0.039 after 8 epochs on the test data,
    against 0.056 after 5 from C4 with a ResNet-10) and drops most of the parameters."""
    cfg = _centernet("centernet_r18_tiny", "resnet18")
    tiny = fcos_r18_fpn_tiny()
    cfg.train, m = tiny.train, cfg.model
    m.backbone.out_levels = [4]
    m.neck.upconv_channels, m.neck.upconv_kernels = [128, 64], [4, 4]
    m.input.min_size, m.input.max_size = 320, 320
    cfg.train.lr = 2e-3
    return cfg


def cornernet_hg104() -> Config:
    """CornerNet Hourglass-104 as mmdetection's ``cornernet_hourglass104_8xb6-210e-mstest_coco`` (paper
    40.6 AP single-scale): two hourglass stacks of depth 5 (256, 256, 384, 384, 384, 512 channels; 2, 2, 2,
    2, 2, 4 blocks), both supervised; corner pooling with 128 channels, branches of 256; pull/push 0.1,
    smooth-L1 offsets; test: top 100 corners per map, embedding distance 0.5, best 1000 pairs, Gaussian
    soft-NMS (σ 0.5), 100 per image. Input 511 in the references; 512 here (padded to 128).

    Training as mmdetection: Adam 5e-4 at batch 48 (scaled linearly to batch 16 here), 210 epochs with a
    step at 180, 500 warm-up iterations from 1/3, gradient clipping at 35; random flip, colour jitter and
    random scale 0.6–1.3 with crop (mmdetection's ``RandomCenterCropPad``; a random affine zoom here)."""
    cfg = Config()
    m, t = cfg.model, cfg.train
    m.name = "cornernet_hg104"
    m.backbone.name, m.backbone.norm, m.backbone.frozen_stages = "hourglass", "bn", 0
    m.neck.type = "none"
    _set_head(cfg, "cornernet")
    m.input.min_size, m.input.max_size, m.input.size_divisor = 512, 512, 128
    t.optimizer, t.lr, t.weight_decay, t.batch_size = "adam", 5e-4 * 16 / 48, 0.0, 16
    t.epochs, t.schedule, t.milestones, t.gamma = 210, "step", [180], 0.1
    t.warmup_iters, t.warmup_ratio, t.grad_clip = 500, 1.0 / 3.0, 35.0
    a = t.augment
    a.affine, a.affine_scale, a.affine_translate, a.color_jitter, a.hflip_prob = True, [0.6, 1.3], 0.2, 0.4, 0.5
    return cfg


def cornernet_hg_tiny() -> Config:
    """A small CornerNet for CPUs: two hourglass stacks of depth 3 (48, 64, 80, 96 channels, one block per
    level), 48-channel maps, corner pooling of 32 and branches of 48 channels, 256 px input (64×64 maps),
    BatchNorm from scratch, AdamW + cosine as fcos_r18_fpn_tiny; soft-NMS decoding as cornernet_hg104."""
    cfg = cornernet_hg104()
    tiny = fcos_r18_fpn_tiny()
    m, h = cfg.model, cfg.model.head
    m.name = "cornernet_hg_tiny"
    b = m.backbone
    b.hourglass_stacks, b.hourglass_depth = 2, 3
    b.hourglass_channels, b.hourglass_blocks, b.hourglass_feat_channels = [48, 64, 80, 96], [1, 1, 1, 1], 48
    h.feat_channels, h.pool_channels = 48, 32
    m.input.min_size, m.input.max_size, m.input.size_divisor = 256, 256, 32
    cfg.train = tiny.train
    cfg.train.lr = 2e-3
    return cfg


# ---- mmdetection's conventions, for checkpoints converted with ``anchorfree convert mmdet`` ----------------
def _mmdet(cfg: Config, name: str) -> Config:
    """``cfg`` in mmdetection 3.x's conventions: normalisation on 0..255 pixels and, for the FPN heads, images
    resized as its test pipeline does (sizes rounded, OpenCV's bilinear), padded to 32 (its ``pad_size_divisor``)
    and boxes without width or height dropped before NMS (``min_bbox_size=0``)."""
    cfg.model.name = name
    cfg.model.input.normalize_on = "byte"
    if isinstance(cfg.model.head, DenseHeadConfig):  # the FPN heads
        cfg.model.input.size_divisor = 32
        cfg.model.input.resize = "mmdet"  # its test pipeline's keep-ratio Resize: sizes rounded, OpenCV's bilinear
        cfg.model.head.min_box_size = 0.0
    return cfg


def _mmdet_anchor_head(cfg: Config, name: str) -> Config:
    """RetinaNet / ATSS / GFL: losses divided by the sum over images of max(positives, 1), anchors beyond each
    image's size rounded up to 32 left out of training (``valid_flags``), dw/dh clamped on both sides."""
    h = _mmdet(cfg, name).model.head
    h.loss_normalizer, h.ignore_padding_priors = "image_sum", 32
    if h.type in ("retinanet", "atss"):
        h.delta_clip_below = True
    return cfg


def fcos_r50_fpn_mmdet() -> Config:
    """FCOS as mmdetection's ``fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco`` (38.7 AP),
    for its checkpoints: a caffe-style ResNet-50 (stride on the 1x1 conv) reading BGR 0..255 pixels minus
    (103.53, 116.28, 123.675), threshold and top-k on the class score before the center-ness factor."""
    cfg = _mmdet(fcos_r50_fpn(), "fcos_r50_fpn_mmdet")
    m = cfg.model
    m.backbone.style = "caffe"
    m.input.channel_order = "bgr"
    m.input.mean, m.input.std = [103.53 / 255, 116.28 / 255, 123.675 / 255], [1 / 255] * 3
    m.head.candidate_score = "class"
    return cfg


def fcos_r50_fpn_plain_mmdet() -> Config:
    """FCOS as mmdetection's plain ``fcos_r50-caffe_fpn_gn-head_1x_coco`` (36.6 AP): the same tensors as
    :func:`fcos_r50_fpn_mmdet` but none of its tricks — ``exp`` box regression in pixels, center-ness from the
    class tower, no center sampling, IoU loss, NMS at 0.5 — and Detectron's pixel means (102.98, 115.95, 122.77)."""
    cfg = fcos_r50_fpn_mmdet()
    m, h = cfg.model, cfg.model.head
    m.name = "fcos_r50_fpn_plain_mmdet"
    m.input.mean = [102.9801 / 255, 115.9465 / 255, 122.7717 / 255]
    h.norm_on_bbox, h.bbox_activation, h.centerness_on_reg = False, "exp", False
    h.center_sampling_radius, h.iou_loss, h.nms_thresh = 0.0, "iou", 0.5
    return cfg


def retinanet_r50_fpn_mmdet() -> Config:
    """RetinaNet as mmdetection's ``retinanet_r50_fpn_1x_coco`` (36.5 AP) in its conventions, for its checkpoints."""
    return _mmdet_anchor_head(retinanet_r50_fpn(), "retinanet_r50_fpn_mmdet")


def atss_r50_fpn_mmdet() -> Config:
    """ATSS as mmdetection's ``atss_r50_fpn_1x_coco`` (39.4 AP) in its conventions (center-ness multiplied in
    after the top-k), for its checkpoints."""
    cfg = _mmdet_anchor_head(atss_r50_fpn(), "atss_r50_fpn_mmdet")
    cfg.model.head.candidate_score = "class"
    return cfg


def gfl_r50_fpn_mmdet() -> Config:
    """GFL as mmdetection's ``gfl_r50_fpn_1x_coco`` (40.2 AP) in its conventions, for its checkpoints."""
    return _mmdet_anchor_head(gfl_r50_fpn(), "gfl_r50_fpn_mmdet")


def centernet_r18_mmdet() -> Config:
    """CenterNet as mmdetection's ``centernet_r18_8xb16-crop512-140e_coco`` (29.5 AP) in its conventions
    (boxes not clipped to the image), for its checkpoints."""
    cfg = _mmdet(centernet_r18(), "centernet_r18_mmdet")
    cfg.model.head.clip_boxes = False
    return cfg


def cornernet_hg104_mmdet() -> Config:
    """CornerNet as mmdetection's ``cornernet_hourglass104_8xb6-210e-mstest_coco`` (41.2 AP with its test-time
    flip) in its conventions (boxes not clipped to the image), for its checkpoints."""
    cfg = _mmdet(cornernet_hg104(), "cornernet_hg104_mmdet")
    cfg.model.head.clip_boxes = False
    return cfg


PRESETS: dict[str, Callable[[], Config]] = {
    "fcos_r50_fpn": fcos_r50_fpn,
    "fcos_r18_fpn": _fcos_resnet(18),
    "fcos_r34_fpn": _fcos_resnet(34),
    "fcos_r101_fpn": _fcos_resnet(101),
    "fcos_r50_fpn_torchvision": fcos_r50_fpn_torchvision,
    "fcos_r18_fpn_tiny": fcos_r18_fpn_tiny,
    "fcos_r10_fpn_tiny": fcos_r10_fpn_tiny,
    "retinanet_r50_fpn": retinanet_r50_fpn,
    "retinanet_r50_fpn_torchvision": retinanet_r50_fpn_torchvision,
    "retinanet_r50_fpn_v2_torchvision": retinanet_r50_fpn_v2_torchvision,
    "retinanet_r18_fpn_tiny": retinanet_r18_fpn_tiny,
    "atss_r50_fpn": atss_r50_fpn,
    "gfl_r50_fpn": gfl_r50_fpn,
    "gflv2_r50_fpn": gflv2_r50_fpn,
    "atss_r18_fpn_tiny": atss_r18_fpn_tiny,
    "gfl_r18_fpn_tiny": gfl_r18_fpn_tiny,
    "gflv2_r18_fpn_tiny": gflv2_r18_fpn_tiny,
    "gfl_shufflenetv2_pan_nano": gfl_shufflenetv2_pan_nano,
    "gflv2_mobilenetv3_pan_nano": gflv2_mobilenetv3_pan_nano,
    "gfl_csp_pan_n": gfl_csp_pan_n,
    "gfl_csp_pan_s": gfl_csp_pan_s,
    "gfl_csp_pan_m": gfl_csp_pan_m,
    "gflv2_csp_pan_s": gflv2_csp_pan_s,
    "gfl_regnetx400_pan_small": gfl_regnetx400_pan_small,
    "centernet_r18": centernet_r18,
    "centernet_r50": centernet_r50,
    "centernet_r18_tiny": centernet_r18_tiny,
    "cornernet_hg104": cornernet_hg104,
    "cornernet_hg_tiny": cornernet_hg_tiny,
    "fcos_r50_fpn_mmdet": fcos_r50_fpn_mmdet,
    "fcos_r50_fpn_plain_mmdet": fcos_r50_fpn_plain_mmdet,
    "retinanet_r50_fpn_mmdet": retinanet_r50_fpn_mmdet,
    "atss_r50_fpn_mmdet": atss_r50_fpn_mmdet,
    "gfl_r50_fpn_mmdet": gfl_r50_fpn_mmdet,
    "centernet_r18_mmdet": centernet_r18_mmdet,
    "cornernet_hg104_mmdet": cornernet_hg104_mmdet,
}


def get_preset(name: str) -> Config:
    """Config of preset ``name`` (a fresh object each call)."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model preset '{name}'.{hint} Run `anchorfree models` for the list.")
    return PRESETS[name]()


def describe_presets() -> list[tuple[str, str]]:
    """``(name, first docstring line)`` for every preset."""
    def first_sentence(doc: str) -> str:
        text = " ".join(doc.split())
        return text.split(". ")[0].rstrip(".") + "."

    return [(name, first_sentence(fn.__doc__ or "")) for name, fn in PRESETS.items()]


def model_config(model: str | Config, overrides: Sequence[str] = ()) -> Config:
    """The config of a preset name, a YAML file or a run folder (its ``config.yaml``), with ``key=value``
    ``overrides`` applied."""
    if isinstance(model, Config):
        cfg = copy.deepcopy(model)
    else:
        if model not in PRESETS and (Path(model) / "config.yaml").is_file():
            model = str(Path(model) / "config.yaml")
        cfg = get_preset(model) if model in PRESETS or not model.endswith((".yaml", ".yml")) else load_config(model)
    return apply_overrides(cfg, list(overrides))
