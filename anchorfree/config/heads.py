"""The head sections: one config class per head type, what they share, their choices and the one table of head
types (:data:`HEAD_CONFIGS`). A head reads every field of its section and nothing else."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ConfigError


# ---- heads ----------------------------------------------------------------------------------
# One section per head type. A head reads every field of its section and nothing else, so an
# override of a field the chosen head does not read is an error (see :func:`set_field`).


@dataclass
class HeadConfig:
    """What every head reads: its type and the inference defaults. The inference fields are defaults
    only: ``predict(..., score_thresh=0.3, nms="agnostic")`` overrides them per call."""

    type: str = "fcos"
    score_thresh: float = 0.05
    nms: str = "classwise"  # classwise | agnostic | soft_gaussian | soft_linear | none (see models/postprocess.py)
    nms_thresh: float = 0.6  # IoU threshold of hard NMS and of linear soft-NMS
    soft_nms_sigma: float = 0.5  # Gaussian soft-NMS: score *= exp(-IoU^2 / sigma) (mmcv's form)
    soft_nms_min_score: float = 0.001  # soft-NMS drops boxes whose decayed score falls below this
    max_detections: int = 100

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = ("score_thresh", "nms", "nms_thresh", "soft_nms_sigma",
                                                   "soft_nms_min_score", "max_detections")

    def __setattr__(self, name: str, value: Any) -> None:
        # a head section holds only the fields its head reads: setting another one is a mistake
        if name not in field_names(type(self)):
            raise ConfigError(_unread_message(self.type, name))
        if name == "type" and "type" in self.__dict__ and value != self.type:
            raise ConfigError(f"a {self.type} head section cannot become a {value} one in place; use "
                              f"convert_head(section, '{value}') or the override head.type={value}")
        object.__setattr__(self, name, value)


@dataclass
class DenseHeadConfig(HeadConfig):
    """The FPN heads: conv towers shared across levels, priors on every level, top-k per level."""

    # towers (shared across levels)
    num_convs: int = 4
    feat_channels: int = 256
    norm: str = "gn"  # gn | bn | none
    gn_groups: int = 32
    tower_conv: str = "conv"  # conv: 3x3 | dwconv: depthwise 3x3 + pointwise 1x1, each with norm + act (nanodet)
    activation: str = "relu"  # tower activation: relu | leaky_relu (slope 0.1) | hardswish | silu
    prior_prob: float = 0.01  # classification bias init: -log((1 - p) / p)  (RetinaNet, Sec. 4.1)
    # priors
    strides: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    prior_offset: float = 0.5  # prior center = (index + offset) * stride; torchvision uses 0
    prior_stride: str = "nominal"  # nominal: the level's stride | padded_input: padded input size // map size
    #                                per axis (torchvision's AnchorGenerator; differs where the input is not a
    #                                multiple of the largest stride, e.g. 800 // 13 = 61 on P6)
    # loss weights
    cls_weight: float = 1.0
    bbox_weight: float = 1.0
    # training: priors over the padding of a batch
    ignore_padding_priors: int = 0  # > 0: priors beyond each image's size rounded up to this multiple get no
    #                                 target and no loss (mmdetection's anchor valid flags, its pad_size_divisor
    #                                 32, in RetinaNet / ATSS / GFL); 0: every prior is trained
    # inference
    topk: int = 1000  # candidates per level
    min_box_size: float = -1.0  # >= 0: boxes whose width or height is not above this are dropped before NMS
    #                             (mmdetection: 0); -1 keeps every box

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = HeadConfig.INFERENCE_FIELDS + ("topk", "min_box_size")


@dataclass
class _AnchorFields:
    # anchors (RetinaNet, ATSS, GFL): per level sizes stride * octave_base_scale * 2**(i / scales_per_octave)
    octave_base_scale: float = 4.0
    scales_per_octave: int = 3
    anchor_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # h / w
    anchor_sizes: list[list[float]] = field(default_factory=list)  # explicit sizes per level (torchvision)
    round_anchors: bool = False  # round anchor half-sizes (torchvision's AnchorGenerator)


@dataclass
class _DeltaFields:
    # box deltas (RetinaNet, ATSS): ((dx, dy, dw, dh) - means) / stds, dw/dh clipped at decode
    delta_means: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    delta_stds: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    delta_clip: float = 4.135166556742356  # log(1000 / 16)
    delta_clip_below: bool = False  # also clamp dw, dh at -delta_clip (mmdetection); torchvision clamps above only


@dataclass
class _FocalFields:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class _CenternessFields:
    # FCOS-style regression branch with center-ness (FCOS, ATSS)
    scale_per_level: bool = True  # learnable scalar per level multiplying the regression
    centerness_on_reg: bool = True  # center-ness predicted from the regression tower
    iou_loss: str = "giou"  # giou | iou (-log IoU, UnitBox)
    bbox_weighting: str = "centerness"  # centerness: weight by center-ness targets (mmdet) | none (torchvision)
    centerness_weight: float = 1.0
    score_mode: str = "mul"  # mul: cls * ctr | sqrt: sqrt(cls * ctr) (torchvision)
    candidate_score: str = "joint"  # which score the threshold and the per-level top-k read: joint (the final
    #                                 score, torchvision) | class (sigmoid(cls) alone, center-ness multiplied in
    #                                 afterwards, mmdetection)

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = DenseHeadConfig.INFERENCE_FIELDS + ("candidate_score",)


@dataclass
class _NormalizerFields:
    loss_normalizer: str = "batch"  # batch: sums / positives of the batch (at least 1) | image_sum: / the sum over
    #                                 images of max(positives in the image, 1) (mmdetection's RetinaNet, ATSS, GFL)


@dataclass
class FCOSHeadConfig(_CenternessFields, _FocalFields, DenseHeadConfig):
    """FCOS (Tian et al. 2019): points regress (l, t, r, b), scale ranges per level, center sampling."""

    type: str = "fcos"
    norm_on_bbox: bool = True  # regress (l, t, r, b) in units of the level's stride
    bbox_activation: str = "relu"  # relu | exp
    regress_ranges: list[list[float]] = field(
        default_factory=lambda: [[-1, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]]
    )
    range_bounds: str = "closed"  # closed: lo <= max(ltrb) <= hi (mmdet) | open: lo < d < hi (torchvision)
    center_sampling_radius: float = 1.5  # 0 disables center sampling


@dataclass
class RetinaNetHeadConfig(_NormalizerFields, _DeltaFields, _AnchorFields, _FocalFields, DenseHeadConfig):
    """RetinaNet (Lin et al. 2017): 9 anchors per location, max-IoU assignment, focal + box-delta losses."""

    type: str = "retinanet"
    norm: str = "none"
    prior_offset: float = 0.0
    nms_thresh: float = 0.5
    # max-IoU assignment (RetinaNet, Sec. 4)
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    low_quality_matches: str = "gt"  # gt: a box's best anchors go to it (mmdet) | argmax: they keep their
    #                                  own best box (torchvision) | none
    box_loss: str = "l1"  # l1 | smooth_l1 | giou
    loss_normalizer: str = "batch"  # batch | image_sum (see ATSS) | image: each image's sum / its positives,
    #                                 then the mean over images (torchvision RetinaNet)
    smooth_l1_beta: float = 0.11


@dataclass
class ATSSHeadConfig(_NormalizerFields, _CenternessFields, _DeltaFields, _AnchorFields, _FocalFields,
                     DenseHeadConfig):
    """ATSS (Zhang et al. 2020): FCOS's head on one 8·stride anchor, adaptive sample selection."""

    type: str = "atss"
    prior_offset: float = 0.0
    octave_base_scale: float = 8.0
    scales_per_octave: int = 1
    anchor_ratios: list[float] = field(default_factory=lambda: [1.0])
    delta_stds: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    bbox_weight: float = 2.0
    atss_topk: int = 9


