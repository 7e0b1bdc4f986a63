"""Configuration as plain dataclasses: dumped to / loaded from YAML, overridden by ``key=value``.

A preset name (see :mod:`anchorfree.presets`) gives a :class:`Config`; ``head.center_sampling_radius=0``
or ``train.lr=0.005`` override single fields. A key without a section (``epochs=3``) is accepted
when exactly one section has a field of that name.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

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
    """A torchvision body. ``weights`` is a local ImageNet state-dict path (never downloaded)."""

    name: str = "resnet50"  # resnet10 | resnet18 | resnet34 | resnet50 | resnet101 | shufflenet_v2_x0_5 |
    #                         shufflenet_v2_x1_0 | mobilenet_v3_large | mobilenet_v3_small | regnet_x_400mf |
    #                         regnet_y_400mf | efficientnet_b0
    norm: str = "frozen_bn"  # frozen_bn | bn | gn (gn: ResNet only)
    weights: str | None = None
    frozen_stages: int = 1  # 0: nothing frozen, 1: stem + layer1 (as in the references), ... 4
    out_levels: list[int] = field(default_factory=lambda: [3, 4, 5])  # C3..C5 (stride 8..32)


@dataclass
class NeckConfig:
    """FPN producing P3..P7 (Lin et al. 2017; RetinaNet/FCOS add P6, P7 by stride-2 convs), or a slim
    PAN (Liu et al. 2018) with an extra bottom-up path, as nanodet's, for the light presets."""

    type: str = "fpn"  # fpn | pan
    out_channels: int = 256
    num_extra_levels: int = 2  # P6, P7 (PAN: stride-2 blocks on its last output)
    extra_from: str = "p5"  # FPN: p5 (FCOS, torchvision) | c5 (RetinaNet paper)
    relu_before_extra: bool = True  # FPN: ReLU between P6 and P7 conv
    block: str = "dwconv"  # PAN block per output: dwconv (dw 3x3-BN-act, pw 1x1-BN-act) | conv (3x3-BN-act) | none
    downsample: str = "interp"  # PAN bottom-up: interp (bilinear, nanodet) | conv (stride-2 block, PANet)
    activation: str = "leaky_relu"  # PAN: relu | leaky_relu (slope 0.1) | hardswish | silu


@dataclass
class HeadConfig:
    """Dense prediction head; fields a given head does not use are ignored by it."""

    type: str = "fcos"
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
    # FCOS box regression (Tian et al. 2019)
    norm_on_bbox: bool = True  # regress (l, t, r, b) in units of the level's stride
    bbox_activation: str = "relu"  # relu | exp
    scale_per_level: bool = True  # learnable scalar per level multiplying the regression
    centerness_on_reg: bool = True  # center-ness predicted from the regression tower
    # FCOS targets
    regress_ranges: list[list[float]] = field(
        default_factory=lambda: [[-1, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]]
    )
    range_bounds: str = "closed"  # closed: lo <= max(ltrb) <= hi (mmdet) | open: lo < d < hi (torchvision)
    center_sampling_radius: float = 1.5  # 0 disables center sampling
    # losses
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    iou_loss: str = "giou"  # giou | iou (-log IoU, UnitBox)
    bbox_weight: float = 1.0
    bbox_weighting: str = "centerness"  # centerness: weight by center-ness targets (mmdet) | none (torchvision)
    centerness_weight: float = 1.0
    # anchors (RetinaNet, ATSS): per level sizes stride * octave_base_scale * 2**(i / scales_per_octave)
    octave_base_scale: float = 4.0
    scales_per_octave: int = 3
    anchor_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # h / w
    anchor_sizes: list[list[float]] = field(default_factory=list)  # explicit sizes per level (torchvision)
    round_anchors: bool = False  # round anchor half-sizes (torchvision's AnchorGenerator)
    # max-IoU assignment (RetinaNet, Sec. 4)
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    low_quality_matches: str = "gt"  # gt: a box's best anchors go to it (mmdet) | argmax: they keep their
    #                                  own best box (torchvision) | none
    # box deltas (RetinaNet, ATSS): ((dx, dy, dw, dh) - means) / stds, dw/dh clipped at decode
    delta_means: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    delta_stds: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    delta_clip: float = 4.135166556742356  # log(1000 / 16)
    box_loss: str = "l1"  # l1 | smooth_l1 | giou (RetinaNet)
    loss_normalizer: str = "batch"  # batch: sums / positives of the batch (mmdet) | image: per image, then
    #                                 the mean over images (torchvision RetinaNet)
    smooth_l1_beta: float = 0.11
    # ATSS (Zhang et al. 2020)
    atss_topk: int = 9
    # GFL (Li et al. 2020) and GFLv2 (Li et al. 2021)
    reg_max: int = 16
    qfl_beta: float = 2.0
    dfl_weight: float = 0.25
    dgqp_topk: int = 4
    dgqp_channels: int = 64
    # inference
    score_mode: str = "mul"  # mul: cls * ctr | sqrt: sqrt(cls * ctr) (torchvision)
    score_thresh: float = 0.05
    topk: int = 1000  # candidates per level
    nms_thresh: float = 0.6
    max_detections: int = 100


