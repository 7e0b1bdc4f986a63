"""Post-processing shared by all heads: candidates → score threshold → suppression → best N per image.

Suppression is a named choice (``head.nms``, or the ``nms`` option of ``predict``):

* ``classwise``: hard NMS among boxes of the same image and class (the FPN heads' reference setting);
* ``agnostic``: hard NMS among all boxes of an image, whatever their class;
* ``soft_gaussian`` / ``soft_linear``: Soft-NMS (Bodla et al., ICCV 2017) within image and class:
  instead of removing the boxes that overlap a selected one, their scores decay —
  ``s *= exp(-IoU² / σ)`` (Gaussian, mmcv's form of Eq. 3; every box) or ``s *= 1 - IoU`` where
  ``IoU ≥ nms_thresh`` (linear); boxes that decay below ``soft_nms_min_score`` are dropped
  (CornerNet's reference setting: Gaussian, σ 0.5);
* ``none``: no suppression (CenterNet, whose 3×3 max-pool peak picking already keeps one peak per
  object).

Everything is batched: one hard-NMS call for the whole batch (groups shifted apart), Soft-NMS run on
all (image, class) groups at once (one step per selected box of the largest group), and a vectorised
per-image cap of ``max_detections``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchvision.ops import nms

from ..boxes import clip_boxes
from ..config import NMS_MODES, HeadConfig, check_head_choices
from ..config_checks import RULES
from ..errors import ConfigError
from ..structures import Detections

__all__ = ["NMS_MODES", "check_inference_options", "batched_nms_all", "soft_nms", "suppress", "suppress_batch", "Candidates", "sym_min",
           "top_candidates", "suppress_candidates", "select_detections"]


def check_inference_options(opts: HeadConfig) -> None:
    """Refuse inference settings that cannot work, naming the field: the head's inference fields checked by the
    config's own rules (:data:`~anchorfree.config_checks.RULES`, :data:`~anchorfree.config_checks.CHOICES`)."""
    check_head_choices(opts)
    for name in type(opts).INFERENCE_FIELDS:
        rule = RULES.get(f"model.head.{name}")
        problem = rule.problem(getattr(opts, name)) if rule is not None else None
        if problem:
            raise ConfigError(f"head.{name}={getattr(opts, name)!r}: {problem}")


