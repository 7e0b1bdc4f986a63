"""CornerNet: Detecting Objects as Paired Keypoints (Law & Deng, ECCV 2018).

An object is a pair of corners on a stride-4 map (one per Hourglass stack). Per corner type — top-left
(TL) and bottom-right (BR) — a prediction module (Sec. 3.5, Fig. 7) runs **corner pooling** (Sec. 3.4):
for the TL corner, the max over everything below a location (``top`` pooling) plus the max over
everything to its right (``left`` pooling), each after a 3×3 conv-BN-ReLU; the sum goes through a 3×3
conv-BN, is added to a 1×1 conv-BN shortcut, ReLU, and a 3×3 conv-BN-ReLU. Pooling is a reversed or
forward cumulative max (``torch.cummax``), no compiled op. Three branches (3×3 conv → ReLU → 1×1)
follow: a heatmap per class, a 1-d embedding and a 2-d sub-pixel offset.

Targets (Sec. 3.2–3.3): a Gaussian at each object's integer corner location (radius from the box size,
as CenterNet); offsets ``x / R − ⌊x / R⌋`` at the corners. Losses: penalty-reduced focal loss on both
heatmaps (each divided by its number of peaks, the two averaged); associative embedding (Sec. 3.3):
pull ``Σ (e_tl − ē)² + (e_br − ē)²`` over an image's objects / N and push
``Σ_{k≠j} max(0, 1 − |ē_k − ē_j|)`` / (N (N − 1)), summed over images, ×0.1 each; smooth-L1 offsets at
the corners. Every stack is supervised (intermediate supervision); the losses are summed over stacks.

Decoding (Sec. 4.1, last stack): top-100 peaks per heatmap (3×3 max-pool), all 100 × 100 TL/BR pairs
at once; a pair is kept when both corners have the same class, ``|e_tl − e_br| ≤ 0.5`` and the BR corner
lies below and right of the TL corner; score = mean of the corner scores; the best 1000 pairs, then
Gaussian soft-NMS per class, 100 per image.

Reference: mmdetection 3.3.0 ``CornerHead`` (module names kept: ``tl_pool``, ``tl_heat``, ``tl_emb``,
``tl_off`` and ``br_*``, each a list over stacks) — the parity tests compare targets, losses and
detections with it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ...boxes import clip_boxes
from ...config import CornerNetHeadConfig
from ...errors import ConfigError
from ..layers import ConvBN
from ..postprocess import Candidates
from .base import Head
from .keypoint import (branch, check_overlap, draw_gaussians, flat_objects, gather_locations, gaussian_radius,
                       integer_radius, last_writer, local_maxima, normalizer, penalty_reduced_focal_loss, top_peaks)

# direction → (dimension, scan from the end): 'top' pooling takes at each location the max of it and
# everything below it (a cumulative max from the bottom), 'left' of everything to its right.
POOL_SCANS = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}


def corner_pool(x: Tensor, direction: str) -> Tensor:
    """Corner pooling (CornerNet Sec. 3.4, Eq. 2) as a cumulative max along rows or columns."""
    dim, reverse = POOL_SCANS[direction]
    if reverse:
        return torch.cummax(x.flip(dim), dim=dim).values.flip(dim)
    return torch.cummax(x, dim=dim).values


class CornerPoolModule(nn.Module):
    """The prediction module's pooling part for one corner type (CornerNet Fig. 7; mmdetection ``BiCornerPool``)."""

    def __init__(self, in_channels: int, directions: tuple[str, str], pool_channels: int) -> None:
        super().__init__()
        self.directions = directions
        self.direction1_conv = ConvBN(in_channels, pool_channels, 3)
        self.direction2_conv = ConvBN(in_channels, pool_channels, 3)
        self.aftpool_conv = ConvBN(pool_channels, in_channels, 3, act=False)
        self.conv1 = ConvBN(in_channels, in_channels, 1, act=False)
        self.conv2 = ConvBN(in_channels, in_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        pooled = (corner_pool(self.direction1_conv(x), self.directions[0])
                  + corner_pool(self.direction2_conv(x), self.directions[1]))
        return self.conv2(F.relu(self.aftpool_conv(pooled) + self.conv1(x)))


def cornernet_targets(targets: list[dict[str, Tensor]], num_classes: int, map_size: tuple[int, int], stride: int,
                      min_overlap: float, radius_variant: str, device: torch.device) -> dict[str, Tensor]:
    """TL/BR heatmaps ``[B, C, H, W]`` and offsets ``[B, 2, H, W]``, and per object its image, TL and BR
    flat locations (for the embedding losses); all objects at once. Corner locations are
    ``int(min(x / R, W - 1))`` (so a box ending at the input's edge has offset 1); the radius comes from
    the box size rounded up, in float64 (the reference computes it with Python numbers)."""
    height, width = map_size
    boxes, labels, image_index = flat_objects(targets, device)
    num_images = len(targets)
    ratio = 1.0 / stride
    scaled = boxes * ratio  # left, top, right, bottom in map pixels
    limits = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=torch.float32, device=device)
    index = torch.minimum(scaled, limits).long()
    sizes = (scaled[:, 2:] - scaled[:, :2]).ceil().double()
    radii = integer_radius(gaussian_radius(sizes[:, 1], sizes[:, 0], min_overlap, radius_variant))
    shape = (num_images, num_classes, height, width)
    out: dict[str, Tensor] = {"image_index": image_index}
    for name, cols in (("tl", slice(0, 2)), ("br", slice(2, 4))):
        corner = index[:, cols]
        out[f"{name}_heatmap"] = draw_gaussians(shape, image_index, labels, corner, radii, device)
        cell = (image_index * height + corner[:, 1]) * width + corner[:, 0]
        win = last_writer(cell, num_images * height * width)
        offset = torch.zeros(num_images, height, width, 2, device=device)
        offset[image_index[win], corner[win, 1], corner[win, 0]] = (scaled[:, cols] - corner)[win]
        out[f"{name}_offset"] = offset.permute(0, 3, 1, 2)
        out[f"{name}_location"] = corner[:, 1] * width + corner[:, 0]
    return out


