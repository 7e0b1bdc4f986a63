"""Named model + training settings. Each preset is a plain function returning a :class:`Config`.

``*_r50_fpn`` presets follow the reference 1x COCO schedules; ``*_tiny`` presets are small
enough to train in minutes on a laptop CPU and are what the demo and the tests use.
"""
from __future__ import annotations

from typing import Callable

from .config import Config, ConfigError

INF = 1e8


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
    """FCOS in torchvision's conventions (``fcos_resnet50_fpn``, 39.2 AP): points at offset 0, no
    per-level scale, open scale ranges, unweighted GIoU, ``sqrt(cls*ctr)`` > 0.2, 91 classes."""
    cfg = fcos_r50_fpn()
    cfg.model.name = "fcos_r50_fpn_torchvision"
    cfg.model.num_classes = 91
    h = cfg.model.head
    h.prior_offset = 0.0
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


PRESETS: dict[str, Callable[[], Config]] = {
    "fcos_r50_fpn": fcos_r50_fpn,
    "fcos_r18_fpn": _fcos_resnet(18),
    "fcos_r34_fpn": _fcos_resnet(34),
    "fcos_r101_fpn": _fcos_resnet(101),
    "fcos_r50_fpn_torchvision": fcos_r50_fpn_torchvision,
    "fcos_r18_fpn_tiny": fcos_r18_fpn_tiny,
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
    return [(name, (fn.__doc__ or "").strip().splitlines()[0]) for name, fn in PRESETS.items()]
