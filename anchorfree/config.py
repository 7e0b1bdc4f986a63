"""Configuration as plain dataclasses: dumped to / loaded from YAML, overridden by ``key=value``.

A preset name (see :mod:`anchorfree.presets`) gives a :class:`Config`; ``head.center_sampling_radius=0``
or ``train.lr=0.005`` override single fields. A key without a section (``epochs=3``) is accepted
when exactly one section has a field of that name.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, ClassVar, get_type_hints

import yaml

from .errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML loader that also reads ``1e-3`` and ``1e8`` as floats (YAML 1.2), not as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


@dataclass
class BackboneConfig:
    """A torchvision body. ``weights``: ImageNet weights, ``imagenet`` (torchvision's default weights of the body,
    through its weights API and torch.hub's cache), a torchvision weights name (``IMAGENET1K_V1``) or a local
    state-dict path."""

    name: str = "resnet50"  # resnet10 | resnet18 | resnet34 | resnet50 | resnet101 | shufflenet_v2_x0_5 |
    #                         shufflenet_v2_x1_0 | mobilenet_v3_large | mobilenet_v3_small | regnet_x_400mf |
    #                         regnet_y_400mf | efficientnet_b0
    norm: str = "frozen_bn"  # frozen_bn | bn | gn (gn: ResNet only)
    weights: str | None = None
    frozen_stages: int = 1  # 0: nothing frozen, 1: stem + layer1 (as in the references), ... 4
    out_levels: list[int] = field(default_factory=lambda: [3, 4, 5])  # C3..C5 (stride 8..32)
    # name=hourglass (CornerNet's HG-104 by default): stacks of recursive hourglass modules, each stack a map
    hourglass_stacks: int = 2
    hourglass_depth: int = 5  # down-samplings inside one hourglass module
    hourglass_channels: list[int] = field(default_factory=lambda: [256, 256, 384, 384, 384, 512])
    hourglass_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2, 4])
    hourglass_feat_channels: int = 256
    # conventions of weights trained elsewhere
    style: str = "pytorch"  # ResNet bottlenecks: pytorch (stride on the 3x3 conv) | caffe (on the first 1x1 conv,
    #                         the Detectron / mmdetection "caffe" ResNets of the FCOS reference checkpoints)
    # name=csp (a cross-stage-partial body of plain 3x3 convs, see anchorfree.models.backbones.csp)
    csp_widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # stem, C2..C5 channels
    csp_depths: list[int] = field(default_factory=lambda: [1, 2, 2, 1])  # bottlenecks per C2f block, C2..C5
    csp_activation: str = "silu"  # relu | leaky_relu | hardswish | silu
    norm_eps: float | None = None  # eps of every BatchNorm in the body; None keeps the body's own (1e-5 for ResNet,
    #                                 as mmdetection; 1e-3 for torchvision's MobileNetV3 / EfficientNet)


@dataclass
class NeckConfig:
    """FPN producing P3..P7 (Lin et al. 2017; RetinaNet/FCOS add P6, P7 by stride-2 convs), or a slim
    PAN (Liu et al. 2018) with an extra bottom-up path, as nanodet's, for the light presets."""

    type: str = "fpn"  # fpn | pan | csp_pan (C2f merge blocks, see necks/csp_pan.py) | upconv (CenterNet: one stride-4 map) | none (the backbone's maps: Hourglass)
    out_channels: int = 256
    num_extra_levels: int = 2  # P6, P7 (PAN: stride-2 blocks on its last output)
    extra_from: str = "p5"  # FPN: p5 (FCOS, torchvision) | c5 (RetinaNet paper)
    relu_before_extra: bool = True  # FPN: ReLU between P6 and P7 conv
    block: str = "dwconv"  # PAN block per output: dwconv (dw 3x3-BN-act, pw 1x1-BN-act) | conv (3x3-BN-act) | none
    downsample: str = "interp"  # PAN bottom-up: interp (bilinear, nanodet) | conv (stride-2 block, PANet)
    activation: str = "leaky_relu"  # PAN: relu | leaky_relu (slope 0.1) | hardswish | silu
    csp_depth: int = 1  # csp_pan: bottlenecks per C2f merge block
    upconv_channels: list[int] = field(default_factory=lambda: [256, 128, 64])  # upconv: channels per stage
    upconv_kernels: list[int] = field(default_factory=lambda: [4, 4, 4])  # upconv: transposed-conv kernel per stage


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
        if name not in _field_names(type(self)):
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
def _field_names(cls: type) -> frozenset[str]:
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


@dataclass
class InputConfig:
    """Network input: resize rule (torchvision's min/max size), normalisation, padding."""

    min_size: int = 800
    max_size: int = 1333
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # on 0..1 pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    size_divisor: int = 128
    normalize_on: str = "unit"  # unit: (x / 255 - mean) / std (torchvision) | byte: (x - 255 mean) / (255 std)
    #                             (mmdetection): the same values up to float rounding, kept for exact parity
    channel_order: str = "rgb"  # rgb | bgr: the order the network sees (mean and std are given in that order;
    #                             the caffe-style ResNets of mmdetection's FCOS checkpoints read BGR)
    resize: str = "torchvision"  # torchvision: sizes rounded down, torchvision's bilinear | mmdet: sizes rounded
    #                              (640x480 -> 1067x800), OpenCV's bilinear (the `mmdet` extra), as mmdetection's
    #                              test pipeline, so that converted models see its pixels


@dataclass
class ModelConfig:
    name: str = "fcos_r50_fpn"
    num_classes: int = 80
    class_names: list[str] | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=FCOSHeadConfig)
    input: InputConfig = field(default_factory=InputConfig)