def embedding_losses(tl_emb: Tensor, br_emb: Tensor, image_index: Tensor, tl_location: Tensor,
                     br_location: Tensor, num_images: int, margin: float = 1.0) -> tuple[Tensor, Tensor]:
    """Associative embedding pull and push (CornerNet Eqs. 4–5) per image, summed over the images.

    ``tl_emb``/``br_emb`` are ``[B, D, H, W]``; objects are given by their image and corner locations. Pull
    is ``Σ_k ‖e_tl − ē‖² + ‖e_br − ē‖²`` / N; push is ``Σ_{k≠j} max(0, margin − |Σ_d (ē_k − ē_j)|)`` /
    (N (N − 1)) (0 for fewer than 2 objects), as mmdetection's ``AssociativeEmbeddingLoss``.
    """
    if image_index.numel() == 0:
        zero = tl_emb.sum() * 0
        return zero, zero
    counts = torch.bincount(image_index, minlength=num_images)
    slot = torch.arange(len(image_index), device=image_index.device) - (torch.cumsum(counts, 0) - counts)[image_index]
    size = int(counts.max())
    dim = tl_emb.shape[1]
    tl = tl_emb.flatten(2)[image_index, :, tl_location]  # [N, D]
    br = br_emb.flatten(2)[image_index, :, br_location]
    mean = (tl + br) / 2
    pull_per_object = ((tl - mean) ** 2 + (br - mean) ** 2).sum(dim=1)
    n = counts.float()
    pull = (torch.zeros(num_images, device=tl.device).index_add(0, image_index, pull_per_object)
            / n.clamp(min=1)).sum()
    packed = torch.zeros(num_images, size, dim, device=tl.device)
    valid = torch.zeros(num_images, size, dtype=torch.bool, device=tl.device)
    packed[image_index, slot] = mean
    valid[image_index, slot] = True
    diff = (packed[:, :, None, :] - packed[:, None, :, :]).sum(-1).abs()  # [B, M, M]
    pairs = valid[:, :, None] & valid[:, None, :] & ~torch.eye(size, dtype=torch.bool, device=tl.device)
    push_sum = (F.relu(margin - diff) * pairs).sum(dim=(1, 2))
    push = torch.where(counts > 1, push_sum / (n * (n - 1)).clamp(min=1), torch.zeros_like(push_sum)).sum()
    return pull, push


