"""Presets in mmdetection's conventions, for checkpoints converted with ``anchorfree convert mmdet``."""
from __future__ import annotations

from ..config import Config, DenseHeadConfig
from .fpn import atss_r50_fpn, fcos_r50_fpn, gfl_r50_fpn, retinanet_r50_fpn
from .keypoint import centernet_r18, cornernet_hg104


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