@dataclass
class AugmentConfig:
    """Training augmentation. Mosaic (Bochkovskiy et al. 2020, YOLOv4) and random affine are off by
    default; see :mod:`anchorfree.data.mosaic`."""

    hflip_prob: float = 0.5
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables
    hsv_h: float = 0.0  # RandomHSV (YOLOv5/v8's hsv_h/s/v; they use 0.015, 0.7, 0.4): hue rotation up to this
    hsv_s: float = 0.0  # fraction of a turn, saturation and value gains within 1 -/+ these; all 0 disables
    hsv_v: float = 0.0
    multiscale_min_sizes: list[int] = field(default_factory=list)  # e.g. [640, 672, 704]; empty: off
    mosaic_prob: float = 0.0  # probability that a sample is a 4-image mosaic (square, input.min_size); 0: off
    affine: bool = False  # random affine on the samples that are not mosaics (mosaics always get one)
    affine_scale: list[float] = field(default_factory=lambda: [0.5, 1.5])  # zoom range
    affine_translate: float = 0.1  # max shift, as a fraction of the output size
    affine_degrees: float = 0.0  # max rotation (degrees)
    affine_shear: float = 0.0  # max shear (degrees)
    min_area_ratio: float = 0.1  # after mosaic/affine, drop boxes keeping less of their area inside the image
    close_mosaic: int = 0  # the last N epochs train without mosaic and affine (YOLOv8's close_mosaic)


# ``train.*`` fields that may change on ``--resume``: they are applied to the rest of the run.
# batch_size and accumulate may change while the effective batch (x processes) stays the same.
RESUME_APPLIED = frozenset({
    "epochs", "minutes", "eval_interval", "log_interval", "checkpoint_interval", "workers", "device", "grad_clip", "amp",
    "channels_last", "lr", "schedule", "milestones", "gamma", "min_lr_ratio", "warmup_iters", "warmup_ratio",
    "weight_decay", "momentum", "ema_decay", "scale_lr", "lr_reference_batch", "batch_size", "accumulate",
    "sync_bn", "dist_backend", "dist_timeout", "find_unused_parameters", "tensorboard", "check_images",
})