@dataclass
class GFLHeadConfig(_NormalizerFields, _AnchorFields, DenseHeadConfig):
    """GFL (Li et al. 2020): QFL on the joint class-IoU score, DFL on per-side distributions; ATSS assignment."""

    type: str = "gfl"
    prior_offset: float = 0.0
    octave_base_scale: float = 8.0
    scales_per_octave: int = 1
    anchor_ratios: list[float] = field(default_factory=lambda: [1.0])
    bbox_weight: float = 2.0
    scale_per_level: bool = True
    iou_loss: str = "giou"
    atss_topk: int = 9
    reg_max: int = 16
    qfl_beta: float = 2.0
    dfl_weight: float = 0.25


@dataclass
class GFLv2HeadConfig(GFLHeadConfig):
    """GFLv2 (Li et al. 2021): GFL plus the distribution-guided quality predictor."""

    type: str = "gflv2"
    dgqp_topk: int = 4
    dgqp_channels: int = 64


@dataclass
class KeypointHeadConfig(HeadConfig):
    """The keypoint heads: Gaussian heatmaps on one stride-4 map, peaks instead of priors."""

    nms: str = "none"
    score_thresh: float = 0.0  # the references keep every decoded box (COCO evaluation takes the best 100)
    stride: int = 4  # of the one prediction map
    feat_channels: int = 64  # channels of each branch's 3x3 conv
    prior_prob: float = 0.1  # heatmap bias init -log((1 - p) / p) = -2.19 (CenterNet, mmdetection)
    focal_alpha: float = 2.0  # penalty-reduced focal loss (CornerNet Eq. 1)
    focal_beta: float = 4.0
    gaussian_radius: str = "corrected"  # corrected (mmdetection) | original (the CornerNet/CenterNet code)
    gaussian_min_overlap: float = 0.3  # 0.3 with 'corrected' (mmdetection), 0.7 with 'original' (the papers' code)
    heatmap_weight: float = 1.0
    offset_weight: float = 1.0
    topk: int = 100  # peaks kept (CenterNet: over all classes; CornerNet: per corner map)
    peak_kernel: int = 3  # max-pool window of the peak extraction
    clip_boxes: bool = True  # clip decoded boxes to the image (mmdetection does not)

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = HeadConfig.INFERENCE_FIELDS + ("topk", "peak_kernel", "clip_boxes")