def batched_nms_all(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group, one kernel call: groups are moved apart by an offset.

    The offset trick runs in float64 so that shifting never rounds box coordinates (in float32
    an offset of ~1e6 would), giving the same decisions as NMS run per group. Returns kept
    indices sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes64 = boxes.double()
    offsets = groups.to(boxes64) * (boxes64.max() - boxes64.min() + 1)
    return nms(boxes64 + offsets[:, None], scores.double(), iou_threshold)


def _grouped(groups: Tensor) -> tuple[Tensor, Tensor]:
    """Pack ``[N]`` items by group: ``index [G, K]`` of the items of each group (-1 padding), ``valid``."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(groups), device=groups.device) - starts[inverse[order]]
    index = torch.full((len(counts), int(counts.max())), -1, dtype=torch.long, device=groups.device)
    index[inverse[order], slot] = order
    return index, index >= 0


def _pairwise_iou(boxes: Tensor) -> Tensor:
    """``[G, K, 4]`` → ``[G, K, K]`` IoU within each group, as mmcv's Soft-NMS computes it
    (no epsilon; 0/0 between empty boxes counts as 0)."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    return torch.nan_to_num(iou, nan=0.0)


def soft_nms(boxes: Tensor, scores: Tensor, groups: Tensor, method: str = "gaussian", iou_threshold: float = 0.3,
             sigma: float = 0.5, min_score: float = 1e-3, max_per_group: int | None = None) -> tuple[Tensor, Tensor]:
    """Soft-NMS within each group, all groups at once.

    Each step selects, in every group, the box with the highest current score and decays the scores of
    the group's remaining boxes by its IoU with them (``gaussian``: ``exp(-IoU² / sigma)``; ``linear``:
    ``1 - IoU`` where ``IoU >= iou_threshold``); boxes below ``min_score`` leave. Returns the kept indices
    and their decayed scores, sorted by decreasing score (the order in which they were selected).

    ``max_per_group`` stops each group after that many selections: a group's later boxes score below its
    first ``max_per_group``, so they cannot be among the best ``max_per_group`` of an image either (the
    caller keeps that many per image); the worst case, 1000 boxes of one class, takes 100 steps, not 1000.

    Every box returned scores at least ``min_score``: when no candidate does (a confident model on an image
    without objects), the result is empty. mmcv's ``soft_nms`` differs there: its loop compares scores with
    ``min_score`` only after decaying them, so the first box of each call is kept whatever its score — with
    mmdetection's ``batched_nms`` (one call per image below 10000 boxes) the image's best box, e.g. one
    CornerNet detection scoring below 1e-3 on an empty image, where this gives none.
    """
    if method not in ("gaussian", "linear"):
        raise ConfigError(f"soft-NMS method must be gaussian or linear, got '{method}'")
    if scores.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=scores.device), scores.new_zeros(0)
    index, valid = _grouped(groups)
    safe = index.clamp(min=0)
    current = torch.where(valid, scores[safe].float(), torch.full_like(safe, -1, dtype=torch.float32))
    iou = _pairwise_iou(boxes[safe].float())
    active = valid & (current >= min_score)
    rows = torch.arange(len(index), device=scores.device)
    picked_slot, picked_score = [], []
    steps = index.shape[1] if max_per_group is None else min(index.shape[1], max_per_group)
    for _ in range(steps):
        masked = torch.where(active, current, torch.full_like(current, float("-inf")))
        best_score, best = masked.max(dim=1)
        live = torch.isfinite(best_score)
        if not bool(live.any()):
            break
        picked_slot.append(torch.where(live, index[rows, best], torch.full_like(best, -1)))
        picked_score.append(best_score)
        active[rows, best] = active[rows, best] & ~live
        overlap = iou[rows, best]  # [G, K]
        if method == "gaussian":
            decay = torch.exp(-(overlap * overlap) / sigma)
        else:
            decay = torch.where(overlap >= iou_threshold, 1 - overlap, torch.ones_like(overlap))
        current = torch.where(live[:, None] & active, current * decay, current)
        active &= current >= min_score
    if not picked_slot:  # no candidate reaches min_score
        return torch.empty(0, dtype=torch.long, device=scores.device), current.new_zeros(0)
    kept = torch.stack(picked_slot, dim=1).flatten()
    kept_scores = torch.stack(picked_score, dim=1).flatten()
    found = kept >= 0
    kept, kept_scores = kept[found], kept_scores[found]
    order = torch.sort(kept_scores, descending=True, stable=True).indices
    return kept[order], kept_scores[order]


def suppress(boxes: Tensor, scores: Tensor, labels: Tensor, image_index: Tensor, num_images: int,
             opts: HeadConfig) -> list[Detections]:
    """Candidates of a whole batch (flat ``[N]`` tensors with their ``image_index``) → detections per
    image: score threshold, the suppression ``opts.nms``, best ``opts.max_detections`` per image."""
    valid = scores > opts.score_thresh
    boxes, scores, labels, image_index = boxes[valid], scores[valid], labels[valid], image_index[valid]
    num_classes = int(labels.max()) + 1 if labels.numel() else 1
    if opts.nms == "classwise":
        keep = batched_nms_all(boxes, scores, image_index * num_classes + labels, opts.nms_thresh)
    elif opts.nms == "agnostic":
        keep = batched_nms_all(boxes, scores, image_index, opts.nms_thresh)
    elif opts.nms in ("soft_gaussian", "soft_linear"):
        keep, scores_kept = soft_nms(boxes, scores, image_index * num_classes + labels, opts.nms[5:],
                                     opts.nms_thresh, opts.soft_nms_sigma, opts.soft_nms_min_score,
                                     max_per_group=opts.max_detections)
        scores = scores.clone()
        scores[keep] = scores_kept.to(scores.dtype)
        keep = keep[scores_kept > opts.score_thresh]  # the threshold also holds for the decayed scores
    else:
        keep = torch.sort(scores, descending=True, stable=True).indices

    # keep is sorted by score; a stable sort by image keeps that order within each image
    keep = keep[torch.sort(image_index[keep], stable=True).indices]
    kept_images = image_index[keep]
    counts = torch.bincount(kept_images, minlength=num_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(keep.numel(), device=keep.device) - starts[kept_images]
    keep = keep[rank < opts.max_detections]
    counts = counts.clamp(max=opts.max_detections).tolist()
    return [
        Detections(b, s, l)
        for b, s, l in zip(boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts))
    ]