@dataclass
class TrainConfig:
    """Training settings. With several processes (torchrun, ``anchorfree train --nproc N``) ``batch_size``
    is per process, as in PyTorch's DistributedDataParallel: one optimizer step sees the effective batch
    ``batch_size x processes x accumulate`` images, and ``lr`` is the learning rate of that batch."""

    epochs: int = 12
    weights: str | None = None  # start from trained weights (a run folder, a .pt checkpoint or a converted run):
    #                            fine-tuning; tensors that fit are loaded, per-class layers re-initialised when the
    #                            classes differ (shared class names kept). Not --resume: optimizer and schedule fresh
    freeze: str = "none"  # none | backbone | neck (backbone and neck): no gradients there, BatchNorm in eval mode
    recipe: str = "preset"  # preset | small (YOLO's: mosaic, HSV, EMA, close_mosaic, an epoch floor) | auto (small up
    #                        to 1000 training images; the light presets' default); see anchorfree/engine/recipe.py
    minutes: float = 0.0  # > 0: a time budget for the whole run (steps, checkpoints, final validation): the run's
    #                      length is re-estimated as it goes and the schedule laid over it (engine/budget.py);
    #                      epochs is then only the first estimate. 0: train.epochs epochs
    batch_size: int = 16  # images per process and micro-batch
    workers: int = 2
    optimizer: str = "sgd"  # sgd | adamw | adam
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    norm_bias_decay: bool = False  # apply weight decay to norm weights and biases
    schedule: str = "step"  # step | cosine
    milestones: list[float] = field(default_factory=lambda: [8, 11])  # epochs (step schedule)
    gamma: float = 0.1
    min_lr_ratio: float = 0.01  # cosine floor, relative to lr
    warmup_iters: int = 500
    warmup_ratio: float = 0.001  # lr at iteration 0, relative to lr
    grad_clip: float = 0.0  # max grad norm; 0 disables
    amp: bool = True  # mixed precision: AMP on CUDA, bf16 autocast on CPUs with AVX512-BF16 or AMX; no-op elsewhere
    ema: bool = False
    ema_decay: float = 0.9998
    eval_interval: int = 1  # epochs between validations; 0: only at the end
    log_interval: int = 20
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True
    # gradient accumulation and the learning rate of the effective batch
    accumulate: int = 1  # micro-batches per optimizer step (gradients summed, no DDP all-reduce until the last)
    scale_lr: bool = False  # linear scaling rule: lr x effective batch / lr_reference_batch
    lr_reference_batch: int = 0  # the batch train.lr is stated for with scale_lr; 0: train.batch_size
    # checkpoints
    checkpoint_interval: int = 0  # also write last.pt every N optimizer steps; 0: at the end of each epoch only
    # several processes (torchrun / --nproc)
    sync_bn: bool = False  # BatchNorm statistics over all processes (SyncBatchNorm; GPUs only)
    dist_backend: str = "auto"  # auto (nccl on GPUs, gloo on CPUs) | nccl | gloo
    dist_timeout: float = 1800.0  # seconds a process waits in a collective (e.g. for rank 0's validation)
    check_images: bool = True  # read every image header before the first step (false: skip it, e.g. for a huge
    #                           dataset on slow storage; a bad image then stops the run when it is loaded)
    tensorboard: bool = False  # also log scalars and a few validation images to RUN/tensorboard (tensorboard extra)
    find_unused_parameters: bool | None = None  # DDP's flag; None: on for heads whose loss can skip parameters
    #                                             (cornernet's embeddings on images without objects)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where or cls.__name__}' must be a mapping, got {type(data).__name__}")
    if issubclass(cls, HeadConfig):
        return _head_from_dict({"type": cls.type, **data}, where)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(_unknown_key_message(f"{where}{key}", key, names))
        sub = hints[key]
        if isinstance(sub, type) and issubclass(sub, HeadConfig):
            kwargs[key] = _head_from_dict(value or {}, f"{where}{key}.")
        elif dataclasses.is_dataclass(sub):
            kwargs[key] = from_dict(sub, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _unknown_key_message(full: str, key: str, names: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(names))}."
    return f"unknown config key '{full}'.{hint}"


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(path: str | Path) -> Config:
    """Load a YAML config written by :func:`save_config` (missing fields take defaults)."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return from_dict(Config, data or {})


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """A new config: ``cfg`` with ``key=value`` strings applied (``cfg`` is left as it was); values are parsed
    as YAML (``0.01``, ``[8, 11]``, ``true``)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.lr=0.005")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError:
            value = raw
        set_field(cfg, _resolve_key(cfg, key.strip()), value)
    return cfg


def _resolve_key(cfg: Config, key: str) -> str:
    """Full dotted path of ``key``: given in full (``model.head.topk``) or as an unambiguous suffix
    (``head.topk``, ``topk``)."""
    sections = {f.name for f in dataclasses.fields(cfg)}
    head = key.split(".", 1)[0]
    if head in sections or ("." in key and difflib.get_close_matches(head, sorted(sections), n=1)):
        return key  # a full path, perhaps with a typo that set_field names
    found = [path for path in _all_field_paths(cfg) if path == key or path.endswith("." + key)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(f"override key '{key}' is ambiguous: write one of {', '.join(found)}")
    leaf = key.rsplit(".", 1)[-1]
    head = getattr(getattr(cfg, "model", None), "head", None)
    if isinstance(head, HeadConfig) and any(leaf in head_fields(c) for c in HEAD_CONFIGS.values()):
        raise ConfigError(_unread_message(head.type, leaf))
    leaves = {p.rsplit(".", 1)[-1] for p in _all_field_paths(cfg)}
    raise ConfigError(_unknown_key_message(key, leaf, leaves))


def _all_field_paths(obj: Any, prefix: str = "") -> list[str]:
    paths = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            paths += _all_field_paths(value, f"{prefix}{f.name}.")
        else:
            paths.append(prefix + f.name)
    return paths


def set_field(cfg: Any, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` on nested dataclasses, checking the key exists and the type is plausible."""
    *parents, leaf = dotted.split(".")
    obj, parent, walked = cfg, None, ""
    for part in parents:
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            names = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
            raise ConfigError(_unknown_key_message(walked + part, part, names))
        parent, obj, walked = obj, getattr(obj, part), f"{walked}{part}."
    names = {f.name for f in dataclasses.fields(obj)}
    if leaf not in names:
        if isinstance(obj, HeadConfig):
            raise ConfigError(_unread_message(obj.type, leaf))
        raise ConfigError(_unknown_key_message(dotted, leaf, names))
    if isinstance(obj, HeadConfig) and leaf == "type":  # another head: a section of its own fields
        setattr(parent, parents[-1], convert_head(obj, str(value)))
        return
    current = getattr(obj, leaf)
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{dotted}' is a section; set one of its fields, e.g. {dotted}.{next(iter(vars(current)))}=...")
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"'{dotted}' expects true or false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"'{dotted}' expects a number, got {value!r}")
        value = float(value) if isinstance(current, float) else value
    if isinstance(current, list) and not isinstance(value, list):
        value = [value]
    setattr(obj, leaf, value)
    if isinstance(obj, HeadConfig):
        check_head_choices(obj)
