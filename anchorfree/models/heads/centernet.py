"""CenterNet: Objects as Points (Zhou, Wang, Krähenbühl; arXiv 1904.07850, 2019).

An object is its center point on one stride-4 map (from the up-convolution neck). Three branches, each
3×3 conv → ReLU → 1×1 conv (Sec. 4): a heatmap per class (sigmoid; bias −2.19, i.e. prior 0.1), the box
size ``(w, h)`` and the sub-pixel offset of the center lost by the stride, both in map pixels.

Targets (Sec. 3): each object's center ``p / R`` is floored to an integer location ``p̃``; a Gaussian
with CornerNet's size-adaptive radius is drawn there on its class's map (element-wise max where
objects of one class overlap); ``(w, h)`` and ``p / R − p̃`` are regressed at ``p̃`` only.
Losses: penalty-reduced focal loss (α 2, β 4, Eq. 1) divided by the number of peaks; L1 on ``(w, h)``
×0.1 (Eq. 3) and on the offset ×1 (Eq. 2), averaged over those locations and the two channels.

Decoding: peaks are the locations equal to their 3×3 max-pool; the top 100 over all classes give
boxes ``(x + δx ± w/2, y + δy ± h/2) · R``; no NMS. Flip test averages the heatmaps and sizes of the
image and its mirror image (the offsets of the image alone), as the paper's code.

Reference: mmdetection 3.3.0 ``CenterNetHead`` (the normalisers above, the corrected Gaussian radius
with ``min_overlap=0.3``, plain keys ``heatmap_head.0/2``, ``wh_head``, ``offset_head``) — the parity tests
compare targets, losses and detections with it; ``head.gaussian_radius=original`` with
``gaussian_min_overlap=0.7`` is the paper's code.
"""
from __future__ import annotations

import math

import torch
from torch import nn, Tensor

from ...boxes import clip_boxes
from ...config import CenterNetHeadConfig
from ...errors import ConfigError
from ..postprocess import Candidates
from ..layers import FloatConv2d
from .base import Head
from .keypoint import (check_overlap, draw_gaussians, flat_objects, gather_locations, gaussian_radius,
                       integer_radius, last_writer, local_maxima, normalizer, penalty_reduced_focal_loss, top_peaks)


def centernet_targets(targets: list[dict[str, Tensor]], num_classes: int, map_size: tuple[int, int], stride: int,
                      min_overlap: float, radius_variant: str, device: torch.device) -> dict[str, Tensor]:
    """Heatmaps ``[B, C, H, W]``, ``wh`` and ``offset`` ``[B, 2, H, W]`` and their weight ``[B, 2, H, W]`` for
    boxes in input pixels; all objects at once. Where objects share a center location, the later one's
    size and offset are kept (as the reference's loop over objects)."""
    height, width = map_size
    boxes, labels, image_index = flat_objects(targets, device)
    num_images = len(targets)
    ratio = 1.0 / stride
    cx = (boxes[:, 0] + boxes[:, 2]) * ratio / 2
    cy = (boxes[:, 1] + boxes[:, 3]) * ratio / 2
    ix, iy = cx.long(), cy.long()  # truncation, as int(); centers are >= 0
    if len(boxes) and (int(ix.max()) >= width or int(iy.max()) >= height):
        raise ConfigError(f"a box center lies outside the {height}x{width} map; boxes must lie inside the input")
    box_w, box_h = (boxes[:, 2] - boxes[:, 0]) * ratio, (boxes[:, 3] - boxes[:, 1]) * ratio
    radii = integer_radius(gaussian_radius(box_h, box_w, min_overlap, radius_variant))
    heat = draw_gaussians((num_images, num_classes, height, width), image_index, labels,
                          torch.stack((ix, iy), dim=1), radii, device)

    cell = (image_index * height + iy) * width + ix
    win = last_writer(cell, num_images * height * width)
    wh = torch.zeros(num_images, height, width, 2, device=device)
    offset = torch.zeros_like(wh)
    weight = torch.zeros_like(wh)
    b, y, x = image_index[win], iy[win], ix[win]
    wh[b, y, x] = torch.stack((box_w, box_h), dim=1)[win]
    offset[b, y, x] = torch.stack((cx - ix, cy - iy), dim=1)[win]
    weight[b, y, x] = 1.0
    return {"heatmap": heat, "wh": wh.permute(0, 3, 1, 2), "offset": offset.permute(0, 3, 1, 2),
            "weight": weight.permute(0, 3, 1, 2)}


