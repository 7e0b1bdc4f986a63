"""The base every FPN dense head (RetinaNet, FCOS, ATSS, GFL, GFLv2) is a small variation of.

It owns what those heads share (DESIGN: "share where the logic really is shared"):
conv towers run on every level with shared weights, priors per level, flattening the per-level
maps into ``[B, N, K]`` tensors, and the decode → top-k → NMS flow. A head adds its output
convs, how its scores and boxes are read off the flattened maps, and its targets and losses.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import nn, Tensor

from ...config import DenseHeadConfig
from ...errors import ConfigError
from ..layers import conv_block
from ..postprocess import Candidates, top_candidates
from ..priors import Priors, grid_priors
from .base import Head


def _init_tower_conv(conv: nn.Conv2d) -> None:
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def conv_tower(in_channels: int, channels: int, num_convs: int, norm: str, gn_groups: int, conv: str = "conv",
               act: str = "relu") -> nn.Sequential:
    """``num_convs`` × (3x3 conv → norm → act), weights ~ N(0, 0.01) as in RetinaNet/FCOS; ``conv='dwconv'``
    makes each a depthwise 3x3 → norm → act → pointwise 1x1 → norm → act, as nanodet's GFL head. Layers
    are flat (``[conv, norm, act] * num_convs``); convs have a bias unless followed by BatchNorm."""
    if norm == "gn":
        norm_fn = partial(nn.GroupNorm, gn_groups)
    elif norm == "bn":
        norm_fn = nn.BatchNorm2d
    elif norm == "none":
        norm_fn = None
    else:
        raise ConfigError(f"head.norm must be gn, bn or none, got '{norm}'")
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += conv_block(in_channels if i == 0 else channels, channels, conv, norm_fn, act,
                             ("head.tower_conv", "head.activation"), bias=norm != "bn", init=_init_tower_conv)
    return nn.Sequential(*layers)


def output_conv(in_channels: int, out_channels: int, bias_prior: float | None = None) -> nn.Conv2d:
    """Final 3x3 prediction conv; ``bias_prior`` p sets the bias to -log((1-p)/p) (RetinaNet Sec. 4.1)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, 0.0 if bias_prior is None else -math.log((1 - bias_prior) / bias_prior))
    return conv


class Scale(nn.Module):
    """A learnable scalar multiplying one level's regression output (FCOS Sec. 3.2)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def flatten_levels(maps: list[Tensor], channels_per_prior: int) -> Tensor:
    """``[B, A*K, H, W]`` per level → ``[B, sum(H*W*A), K]`` (row-major, then anchor)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels_per_prior) for m in maps], dim=1)