def suppress_batch(boxes: Tensor, scores: Tensor, labels: Tensor, opts: HeadConfig,
                   valid: Tensor | None = None) -> list[Detections]:
    """:func:`suppress` for candidates laid out per image: ``boxes [B, K, 4]``, ``scores`` and ``labels``
    ``[B, K]``; ``valid [B, K]`` leaves out candidates that are not boxes at all (e.g. rejected pairs)."""
    num_images = boxes.shape[0]
    image_index = torch.arange(num_images, device=boxes.device)[:, None].expand_as(scores).reshape(-1)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    if valid is not None:
        keep = valid.reshape(-1)
        boxes, scores, labels, image_index = boxes[keep], scores[keep], labels[keep], image_index[keep]
    return suppress(boxes, scores, labels, image_index, num_images, opts)


class Candidates(NamedTuple):
    """What a head's candidate stage (:meth:`Head.candidates`) gives suppression, in a fixed-shape layout that
    traces for export: ``boxes [B, K, 4]`` (input pixels), ``scores [B, K]`` (``-inf``: not a detection),
    ``labels [B, K]``, and ``thresholded``: whether the score threshold was applied already (on the class
    score, before a score factor was multiplied in), so that suppression must not apply it again."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    thresholded: bool = False


def sym_min(a: int, b: Any) -> Any:
    """``min(a, b)`` for a size ``b``: symbolic for a dynamic size of ``torch.export``, else an int (a traced
    size becomes a constant of the TorchScript trace)."""
    return torch.sym_min(a, b) if isinstance(b, torch.SymInt) else min(a, int(b))


def top_candidates(level_scores: list[Tensor], level_boxes: list[Tensor], image_sizes: Tensor, opts: HeadConfig,
                   score_thresh: Tensor | float | None = None,
                   level_factors: list[Tensor] | None = None) -> Candidates:
    """Dense heads' candidate stage: per-level ``scores [B, N_l, C]`` and ``boxes [B, N_l, 4]`` → per level the
    top ``opts.topk`` (prior, class) pairs, clipped to the image.

    With ``level_factors [B, N_l]`` the threshold (``score_thresh``, default ``opts.score_thresh``) and the
    top-k read ``scores`` alone and each candidate's score is then multiplied by its prior's factor
    (mmdetection's ``score_factors``: center-ness), which no later threshold removes. ``opts.min_box_size >= 0``
    marks clipped boxes whose width or height is not above it as no detection."""
    threshold = opts.score_thresh if score_thresh is None else score_thresh
    num_images, num_classes = level_scores[0].shape[0], level_scores[0].shape[-1]
    cand_scores, cand_boxes, cand_labels = [], [], []
    factors = level_factors or [None] * len(level_scores)
    for scores, boxes, factor in zip(level_scores, level_boxes, factors):
        flat = scores.reshape(num_images, -1)
        top, idx = flat.topk(sym_min(opts.topk, flat.shape[1]), dim=1)
        prior = torch.div(idx, num_classes, rounding_mode="floor")
        if factor is not None:
            top = torch.where(top > threshold, top * factor.gather(1, prior), torch.full_like(top, float("-inf")))
        cand_scores.append(top)
        cand_labels.append(idx % num_classes)
        cand_boxes.append(boxes.gather(1, prior[..., None].expand(-1, -1, 4)))
    boxes = clip_boxes(torch.cat(cand_boxes, dim=1), image_sizes)
    scores = torch.cat(cand_scores, dim=1)
    if opts.min_box_size >= 0:
        big = (boxes[..., 2:] - boxes[..., :2] > opts.min_box_size).all(dim=-1)
        scores = torch.where(big, scores, torch.full_like(scores, float("-inf")))
    return Candidates(boxes, scores, torch.cat(cand_labels, dim=1), level_factors is not None)


def suppress_candidates(candidates: Candidates, opts: HeadConfig) -> list[Detections]:
    """:func:`suppress` of a head's :class:`Candidates`: those scoring ``-inf`` leave first, and the score
    threshold is not applied again where the candidate stage applied it."""
    if candidates.thresholded:
        opts = dataclasses.replace(opts, score_thresh=float("-inf"))
    return suppress_batch(candidates.boxes, candidates.scores, candidates.labels, opts,
                          valid=candidates.scores > float("-inf"))


def select_detections(level_scores: list[Tensor], level_boxes: list[Tensor], image_sizes: Tensor,
                      opts: HeadConfig, level_factors: list[Tensor] | None = None) -> list[Detections]:
    """Dense heads' detections: :func:`top_candidates` → :func:`suppress_candidates`."""
    return suppress_candidates(top_candidates(level_scores, level_boxes, image_sizes, opts,
                                              level_factors=level_factors), opts)