class CenterNetHead(Head):
    """Heatmap, size and offset branches on one stride-``head.stride`` map; each output conv computes in
    float32 under autocast (:class:`FloatConv2d`)."""

    CLASS_LAYERS = ("heatmap_head.2",)

    def __init__(self, cfg: CenterNetHeadConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        check_overlap(cfg.gaussian_min_overlap)
        self.cfg, self.num_classes = cfg, num_classes
        c = cfg.feat_channels
        self.heatmap_head = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(inplace=True),
                                          FloatConv2d(c, num_classes, 1))
        self.wh_head = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(inplace=True), FloatConv2d(c, 2, 1))
        self.offset_head = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(inplace=True),
                                         FloatConv2d(c, 2, 1))
        nn.init.constant_(self.heatmap_head[-1].bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))
        for branch in (self.wh_head, self.offset_head):  # N(0, 0.001), zero bias (mmdetection)
            for conv in branch[0::2]:
                nn.init.normal_(conv.weight, std=0.001)
                nn.init.zeros_(conv.bias)

    def check_levels(self, num_levels: int) -> None:
        if num_levels != 1:
            raise ConfigError(f"the centernet head predicts on one map but the neck gives {num_levels}; use "
                              "neck.type=upconv (one stride-4 map)")

    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        x = feats[-1]
        return {"heatmap": [self.heatmap_head(x)], "wh": [self.wh_head(x)], "offset": [self.offset_head(x)]}

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        heat, wh, offset = (outputs[k][0].float() for k in ("heatmap", "wh", "offset"))
        t = centernet_targets(targets, self.num_classes, tuple(heat.shape[-2:]), cfg.stride, cfg.gaussian_min_overlap,
                              cfg.gaussian_radius, heat.device)
        num_peaks = t["heatmap"].eq(1).sum()
        loss_heat = penalty_reduced_focal_loss(heat, t["heatmap"], cfg.focal_alpha, cfg.focal_beta) / normalizer(num_peaks)
        per_channel = normalizer(num_peaks, 2.0)  # mmdetection: the number of peaks times the two channels
        loss_wh = ((wh - t["wh"]).abs() * t["weight"]).sum() / per_channel
        loss_offset = ((offset - t["offset"]).abs() * t["weight"]).sum() / per_channel
        return {"loss_heatmap": cfg.heatmap_weight * loss_heat, "loss_wh": cfg.wh_weight * loss_wh,
                "loss_offset": cfg.offset_weight * loss_offset}

    def merge_flipped(self, outputs: dict[str, list[Tensor]],
                      flipped: dict[str, list[Tensor]]) -> dict[str, list[Tensor]]:
        """Average the heatmap probabilities and the sizes of the image and of its mirror image (flipped
        back); keep the image's own offsets. The heatmap is returned as logits of the average."""
        prob = (outputs["heatmap"][0].float().sigmoid() + flipped["heatmap"][0].float().sigmoid().flip(-1)) / 2
        eps = 1e-6
        logits = torch.logit(prob.clamp(eps, 1 - eps))
        return {"heatmap": [logits], "wh": [(outputs["wh"][0].float() + flipped["wh"][0].float().flip(-1)) / 2],
                "offset": outputs["offset"]}

    def decode(self, outputs: dict[str, list[Tensor]], topk: int, peak_kernel: int) -> tuple[Tensor, Tensor, Tensor]:
        """``boxes [B, K, 4]`` (input pixels), ``scores [B, K]`` and ``labels [B, K]`` of the top-K peaks."""
        heat = local_maxima(outputs["heatmap"][0].float().sigmoid(), peak_kernel)
        scores, location, labels, ys, xs = top_peaks(heat, topk)
        wh = gather_locations(outputs["wh"][0].float(), location)
        offset = gather_locations(outputs["offset"][0].float(), location)
        xs, ys = xs + offset[..., 0], ys + offset[..., 1]
        half_w, half_h = wh[..., 0] / 2, wh[..., 1] / 2
        s = float(self.cfg.stride)
        boxes = torch.stack(((xs - half_w) * s, (ys - half_h) * s, (xs + half_w) * s, (ys + half_h) * s), dim=-1)
        return boxes, scores, labels

    def candidates(self, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: CenterNetHeadConfig,
                   score_thresh: Tensor | float | None = None) -> Candidates:
        """The top ``topk`` peaks (:meth:`decode`), clipped to the image with ``clip_boxes``."""
        boxes, scores, labels = self.decode(outputs, opts.topk, opts.peak_kernel)
        if opts.clip_boxes:
            boxes = clip_boxes(boxes, image_sizes.to(boxes.device))
        return Candidates(boxes, scores, labels)

__all__ = ["CenterNetHead", "centernet_targets"]