class CornerNetHead(Head):
    """Per stack: TL/BR corner pooling modules and heatmap, embedding and offset branches."""

    CLASS_LAYERS = ("tl_heat", "br_heat")
    HAS_UNUSED_PARAMETERS = True  # the intermediate stack's branches (as mmdetection's DDP setting)

    def __init__(self, cfg: CornerNetHeadConfig, in_channels: int, num_classes: int, num_stacks: int = 2) -> None:
        super().__init__()
        check_overlap(cfg.gaussian_min_overlap)
        if cfg.embedding_dim < 1:
            raise ConfigError(f"head.embedding_dim must be >= 1, got {cfg.embedding_dim}")
        self.cfg, self.num_classes, self.in_channels = cfg, num_classes, in_channels
        self.num_stacks = num_stacks
        c = in_channels
        self.tl_pool = nn.ModuleList(CornerPoolModule(c, ("top", "left"), cfg.pool_channels) for _ in range(num_stacks))
        self.br_pool = nn.ModuleList(CornerPoolModule(c, ("bottom", "right"), cfg.pool_channels)
                                     for _ in range(num_stacks))
        bias = -math.log((1 - cfg.prior_prob) / cfg.prior_prob)
        for corner in ("tl", "br"):
            heat = nn.ModuleList(branch(c, cfg.feat_channels, self.num_classes) for _ in range(num_stacks))
            for b in heat:
                nn.init.constant_(b[-1].conv.bias, bias)
            setattr(self, f"{corner}_heat", heat)
            setattr(self, f"{corner}_emb", nn.ModuleList(branch(c, cfg.feat_channels, cfg.embedding_dim)
                                                         for _ in range(num_stacks)))
            setattr(self, f"{corner}_off", nn.ModuleList(branch(c, cfg.feat_channels, 2) for _ in range(num_stacks)))

    @classmethod
    def build(cls, cfg: CornerNetHeadConfig, in_channels: int, num_classes: int, num_levels: int) -> "CornerNetHead":
        """One set of modules per Hourglass stack (every stack is supervised)."""
        return cls(cfg, in_channels, num_classes, num_stacks=num_levels)

    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        out: dict[str, list[Tensor]] = {k: [] for k in ("tl_heat", "br_heat", "tl_emb", "br_emb", "tl_off", "br_off")}
        for i, x in enumerate(feats):
            pooled = {"tl": self.tl_pool[i](x), "br": self.br_pool[i](x)}
            for corner, p in pooled.items():
                out[f"{corner}_heat"].append(getattr(self, f"{corner}_heat")[i](p))
                out[f"{corner}_emb"].append(getattr(self, f"{corner}_emb")[i](p))
                out[f"{corner}_off"].append(getattr(self, f"{corner}_off")[i](p))
        return out

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        outputs = {k: [m.float() for m in v] for k, v in outputs.items()}
        ref = outputs["tl_heat"][-1]
        t = cornernet_targets(targets, self.num_classes, tuple(ref.shape[-2:]), cfg.stride, cfg.gaussian_min_overlap,
                              cfg.gaussian_radius, ref.device)
        peaks = {c: normalizer(t[f"{c}_heatmap"].eq(1).sum()) for c in ("tl", "br")}
        masks = {c: t[f"{c}_heatmap"].eq(1).any(dim=1, keepdim=True).float() for c in ("tl", "br")}
        heat, off, pull, push = 0.0, 0.0, 0.0, 0.0  # each summed over the stacks
        for i in range(len(outputs["tl_heat"])):
            for c in ("tl", "br"):  # TL and BR averaged
                heat = heat + penalty_reduced_focal_loss(outputs[f"{c}_heat"][i], t[f"{c}_heatmap"], cfg.focal_alpha,
                                                         cfg.focal_beta) / peaks[c] / 2
                smooth = F.smooth_l1_loss(outputs[f"{c}_off"][i], t[f"{c}_offset"], reduction="none",
                                          beta=cfg.smooth_l1_beta)
                off = off + (smooth * masks[c]).sum() / normalizer(masks[c].sum()) / 2
            stack_pull, stack_push = embedding_losses(outputs["tl_emb"][i], outputs["br_emb"][i], t["image_index"],
                                                      t["tl_location"], t["br_location"], len(targets), cfg.push_margin)
            pull, push = pull + stack_pull, push + stack_push
        return {"loss_heatmap": cfg.heatmap_weight * heat, "loss_pull": cfg.pull_weight * pull,
                "loss_push": cfg.push_weight * push, "loss_offset": cfg.offset_weight * off}

    def decode(self, outputs: dict[str, list[Tensor]], topk: int, peak_kernel: int, embedding_threshold: float,
               num_candidates: int) -> tuple[Tensor, Tensor, Tensor]:
        """Best ``num_candidates`` corner pairs of the last stack: ``boxes [B, P, 4]`` (input pixels),
        ``scores [B, P]`` (``-inf`` for rejected pairs) and ``labels [B, P]``; all K × K pairs at once."""
        corners = {}
        for c in ("tl", "br"):
            heat = local_maxima(outputs[f"{c}_heat"][-1].float().sigmoid(), peak_kernel)
            scores, location, labels, ys, xs = top_peaks(heat, topk)
            offset = gather_locations(outputs[f"{c}_off"][-1].float(), location)
            emb = gather_locations(outputs[f"{c}_emb"][-1].float(), location)
            corners[c] = (scores, labels, (xs + offset[..., 0]) * self.cfg.stride, (ys + offset[..., 1]) * self.cfg.stride,
                          emb)
        tl_s, tl_l, tl_x, tl_y, tl_e = (v[:, :, None] for v in corners["tl"])  # rows: TL corners, [B, K, 1(, D)]
        br_s, br_l, br_x, br_y, br_e = (v[:, None] for v in corners["br"])  # columns: BR corners, [B, 1, K(, D)]
        tl_x, tl_y, br_x, br_y = tl_x.clamp(min=0), tl_y.clamp(min=0), br_x.clamp(min=0), br_y.clamp(min=0)
        k1, k2 = tl_s.shape[1], br_s.shape[2]
        boxes = torch.stack(torch.broadcast_tensors(tl_x, tl_y, br_x, br_y), dim=-1)  # [B, K, K, 4]
        distance = (tl_e - br_e).norm(dim=-1)  # |e_tl - e_br| for 1-d embeddings
        scores = (tl_s + br_s) / 2
        reject = (tl_l != br_l) | (distance > embedding_threshold) | (br_x <= tl_x) | (br_y <= tl_y)
        scores = torch.where(reject, torch.full_like(scores, float("-inf")), scores)
        scores, index = scores.reshape(scores.shape[0], -1).topk(min(num_candidates, k1 * k2), dim=1)
        boxes = boxes.reshape(boxes.shape[0], -1, 4).gather(1, index[..., None].expand(-1, -1, 4))
        labels = tl_l.expand(-1, -1, k2).reshape(scores.shape[0], -1).gather(1, index)
        return boxes, scores, labels

    def candidates(self, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: CornerNetHeadConfig,
                   score_thresh: Tensor | float | None = None) -> Candidates:
        """The best corner pairs (:meth:`decode`; rejected pairs: ``-inf``), clipped with ``clip_boxes``."""
        boxes, scores, labels = self.decode(outputs, opts.topk, opts.peak_kernel, opts.embedding_threshold,
                                            opts.num_candidates)
        if opts.clip_boxes:
            boxes = clip_boxes(boxes, image_sizes.to(boxes.device))
        return Candidates(boxes, scores, labels)

__all__ = ["CornerNetHead", "CornerPoolModule", "corner_pool", "cornernet_targets", "embedding_losses"]
