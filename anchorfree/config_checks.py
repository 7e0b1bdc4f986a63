"""Value checks of a :class:`~anchorfree.config.Config`, run before anything is built or trained.

Every field with a range is listed once in :data:`RULES` (its path, the range, integer or not), every field with
a set of values once in :data:`CHOICES`; fields of a head section are checked when the chosen head has them. :func:`config_problems` returns every problem
found, :func:`validate_config` raises one :class:`~anchorfree.errors.ConfigError` listing them all, each
naming the key, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .config import HEAD_CHOICES, Config
from .errors import ConfigError

__all__ = ["CHOICES", "RULES", "Range", "check_choice", "config_problems", "validate_config"]


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``<`` where open); ``integer`` values must be whole numbers; ``each`` applies the
    range to every element of a list; ``length`` fixes a list's length."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    each: bool = False
    length: int | None = None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bounds = []
        if self.lo > -math.inf:
            bounds.append(f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}")
        if self.hi < math.inf:
            bounds.append(f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}")
        text = f"{kind} {' and '.join(bounds)}" if bounds else kind
        if self.each:
            text = f"a list of {self.length or ''} {text.replace('a number', 'numbers').replace('an integer', 'integers')}"
        return " ".join(text.split())

    def problem(self, value: Any) -> str | None:
        if self.each:
            if not isinstance(value, (list, tuple)) or (self.length is not None and len(value) != self.length):
                return f"must be {self.describe()}"
            return next((f"must be {self.describe()} (element {i} is {v!r})" for i, v in enumerate(value)
                         if self._bad(v)), None)
        return f"must be {self.describe()}" if self._bad(value) else None

    def _bad(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return True
        if self.integer and float(v) != int(v):
            return True
        if v < self.lo or (self.lo_open and v == self.lo):
            return True
        return v > self.hi or (self.hi_open and v == self.hi)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1)
COUNT = Range(1, integer=True)
NON_NEGATIVE_COUNT = Range(0, integer=True)
FRACTION_OPEN = Range(0, 1, lo_open=True, hi_open=True)

# path → range; head.* paths apply to the heads whose section has the field
RULES: dict[str, Range] = {
    "model.num_classes": COUNT,
    "model.input.min_size": Range(16, integer=True),
    "model.input.max_size": Range(16, integer=True),
    "model.input.size_divisor": COUNT,
    "model.input.mean": Range(each=True, length=3),
    "model.input.std": Range(0, lo_open=True, each=True, length=3),
    "model.backbone.frozen_stages": Range(0, 4, integer=True),
    "model.backbone.hourglass_stacks": COUNT,
    "model.backbone.hourglass_depth": COUNT,
    "model.backbone.hourglass_feat_channels": COUNT,
    "model.backbone.csp_widths": Range(8, integer=True, each=True, length=5),
    "model.backbone.csp_depths": Range(1, integer=True, each=True, length=4),
    "model.neck.csp_depth": COUNT,
    "model.neck.out_channels": COUNT,
    "model.neck.num_extra_levels": NON_NEGATIVE_COUNT,
    "model.head.score_thresh": Range(0, 1),
    "model.head.nms_thresh": Range(0, 1),
    "model.head.soft_nms_sigma": POSITIVE,
    "model.head.soft_nms_min_score": Range(0, 1),
    "model.head.max_detections": COUNT,
    "model.head.topk": COUNT,
    "model.head.num_convs": NON_NEGATIVE_COUNT,
    "model.head.feat_channels": COUNT,
    "model.head.gn_groups": COUNT,
    "model.head.prior_prob": FRACTION_OPEN,
    "model.head.strides": Range(1, integer=True, each=True),
    "model.head.prior_offset": Range(0, 1, hi_open=True),
    "model.head.cls_weight": NON_NEGATIVE,
    "model.head.bbox_weight": NON_NEGATIVE,
    "model.head.centerness_weight": NON_NEGATIVE,
    "model.head.focal_alpha": NON_NEGATIVE,
    "model.head.focal_gamma": NON_NEGATIVE,
    "model.head.center_sampling_radius": NON_NEGATIVE,
    "model.head.octave_base_scale": POSITIVE,
    "model.head.scales_per_octave": COUNT,
    "model.head.anchor_ratios": Range(0, lo_open=True, each=True),
    "model.head.pos_iou_thr": Range(0, 1),
    "model.head.neg_iou_thr": Range(0, 1),
    "model.head.delta_stds": Range(0, lo_open=True, each=True, length=4),
    "model.head.delta_means": Range(each=True, length=4),
    "model.head.delta_clip": POSITIVE,
    "model.head.smooth_l1_beta": POSITIVE,
    "model.head.atss_topk": COUNT,
    "model.head.reg_max": COUNT,
    "model.head.qfl_beta": NON_NEGATIVE,
    "model.head.dfl_weight": NON_NEGATIVE,
    "model.head.dgqp_topk": COUNT,
    "model.head.dgqp_channels": COUNT,
    "model.head.ignore_padding_priors": NON_NEGATIVE_COUNT,
    "model.head.stride": COUNT,
    "model.head.gaussian_min_overlap": FRACTION_OPEN,
    "model.head.peak_kernel": Range(1, integer=True),
    "model.head.embedding_threshold": NON_NEGATIVE,
    "model.head.num_candidates": COUNT,
    "train.epochs": COUNT,
    "train.batch_size": COUNT,
    "train.workers": NON_NEGATIVE_COUNT,
    "train.lr": POSITIVE,
    "train.momentum": Range(0, 1, hi_open=True),
    "train.weight_decay": NON_NEGATIVE,
    "train.gamma": Range(0, 1, lo_open=True),
    "train.min_lr_ratio": Range(0, 1),
    "train.warmup_iters": NON_NEGATIVE_COUNT,
    "train.warmup_ratio": Range(0, 1, lo_open=True),
    "train.grad_clip": NON_NEGATIVE,
    "train.ema_decay": FRACTION_OPEN,
    "train.eval_interval": NON_NEGATIVE_COUNT,
    "train.log_interval": COUNT,
    "train.milestones": Range(0, lo_open=True, each=True),
    "train.minutes": NON_NEGATIVE,
    "train.augment.hflip_prob": PROBABILITY,
    "train.augment.color_jitter": NON_NEGATIVE,
    "train.augment.hsv_h": Range(0, 0.5),
    "train.augment.hsv_s": PROBABILITY,
    "train.augment.hsv_v": PROBABILITY,
    "train.augment.mosaic_prob": PROBABILITY,
    "train.augment.multiscale_min_sizes": Range(16, integer=True, each=True),
    "train.augment.affine_scale": Range(0, lo_open=True, each=True, length=2),
    "train.augment.affine_translate": Range(0, 1, hi_open=True),
    "train.augment.affine_degrees": Range(0, 180),
    "train.augment.affine_shear": Range(0, 90, hi_open=True),
    "train.augment.crop_size": Range(-1, integer=True),
}

# path → the values it may take; model.head.* paths come from the head sections' table (config.HEAD_CHOICES)
CHOICES: dict[str, tuple[str, ...]] = {
    "model.input.channel_order": ("rgb", "bgr"),
    "model.input.resize": ("torchvision", "mmdet"),
    "model.input.normalize_on": ("unit", "byte"),
    "model.backbone.norm": ("frozen_bn", "bn", "gn"),
    "model.backbone.style": ("pytorch", "caffe"),
    "model.neck.type": ("fpn", "pan", "csp_pan", "upconv", "none"),
    "model.neck.extra_from": ("p5", "c5"),
    "model.neck.block": ("dwconv", "conv", "none"),
    "model.neck.downsample": ("interp", "conv"),
    "model.neck.activation": ("relu", "leaky_relu", "hardswish", "silu"),
    "train.optimizer": ("sgd", "adamw", "adam"),
    "train.schedule": ("step", "cosine"),
    "train.recipe": ("auto", "small", "preset"),
    "train.freeze": ("none", "backbone", "neck"),
    "train.dist_backend": ("auto", "nccl", "gloo"),
    **{f"model.head.{name}": values for name, values in HEAD_CHOICES.items()},
}


def check_choice(path: str, value: Any) -> None:
    """Refuse ``value`` for ``path`` when it is not one of :data:`CHOICES` (the message names both and the
    choices); what modules built without a whole config (the API, tests) call."""
    allowed = CHOICES[path]
    if value not in allowed:
        raise ConfigError(f"{path.removeprefix('model.')} must be one of {', '.join(allowed)}, got {value!r}")


_NOT_FOUND = object()


def _get(cfg: Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part, _NOT_FOUND)
        if obj is _NOT_FOUND:
            return _NOT_FOUND
    return obj


def _cross_field_problems(cfg: Config) -> list[str]:
    """Relations between fields (each message names both keys)."""
    m, t, h = cfg.model, cfg.train, cfg.model.head
    out: list[str] = []
    checks: list[tuple[Callable[[], bool], str]] = [
        (lambda: m.input.min_size <= m.input.max_size,
         f"model.input.min_size={m.input.min_size} is larger than model.input.max_size={m.input.max_size}"),
        (lambda: list(getattr(h, "strides", [1])) == sorted(getattr(h, "strides", [1])),
         f"model.head.strides={getattr(h, 'strides', None)} must be increasing"),
        (lambda: not hasattr(h, "regress_ranges") or len(h.regress_ranges) == len(h.strides),
         f"model.head.regress_ranges has {len(getattr(h, 'regress_ranges', []))} [lo, hi] pairs but model.head.strides "
         f"has {len(getattr(h, 'strides', []))} levels; give one pair per stride"),
        (lambda: not hasattr(h, "regress_ranges") or all(len(r) == 2 and r[0] < r[1] for r in h.regress_ranges),
         f"model.head.regress_ranges={getattr(h, 'regress_ranges', None)} must be [lo, hi] pairs with lo < hi"),
        (lambda: not hasattr(h, "neg_iou_thr") or h.neg_iou_thr <= h.pos_iou_thr,
         f"model.head.neg_iou_thr={getattr(h, 'neg_iou_thr', None)} is above model.head.pos_iou_thr="
         f"{getattr(h, 'pos_iou_thr', None)}"),
        (lambda: list(t.milestones) == sorted(t.milestones) and all(x <= t.epochs for x in t.milestones)
         or t.schedule != "step",
         f"train.milestones={t.milestones} must be increasing epochs within train.epochs={t.epochs}"),
        (lambda: t.augment.affine_scale[0] <= t.augment.affine_scale[1],
         f"train.augment.affine_scale={t.augment.affine_scale} must be [low, high] with low <= high"),
    ]
    for ok, message in checks:
        try:
            passed = ok()
        except (TypeError, IndexError):  # a malformed value: its own range check reports it
            passed = True
        if not passed:
            out.append(message)
    return out


def config_problems(cfg: Config) -> list[str]:
    """Every value problem of ``cfg``: ``"key=value: must be ..."`` per field, then relations between fields."""
    problems = []
    for path, rule in RULES.items():
        value = _get(cfg, path)
        if value is _NOT_FOUND:
            continue
        if path == "train.epochs" and value == 0:
            problems.append("train.epochs=0 would train nothing: set train.epochs >= 1 (to score a checkpoint "
                            "without training, use `anchorfree eval`)")
            continue
        problem = rule.problem(value)
        if problem:
            problems.append(f"{path}={value!r}: {problem}")
    for path, allowed in CHOICES.items():
        value = _get(cfg, path)
        if value is not _NOT_FOUND and value not in allowed:
            problems.append(f"{path}={value!r}: must be one of {', '.join(allowed)}")
    return problems + (_cross_field_problems(cfg) if not problems else [])


def validate_config(cfg: Config) -> Config:
    """``cfg`` if every value is in range, else :class:`ConfigError` listing every problem."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("invalid config values:\n  " + "\n  ".join(problems))
    return cfg