class DenseHead(Head):
    """Shared towers + priors + decode flow. Subclasses implement :meth:`forward_level`,
    :meth:`scores_and_boxes` and :meth:`loss`."""

    def __init__(self, cfg: DenseHeadConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.strides = list(cfg.strides)
        tower = (in_channels, cfg.feat_channels, cfg.num_convs, cfg.norm, cfg.gn_groups, cfg.tower_conv, cfg.activation)
        self.cls_tower = conv_tower(*tower)
        self.reg_tower = conv_tower(*tower)

    def check_levels(self, num_levels: int) -> None:
        if num_levels != len(self.strides):
            raise ConfigError(f"the neck gives {num_levels} levels but head.strides lists {len(self.strides)}: "
                              f"{self.strides}")

    # ---- forward -----------------------------------------------------------------------
    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        """Raw per-level maps, e.g. ``{"cls": [...], "reg": [...]}``, each ``[B, K, H, W]``."""
        if len(feats) != len(self.strides):
            raise ConfigError(f"the neck gives {len(feats)} levels but head.strides has {len(self.strides)}")
        outputs: dict[str, list[Tensor]] = {}
        for level, x in enumerate(feats):
            for key, value in self.forward_level(x, level).items():
                outputs.setdefault(key, []).append(value)
        return outputs

    def forward_level(self, x: Tensor, level: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def float_outputs_and_priors(self, outputs: dict[str, list[Tensor]]) -> tuple[dict[str, list[Tensor]], Priors]:
        """The maps in fp32 (decoding and losses run in fp32, also under autocast) and their priors."""
        outputs = {k: [m.float() for m in v] for k, v in outputs.items()}
        return outputs, self.priors(outputs)

    def priors(self, outputs: dict[str, list[Tensor]]) -> Priors:
        any_maps = next(iter(outputs.values()))
        shapes = [tuple(m.shape[-2:]) for m in any_maps]
        return grid_priors(shapes, self.strides, self.cfg.prior_offset, any_maps[0].device, spacing=self.cfg.prior_stride)

    def inside_padding_limit(self, priors: Priors, image_sizes: Tensor) -> Tensor | None:
        """``[B, N]`` True for the priors that train, ``None`` when all do (``head.ignore_padding_priors=0``).

        With a divisor ``d``, a prior of stride ``s`` trains when its cell index is below
        ``ceil(ceil(size / d) * d / s)`` on both axes, ``size`` the image's own (unpadded) height or width:
        mmdetection's anchor ``valid_flags`` on each image's ``pad_shape``."""
        divisor = self.cfg.ignore_padding_priors
        if divisor <= 0:
            return None
        padded = torch.ceil(image_sizes.to(priors.points) / divisor) * divisor  # [B, 2] (h, w)
        strides = priors.strides[None, :]
        limit_y = torch.ceil(padded[:, 0:1] / strides) * strides
        limit_x = torch.ceil(padded[:, 1:2] / strides) * strides
        return (priors.points[None, :, 1] < limit_y) & (priors.points[None, :, 0] < limit_x)

    # ---- inference ---------------------------------------------------------------------
    def score_factors(self, outputs: dict[str, list[Tensor]]) -> Tensor | None:
        """``[B, N]`` factors multiplied into the scores after the candidates are chosen on
        :meth:`scores_and_boxes`' scores (FCOS/ATSS center-ness with ``candidate_score=class``), or ``None``."""
        return None

    def scores_and_boxes(self, outputs: dict[str, list[Tensor]], priors: Priors) -> tuple[Tensor, Tensor]:
        """Per-prior class scores ``[B, N, C]`` in (0, 1) and decoded boxes ``[B, N, 4]``."""
        raise NotImplementedError

    def candidates(self, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: DenseHeadConfig,
                   score_thresh: Tensor | float | None = None) -> Candidates:
        """Every prior decoded (:meth:`scores_and_boxes`), then per level the top ``topk`` (prior, class)
        pairs (:func:`~anchorfree.models.postprocess.top_candidates`, :meth:`score_factors` multiplied in)."""
        outputs, priors = self.float_outputs_and_priors(outputs)
        scores, boxes = self.scores_and_boxes(outputs, priors)
        factors = self.score_factors(outputs)
        split = lambda t: None if t is None else list(t.split(priors.num_per_level, dim=1))  # noqa: E731
        return top_candidates(split(scores), split(boxes), image_sizes, opts, score_thresh, split(factors))

    # ---- training ----------------------------------------------------------------------
    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image targets into ``boxes [B, M, 4]``, ``labels [B, M]``, ``valid [B, M]`` (M = max count)."""
    num_images = len(targets)
    max_boxes = max([len(t["boxes"]) for t in targets] + [1])
    boxes = torch.zeros(num_images, max_boxes, 4, device=device)
    labels = torch.full((num_images, max_boxes), -1, dtype=torch.long, device=device)
    for i, t in enumerate(targets):
        n = len(t["boxes"])
        boxes[i, :n] = t["boxes"].to(device, torch.float32)
        labels[i, :n] = t["labels"].to(device)
    return boxes, labels, labels >= 0


ASSIGN_BUDGET = 1 << 24  # elements of one [B, N, M] assignment tensor above which images are assigned one by one


def assign_images(assign: Callable[[Tensor, Tensor, Tensor | None], Tensor], gt_boxes: Tensor, gt_valid: Tensor,
                  prior_valid: Tensor | None, num_priors: int) -> Tensor:
    """``assign(gt_boxes [b, m, 4], gt_valid [b, m], prior_valid [b, N] | None) -> [b, N]`` on the whole batch,
    or one image at a time, each with its own box count, when the batch's ``[B, N, M]`` cost tensors would
    exceed :data:`ASSIGN_BUDGET` elements (``M`` is the largest box count: one crowded image would pad every
    image to it). Memory then grows with the boxes × priors of one image. The result is the same: boxes are
    packed first by :func:`pad_targets`, so indices into the first ``m`` boxes are indices into all."""
    num_images, max_boxes = gt_valid.shape
    if num_images == 1 or num_images * num_priors * max_boxes <= ASSIGN_BUDGET:
        return assign(gt_boxes, gt_valid, prior_valid)
    counts = gt_valid.sum(dim=1).clamp(min=1).tolist()
    return torch.cat([assign(gt_boxes[i:i + 1, :m], gt_valid[i:i + 1, :m],
                             None if prior_valid is None else prior_valid[i:i + 1])
                      for i, m in enumerate(counts)])


def matched_targets(matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``matched [B, N]`` (box index, negative for none) → positives mask ``[B, N]``, labels ``[B, N]``
    and boxes ``[B, N, 4]`` of the matched boxes (values at non-positives are those of box 0)."""
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