@dataclass
class CenterNetHeadConfig(KeypointHeadConfig):
    """CenterNet (Zhou et al. 2019): center heatmap per class, w/h and sub-pixel offset at the center."""

    type: str = "centernet"
    wh_weight: float = 0.1
    flip_test: bool = False  # average the maps of the image and its mirror image (CenterNet Sec. 5)

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = KeypointHeadConfig.INFERENCE_FIELDS + ("flip_test",)


@dataclass
class CornerNetHeadConfig(KeypointHeadConfig):
    """CornerNet (Law & Deng 2018): corner pooling, top-left/bottom-right heatmaps, embeddings, offsets."""

    type: str = "cornernet"
    nms: str = "soft_gaussian"
    nms_thresh: float = 0.5
    feat_channels: int = 256  # channels of each branch's 3x3 conv (mmdetection's CornerHead: 256)
    pool_channels: int = 128  # channels inside the corner pooling modules (mmdetection's BiCornerPool: 128)
    embedding_dim: int = 1
    pull_weight: float = 0.1
    push_weight: float = 0.1
    push_margin: float = 1.0
    smooth_l1_beta: float = 1.0
    embedding_threshold: float = 0.5  # a TL/BR pair groups when |e_tl - e_br| <= this
    num_candidates: int = 1000  # best corner pairs kept before soft-NMS

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = KeypointHeadConfig.INFERENCE_FIELDS + (
        "embedding_threshold", "num_candidates")


NMS_MODES = ("classwise", "agnostic", "soft_gaussian", "soft_linear", "none")
HEAD_CHOICES: dict[str, tuple[str, ...]] = {
    "nms": NMS_MODES, "norm": ("gn", "bn", "none"), "tower_conv": ("conv", "dwconv"),
    "activation": ("relu", "leaky_relu", "hardswish", "silu"), "prior_stride": ("nominal", "padded_input"),
    "bbox_activation": ("relu", "exp"), "range_bounds": ("closed", "open"), "iou_loss": ("giou", "iou"),
    "bbox_weighting": ("centerness", "none"), "score_mode": ("mul", "sqrt"),
    "low_quality_matches": ("gt", "argmax", "none"), "box_loss": ("l1", "smooth_l1", "giou"),
    "loss_normalizer": ("batch", "image_sum", "image"), "gaussian_radius": ("corrected", "original"),
    "candidate_score": ("joint", "class"),
}