@dataclass
class InputConfig:
    """Network input: resize rule (torchvision's min/max size), normalisation, padding."""

    min_size: int = 800
    max_size: int = 1333
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # on 0..1 pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    size_divisor: int = 128


@dataclass
class ModelConfig:
    name: str = "fcos_r50_fpn"
    num_classes: int = 80
    class_names: list[str] | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    input: InputConfig = field(default_factory=InputConfig)


@dataclass
class AugmentConfig:
    """Training augmentation. Mosaic (Bochkovskiy et al. 2020, YOLOv4) and random affine are off by
    default; see :mod:`anchorfree.data.mosaic`."""

    hflip_prob: float = 0.5
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables
    multiscale_min_sizes: list[int] = field(default_factory=list)  # e.g. [640, 672, 704]; empty: off
    mosaic_prob: float = 0.0  # probability that a sample is a 4-image mosaic (square, input.min_size); 0: off
    affine: bool = False  # random affine on the samples that are not mosaics (mosaics always get one)
    affine_scale: list[float] = field(default_factory=lambda: [0.5, 1.5])  # zoom range
    affine_translate: float = 0.1  # max shift, as a fraction of the output size
    affine_degrees: float = 0.0  # max rotation (degrees)
    affine_shear: float = 0.0  # max shear (degrees)
    min_area_ratio: float = 0.1  # after mosaic/affine, drop boxes keeping less of their area inside the image
    close_mosaic: int = 0  # the last N epochs train without mosaic and affine (YOLOv8's close_mosaic)


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 16
    workers: int = 2
    optimizer: str = "sgd"  # sgd | adamw
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
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    ema: bool = False
    ema_decay: float = 0.9998
    eval_interval: int = 1  # epochs between validations; 0: only at the end
    log_interval: int = 20
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True
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
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(_unknown_key_message(f"{where}{key}", key, names))
        sub = hints[key]
        if dataclasses.is_dataclass(sub):
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


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings; values are parsed as YAML (``0.01``, ``[8, 11]``, ``true``)."""
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
    leaves = {p.rsplit(".", 1)[-1] for p in _all_field_paths(cfg)}
    raise ConfigError(_unknown_key_message(key, key.rsplit(".", 1)[-1], leaves))


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
    obj, walked = cfg, ""
    for part in parents:
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            names = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
            raise ConfigError(_unknown_key_message(walked + part, part, names))
        obj, walked = getattr(obj, part), f"{walked}{part}."
    names = {f.name for f in dataclasses.fields(obj)}
    if leaf not in names:
        raise ConfigError(_unknown_key_message(dotted, leaf, names))
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