def check_head_choices(head: HeadConfig) -> None:
    """Refuse a head field set to a value outside its choices, naming the field and the choices."""
    for name, allowed in HEAD_CHOICES.items():
        value = getattr(head, name, None)
        if value is not None and value not in allowed:
            raise ConfigError(f"head.{name} must be one of {', '.join(allowed)}, got {value!r}")


HEAD_CONFIGS: dict[str, type[HeadConfig]] = {
    "fcos": FCOSHeadConfig, "retinanet": RetinaNetHeadConfig, "atss": ATSSHeadConfig, "gfl": GFLHeadConfig,
    "gflv2": GFLv2HeadConfig, "centernet": CenterNetHeadConfig, "cornernet": CornerNetHeadConfig,
}

# Every field of the single flat head section that configs written before the per-head sections hold;
# such a config.yaml loads by dropping the fields its head did not read.
LEGACY_HEAD_FIELDS = frozenset((
    "type", "num_convs", "feat_channels", "norm", "gn_groups", "tower_conv", "activation", "prior_prob", "strides",
    "prior_offset", "prior_stride", "norm_on_bbox", "bbox_activation", "scale_per_level", "centerness_on_reg",
    "regress_ranges", "range_bounds", "center_sampling_radius", "focal_alpha", "focal_gamma", "cls_weight",
    "iou_loss", "bbox_weight", "bbox_weighting", "centerness_weight", "octave_base_scale", "scales_per_octave",
    "anchor_ratios", "anchor_sizes", "round_anchors", "pos_iou_thr", "neg_iou_thr", "low_quality_matches",
    "delta_means", "delta_stds", "delta_clip", "box_loss", "loss_normalizer", "smooth_l1_beta", "atss_topk",
    "reg_max", "qfl_beta", "dfl_weight", "dgqp_topk", "dgqp_channels", "score_mode", "score_thresh", "topk",
    "nms_thresh", "max_detections"))


def head_fields(cls: type[HeadConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@functools.cache
def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def convert_head(head: HeadConfig, head_type: str) -> HeadConfig:
    """``head`` as a section of another type (what ``head.type=gfl`` on an FCOS preset does): a field both
    heads read keeps its value where it was changed from the old head's default (e.g. a preset's smaller
    towers); every other field takes the new head's default."""
    target = HEAD_CONFIGS.get(head_type)
    if target is None:
        raise ConfigError(f"unknown head.type '{head_type}'; available: {', '.join(HEAD_CONFIGS)}")
    source_default = type(head)()
    shared = set(head_fields(target)) & set(head_fields(type(head))) - {"type"}
    changed = {name for name in shared if getattr(head, name) != getattr(source_default, name)}
    return target(**{name: copy.deepcopy(getattr(head, name)) for name in changed})


def _unread_message(head_type: str, key: str) -> str:
    fields = [f for f in head_fields(HEAD_CONFIGS[head_type]) if f != "type"]
    close = difflib.get_close_matches(key, fields, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    readers = [t for t, cls in HEAD_CONFIGS.items() if key in head_fields(cls)]
    where = f" ('{key}' is read by: {', '.join(readers)})" if readers else ""
    return (f"the {head_type} head does not read 'head.{key}'{where}.{hint} Fields of the {head_type} head: "
            f"{', '.join(fields)}")


def _head_from_dict(data: dict, where: str) -> HeadConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where.rstrip('.')}' must be a mapping, got {type(data).__name__}")
    head_type = data.get("type", "fcos")
    if head_type not in HEAD_CONFIGS:
        raise ConfigError(f"unknown {where}type '{head_type}'; available: {', '.join(HEAD_CONFIGS)}")
    names = set(head_fields(HEAD_CONFIGS[head_type]))
    if LEGACY_HEAD_FIELDS <= set(data):  # a config.yaml of the flat section: keep what this head reads
        data = {k: v for k, v in data.items() if k in names}
    for key in data:
        if key not in names:
            raise ConfigError(_unread_message(head_type, key))
    head = HEAD_CONFIGS[head_type](**data)
    check_head_choices(head)
    return head
